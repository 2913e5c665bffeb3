#!/usr/bin/env bash
# Installs what the tests and the local stack need, once, into .cache/:
#   Kratos v1.3.1 (built with -tags sqlite from the Go module proxy) and Mailpit.
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

build_mailpit() {
  local out="$cache/mailpit-$MAILPIT_VERSION/mailpit"
  [ -x "$out" ] && return 0
  echo "deps: building Mailpit $MAILPIT_VERSION from the Go module proxy (about a minute, once)" >&2
  (cd "$root" && GOBIN="$cache/mailpit-$MAILPIT_VERSION" GOFLAGS=-mod=mod go install "github.com/axllent/mailpit@$MAILPIT_VERSION")
}

case "${1:-all}" in
  protoc) install_protoc ;;
  chromium) install_chromium ;;
  postgres) install_postgres ;;
  all) install_protoc; install_chromium; build_kratos; build_mailpit ;;
  binaries) build_kratos; build_mailpit ;;
  *) echo "usage: $0 [all|protoc|chromium|binaries|postgres]" >&2; exit 2 ;;
esac
