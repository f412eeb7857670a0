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

# --- what this needs ----------------------------------------------------------------------
START=$SECONDS
. benches/load/lib.sh
install_and_build
echo "built and installed in $((SECONDS - START)) s" >&2

start_work

# --- the fixed upstream: nginx answering a small 200 --------------------------------------
UP=$(free_port)
upstream_conf "$WORK/up" "$UP"
spawn "$LOAD_CPU" nginx -c "$WORK/up/nginx.conf" -p "$WORK/up" & PIDS+=($!)
wait_port "$UP"

# --- Redis ------------------------------------------------------------------------------------
RP=$(free_port)
spawn "$LOAD_CPU" redis-server --bind 127.0.0.1 --port "$RP" --save "" --appendonly no >/dev/null & PIDS+=($!)
wait_port "$RP"

# --- authgate, memory and Redis stores -------------------------------------------------------
AG_MEM=$(free_port); AG_MEM_ADMIN=$(free_port)
AG_RED=$(free_port); AG_RED_ADMIN=$(free_port)
AG_WS=$(free_port); AG_WS_ADMIN=$(free_port)
authgate_conf "$WORK/mem.toml" "$AG_MEM" "$AG_MEM_ADMIN" "$UP" 'backend = "memory"'
authgate_conf "$WORK/ws.toml" "$AG_WS" "$AG_WS_ADMIN" "$UP" 'backend = "memory"' true
authgate_conf "$WORK/redis.toml" "$AG_RED" "$AG_RED_ADMIN" "$UP" "backend = \"redis\"
redis_url = \"redis://127.0.0.1:$RP\""
RUST_LOG=warn spawn "$SUT_CPU" "$AUTHGATE" --config "$WORK/mem.toml" 2>"$WORK/mem.log" & AG_MEM_PID=$!; PIDS+=($AG_MEM_PID)
RUST_LOG=warn spawn "$SUT_CPU" "$AUTHGATE" --config "$WORK/redis.toml" 2>"$WORK/redis.log" & AG_RED_PID=$!; PIDS+=($AG_RED_PID)
# The same, on a work-stealing runtime: the setting authgate does not use, measured for the record.
RUST_LOG=warn spawn "$SUT_CPU" "$AUTHGATE" --config "$WORK/ws.toml" 2>"$WORK/ws.log" & AG_WS_PID=$!; PIDS+=($AG_WS_PID)
wait_port "$AG_MEM"; wait_port "$AG_RED"; wait_port "$AG_WS"

TOKEN_MEM=$(signin "$AG_MEM")
TOKEN_RED=$(signin "$AG_RED")
TOKEN_WS=$(signin "$AG_WS")
SESSION_ID=$(session_id "$TOKEN_MEM")

# --- HAProxy: jwt_verify, expiry, a session map and a stick-table rate limit ----------------
HA=$(free_port)
echo "$SESSION_ID 1" > "$WORK/sessions.map"
haproxy_conf "$WORK/haproxy.cfg" "$HA" "$UP" "$WORK/sessions.map"
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
