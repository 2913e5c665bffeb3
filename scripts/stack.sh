#!/usr/bin/env bash
# The local stack, all on loopback, no Docker: Mailpit (SMTP + web UI),
# Ory Kratos on sqlite, and the gateway host with its plugin, wired with
# configs/. Ctrl-C stops everything. State lives in .stack/.
# KRATOS_VERSION (`make stack KRATOS=v1.3.1`) picks the Kratos: v26.2.0
# (default) or v1.3.1; each version keeps a database of its own.
# QUEUE=postgres (`make stack QUEUE=postgres`) runs the durable outbox: a
# local PostgreSQL (Debian's, in .stack/pg, on 127.0.0.1:5433) holds Kratos's
# database and the gateway's outbox, and River's UI is on the admin listener.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
state="$root/.stack"
mkdir -p "$state"

KRATOS_VERSION=${KRATOS_VERSION:-v26.2.0}
case "$KRATOS_VERSION" in
  v26.2.0|v1.3.1) ;;
  *) echo "stack: KRATOS_VERSION=$KRATOS_VERSION: the stack runs v26.2.0 or v1.3.1" >&2; exit 2 ;;
esac
QUEUE=${QUEUE:-}
case "$QUEUE" in
  ""|postgres) ;;
  *) echo "stack: QUEUE=$QUEUE: leave it empty (no outbox) or set postgres" >&2; exit 2 ;;
esac
scripts/deps.sh "kratos-$KRATOS_VERSION" mailpit ${QUEUE:+postgres}
make -s build

KRATOS="$root/.cache/kratos-$KRATOS_VERSION"
MAILPIT="$root/.cache/mailpit-v1.27.11/mailpit"

