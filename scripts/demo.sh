#!/usr/bin/env bash
# make demo: builds, creates a demo PKI and configs under ./demo (ignored by
# git), runs the collector (gRPC 127.0.0.1:9470, HTTP 127.0.0.1:9471) and one
# agent for this machine with a 5 s interval. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --bins
BIN=target/debug
DEMO=demo
mkdir -p "$DEMO"

# Host ids are lower-case letters, digits, '.', '_' and '-'.
HOST_ID=$(hostname | tr 'A-Z' 'a-z' | tr -c 'a-z0-9._\n-' '-' | sed 's/^[^a-z0-9]*//' | cut -c1-63)
HOST_ID=${HOST_ID:-demo-host}
SITE=demo-municipio

if [ ! -f "$DEMO/pki/ca.key" ]; then
  "$BIN/campanile-collector" pki init --out "$DEMO/pki" --name localhost --ip 127.0.0.1 --ip ::1
fi
if [ ! -f "$DEMO/agent/agent.pem" ]; then
  "$BIN/campanile-collector" pki issue-agent --ca-dir "$DEMO/pki" --host-id "$HOST_ID" --site "$SITE" --out "$DEMO/agent"
fi

cat > "$DEMO/collector.toml" <<TOML
# Demo collector (written by scripts/demo.sh; paths relative to this file).
[grpc]
listen_addr = "127.0.0.1:9470"
[http]
listen_addr = "127.0.0.1:9471"
[tls]
ca_cert_path = "pki/ca.pem"
cert_path = "pki/server.pem"
key_path = "pki/server.key"
[store]
path = "campanile.db"
TOML

cat > "$DEMO/agent.toml" <<TOML
# Demo agent (written by scripts/demo.sh; paths relative to this file).
[identity]
host_id = "$HOST_ID"
[collector]
endpoint = "https://127.0.0.1:9470"
server_name = "localhost"
ca_cert_path = "agent/ca.pem"
cert_path = "agent/agent.pem"
key_path = "agent/agent.key"
[collect]
interval_secs = 5
TOML

"$BIN/campanile-collector" check-config "$DEMO/collector.toml"
"$BIN/campanile-agent" check-config "$DEMO/agent.toml"

pids=()
stop() {
  trap - INT TERM EXIT
  echo
  echo "stopping demo..."
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  echo "stopped. State is kept in $DEMO/ (rm -rf $DEMO to start over)."
}
trap stop INT TERM EXIT

"$BIN/campanile-collector" run --config "$DEMO/collector.toml" &
pids+=($!)
# Wait for the collector's HTTP port (bash's /dev/tcp: no curl needed).
for _ in $(seq 1 100); do
  if (exec 3<>/dev/tcp/127.0.0.1/9471) 2>/dev/null; then break; fi
  sleep 0.1
done
"$BIN/campanile-agent" run --config "$DEMO/agent.toml" &
pids+=($!)

cat <<MSG

  Campanile demo is running.
    metrics:  http://127.0.0.1:9471/metrics   (look for campanile_host_up{host="$HOST_ID",...} 1)
    health:   http://127.0.0.1:9471/healthz
    one-shot: $BIN/campanile-agent once --config $DEMO/agent.toml
  Press Ctrl-C to stop both.

MSG
wait -n "${pids[@]}" || true
