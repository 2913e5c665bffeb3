#!/usr/bin/env bash
# Runs every check and test of the project: formatting, vet, staticcheck,
# generated code freshness, unit tests (with -race), a short bounded fuzz run,
# and the integration journeys against real Kratos (v1.3.1, then v26.2.0) and
# Mailpit, then once more (v1.3.1) with the gateway on its durable outbox.
# It installs what it needs itself (scripts/deps.sh), so it works on a fresh clone.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
STATICCHECK=honnef.co/go/tools/cmd/staticcheck@v0.8.2

step() { printf '\n== %s\n' "$*"; }

step "dependencies (Kratos, Hydra, Mailpit, protoc, Chromium, nginx, PostgreSQL)"
scripts/deps.sh

step "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' | grep -v '\.pb\.go$'))
if [ -n "$unformatted" ]; then echo "gofmt would change: $unformatted"; exit 1; fi

step "generated code matches sdk/proto/gateway.proto"
make -s generate
git diff --exit-code -- sdk/pb

step "go vet and staticcheck"
go vet ./...
(cd integration && go vet ./...)
go run "$STATICCHECK" ./...
(cd integration && go run "$STATICCHECK" ./...)

step "unit, SMTP and plugin tests (-race)"
go test -race -count=1 ./...

# Each target's budget is a count of executions, about 10 s on the build
# machine: with a duration, Go 1.26's fuzz coordinator can fail a clean run
# with "context deadline exceeded" as the time runs out (golang/go#75804,
# fixed in Go 1.27). FUZZTIME=30s (or 50000x) overrides every budget.
step "fuzzing, about 10s per target (seed corpora run with the unit tests)"
for target in host/httpapi:FuzzCourier:5000x host/httpapi:FuzzLoginHook:5000x host/httpapi:FuzzSettingsHook:8000x \
              host/httpapi:FuzzPasswordHook:10000x host/config:FuzzParse:20000x plugin/mailtmpl:FuzzTemplates:100000x \
              plugin/mailtmpl:FuzzNoticeTemplates:25000x; do
  pkg=${target%%:*} rest=${target#*:}
  name=${rest%%:*} budget=${FUZZTIME:-${rest#*:}}
  if ! out=$(go test -run '^$' -fuzz "^${name}\$" -fuzztime "$budget" "./$pkg" 2>&1); then
    echo "$out"; exit 1
  fi
  echo "$pkg:$name ($budget): ok"
done

# The whole suite once per supported Kratos (integration/stack_test.go reads
# KRATOS_VERSION), one after the other: both would share the demo UI's port.
for kratos in v1.3.1 v26.2.0; do
  step "integration: real Kratos $(.cache/kratos-$kratos version 2>/dev/null | head -1 | tr -s '\t ' ' '), Mailpit, gateway"
  (cd integration && KRATOS_VERSION=$kratos go test -count=1 -timeout 15m ./...)
done

# And once more with every host on the durable outbox (a database of its own
# in a throwaway PostgreSQL cluster; integration/stack_test.go withQueueMode):
# the same journeys, the same rules, told through the queue. The TestOutbox*
# tests set up outboxes of their own and ran in both runs above.
step "integration through the durable outbox: real Kratos v1.3.1, PostgreSQL, Mailpit, gateway"
(cd integration && INTEGRATION_QUEUE=postgres KRATOS_VERSION=v1.3.1 go test -count=1 -timeout 15m -skip '^TestOutbox' ./...)

step "all tests passed"
