#!/bin/sh
# Serves /www on LISTEN_ADDRESS:PORT. httpd runs as a child of this shell because the
# container's PID 1 gets no default signal handling: without the trap, `docker stop` would
# wait out its whole grace period before killing the server.
set -eu
port="${PORT:-8080}"
address="${LISTEN_ADDRESS:-127.0.0.1}"
if [ -n "${GREETING:-}" ]; then
  printf '%s\n' "$GREETING" > /www/greeting.txt
fi
echo "demo web listening on ${address}:${port}"
httpd -f -v -p "${address}:${port}" -h /www &
server=$!
trap 'kill -TERM "$server" 2>/dev/null; wait "$server"; exit 0' TERM INT
wait "$server"
