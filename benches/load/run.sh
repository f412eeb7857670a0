#!/usr/bin/env bash
# Side-by-side load test on loopback: authgate (tuned, shipped defaults, Redis store) against
# HAProxy jwt_verify, plain nginx proxy_pass and a bare Pingora pass-through, all in front of the
# same nginx upstream, all driven by the same wrk run.
#
#   benches/load/run.sh                 # DURATION=3 ROUNDS=12 WARMUP=1 CONNECTIONS=32 by default
#   DURATION=20 CONNECTIONS=64 benches/load/run.sh
#
# The headline figure is the server's CPU time per request, user and system apart: utime and
# stime of every thread of every process of the system, from /proc, around the measured run,
# divided by the requests wrk completed. Throughput stands beside it. Ratios of two systems are given
# twice: of their medians, and paired (the median over the rounds of the two systems' ratio within
# each round, which a slow spell of the VM moves less). Each system under test is
# pinned to core SUT_CPU (0); wrk, the upstream and Redis share core LOAD_CPU (1). That core's
# busy time is read from /proc/stat during every run: at LOAD_BUSY_WARN (95) % or more the load
# side was saturated, throughput then measures wrk as much as the server, and the script says so.
#
#   BASELINE=/tmp/authgate-before benches/load/run.sh
#
# BASELINE names another authgate binary (the build before a change, say): it runs as
# "authgate baseline" with the tuned configuration, and the ratio of the two comes from the same
# run. ONLY="tuned baseline haproxy bare" measures only the systems whose names hold one of the
# words (all by default).
#
#   benches/load/run.sh --latency       # or benches/load/latency.sh: the fixed-rate run instead
#   RATE=20000 benches/load/latency.sh
#
# The fixed-rate run sends RATE (10000) requests a second with oha (open loop, latencies
# corrected for coordinated omission) to authgate tuned and defaults, HAProxy jwt_verify, bare
# Pingora and nginx, and reports p50/p99/p99.9, interleaved and median of ROUNDS as above.
set -euo pipefail
cd "$(dirname "$0")/../.."

MODE=throughput
[ "${1:-}" = --latency ] && MODE=latency
RATE=${RATE:-10000}

# Many short rounds rather than a few long ones: a shared VM has slow spells of tens of seconds,
# and the finer the interleaving, the more evenly they fall on every system. A fixed-rate run
# needs longer ones for its p99.9.
if [ "$MODE" = latency ]; then
  DURATION=${DURATION:-10}; ROUNDS=${ROUNDS:-3}; WARMUP=${WARMUP:-2}
else
  DURATION=${DURATION:-3}; ROUNDS=${ROUNDS:-12}; WARMUP=${WARMUP:-1}
