#!/usr/bin/env bash
# Side-by-side load test on loopback: authgate (memory and Redis stores) against HAProxy
# jwt_verify, plain nginx proxy_pass and a bare Pingora pass-through, all in front of the same
# nginx upstream, all driven by the same wrk run.
#
#   benches/load/run.sh                 # DURATION=8 ROUNDS=4 CONNECTIONS=32 by default
#   DURATION=20 CONNECTIONS=64 benches/load/run.sh
#
# Each system under test is pinned to core 0 (one worker thread); wrk, the upstream and Redis
# share core 1. Server CPU is read from /proc (utime + stime of every thread of every process
# of the system) around the measured run, and divided by the requests wrk completed.
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION=${DURATION:-8}
ROUNDS=${ROUNDS:-4}          # each system is measured this often, interleaved; medians are reported
WARMUP=${WARMUP:-2}
CONNECTIONS=${CONNECTIONS:-32}
SUT_CPU=${SUT_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
SECRET="load-test-secret-load-test-secret-0123456789"

# --- what this needs ----------------------------------------------------------------------
START=$SECONDS
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
command -v haproxy >/dev/null || need+=(haproxy)
command -v redis-server >/dev/null || need+=(redis-server)
command -v taskset >/dev/null || need+=(util-linux)
command -v python3 >/dev/null || need+=(python3)
command -v curl >/dev/null || need+=(curl)
export DEBIAN_FRONTEND=noninteractive
if ! command -v cmake >/dev/null; then # the build needs it (zlib-ng under Pingora)
  apt-get update -q && apt-get install -y -q --no-install-recommends cmake
fi
# The packages install while the release build runs: one is disk and network, the other CPU.
APT_PID=
if [ ${#need[@]} -gt 0 ]; then
  { apt-get update -q && apt-get install -y -q --no-install-recommends "${need[@]}"; } >/tmp/authgate-bench-apt.log 2>&1 &
  APT_PID=$!
fi
cargo build --release --quiet --bin authgate --example bare_pingora
if [ -n "$APT_PID" ] && ! wait "$APT_PID"; then
  cat /tmp/authgate-bench-apt.log >&2; echo "installing ${need[*]} failed" >&2; exit 1
fi
echo "built and installed in $((SECONDS - START)) s" >&2
TARGET=${CARGO_TARGET_DIR:-target}
AUTHGATE=$TARGET/release/authgate
BARE=$TARGET/release/examples/bare_pingora

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 200); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }
pin() { taskset -c "$1" "${@:2}"; }
# Background with `spawn CPU cmd... &`: exec keeps $! the server's own pid, so it can be measured and stopped.
spawn() { exec taskset -c "$1" "${@:2}"; }

# --- the fixed upstream: nginx answering a small 200 --------------------------------------
UP=$(free_port)
mkdir -p "$WORK/up"
cat > "$WORK/up/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/up/nginx.pid;
error_log $WORK/up/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$UP; location / { return 200 "ok\n"; } }
}
EOF
spawn "$LOAD_CPU" nginx -c "$WORK/up/nginx.conf" -p "$WORK/up" & PIDS+=($!)
wait_port "$UP"

# --- Redis ------------------------------------------------------------------------------------
RP=$(free_port)
spawn "$LOAD_CPU" redis-server --bind 127.0.0.1 --port "$RP" --save "" --appendonly no >/dev/null & PIDS+=($!)
wait_port "$RP"

