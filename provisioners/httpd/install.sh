#!/bin/sh
# Installs Apache httpd and enables it at boot, on Debian/Ubuntu or on
# Amazon Linux/Fedora/RHEL. Already-installed packages are left as they are.
set -eu

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi; }

if command -v apt-get >/dev/null 2>&1; then
    if ! dpkg-query -W -f='${Status}' apache2 2>/dev/null | grep -q "ok installed"; then
        as_root apt-get update -q
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q --no-install-recommends apache2
    fi
    service=apache2
elif command -v dnf >/dev/null 2>&1; then
    as_root dnf -y -q install httpd
    service=httpd
else
    echo "install.sh: no apt-get or dnf on this machine" >&2
    exit 1
fi

as_root systemctl enable "$service"
echo "httpd installed: $service"