fi
# ROUNDS: each system is measured this often, interleaved; medians are reported.
CONNECTIONS=${CONNECTIONS:-32}
SUT_CPU=${SUT_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
# The upstream and Redis share the load core by default. UPSTREAM_CPU=0 moves them to the
# systems' core instead: the load core then holds wrk alone and no longer saturates, at the cost
# of the upstream's CPU diluting the throughput ratios (CPU per request is unaffected).
UPSTREAM_CPU=${UPSTREAM_CPU:-$LOAD_CPU}

# --- what this needs ----------------------------------------------------------------------
START=$SECONDS
. benches/load/lib.sh
install_and_build
[ "$MODE" = latency ] && ensure_oha
echo "built and installed in $((SECONDS - START)) s" >&2

wait_quiet
start_work

# --- the fixed upstream: nginx answering a small 200 --------------------------------------
UP=$(free_port)
upstream_conf "$WORK/up" "$UP"
spawn "$UPSTREAM_CPU" nginx -c "$WORK/up/nginx.conf" -p "$WORK/up" & PIDS+=($!)
wait_port "$UP"

# --- Redis ------------------------------------------------------------------------------------
RP=$(free_port)
spawn "$UPSTREAM_CPU" redis-server --bind 127.0.0.1 --port "$RP" --save "" --appendonly no >/dev/null & PIDS+=($!)
wait_port "$RP"

# --- authgate: tuned (one thread, no access log), shipped defaults, Redis store (tuned) -----
AG_MEM=$(free_port); AG_MEM_ADMIN=$(free_port)
AG_DEF=$(free_port); AG_DEF_ADMIN=$(free_port)
AG_RED=$(free_port); AG_RED_ADMIN=$(free_port)
authgate_conf "$WORK/mem.toml" "$AG_MEM" "$AG_MEM_ADMIN" "$UP" 'backend = "memory"'
authgate_conf "$WORK/redis.toml" "$AG_RED" "$AG_RED_ADMIN" "$UP" "backend = \"redis\"
redis_url = \"redis://127.0.0.1:$RP\""
# The shipped conf/authgate.toml: server.threads = 0 is one worker per core the process may run
# on (one, under taskset), and the access log is on; it goes to stderr, which an operator sends
# to a file.
authgate_defaults_conf "$WORK/defaults.toml" "$AG_DEF" "$AG_DEF_ADMIN" "$UP"
spawn "$SUT_CPU" "$AUTHGATE" --config "$WORK/mem.toml" 2>"$WORK/log/mem.log" & AG_MEM_PID=$!; PIDS+=($AG_MEM_PID)
spawn "$SUT_CPU" "$AUTHGATE" --config "$WORK/defaults.toml" 2>"$WORK/log/defaults.log" & AG_DEF_PID=$!; PIDS+=($AG_DEF_PID)
spawn "$SUT_CPU" "$AUTHGATE" --config "$WORK/redis.toml" 2>"$WORK/log/redis.log" & AG_RED_PID=$!; PIDS+=($AG_RED_PID)
wait_port "$AG_MEM"; wait_port "$AG_DEF"; wait_port "$AG_RED"
if [ -n "${BASELINE:-}" ]; then
  AG_BASE=$(free_port); AG_BASE_ADMIN=$(free_port)
  authgate_conf "$WORK/base.toml" "$AG_BASE" "$AG_BASE_ADMIN" "$UP" 'backend = "memory"'
  spawn "$SUT_CPU" "$BASELINE" --config "$WORK/base.toml" 2>"$WORK/log/base.log" & AG_BASE_PID=$!; PIDS+=($AG_BASE_PID)
  wait_port "$AG_BASE"
  TOKEN_BASE=$(signin "$AG_BASE")
fi

TOKEN_MEM=$(signin "$AG_MEM")
TOKEN_DEF=$(signin "$AG_DEF")
TOKEN_RED=$(signin "$AG_RED")
SESSION_ID=$(session_id "$TOKEN_MEM")

# --- HAProxy: jwt_verify, expiry, a session map and a stick-table rate limit ----------------
HA=$(free_port)
echo "$SESSION_ID 1" > "$WORK/sessions.map"
haproxy_conf "$WORK/haproxy.cfg" "$HA" "$UP" "$WORK/sessions.map"
spawn "$SUT_CPU" haproxy -f "$WORK/haproxy.cfg" -db >"$WORK/log/haproxy.log" 2>&1 & HA_PID=$!; PIDS+=($HA_PID)
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
spawn "$SUT_CPU" "$BARE" "127.0.0.1:$BP" "127.0.0.1:$UP" 2>"$WORK/log/bare.log" & BP_PID=$!; PIDS+=($BP_PID)
wait_port "$BP"

# Every check must pass before anything is measured: a refused request is cheap and would flatter.
check() { # name url token (a store may still be connecting: up to 10 s)
  local code
  for _ in $(seq 1 100); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $3" "$2")
    [ "$code" = 200 ] && return 0
    sleep 0.1
  done
  echo "$1 answered $code to an authenticated request" >&2; exit 1
}
check authgate-tuned "http://127.0.0.1:$AG_MEM/api/cases" "$TOKEN_MEM"
check authgate-defaults "http://127.0.0.1:$AG_DEF/api/cases" "$TOKEN_DEF"
check authgate-redis "http://127.0.0.1:$AG_RED/api/cases" "$TOKEN_RED"
check haproxy "http://127.0.0.1:$HA/api/cases" "$TOKEN_MEM"
[ -z "${BASELINE:-}" ] || check authgate-baseline "http://127.0.0.1:$AG_BASE/api/cases" "$TOKEN_BASE"
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HA/api/cases")" = 401 ] || { echo "haproxy let an anonymous request through" >&2; exit 1; }
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$AG_MEM/api/cases")" = 401 ] || { echo "authgate let an anonymous request through" >&2; exit 1; }
# The defaults really log every request (and the tuned one does not).
sleep 0.2
grep -q 'access' "$WORK/log/defaults.log" || { echo "authgate (defaults) wrote no access log line" >&2; exit 1; }
THREADS_DEF=$(thread_names "$AG_DEF_PID" | awk '{ c = $1; $1 = ""; sub(/^ /, ""); printf "%s%s x%s", sep, $0, c; sep = ", " }')

