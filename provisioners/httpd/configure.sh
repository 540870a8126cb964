#!/bin/sh
# Publishes the site uploaded to $SITE_DIR and sets the ServerName.
# Needs: SERVER_NAME, SITE_DIR, IMAGE_VERSION.
set -eu

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi; }

: "${SERVER_NAME:?}" "${SITE_DIR:?}" "${IMAGE_VERSION:?}"

if [ -d /etc/apache2/conf-available ]; then
    conf=/etc/apache2/conf-available/servername.conf
    echo "ServerName $SERVER_NAME" | as_root tee "$conf" >/dev/null
    as_root a2enconf -q servername
else
    echo "ServerName $SERVER_NAME" | as_root tee /etc/httpd/conf.d/servername.conf >/dev/null
fi

as_root mkdir -p /var/www/html
sed "s/@VERSION@/$IMAGE_VERSION/g" "$SITE_DIR/index.html" | as_root tee /var/www/html/index.html >/dev/null
rm -rf "$SITE_DIR"
echo "site published for $SERVER_NAME (image $IMAGE_VERSION)"
