#!/usr/bin/env bash
# make demo: builds, creates a demo PKI and configs under ./demo (ignored by
# git), runs the collector (gRPC 127.0.0.1:9470, HTTP 127.0.0.1:9471) and one
# agent for this machine with a 5 s interval, with the example territory
# register from deploy/territory (this machine reports from Borgo Esempio's
# town hall as an unplanned host; the assets planned there are missing).
# Probes stay on loopback: the register's WAN and device addresses are
# rewritten to 127.0.0.x, and the agent's auto-detected gateway and DNS
# targets are off. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --bins
BIN=target/debug
DEMO=demo
mkdir -p "$DEMO"

# Host ids are lower-case letters, digits, '.', '_' and '-'.
HOST_ID=$(hostname | tr 'A-Z' 'a-z' | tr -c 'a-z0-9._\n-' '-' | sed 's/^[^a-z0-9]*//' | cut -c1-63)
HOST_ID=${HOST_ID:-demo-host}
SITE=borgo-esempio-municipio
# A fixed token for the demo API only; real ones come from `token new`.
TOKEN=campanile-demo-token
TOKEN_SHA256=$(printf '%s' "$TOKEN" | sha256sum | cut -d' ' -f1)

if [ ! -f "$DEMO/pki/ca.key" ]; then
  "$BIN/campanile-collector" pki init --out "$DEMO/pki" --name localhost --ip 127.0.0.1 --ip ::1
fi
# Certificates from before the demo used the example register name another site.
if [ -f "$DEMO/agent/agent.pem" ] && ! grep -q "$SITE" "$DEMO/agent/.site" 2>/dev/null; then
  rm -rf "$DEMO/agent"
fi
# The agent enrolls (below, once the collector is up) with a token made for
# the site, as a real install does.

# The example register with every WAN and device address on loopback: the
# demo probes nothing but this machine. (Regenerated at each start; edit it
# while the demo runs to see a reload.)
sed -E -e 's/^(wan_address|address) = "[^"]*"/\1 = "127.0.0.1"/' \
  deploy/territory/register.toml > "$DEMO/register.toml"

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
[enrollment]
ca_key_path = "pki/ca.key"
advertised_endpoint = "127.0.0.1:9470"
[territory]
register_path = "register.toml"
reload_check_secs = 2
[probes]
plan_refresh_secs = 5
[probes.wan]
interval_secs = 10
[[api.tokens]]
name = "demo"
sha256 = "$TOKEN_SHA256"
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
[spool]
# Unsent reports survive a restart of the demo (stop the collector to see
# them pile up, start it again to see them delivered).
path = "agent/spool.redb"
[probes]
# Demo only: never probe this machine's real gateway or resolvers. Real
# installs leave auto_gateway and auto_dns on (the default).
auto_gateway = false
auto_dns = false
# The collector is on 127.0.0.1; its HTTP port stands in for "the centre".
[[probes.tcp]]
name = "centre"
address = "127.0.0.1:9471"
TOML

"$BIN/campanile-collector" check-config "$DEMO/collector.toml"

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
if [ ! -f "$DEMO/agent/agent.pem" ]; then
  # One token for the site, then the agent trades it for its certificate
  # (its key is made here and never leaves agent/).
  token=$("$BIN/campanile-collector" enroll new --config "$DEMO/collector.toml" \
    --site "$SITE" --name demo | sed -n 's/^  \(cmp1\.[^ ]*\)$/\1/p')
  "$BIN/campanile-agent" enroll --config "$DEMO/agent.toml" --token "$token"
  echo "$SITE" > "$DEMO/agent/.site"
fi
"$BIN/campanile-agent" check-config "$DEMO/agent.toml"
"$BIN/campanile-agent" run --config "$DEMO/agent.toml" &
pids+=($!)

cat <<MSG

  Campanile demo is running.
    metrics:  http://127.0.0.1:9471/metrics   (look for campanile_host_up{host="$HOST_ID",...} 1)
    health:   http://127.0.0.1:9471/healthz
    gaps:     curl -H 'Authorization: Bearer $TOKEN' http://127.0.0.1:9471/api/v1/gaps
    comuni:   curl -H 'Authorization: Bearer $TOKEN' http://127.0.0.1:9471/api/v1/comuni
    planning: curl -H 'Authorization: Bearer $TOKEN' http://127.0.0.1:9471/api/v1/inventory.csv
    reach:    curl -H 'Authorization: Bearer $TOKEN' http://127.0.0.1:9471/api/v1/reachability?site=$SITE
    register: edit $DEMO/register.toml; the collector reloads it within 2 s
    one-shot: $BIN/campanile-agent once --config $DEMO/agent.toml
  Press Ctrl-C to stop both.

MSG
wait -n "${pids[@]}" || true
