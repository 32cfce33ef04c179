#!/bin/sh
# Renders every /etc/nginx/templates/**/NAME.template into
# /etc/nginx/conf.d/NAME with envsubst, replacing only the variables that are
# set in the environment, so that nginx's own $variables stay as they are.
# NGINX_ENVSUBST_TEMPLATE_DIR, _TEMPLATE_SUFFIX and _OUTPUT_DIR change the
# three places.
set -e

me=$(basename "$0")
dir=${NGINX_ENVSUBST_TEMPLATE_DIR:-/etc/nginx/templates}
suffix=${NGINX_ENVSUBST_TEMPLATE_SUFFIX:-.template}
out=${NGINX_ENVSUBST_OUTPUT_DIR:-/etc/nginx/conf.d}
info() {
	[ -n "${NGINX_ENTRYPOINT_QUIET_LOGS:-}" ] || echo "$me: $*"
}

[ -d "$dir" ] || exit 0
if [ ! -w "$out" ]; then
	info "error: $out is not writable"
	exit 0
fi

# "${A} ${B} ...": every variable of the environment, for envsubst.
defined=$(awk 'BEGIN { for (name in ENVIRON) printf "${%s} ", name }')
find "$dir" -follow -type f -name "*$suffix" | sort | while read -r template; do
	rel=${template#"$dir"/}
	target=$out/${rel%"$suffix"}
	mkdir -p "$(dirname "$target")"
	info "Running envsubst on $template to $target"
	envsubst "$defined" <"$template" >"$target"
done
