#!/bin/sh
# Installs Tomcat (Debian's tomcat10, or Amazon Linux's tomcat9) and sets
# JAVA_OPTS for its service. Needs: JAVA_OPTS.
set -eu

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi; }

: "${JAVA_OPTS:?}"

if command -v apt-get >/dev/null 2>&1; then
    if ! dpkg-query -W -f='${Status}' tomcat10 2>/dev/null | grep -q "ok installed"; then
        as_root apt-get update -q
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q --no-install-recommends tomcat10
    fi
    service=tomcat10
elif command -v dnf >/dev/null 2>&1; then
    as_root dnf -y -q install tomcat9
    service=tomcat9
else
    echo "install.sh: no apt-get or dnf on this machine" >&2
    exit 1
fi

as_root mkdir -p "/etc/systemd/system/$service.service.d"
printf '[Service]\nEnvironment="JAVA_OPTS=%s"\n' "$JAVA_OPTS" | as_root tee "/etc/systemd/system/$service.service.d/java-opts.conf" >/dev/null
as_root systemctl enable "$service"
echo "tomcat installed: $service"
