#!/bin/sh
# Serves /www on LISTEN_ADDRESS:PORT in the foreground, so the container lives as long as
# the server does and its log is the request log.
set -eu
port="${PORT:-8080}"
address="${LISTEN_ADDRESS:-127.0.0.1}"
if [ -n "${GREETING:-}" ]; then
  printf '%s\n' "$GREETING" > /www/greeting.txt
fi
echo "demo web listening on ${address}:${port}"
exec httpd -f -v -p "${address}:${port}" -h /www