# --- authgate, memory and Redis stores -------------------------------------------------------
authgate_conf() { # name port admin_port store_section [work_stealing]
  cat > "$WORK/$1.toml" <<EOF
[server]
listen = "127.0.0.1:$2"
threads = 1
access_log = false
work_stealing = ${5:-false}
[admin]
listen = "127.0.0.1:$3"
[token]
secret = "$SECRET"
[store]
users_file = "conf/users.toml"
$4
[rate_limit]
auth_per_minute = 1000
[mfa]
delivery = "webhook"
webhook_url = "http://127.0.0.1:9/unused"
[[upstreams]]
name = "app"
servers = ["127.0.0.1:$UP"]
[[routes]]
prefix = "/"
upstream = "app"
auth = "required"
EOF
}
AG_MEM=$(free_port); AG_MEM_ADMIN=$(free_port)
AG_RED=$(free_port); AG_RED_ADMIN=$(free_port)
AG_WS=$(free_port); AG_WS_ADMIN=$(free_port)
authgate_conf mem "$AG_MEM" "$AG_MEM_ADMIN" 'backend = "memory"'
authgate_conf ws "$AG_WS" "$AG_WS_ADMIN" 'backend = "memory"' true
authgate_conf redis "$AG_RED" "$AG_RED_ADMIN" "backend = \"redis\"
redis_url = \"redis://127.0.0.1:$RP\""
RUST_LOG=warn spawn "$SUT_CPU" "$AUTHGATE" --config "$WORK/mem.toml" 2>"$WORK/mem.log" & AG_MEM_PID=$!; PIDS+=($AG_MEM_PID)
RUST_LOG=warn spawn "$SUT_CPU" "$AUTHGATE" --config "$WORK/redis.toml" 2>"$WORK/redis.log" & AG_RED_PID=$!; PIDS+=($AG_RED_PID)
# The same, on a work-stealing runtime: the setting authgate does not use, measured for the record.
RUST_LOG=warn spawn "$SUT_CPU" "$AUTHGATE" --config "$WORK/ws.toml" 2>"$WORK/ws.log" & AG_WS_PID=$!; PIDS+=($AG_WS_PID)
wait_port "$AG_MEM"; wait_port "$AG_RED"; wait_port "$AG_WS"

signin() {
  curl -sf "http://127.0.0.1:$1/api/auth/signin" -H 'content-type: application/json' \
    -d '{"email":"john.doe@mydomain.com","password":"iLovePria123"}' |
    python3 -c 'import sys,json; print(json.load(sys.stdin)["token"])'
}
TOKEN_MEM=$(signin "$AG_MEM")
TOKEN_RED=$(signin "$AG_RED")
TOKEN_WS=$(signin "$AG_WS")
SESSION_ID=$(python3 -c 'import sys,json,base64; p=sys.argv[1].split(".")[1]; p+="="*(-len(p)%4); print(json.loads(base64.urlsafe_b64decode(p))["sessionId"])' "$TOKEN_MEM")

# --- HAProxy: jwt_verify, expiry, a session map and a stick-table rate limit ----------------
HA=$(free_port)
echo "$SESSION_ID 1" > "$WORK/sessions.map"
cat > "$WORK/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 4000
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
frontend fe
  bind 127.0.0.1:$HA
  stick-table type ip size 100k expire 60s store http_req_rate(60s)
  http-request track-sc0 src
  http-request deny deny_status 429 if { sc_http_req_rate(0) gt 100000000 }
  http-request set-var(txn.bearer) http_auth_bearer
  http-request deny deny_status 401 unless { var(txn.bearer) -m found }
  http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('\$.alg')
  http-request deny deny_status 401 unless { var(txn.alg) -m str HS256 }
  http-request deny deny_status 401 unless { var(txn.bearer),jwt_verify(txn.alg,"$SECRET") -m int 1 }
  http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('\$.exp','int')
  http-request set-var(txn.now) date()
  http-request deny deny_status 401 if { var(txn.exp),sub(txn.now) -m int lt 0 }
  http-request set-var(txn.sid) var(txn.bearer),jwt_payload_query('\$.sessionId')
  http-request deny deny_status 401 unless { var(txn.sid),map($WORK/sessions.map) -m found }
  http-request del-header x-user-id
  http-request set-header x-user-id %[var(txn.bearer),jwt_payload_query('\$._id')]
  http-request set-header x-session-id %[var(txn.sid)]
  default_backend be
backend be
  http-reuse always
  server s1 127.0.0.1:$UP
