#!/usr/bin/env bash
# Installs what the tests and the local stack need, once, into .cache/:
#   Kratos v1.3.1 (built with -tags sqlite from the Go module proxy), Kratos
#   v26.2.0 (built with -tags sqlite from its source archive, see build_kratos_v26),
#   Mailpit (from the Go module proxy, its web UI with npm) and Ory Hydra
#   v2.3.0 (built with -tags sqlite from the Go module proxy through
#   integration/tools/hydra; the OAuth2 server of the SMTP XOAUTH2 tests).
# `scripts/deps.sh protoc` installs Debian's protobuf-compiler for `make generate`;
# `scripts/deps.sh chromium` installs Debian's chromium for the browser test
# (integration/browser_test.go);
# `scripts/deps.sh binaries` builds only the binaries: Kratos (both versions) and Mailpit (the
# local stack), and Hydra (the XOAUTH2 tests);
# `scripts/deps.sh kratos-v1.3.1`, `kratos-v26.2.0`, `mailpit` and `hydra` build only that one;
# `scripts/deps.sh postgres` installs Debian's PostgreSQL server, also part of
# the default set: the unit tests' throwaway clusters (internal/pgtest) and the
# recovery burst benchmark on PostgreSQL (`make bench`) run it;
# `scripts/deps.sh nginx` installs Debian's nginx for the reverse-proxy recipe
# test (integration/nginx_test.go).
# Re-running is cheap: binaries are keyed by version and reused.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache="$root/.cache"
KRATOS_VERSION=v1.3.1
KRATOS_V26_VERSION=v26.2.0
MAILPIT_VERSION=v1.27.11
# Also the require in integration/tools/hydra/go.mod and hydraVersion in
# integration/hydra_helpers_test.go.
HYDRA_VERSION=v2.3.0
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
  echo "deps: installing postgresql (Debian) for the tests' throwaway clusters" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  # The tests run throwaway clusters of their own; the package's own one is
  # not needed, and on a machine without systemd it does not start anyway.
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
}

install_nginx() {
  [ -x /usr/sbin/nginx ] && return 0
  echo "deps: installing nginx (Debian) for the reverse-proxy recipe test" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  # The test runs an nginx of its own with its own config; the package's
  # service (port 80, started where systemd runs) is not used.
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
}

build_kratos() {
  local out="$cache/kratos-$KRATOS_VERSION"
  [ -x "$out" ] && return 0
  echo "deps: building Kratos $KRATOS_VERSION from the Go module proxy (a few minutes, once)" >&2
  (cd "$root/integration/tools/kratos" && go build -tags sqlite -trimpath \
    -ldflags "-X github.com/ory/kratos/driver/config.Version=$KRATOS_VERSION" \
    -o "$out.tmp" . && mv "$out.tmp" "$out")
}

# Hydra is built from its own small module (integration/tools/hydra): Hydra's
# go.mod replaces github.com/gobuffalo/pop/v6 with Ory's fork, and a replace
# only counts in the main module, so `go install github.com/ory/hydra/v2@...`
# does not build; that module repeats it. Building it here also shows a
# break of that module, which go vet and staticcheck (./... of the two main
# modules) do not see.
build_hydra() {
  local out="$cache/hydra-$HYDRA_VERSION/hydra"
  [ -x "$out" ] && return 0
  echo "deps: building Ory Hydra $HYDRA_VERSION from the Go module proxy (about 4 minutes on 2 cores with nothing cached, once)" >&2
  mkdir -p "$(dirname "$out")"
  (cd "$root/integration/tools/hydra" && GOWORK=off go build -tags sqlite -trimpath \
    -ldflags "-X github.com/ory/hydra/v2/driver/config.Version=$HYDRA_VERSION" \
    -o "$out.tmp" . && mv "$out.tmp" "$out")
}

