#!/usr/bin/env bash
# Logs in through Kratos's API login flow and prints Kratos's answer (the
# session with its metadata_public, or the error). Usage: scripts/login.sh EMAIL PASSWORD
set -euo pipefail
email=${1:?usage: $0 EMAIL PASSWORD}
password=${2:?usage: $0 EMAIL PASSWORD}
public=${KRATOS_PUBLIC_URL:-http://127.0.0.1:4433}
flow=$(curl -fsS "$public/self-service/login/api" | grep -o '"id":"[^"]*"' | head -1 | cut -d'"' -f4)
body=$(printf '{"method":"password","identifier":"%s","password":"%s"}' "$email" "$password")
curl -sS -X POST "$public/self-service/login?flow=$flow" -H 'Content-Type: application/json' -d "$body"
echo
