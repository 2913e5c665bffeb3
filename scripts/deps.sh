#!/usr/bin/env bash
# Installs what the tests and the local stack need, once, into .cache/:
#   Kratos v1.3.1 (built with -tags sqlite from the Go module proxy) and Mailpit
#   (from the Go module proxy, its web UI with npm).
# `scripts/deps.sh protoc` installs Debian's protobuf-compiler for `make generate`;
# `scripts/deps.sh chromium` installs Debian's chromium for the browser test
# (integration/browser_test.go);
# `scripts/deps.sh binaries` builds only Kratos and Mailpit (the local stack);
# `scripts/deps.sh postgres` installs Debian's PostgreSQL server for the
# recovery burst benchmark on PostgreSQL (`make bench`).
# Re-running is cheap: binaries are keyed by version and reused.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache="$root/.cache"
KRATOS_VERSION=v1.3.1
MAILPIT_VERSION=v1.27.11
mkdir -p "$cache"

install_protoc() {
  command -v protoc >/dev/null && return 0
  echo "deps: installing protobuf-compiler (Debian)" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler >/dev/null
}

install_chromium() {
  command -v chromium >/dev/null && return 0
  echo "deps: installing chromium (Debian) for the browser test" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
}

install_postgres() {
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && return 0
  echo "deps: installing postgresql (Debian) for the PostgreSQL benchmark" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  # The benchmark runs its own throwaway cluster; the package's own one is
  # not needed, and on a machine without systemd it does not start anyway.
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
}

build_kratos() {
  local out="$cache/kratos-$KRATOS_VERSION"
  [ -x "$out" ] && return 0
  echo "deps: building Kratos $KRATOS_VERSION from the Go module proxy (a few minutes, once)" >&2
  (cd "$root/integration/tools/kratos" && go build -tags sqlite -trimpath \
    -ldflags "-X github.com/ory/kratos/driver/config.Version=$KRATOS_VERSION" \
    -o "$out.tmp" . && mv "$out.tmp" "$out")
}

# Mailpit's module holds the sources of its web UI but not the built bundle
# (`go install` gives a blank inbox page), so the UI is built with npm first.
# Without npm, or if that build fails, Mailpit is built without it: the API
# and the /view/<id>.html pages, which the tests and the stack use, still work.
build_mailpit() {
  local dir="$cache/mailpit-$MAILPIT_VERSION"
  local out="$dir/mailpit"
  [ -x "$out" ] && return 0
  echo "deps: building Mailpit $MAILPIT_VERSION and its web UI from the Go module proxy and the npm registry (about a minute, once)" >&2
  local mod
  mod=$(cd "$root" && go mod download -json "github.com/axllent/mailpit@$MAILPIT_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -n "$mod" ] || { echo "deps: go mod download of Mailpit gave no source folder" >&2; return 1; }
  local src="$dir/src"
  rm -rf "$src" && mkdir -p "$dir" && cp -r "$mod" "$src" && chmod -R u+w "$src"
  if command -v npm >/dev/null && (cd "$src" && npm ci --no-audit --no-fund --loglevel=error >/dev/null && npm run build >/dev/null); then
    :
  else
    echo "deps: WARNING: Mailpit's web UI could not be built (npm missing or failed); its inbox page will be blank, /view/latest.html works" >&2
  fi
  (cd "$src" && GOFLAGS=-mod=mod go build -trimpath -ldflags "-X github.com/axllent/mailpit/config.Version=$MAILPIT_VERSION" -o "$out.tmp" . && mv "$out.tmp" "$out")
  rm -rf "$src"
}

case "${1:-all}" in
  protoc) install_protoc ;;
  chromium) install_chromium ;;
  postgres) install_postgres ;;
  all) install_protoc; install_chromium; build_kratos; build_mailpit ;;
  binaries) build_kratos; build_mailpit ;;
  *) echo "usage: $0 [all|protoc|chromium|binaries|postgres]" >&2; exit 2 ;;
esac
