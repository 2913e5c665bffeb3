#!/usr/bin/env bash
# Starts a Kratos recovery (API flow, code method) for an address, as a user
# clicking "forgot password" would. Usage: scripts/recover.sh alice@example.com
# (KRATOS_PUBLIC_URL, default http://127.0.0.1:4433)
set -euo pipefail
. "$(dirname "$0")/json.sh"
email=${1:?usage: $0 EMAIL}
public=${KRATOS_PUBLIC_URL:-http://127.0.0.1:4433}
flow=$(curl -fsS "$public/self-service/recovery/api" | json_value id | tr -d '"')
curl -fsS -o /dev/null -X POST "$public/self-service/recovery?flow=$flow" \
  -H 'Content-Type: application/json' --data-binary @- <<<"{\"method\":\"code\",\"email\":$(json_string "$email")}"
echo "recovery requested for $email; the mail is in Mailpit: http://127.0.0.1:8025"