EOF
haproxy -c -q -f "$WORK/haproxy.cfg"
spawn "$SUT_CPU" haproxy -f "$WORK/haproxy.cfg" -db >"$WORK/haproxy.log" 2>&1 & HA_PID=$!; PIDS+=($HA_PID)
wait_port "$HA"

# --- plain nginx proxy_pass -----------------------------------------------------------------
NG=$(free_port)
mkdir -p "$WORK/ng"
cat > "$WORK/ng/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/ng/nginx.pid;
error_log $WORK/ng/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  upstream app { server 127.0.0.1:$UP; keepalive 64; }
  server {
    listen 127.0.0.1:$NG;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
EOF
spawn "$SUT_CPU" nginx -c "$WORK/ng/nginx.conf" -p "$WORK/ng" & NG_PID=$!; PIDS+=($NG_PID)
wait_port "$NG"

# --- bare Pingora -----------------------------------------------------------------------------
BP=$(free_port)
spawn "$SUT_CPU" "$BARE" "127.0.0.1:$BP" "127.0.0.1:$UP" 2>"$WORK/bare.log" & BP_PID=$!; PIDS+=($BP_PID)
wait_port "$BP"

# Every check must pass before anything is measured: a refused request is cheap and would flatter.
check() { # name url token
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $3" "$2")
  [ "$code" = 200 ] || { echo "$1 answered $code to an authenticated request" >&2; exit 1; }
}
check authgate-memory "http://127.0.0.1:$AG_MEM/api/cases" "$TOKEN_MEM"
check authgate-redis "http://127.0.0.1:$AG_RED/api/cases" "$TOKEN_RED"
check haproxy "http://127.0.0.1:$HA/api/cases" "$TOKEN_MEM"
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HA/api/cases")" = 401 ] || { echo "haproxy let an anonymous request through" >&2; exit 1; }
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$AG_MEM/api/cases")" = 401 ] || { echo "authgate let an anonymous request through" >&2; exit 1; }