# This stack's webhook key and cipher key, made once and kept in .stack/.
secret() { [ -s "$state/$1" ] || head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$state/$1"; cat "$state/$1"; }
api_key=$(secret webhook-api-key)
cipher=$(secret secrets-cipher)

pids=()
pg_stop=()
stop() {
  # A second Ctrl-C (or a TERM to the whole group) must not cut the
  # clean-up short: PostgreSQL would be left running.
  trap '' INT TERM
  trap - EXIT
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ ${#pg_stop[@]} -gt 0 ]; then "${pg_stop[@]}" >/dev/null 2>&1 || true; fi
}
trap stop INT TERM EXIT

wait_http() { # url what
  for _ in $(seq 1 150); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.2
  done
  echo "stack: $2 did not come up; see $state/*.log" >&2
  exit 1
}

"$MAILPIT" --smtp 127.0.0.1:1025 --listen 127.0.0.1:8025 --database "$state/mailpit.db" \
  >"$state/mailpit.log" 2>&1 &
pids+=($!)

# configs/kratos with this stack's webhook key filled in (it holds a placeholder).
mkdir -p "$state/kratos"
# Its version key (start-up warning only) names the Kratos that runs.
for f in configs/kratos/*; do
  sed -e "s/change-me-to-the-gateway-webhook-api-key/$api_key/" \
    -e "s/^version: v[0-9.]*\$/version: $KRATOS_VERSION/" "$f" > "$state/kratos/$(basename "$f")"
done
# One database per version: v1.3.1 cannot run on v26.2.0's schema.
export DSN="sqlite://$state/kratos-$KRATOS_VERSION.sqlite?_fk=true&mode=rwc&_journal_mode=WAL"
queue_env=()
if [ "$QUEUE" = postgres ]; then
  # PostgreSQL does not run as root: as root, it runs as Debian's postgres user.
  as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
  pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  pgdata="$state/pg"
  if [ ! -s "$pgdata/PG_VERSION" ]; then
    mkdir -p "$pgdata"
    [ "$(id -u)" = 0 ] && chown postgres: "$pgdata"
    # trust on loopback only: a local demo's database, never a production one.
    as_pg "$pgbin/initdb" -D "$pgdata" -U postgres -A trust --no-sync >"$state/pg-initdb.log" 2>&1
  fi
  as_pg "$pgbin/pg_ctl" -D "$pgdata" -l "$pgdata/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p 5433 -k $pgdata" start >/dev/null
  pg_stop=(as_pg "$pgbin/pg_ctl" -D "$pgdata" -m fast -w stop)
  psql_pg() { as_pg "$pgbin/psql" -h 127.0.0.1 -p 5433 -U postgres -v ON_ERROR_STOP=1 -qtA "$@"; }
  kratos_db="kratos_${KRATOS_VERSION//./_}"
  for db in "$kratos_db" gateway_queue; do
    [ "$(psql_pg -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" = 1 ] || psql_pg -c "CREATE DATABASE $db"
  done
  # Kratos on PostgreSQL, as the outbox wants it (README: The durable outbox).
  export DSN="postgres://postgres@127.0.0.1:5433/$kratos_db?sslmode=disable&max_conns=20&max_idle_conns=4"
  queue_env=(GATEWAY_QUEUE__POSTGRES_DSN="postgres://postgres@127.0.0.1:5433/gateway_queue?sslmode=disable"
    GATEWAY_QUEUE__MIGRATE=auto GATEWAY_ADMIN__LISTEN=127.0.0.1:8081 GATEWAY_ADMIN__API_KEY="$(secret admin-api-key)")
fi
# A local demo, often offline: Kratos's Have I Been Pwned client would retry
# for about 10 s in every settings flow. Keep the check in production.
export SELFSERVICE_METHODS_PASSWORD_CONFIG_HAVEIBEENPWNED_ENABLED=false
(cd "$state/kratos" && "$KRATOS" migrate sql -e --yes -c kratos.yml) >"$state/kratos-migrate.log" 2>&1
(cd "$state/kratos" && exec "$KRATOS" serve -c kratos.yml --dev --watch-courier) >"$state/kratos.log" 2>&1 &
pids+=($!)

# configs/gateway.yaml as shipped, pointed at the local Mailpit. Plaintext SMTP
# is acceptable only because Mailpit is on loopback; the gateway logs a
# security warning for it, as it should.
GATEWAY_WEBHOOK__API_KEY="$api_key" GATEWAY_SECRETS__CIPHER="$cipher" \
GATEWAY_SMTP__HOST=127.0.0.1 GATEWAY_SMTP__PORT=1025 GATEWAY_SMTP__SECURITY=none \
GATEWAY_LOG__FORMAT=text \
GATEWAY_DEMO_UI__LISTEN=127.0.0.1:4455 GATEWAY_DEMO_UI__MAILPIT_URL=http://127.0.0.1:8025/view/latest.html \
  env ${queue_env[@]+"${queue_env[@]}"} bin/gateway serve --config configs/gateway.yaml >"$state/gateway.log" 2>&1 &
pids+=($!)

wait_http http://127.0.0.1:8025/api/v1/info "Mailpit"
wait_http http://127.0.0.1:4434/admin/health/ready "Kratos"
wait_http http://127.0.0.1:8080/health/ready "the gateway"
# Until the gateway proved with a canary that Kratos calls its migration
# hook, a recovery gets Kratos's own code mail: wait for the proof.
for _ in $(seq 1 150); do
  curl -fsS http://127.0.0.1:8080/health/ready 2>/dev/null | grep -q '"wiring":"verified"' && break
  sleep 0.2
done
if ! curl -fsS http://127.0.0.1:8080/health/ready 2>/dev/null | grep -q '"wiring":"verified"'; then
  echo "stack: the gateway has not proven Kratos's wiring yet; recoveries get Kratos's own mail until it has:" >&2
  curl -sS http://127.0.0.1:8080/health/ready >&2 || true
  echo >&2
fi

# A demo user to recover (created once).
if ! curl -fsS "http://127.0.0.1:4434/admin/identities?credentials_identifier=alice@example.com" | grep -q '"id"'; then
  curl -fsS -o /dev/null -X POST http://127.0.0.1:4434/admin/identities -H 'Content-Type: application/json' \
    -d '{"schema_id":"default","traits":{"email":"alice@example.com","name":"Alice"},"credentials":{"password":{"config":{"password":"Alice-Old-Password-1"}}}}'
fi

cat <<MSG

kratos-email-gateway local stack is up on Kratos $KRATOS_VERSION (logs in .stack/):
  Mailpit (the inbox)    http://127.0.0.1:8025
  Kratos public API      http://127.0.0.1:4433
  Kratos admin API       http://127.0.0.1:4434
  gateway                http://127.0.0.1:8080  (health: /health/ready, metrics: /metrics)
  demo self-service UI   http://127.0.0.1:4455  (recovery, login, settings)
  newest mail            http://127.0.0.1:8025/view/latest.html
MSG
if [ "$QUEUE" = postgres ]; then
  cat <<MSG
  durable outbox         PostgreSQL 127.0.0.1:5433 (databases $kratos_db, gateway_queue; data in .stack/pg)
  River UI (the queue)   http://127.0.0.1:8081/admin/queue/  (admin key: .stack/admin-api-key)
                         or: bin/gateway queue list --config configs/gateway.yaml, with the same
                         GATEWAY_QUEUE__POSTGRES_DSN
MSG
fi
cat <<MSG

Click the journey: open http://127.0.0.1:4455/recovery, ask for alice@example.com,
open the newest mail, log in at http://127.0.0.1:4455/login with the temporary
password, and set a new one on the settings page you are sent to.

Or from a shell, with the demo user alice@example.com (password Alice-Old-Password-1):
  scripts/recover.sh alice@example.com        # Kratos recovery: the mail arrives in Mailpit
  scripts/login.sh alice@example.com 'TEMPORARY-PASSWORD-FROM-THE-MAIL'
                                              # logs in; a new password is now required
  (until the temporary password is used, Alice-Old-Password-1 keeps working:
   logging in with it voids the reset instead)

Ctrl-C stops the stack.
MSG
wait -n "${pids[@]}"
echo "stack: a process ended; see .stack/*.log" >&2
