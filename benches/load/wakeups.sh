#!/usr/bin/env bash
# Where the system time per request goes: TCP segments, and how often each peer was woken.
#
#   benches/load/wakeups.sh       # DURATION=4 ROUNDS=3 CONNECTIONS=32
#
# authgate tuned, HAProxy jwt_verify and a bare Pingora pass-through, each pinned to core 0 in
# front of the same nginx upstream on core 1, are driven in turn by `wrk -t1 -cCONNECTIONS` on
# core 1 (interleaved rounds, medians). For each run, per request:
#
#   user, sys        the server's CPU time (µs), as run.sh measures it;
#   segments         TCP segments sent on the machine (nstat TcpOutSegs): 4 means the request,
#                    the forwarded request, the upstream's answer and the answer, with every
#                    ACK carried on data; more means pure ACKs;
#   wrk wakes        voluntary context switches of wrk's thread: how often it went to sleep with
#                    nothing to read and was woken by an answer. A wake-up across cores is paid
#                    in the waker's system time (the server's, for wrk);
#   upstream wakes   the same for the nginx upstream's worker;
#   server wakes     the same for the server's threads.
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION=${DURATION:-4}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-32}

START=$SECONDS
. benches/load/lib.sh
install_and_build
echo "built and installed in $((SECONDS - START)) s" >&2
command -v nstat >/dev/null || { echo "nstat (Debian's iproute2) is missing" >&2; exit 1; }
wait_quiet
start_work

UP=$(free_port)
upstream_conf "$WORK/up" "$UP"
spawn 1 nginx -c "$WORK/up/nginx.conf" -p "$WORK/up" & UP_PID=$!; PIDS+=($UP_PID)
wait_port "$UP"
AG=$(free_port); AG_ADMIN=$(free_port)
authgate_conf "$WORK/mem.toml" "$AG" "$AG_ADMIN" "$UP" 'backend = "memory"'
spawn 0 "$AUTHGATE" --config "$WORK/mem.toml" 2>"$WORK/log/mem.log" & AG_PID=$!; PIDS+=($AG_PID)
wait_port "$AG"
TOKEN=$(signin "$AG")
HA=$(free_port)
echo "$(session_id "$TOKEN") 1" > "$WORK/sessions.map"
haproxy_conf "$WORK/haproxy.cfg" "$HA" "$UP" "$WORK/sessions.map"
spawn 0 haproxy -f "$WORK/haproxy.cfg" -db >"$WORK/log/haproxy.log" 2>&1 & HA_PID=$!; PIDS+=($HA_PID)
wait_port "$HA"
BP=$(free_port)
spawn 0 "$BARE" "127.0.0.1:$BP" "127.0.0.1:$UP" 2>"$WORK/log/bare.log" & BP_PID=$!; PIDS+=($BP_PID)
wait_port "$BP"

# Voluntary context switches of every thread of the given processes.
switches() {
  local p t s=0
  for p in "$@"; do
    for t in /proc/"$p"/task/*; do
      s=$((s + $(awk '/^voluntary_ctxt_switches/ { print $2 }' "$t/status" 2>/dev/null || echo 0)))
    done
  done
  echo "$s"
}

RESULTS="$WORK/log/wakeups.tsv"
: > "$RESULTS"
SYSTEMS=("authgate tuned|$AG_PID|$AG" "haproxy jwt_verify|$HA_PID|$HA" "bare pingora|$BP_PID|$BP")
for round in $(seq 0 $((ROUNDS - 1))); do
  for entry in "${SYSTEMS[@]}"; do
    IFS='|' read -r name pid port <<< "$entry"
    url="http://127.0.0.1:$port/api/cases"
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "$url")
    [ "$code" = 200 ] || { echo "$name answered $code" >&2; exit 1; }
    pin 1 wrk -t1 -c"$CONNECTIONS" -d1s -H "Authorization: Bearer $TOKEN" "$url" >/dev/null
    upstream_workers=$(pgrep -P "$UP_PID" | tr '\n' ' ')
    nstat -n >/dev/null
    up0=$(switches $upstream_workers); sv0=$(switches "$pid"); cpu0=$(cpu_us "$pid")
    # wrk's own switches are read just before it ends (its /proc entry goes with it).
    spawn 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -H "Authorization: Bearer $TOKEN" "$url" > "$WORK/log/wrk.out" &
    wrk_pid=$!
    sleep "$(awk -v d="$DURATION" 'BEGIN { print d - 0.1 }')"
    wrk_sw=$(switches "$wrk_pid")
    wait "$wrk_pid"
    up1=$(switches $upstream_workers); sv1=$(switches "$pid"); cpu1=$(cpu_us "$pid")
    segs=$(nstat 2>/dev/null | awk '$1 == "TcpOutSegs" { print $2 }')
    reqs=$(awk '/requests in/ { print $1 }' "$WORK/log/wrk.out")
    line=$(awk -v n="$name" -v r="$reqs" -v d="$DURATION" -v a="$cpu0" -v b="$cpu1" -v s="${segs:-0}" \
      -v w="$wrk_sw" -v u="$((up1 - up0))" -v v="$((sv1 - sv0))" 'BEGIN {
        split(a, x, " "); split(b, y, " ")
        printf "%s\t%.0f\t%.1f\t%.1f\t%.2f\t%.3f\t%.3f\t%.4f", n, r / d, (y[1] - x[1]) / r, (y[2] - x[2]) / r, s / r, w / r, u / r, v / r }')
    echo "$line" >> "$RESULTS"
    printf '  round %d  %s\n' "$round" "$line" | tr '\t' ' ' >&2
  done
done

echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC'); machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(uname -r)"
echo "wrk -t1 -c$CONNECTIONS -d${DURATION}s and the nginx upstream on core 1, the server on core 0; medians of $ROUNDS rounds"
echo
awk -F'\t' '
  function median(list,    a, k, c, t, j) {
    c = split(list, a, " ")
    for (k = 2; k <= c; k++) { t = a[k] + 0; j = k - 1; while (j > 0 && a[j] + 0 > t) { a[j + 1] = a[j]; j-- } a[j + 1] = t }
    return (c % 2) ? a[(c + 1) / 2] : (a[c / 2] + a[c / 2 + 1]) / 2
  }
  { if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 }
    for (i = 2; i <= 8; i++) v[$1, i] = v[$1, i] " " $i }
  END {
    print "| system | req/s | user µs/req | sys µs/req | TCP segments/req | wrk wakes/req | upstream wakes/req | server wakes/req |"
    print "|---|---|---|---|---|---|---|---|"
    for (k = 1; k <= n; k++) {
      s = order[k]
      printf "| %s | %.0f | %.1f | %.1f | %.2f | %.3f | %.3f | %.4f |\n", s, median(v[s, 2]), median(v[s, 3]), median(v[s, 4]), median(v[s, 5]), median(v[s, 6]), median(v[s, 7]), median(v[s, 8])
    }
  }' "$RESULTS"
echo; echo "finished in $((SECONDS - START)) s (build and install included)"