# CPU ticks (utime+stime) of a process tree: the process and its children, all threads.
TICK_US=$((1000000 / $(getconf CLK_TCK)))
tree_pids() { echo "$1"; pgrep -P "$1" || true; }
cpu_ticks() {
  local total=0 p
  for p in $(tree_pids "$1"); do
    [ -r "/proc/$p/stat" ] || continue
    total=$((total + $(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat")))
  done
  echo "$total"
}

RESULTS="$WORK/results.tsv"
: > "$RESULTS"
measure() { # name pid url token
  local name=$1 pid=$2 url=$3 token=$4 hdr=()
  [ -n "$token" ] && hdr=(-H "Authorization: Bearer $token")
  pin "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"${WARMUP}s" "${hdr[@]}" "$url" >/dev/null
  local before after out
  before=$(cpu_ticks "$pid")
  out=$(pin "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "${hdr[@]}" "$url")
  after=$(cpu_ticks "$pid")
  local requests rps p50 p99 non2xx
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  [ -z "$non2xx" ] || { echo "$name: $non2xx non-2xx answers" >&2; echo "$out" >&2; exit 1; }
  local us
  us=$(awk -v t=$((after - before)) -v r="$requests" -v k="$TICK_US" 'BEGIN { printf "%.1f", t * k / r }')
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$rps" "$p50" "$p99" "$us" >> "$RESULTS"
  printf "  %-22s %8s req/s %6s us/req\n" "$name" "$rps" "$us" >&2
}

echo "Running: wrk -t1 -c$CONNECTIONS -d${DURATION}s per system (after ${WARMUP}s warm-up), $ROUNDS rounds" >&2
SYSTEMS=(
  "authgate (memory)|$AG_MEM_PID|http://127.0.0.1:$AG_MEM/api/cases|$TOKEN_MEM"
  "authgate (redis)|$AG_RED_PID|http://127.0.0.1:$AG_RED/api/cases|$TOKEN_RED"
  "authgate (work-steal)|$AG_WS_PID|http://127.0.0.1:$AG_WS/api/cases|$TOKEN_WS"
  "haproxy jwt_verify|$HA_PID|http://127.0.0.1:$HA/api/cases|$TOKEN_MEM"
  "bare pingora|$BP_PID|http://127.0.0.1:$BP/api/cases|"
  "nginx proxy_pass|$NG_PID|http://127.0.0.1:$NG/api/cases|"
)
# Each round starts one system later, so no system always runs first (or right after another).
for round in $(seq 0 $((ROUNDS - 1))); do
  for i in $(seq 0 $((${#SYSTEMS[@]} - 1))); do
    IFS='|' read -r name pid url token <<< "${SYSTEMS[$(((i + round) % ${#SYSTEMS[@]}))]}"
    measure "$name" "$pid" "$url" "$token"
  done
done
echo
echo "machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo); systems pinned to core $SUT_CPU, wrk + upstream + redis to core $LOAD_CPU"
echo "wrk -t1 -c$CONNECTIONS -d${DURATION}s, one worker thread per system, median of $ROUNDS interleaved rounds (the machine is a VM: other tenants steal time)"
echo
awk -F'\t' '
  # Each figure is the median over the rounds: steal time on a shared VM makes single rounds
  # swing both ways, and a best round would reward the luckiest system.
  function usec(v) { if (v ~ /ms$/) return v * 1000; if (v ~ /us$/) return v + 0; if (v ~ /s$/) return v * 1000000; return v + 0 }
  function median(list,    a, k, c, t, j) {
    c = split(list, a, " ")
    for (k = 2; k <= c; k++) { t = a[k]; j = k - 1; while (j > 0 && a[j] > t) { a[j + 1] = a[j]; j-- } a[j + 1] = t }
    return (c % 2) ? a[(c + 1) / 2] : (a[c / 2] + a[c / 2 + 1]) / 2
  }
  function lat(u) { return (u >= 1000) ? sprintf("%.2fms", u / 1000) : sprintf("%.0fus", u) }
  !($1 in idx) { n++; idx[$1]=n; name[n]=$1 }
  { i=idx[$1]; R[i]=R[i] " " $2; P50[i]=P50[i] " " usec($3); P99[i]=P99[i] " " usec($4); US[i]=US[i] " " $5 }
  END {
    NR=n
    for (i = 1; i <= NR; i++) { rps[i]=median(R[i]); p50[i]=median(P50[i]); p99[i]=median(P99[i]); us[i]=median(US[i]) }
    printf "| %-21s | %10s | %9s | %9s | %14s |\n", "system", "req/s", "p50", "p99", "CPU us/req"
    printf "|%s|%s|%s|%s|%s|\n", "-----------------------", "------------", "-----------", "-----------", "----------------"
    for (i = 1; i <= NR; i++) printf "| %-21s | %10.0f | %9s | %9s | %14.1f |\n", name[i], rps[i], lat(p50[i]), lat(p99[i]), us[i]
    m = idx["authgate (memory)"]; r = idx["authgate (redis)"]; h = idx["haproxy jwt_verify"]; b = idx["bare pingora"]; n = idx["nginx proxy_pass"]
    print ""
    print "| ratio | throughput | CPU per request |"
    print "|---|---|---|"
    printf "| authgate (memory) / haproxy jwt_verify | %.2f | %.2f |\n", rps[m] / rps[h], us[m] / us[h]
    printf "| authgate (memory) / bare pingora | %.2f | %.2f |\n", rps[m] / rps[b], us[m] / us[b]
    printf "| authgate (memory) / nginx proxy_pass | %.2f | %.2f |\n", rps[m] / rps[n], us[m] / us[n]
    printf "| authgate (redis) / authgate (memory) | %.2f | %.2f |\n", rps[r] / rps[m], us[r] / us[m]
    w = idx["authgate (work-steal)"]
    printf "| authgate work-stealing / single-threaded runtime | %.2f | %.2f |\n", rps[w] / rps[m], us[w] / us[m]
  }' "$RESULTS"
echo; echo "finished in $((SECONDS - START)) s (build and install included)"
