#!/usr/bin/env bash
# Starts a Kratos recovery (API flow, code method) for an address, as a user
# clicking "forgot password" would. Usage: scripts/recover.sh alice@example.com
set -euo pipefail
email=${1:?usage: $0 EMAIL}
public=${KRATOS_PUBLIC_URL:-http://127.0.0.1:4433}
flow=$(curl -fsS "$public/self-service/recovery/api" | grep -o '"id":"[^"]*"' | head -1 | cut -d'"' -f4)
curl -fsS -o /dev/null -X POST "$public/self-service/recovery?flow=$flow" \
  -H 'Content-Type: application/json' -d "{\"method\":\"code\",\"email\":\"$email\"}"
echo "recovery requested for $email; the mail is in Mailpit: http://127.0.0.1:8025"