# Keep the systems named in ONLY (all when it is empty), and add the baseline when there is one.
select_systems() {
  local kept=() entry word
  [ -z "${BASELINE:-}" ] || SYSTEMS+=("authgate baseline|$AG_BASE_PID|http://127.0.0.1:$AG_BASE/api/cases|$TOKEN_BASE")
  for entry in "${SYSTEMS[@]}"; do
    if [ -z "${ONLY:-}" ]; then kept+=("$entry"); continue; fi
    for word in $ONLY; do
      case "${entry%%|*}" in *"$word"*) kept+=("$entry"); break ;; esac
    done
  done
  SYSTEMS=("${kept[@]}")
}

if [ "$MODE" = latency ]; then
  LAT="$WORK/log/latency.tsv"
  : > "$LAT"
  fixed() { # round name pid url token
    local attempt
    for attempt in $(seq 1 "$RETRIES"); do
      fixed_once "$@"
      [ "$FOREIGN" -le "$FOREIGN_MAX" ] && break
      echo "  disturbed: other work took ${FOREIGN}% of a core during this run; measuring again once the machine is quiet" >&2
      wait_quiet
    done
    echo "$LINE" >> "$LAT"
  }
  fixed_once() { # round name pid url token
    local before after load_before load_after r f0
    oha_fixed "$LOAD_CPU" "$RATE" "$WARMUP" "$CONNECTIONS" "$4" "$5" >/dev/null
    f0=$(foreign_start "${PIDS[@]}")
    before=$(cpu_us "$3"); load_before=$(core_stat "$LOAD_CPU")
    r=$(oha_fixed "$LOAD_CPU" "$RATE" "$DURATION" "$CONNECTIONS" "$4" "$5")
    after=$(cpu_us "$3"); load_after=$(core_stat "$LOAD_CPU")
    FOREIGN=$(foreign_pct "$f0" "${PIDS[@]}")
    local rps p50 p99 p999 ok other us load
    read -r rps p50 p99 p999 ok other <<< "$r"
    [ "$other" = 0 ] || { echo "$2: $other answers other than 200 (or errors)" >&2; exit 1; }
    us=$(awk -v a="$before" -v b="$after" -v r="$ok" 'BEGIN { split(a, x, " "); split(b, y, " "); printf "%.1f", (y[1] + y[2] - x[1] - x[2]) / r }')
    load=$(busy_pct "$load_before" "$load_after")
    LINE=$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s' "$2" "$rps" "$p50" "$p99" "$p999" "$us" "${load% *}" "$FOREIGN")
    printf "  round %d  %-19s %6s req/s  p50 %6s us  p99 %6s us  p99.9 %6s us  %5s CPU us/req  load core %3s%%  other work %3s%%\n" \
      "$1" "$2" "$rps" "$p50" "$p99" "$p999" "$us" "${load% *}" "$FOREIGN" >&2
    if [ "${load% *}" -ge "$LOAD_BUSY_WARN" ]; then
      echo "  WARNING: the load core (cpu$LOAD_CPU) was ${load% *}% busy: oha could not keep to its schedule, and the latencies include the load side's own delays" >&2
    fi
  }
  echo "Running: oha -q $RATE -c$CONNECTIONS -z${DURATION}s --latency-correction per system (after ${WARMUP}s warm-up), $ROUNDS rounds" >&2
  SYSTEMS=(
    "authgate tuned|$AG_MEM_PID|http://127.0.0.1:$AG_MEM/api/cases|$TOKEN_MEM"
    "authgate defaults|$AG_DEF_PID|http://127.0.0.1:$AG_DEF/api/cases|$TOKEN_DEF"
    "haproxy jwt_verify|$HA_PID|http://127.0.0.1:$HA/api/cases|$TOKEN_MEM"
    "bare pingora|$BP_PID|http://127.0.0.1:$BP/api/cases|"
    "nginx proxy_pass|$NG_PID|http://127.0.0.1:$NG/api/cases|"
  )
  select_systems
  for round in $(seq 0 $((ROUNDS - 1))); do
    for i in $(seq 0 $((${#SYSTEMS[@]} - 1))); do
      IFS='|' read -r name pid url token <<< "${SYSTEMS[$(((i + round) % ${#SYSTEMS[@]}))]}"
      fixed "$round" "$name" "$pid" "$url" "$token"
    done
  done
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'); machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(uname -r)"
  echo "systems pinned to core $SUT_CPU; oha to core $LOAD_CPU; upstream to core $UPSTREAM_CPU"
  echo "a run during which other work took more than ${FOREIGN_MAX}% of a core was measured again (up to $RETRIES times)"
  echo "oha -q $RATE -c$CONNECTIONS -z${DURATION}s --latency-correction, median of $ROUNDS interleaved rounds"
  echo
  awk -F'\t' '
    function median(list,    a, k, c, t, j) {
      c = split(list, a, " ")
      for (k = 2; k <= c; k++) { t = a[k] + 0; j = k - 1; while (j > 0 && a[j] + 0 > t) { a[j + 1] = a[j]; j-- } a[j + 1] = t }
      return (c % 2) ? a[(c + 1) / 2] : (a[c / 2] + a[c / 2 + 1]) / 2
    }
    function lat(u) { return (u >= 1000) ? sprintf("%.2fms", u / 1000) : sprintf("%.0fus", u) }
    !($1 in idx) { n++; idx[$1] = n; name[n] = $1 }
    { i = idx[$1]; R[i] = R[i] " " $2; A[i] = A[i] " " $3; B[i] = B[i] " " $4; C[i] = C[i] " " $5; U[i] = U[i] " " $6; L[i] = L[i] " " $7; F[i] = F[i] " " $8 }
    END {
      printf "| %-18s | %7s | %8s | %8s | %8s | %10s | %9s | %10s |\n", "system", "req/s", "p50", "p99", "p99.9", "CPU us/req", "load core", "other work"
      print "|--------------------|---------|----------|----------|----------|------------|-----------|------------|"
      for (i = 1; i <= n; i++) printf "| %-18s | %7.0f | %8s | %8s | %8s | %10.1f | %8.0f%% | %9.0f%% |\n", name[i], median(R[i]), lat(median(A[i])), lat(median(B[i])), lat(median(C[i])), median(U[i]), median(L[i]), median(F[i])
    }' "$LAT"
  echo; echo "finished in $((SECONDS - START)) s (build and install included)"
  exit 0
fi

RESULTS="$WORK/log/results.tsv"
: > "$RESULTS"
SATURATED=0
measure() { # round name pid url token
  local attempt
  for attempt in $(seq 1 "$RETRIES"); do
    measure_once "$@"
    [ "$FOREIGN" -le "$FOREIGN_MAX" ] && break
    echo "  disturbed: other work took ${FOREIGN}% of a core during this run; measuring again once the machine is quiet" >&2
    wait_quiet
  done
  echo "$LINE" >> "$RESULTS"
  if [ "$LOAD" -ge "$LOAD_BUSY_WARN" ]; then
    SATURATED=$((SATURATED + 1))
    echo "  WARNING: the load core (cpu$LOAD_CPU) was $LOAD% busy: the load side was saturated in this run, so throughput ratios against it are squeezed toward 1" >&2
  fi
}
measure_once() { # round name pid url token
  local round=$1 name=$2 pid=$3 url=$4 token=$5 hdr=()
  [ -n "$token" ] && hdr=(-H "Authorization: Bearer $token")
  pin "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"${WARMUP}s" "${hdr[@]}" "$url" >/dev/null
  local before after load_before load_after sut_before sut_after out f0
  f0=$(foreign_start "${PIDS[@]}")
  before=$(cpu_us "$pid"); load_before=$(core_stat "$LOAD_CPU"); sut_before=$(core_stat "$SUT_CPU")
  out=$(pin "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "${hdr[@]}" "$url")
  after=$(cpu_us "$pid"); load_after=$(core_stat "$LOAD_CPU"); sut_after=$(core_stat "$SUT_CPU")
  FOREIGN=$(foreign_pct "$f0" "${PIDS[@]}")
  local requests rps p50 p99 non2xx
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  [ -z "$non2xx" ] || { echo "$name: $non2xx non-2xx answers" >&2; echo "$out" >&2; exit 1; }
  local user sys load sut
  read -r user sys < <(awk -v a="$before" -v b="$after" -v r="$requests" 'BEGIN {
    split(a, x, " "); split(b, y, " "); printf "%.2f %.2f\n", (y[1] - x[1]) / r, (y[2] - x[2]) / r }')
  load=$(busy_pct "$load_before" "$load_after"); sut=$(busy_pct "$sut_before" "$sut_after")
  LOAD=${load% *}
  LINE=$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s' "$name" "$rps" "$p50" "$p99" "$user" "$sys" \
    "${load% *}" "${sut% *}" "${sut#* }" "$round" "$FOREIGN")
  printf "  round %d  %-19s %8s req/s %6.1f us/req (user %5.1f, sys %5.1f)  load core %3s%% busy, SUT core %3s%%, other work %3s%%\n" \
    "$round" "$name" "$rps" "$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')" "$user" "$sys" "${load% *}" "${sut% *}" "$FOREIGN" >&2
}

echo "Running: wrk -t1 -c$CONNECTIONS -d${DURATION}s per system (after ${WARMUP}s warm-up), $ROUNDS rounds" >&2
SYSTEMS=(
  "authgate tuned|$AG_MEM_PID|http://127.0.0.1:$AG_MEM/api/cases|$TOKEN_MEM"
  "authgate defaults|$AG_DEF_PID|http://127.0.0.1:$AG_DEF/api/cases|$TOKEN_DEF"
  "authgate redis|$AG_RED_PID|http://127.0.0.1:$AG_RED/api/cases|$TOKEN_RED"
  "haproxy jwt_verify|$HA_PID|http://127.0.0.1:$HA/api/cases|$TOKEN_MEM"
  "bare pingora|$BP_PID|http://127.0.0.1:$BP/api/cases|"
  "nginx proxy_pass|$NG_PID|http://127.0.0.1:$NG/api/cases|"
)
select_systems
# Each round starts one system later, so no system always runs first (or right after another).
for round in $(seq 0 $((ROUNDS - 1))); do
  for i in $(seq 0 $((${#SYSTEMS[@]} - 1))); do
    IFS='|' read -r name pid url token <<< "${SYSTEMS[$(((i + round) % ${#SYSTEMS[@]}))]}"
    measure "$round" "$name" "$pid" "$url" "$token"
  done
done
cp "$RESULTS" "${RESULTS_COPY:-/tmp/authgate-run-results.tsv}"
echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC'); machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(uname -r)"
echo "systems pinned to core $SUT_CPU; wrk to core $LOAD_CPU; upstream + redis to core $UPSTREAM_CPU"
echo "a run during which other work took more than ${FOREIGN_MAX}% of a core was measured again (up to $RETRIES times)"
echo "wrk -t1 -c$CONNECTIONS -d${DURATION}s, median of $ROUNDS interleaved rounds"
echo "authgate defaults = conf/authgate.toml: access log on (stderr to a file); its threads: $THREADS_DEF"
echo
awk -F'\t' -v nrounds="$ROUNDS" -v sat="$SATURATED" -v warn="$LOAD_BUSY_WARN" -v load_cpu="$LOAD_CPU" '
  # Each figure is the median over the rounds: steal time on a shared VM makes single rounds
  # swing both ways, and a best round would reward the luckiest system.
  function usec(v) { if (v ~ /ms$/) return v * 1000; if (v ~ /us$/) return v + 0; if (v ~ /s$/) return v * 1000000; return v + 0 }
  function median(list,    a, k, c, t, j) {
    c = split(list, a, " ")
    for (k = 2; k <= c; k++) { t = a[k] + 0; j = k - 1; while (j > 0 && a[j] + 0 > t) { a[j + 1] = a[j]; j-- } a[j + 1] = t }
    return (c % 2) ? a[(c + 1) / 2] : (a[c / 2] + a[c / 2 + 1]) / 2
  }
  function lat(u) { return (u >= 1000) ? sprintf("%.2fms", u / 1000) : sprintf("%.0fus", u) }
  # The ratio of two systems within each round, then the median of those: a slow spell of the
  # VM that spans a round moves both systems of a pair, where it moves one median alone.
  function paired(a, b,    k, list) {
    list = ""
    for (k = 0; k < nrounds; k++) if (((a, k) in cpu) && ((b, k) in cpu)) list = list sprintf(" %.5f", cpu[a, k] / cpu[b, k])
    return median(list)
  }
  function ratio(a, b) { if (a && b) printf "| %s / %s | %.2f | %.2f | %.2f |\n", name[a], name[b], us[a] / us[b], paired(a, b), rps[a] / rps[b] }
  !($1 in idx) { n++; idx[$1] = n; name[n] = $1 }
  { i = idx[$1]; R[i] = R[i] " " $2; P50[i] = P50[i] " " usec($3); P99[i] = P99[i] " " usec($4)
    U[i] = U[i] " " $5; S[i] = S[i] " " $6; T[i] = T[i] " " ($5 + $6); L[i] = L[i] " " $7; SB[i] = SB[i] " " $8; ST[i] = ST[i] " " $9; FW[i] = FW[i] " " $11
    if ($7 >= warn) hot[i]++
    rr[i, $10] = $2; cpu[i, $10] = $5 + $6 }
  END {
    for (i = 1; i <= n; i++) { rps[i] = median(R[i]); p50[i] = median(P50[i]); p99[i] = median(P99[i])
      us[i] = median(T[i]); u[i] = median(U[i]); s[i] = median(S[i]); load[i] = median(L[i]); sutb[i] = median(SB[i]); steal[i] = median(ST[i]); fw[i] = median(FW[i]) }
    printf "| %-18s | %11s | %5s | %5s | %8s | %8s | %8s | %14s | %13s | %10s |\n", "system", "CPU us/req", "user", "sys", "req/s", "p50", "p99", "load core busy", "SUT core busy", "other work"
    print "|--------------------|-------------|-------|-------|----------|----------|----------|----------------|---------------|------------|"
    for (i = 1; i <= n; i++) printf "| %-18s | %11.1f | %5.1f | %5.1f | %8.0f | %8s | %8s | %13.0f%% | %12.0f%% | %9.0f%% |\n", name[i], us[i], u[i], s[i], rps[i], lat(p50[i]), lat(p99[i]), load[i], sutb[i], fw[i]
    t = idx["authgate tuned"]; d = idx["authgate defaults"]; r = idx["authgate redis"]; h = idx["haproxy jwt_verify"]; b = idx["bare pingora"]; x = idx["nginx proxy_pass"]; z0 = idx["authgate baseline"]
    print ""
    print "| ratio | CPU per request | CPU per request, paired by round | throughput |"
    print "|---|---|---|---|"
    ratio(d, t); ratio(t, h); ratio(t, b); ratio(t, x); ratio(r, t); ratio(t, z0); ratio(z0, h); ratio(z0, b)
    if (d && t) {
      line = ""
      for (k = 0; k < nrounds; k++) line = line sprintf(" %.3f", rr[d, k] / rr[t, k])
      print ""
      print "defaults / tuned throughput, round by round:" line
    }
    bad = ""
    for (i = 1; i <= n; i++) if (hot[i]) bad = bad sprintf(" %s (%d of %d rounds)", name[i], hot[i], split(R[i], z, " "))
    if (bad != "") {
      print ""
      printf "WARNING: the load core (cpu%s) was >= %d%% busy in %d runs:%s.\n", load_cpu, warn, sat, bad
      print "WARNING: there the load generator, not the server, set the pace: throughput ratios involving those systems are squeezed toward 1; compare CPU per request instead."
    }
  }' "$RESULTS"
echo; echo "finished in $((SECONDS - START)) s (build and install included)"