# Kratos's calendar versions (v25.x, v26.x) keep the module path
# github.com/ory/kratos without a /v26 suffix, so the Go module proxy refuses
# them: v26.2.0 is built from its source (every dependency still comes from
# the proxy; oryx and pkg/client-go are inside the tree). The source is
# ../shared/kratos/kratos-v26.2.0-src.tar.gz when that file exists (a
# `git archive --prefix=kratos-v26.2.0/` of the tag, checksum below, from
# ../shared/kratos/README.md), otherwise GitHub's archive of the tag.
#
# Only the shared archive's checksum is pinned. GitHub's archive has another
# prefix (kratos-26.2.0/) and another checksum, and this script was written
# where there is no internet to compute it; rather than trust an unverified
# download, the script prints the checksum it got and stops until it is
# given as KRATOS_V26_GITHUB_SHA256 (or pinned below once verified).
KRATOS_V26_SHARED_ARCHIVE="$root/../shared/kratos/kratos-$KRATOS_V26_VERSION-src.tar.gz"
KRATOS_V26_SHARED_SHA256=cc0c49c783efbb14b74e8570834db4be6acd4425279ddd6928f7e176639451dd
KRATOS_V26_GITHUB_URL="https://github.com/ory/kratos/archive/refs/tags/$KRATOS_V26_VERSION.tar.gz"
KRATOS_V26_GITHUB_SHA256="${KRATOS_V26_GITHUB_SHA256:-}" # not pinned: see above

build_kratos_v26() {
  local out="$cache/kratos-$KRATOS_V26_VERSION"
  [ -x "$out" ] && return 0
  local archive want
  if [ -f "$KRATOS_V26_SHARED_ARCHIVE" ]; then
    archive=$KRATOS_V26_SHARED_ARCHIVE want=$KRATOS_V26_SHARED_SHA256
  else
    archive="$cache/kratos-$KRATOS_V26_VERSION-github.tar.gz" want=$KRATOS_V26_GITHUB_SHA256
    if [ ! -s "$archive" ]; then
      echo "deps: downloading Kratos $KRATOS_V26_VERSION's source from $KRATOS_V26_GITHUB_URL" >&2
      curl -fsSL -o "$archive.tmp" "$KRATOS_V26_GITHUB_URL" && mv "$archive.tmp" "$archive"
    fi
  fi
  local got
  got=$(sha256sum "$archive" | cut -d' ' -f1)
  if [ -z "$want" ]; then
    echo "deps: the checksum of $KRATOS_V26_GITHUB_URL is not pinned in scripts/deps.sh; the download has sha256 $got." >&2
    echo "deps: verify it (e.g. against the tag in a git clone), then re-run with KRATOS_V26_GITHUB_SHA256=$got" >&2
    return 1
  fi
  if [ "$got" != "$want" ]; then
    echo "deps: $archive has sha256 $got, want $want; refusing to build it" >&2
    return 1
  fi
  echo "deps: building Kratos $KRATOS_V26_VERSION from $(basename "$archive") (about 4 minutes on 2 cores, once)" >&2
  local src="$cache/kratos-$KRATOS_V26_VERSION-src"
  rm -rf "$src" && mkdir -p "$src"
  # --strip-components: the two archives name their top folder differently.
  tar -xzf "$archive" -C "$src" --strip-components=1
  (cd "$src" && GOWORK=off go build -tags sqlite -trimpath \
    -ldflags "-X github.com/ory/kratos/driver/config.Version=$KRATOS_V26_VERSION" \
    -o "$out.tmp" . && mv "$out.tmp" "$out")
  rm -rf "$src"
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

# Several targets may be given, e.g. `scripts/deps.sh kratos-v26.2.0 mailpit`.
for target in "${@:-all}"; do
  case "$target" in
    protoc) install_protoc ;;
    chromium) install_chromium ;;
    postgres) install_postgres ;;
    nginx) install_nginx ;;
    all) install_protoc; install_chromium; install_nginx; install_postgres; build_kratos; build_kratos_v26; build_mailpit; build_hydra ;;
    binaries) build_kratos; build_kratos_v26; build_mailpit; build_hydra ;;
    "kratos-$KRATOS_VERSION") build_kratos ;;
    "kratos-$KRATOS_V26_VERSION") build_kratos_v26 ;;
    mailpit) build_mailpit ;;
    hydra) build_hydra ;;
    *) echo "usage: $0 [all|protoc|chromium|nginx|binaries|postgres|kratos-$KRATOS_VERSION|kratos-$KRATOS_V26_VERSION|mailpit|hydra]..." >&2; exit 2 ;;
  esac
done
