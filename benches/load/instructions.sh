#!/usr/bin/env bash
# User-space instructions per proxied request, counted by callgrind: authgate (memory store,
# tuned and with the shipped defaults),
# the bare Pingora pass-through and HAProxy jwt_verify, each in front of the same nginx
# upstream, each driven by the same wrk load. Unlike wall-clock CPU on a shared VM, the count
# for a given binary and load does not move from run to run.
#
#   benches/load/instructions.sh        # DURATION=10 by default; takes about 2 minutes
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION=${DURATION:-10}

. benches/load/lib.sh
install_and_build valgrind:valgrind callgrind_control:valgrind

start_work

UP=$(free_port)
upstream_conf "$WORK/up" "$UP"
nginx -c "$WORK/up/nginx.conf" -p "$WORK/up" & PIDS+=($!)
wait_port "$UP"

# count NAME PORT TOKEN -- COMMAND...: run COMMAND under callgrind, load it, print its count.
count() {
  local name=$1 port=$2 token=$3 out requests ir
  shift 4
  spawn "${SUT_CPU:-0}" valgrind --tool=callgrind --instr-atstart=no \
    --callgrind-out-file="$WORK/log/$name.%p" "$@" >"$WORK/log/$name.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  wait_port "$port"
  if [ "$token" = signin ]; then token=$(signin "$port"); fi
  echo "$token" > "$WORK/log/$name.token"
  callgrind_control -i on "$pid" >/dev/null 2>&1
  # Warm up (connections, caches, the verified-token cache), then count from zero.
  wrk -t1 -c4 -d3s -H "Authorization: Bearer $token" "http://127.0.0.1:$port/api/cases" >/dev/null
  callgrind_control -z "$pid" >/dev/null 2>&1
  out=$(wrk -t1 -c4 -d"${DURATION}s" -H "Authorization: Bearer $token" "http://127.0.0.1:$port/api/cases")
  callgrind_control -d "$pid" >/dev/null 2>&1
  sleep 1
  if echo "$out" | grep -q "Non-2xx"; then echo "$name refused requests:" >&2; echo "$out" >&2; exit 1; fi
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  ir=$(cat "$WORK/log/$name".*.1 | awk '/^totals:/ {s += $2} END {print s}')
  kill "$pid"
  printf '| %-19s | %8d | %19.1fk |\n' "$name" "$requests" "$(awk -v i="$ir" -v r="$requests" 'BEGIN { print i / r / 1000 }')"
}

AG=$(free_port); AG_ADMIN=$(free_port); BP=$(free_port); HA=$(free_port)
authgate_conf "$WORK/mem.toml" "$AG" "$AG_ADMIN" "$UP" 'backend = "memory"'

echo "| system              | requests | instructions/request |"
echo "|---------------------|----------|----------------------|"
RUST_LOG=warn count "authgate (memory)" "$AG" signin -- "$AUTHGATE" --config "$WORK/mem.toml"
# The shipped defaults: the access log on (stderr to a file in $WORK/log, outside the
# configuration's folder).
AGD=$(free_port); AGD_ADMIN=$(free_port)
authgate_defaults_conf "$WORK/defaults.toml" "$AGD" "$AGD_ADMIN" "$UP"
count "authgate (defaults)" "$AGD" signin -- "$AUTHGATE" --config "$WORK/defaults.toml"
count "bare pingora" "$BP" "" -- "$BARE" "127.0.0.1:$BP" "127.0.0.1:$UP"
# HAProxy checks the token authgate issued; its session map holds that token's session.
TOKEN=$(cat "$WORK/log/authgate (memory).token")
session_id "$TOKEN" | sed 's/$/ 1/' > "$WORK/sessions.map"
haproxy_conf "$WORK/haproxy.cfg" "$HA" "$UP" "$WORK/sessions.map"
count "haproxy jwt_verify" "$HA" "$TOKEN" -- haproxy -f "$WORK/haproxy.cfg" -db
