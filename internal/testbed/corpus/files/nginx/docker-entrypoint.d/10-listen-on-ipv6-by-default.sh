#!/bin/sh
# Makes the image's default server listen on IPv6 too ("listen [::]:80;"
# next to "listen 80;") where the machine has IPv6, but only while
# /etc/nginx/conf.d/default.conf is still the file the image shipped: a
# file the user changed is theirs. The image records the shipped file's
# checksum in /usr/share/nginx/default.conf.sha256 (the official image asks
# dpkg for it).
set -e

me=$(basename "$0")
conf=/etc/nginx/conf.d/default.conf
sums=/usr/share/nginx/default.conf.sha256
info() {
	[ -n "${NGINX_ENTRYPOINT_QUIET_LOGS:-}" ] || echo "$me: info: $*"
}

if [ ! -f /proc/net/if_inet6 ]; then
	info "no IPv6 in this machine"
	exit 0
fi
if [ ! -f "$conf" ]; then
	info "$conf is not a file"
	exit 0
fi
if ! touch "$conf" 2>/dev/null; then
	info "cannot change $conf (a read-only file system?)"
	exit 0
fi
if grep -q 'listen  *\[::\]:80;' "$conf"; then
	info "$conf listens on IPv6 already"
	exit 0
fi
if ! sha256sum -c -s "$sums" 2>/dev/null; then
	info "$conf is not the image's own: leaving it as it is"
	exit 0
fi

sed -i -E 's,^( *)listen +80;,&\n\1listen  [::]:80;,' "$conf"
info "Enabled listen on IPv6 in $conf"
