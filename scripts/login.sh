#!/usr/bin/env bash
# Logs in through Kratos's API login flow, then prints the session's
# metadata_public as GET /sessions/whoami reads it (Kratos's login answer
# carries the identity as it was before the migration hook ran, so it would
# not show password_change_required yet) and the session token. Exits 1 with
# Kratos's message when Kratos refuses the login.
# Usage: scripts/login.sh EMAIL PASSWORD   (KRATOS_PUBLIC_URL, default http://127.0.0.1:4433)
set -euo pipefail
. "$(dirname "$0")/json.sh"
email=${1:?usage: $0 EMAIL PASSWORD}
password=${2:?usage: $0 EMAIL PASSWORD}
public=${KRATOS_PUBLIC_URL:-http://127.0.0.1:4433}
answer=$(mktemp)
trap 'rm -f "$answer"' EXIT

flow=$(curl -fsS "$public/self-service/login/api" | json_value id | tr -d '"')
body="{\"method\":\"password\",\"identifier\":$(json_string "$email"),\"password\":$(json_string "$password")}"
status=$(curl -sS -o "$answer" -w '%{http_code}' -X POST "$public/self-service/login?flow=$flow" \
  -H 'Content-Type: application/json' --data-binary @- <<<"$body")
if [ "$status" != 200 ]; then
  why=$(json_errors <"$answer" || true)
  echo "login refused by Kratos (HTTP $status): ${why:-$(cat "$answer")}" >&2
  exit 1
fi
token=$(json_value session_token <"$answer" | tr -d '"')
curl -fsS -o "$answer" "$public/sessions/whoami" -H "X-Session-Token: $token"
echo "logged in as $email"
echo "metadata_public: $(json_value metadata_public <"$answer")"
echo "session token (X-Session-Token): $token"
