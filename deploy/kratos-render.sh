#!/bin/sh
# Entrypoint of the kratos and kratos-migrate containers (docker-compose.yml).
#
# configs/kratos/kratos.yml names the gateway as http://127.0.0.1:8080 and its
# key as a placeholder (see the file's header). This script copies the
# mounted, read-only config folder to a writable one with both filled in, then
# runs Kratos from that folder (kratos.yml refers to file://./identity.schema.json
# and the jsonnet files relative to the working directory):
#
#   KRATOS_CONFIG_SRC         the folder as committed (default /etc/config/kratos-src)
#   KRATOS_CONFIG_DIR         the rendered folder (default /etc/config/kratos)
#   KRATOS_GATEWAY_URL        the gateway as Kratos reaches it (default http://gateway:8080)
#   GATEWAY_WEBHOOK__API_KEY  the gateway's webhook.api_key (required)
#
# Arguments are Kratos's: kratos-render.sh serve -c /etc/config/kratos/kratos.yml ...
# Runs under the oryd/kratos image's busybox /bin/sh; POSIX sh and sed only.
set -eu

# The placeholders in configs/kratos/kratos.yml. integration/compose_test.go
# runs this script and checks that none is left over.
placeholder_url='http://127.0.0.1:8080'
placeholder_key='change-me-to-the-gateway-webhook-api-key'

src=${KRATOS_CONFIG_SRC:-/etc/config/kratos-src}
dst=${KRATOS_CONFIG_DIR:-/etc/config/kratos}
url=${KRATOS_GATEWAY_URL:-http://gateway:8080}
key=${GATEWAY_WEBHOOK__API_KEY:-}

die() { echo "kratos-render: $*" >&2; exit 1; }

[ -n "$key" ] || die "GATEWAY_WEBHOOK__API_KEY is not set (the gateway's webhook.api_key)"
[ "$key" != "$placeholder_key" ] || die "GATEWAY_WEBHOOK__API_KEY is still the placeholder; use e.g. openssl rand -hex 24"
[ "${#key}" -ge 16 ] || die "GATEWAY_WEBHOOK__API_KEY is shorter than 16 characters"
# The key lands in a plain YAML scalar ("value: Bearer <key>") and in a sed
# replacement: keep to characters that are safe in both (hex, base64, base64url).
case $key in
  *[!A-Za-z0-9._~+/=-]*) die "GATEWAY_WEBHOOK__API_KEY may only hold A-Z a-z 0-9 . _ ~ + / = - (e.g. openssl rand -hex 24)" ;;
esac
case $url in
  http://*|https://*) ;;
  *) die "KRATOS_GATEWAY_URL must be an http(s) URL, got: $url" ;;
esac
case $url in
  *[!A-Za-z0-9.:/_-]*|*/) die "KRATOS_GATEWAY_URL must be scheme://host:port without a trailing slash, got: $url" ;;
esac

[ -f "$src/kratos.yml" ] || die "$src/kratos.yml not found; mount configs/kratos there"
# The rendered files hold the key: readable by this user only.
umask 077
mkdir -p "$dst"
url_re=$(printf '%s' "$placeholder_url" | sed 's/\./\\./g')
for f in "$src"/*; do
  [ -f "$f" ] || continue
  sed -e "s|$url_re|$url|g" -e "s|$placeholder_key|$key|g" "$f" > "$dst/${f##*/}"
done
if grep -q -F -e "$placeholder_url" -e "$placeholder_key" "$dst"/*; then
  die "a placeholder is left in $dst"
fi

cd "$dst"
exec kratos "$@"
