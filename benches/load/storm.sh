#!/usr/bin/env bash
# Proxied latency and throughput during a sign-in storm.
#
#   benches/load/storm.sh          # DURATION=10 ROUNDS=3 STORM_RATE=60 FIXED_RATE=5000 CONNECTIONS=32
#   CONFIGS=pinned ROUNDS=5 benches/load/storm.sh
#
# authgate runs with its shipped defaults (conf/authgate.toml with only the addresses, the secret
# and the upstream changed: server.threads = 0, access log on to a file,
# password.max_concurrent_hashes = 0, i.e. one fewer hashing thread than cores and at least one,
# password.hash_priority = "idle", i.e. SCHED_IDLE with a nice-19 rescue thread,
# password.max_queued_hashes = 32), in two configurations:
#
#   pinned    the gateway on core 0 (so one worker thread and one hashing thread share a core);
#   unpinned  the gateway free on both cores (two worker threads, one hashing thread).
#
# and, for comparison (CONFIGS="pinned-low unpinned-low"), the same with
# password.hash_priority = "low": nice 19 hashing threads in short time slices.
#
# After each configuration, the gateway's authgate_password_rescues_total is shown: the checks
# it ran again at nice 19 because other programs starved the idle hashing threads.
#
# The load runs on core 1 in both: the nginx upstream, wrk (or oha) on an authenticated proxied
# route, and the storm generator (signin_storm.py). Every round has a quiet phase and a storm
# phase, in alternating order. Each phase is a closed-loop wrk run (throughput, p99), then, when
# FIXED_RATE > 0, an open-loop oha run at FIXED_RATE requests a second (p50/p99/p99.9 at a load
# the gateway can carry). In the storm phase, STORM_RATE wrong-password sign-ins a second arrive
# throughout, each on a new connection from its own loopback address (127.1.x.y, never reused,
# so the per-address limit never fires) and for its own email (so the per-account lockout never
# fires either): every one of them costs an argon2id hash unless the hashing queue is full.
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-3}           # the storm starts this long before measuring, so its queue is full
CONNECTIONS=${CONNECTIONS:-32}
STORM_RATE=${STORM_RATE:-60}
FIXED_RATE=${FIXED_RATE:-5000}
CONFIGS=${CONFIGS:-pinned unpinned}
LOAD_CPU=${LOAD_CPU:-1}

START=$SECONDS
. benches/load/lib.sh
install_and_build
[ "$FIXED_RATE" -gt 0 ] && ensure_oha
echo "built and installed in $((SECONDS - START)) s" >&2
wait_quiet
start_work

UP=$(free_port)
upstream_conf "$WORK/up" "$UP"
spawn "$LOAD_CPU" nginx -c "$WORK/up/nginx.conf" -p "$WORK/up" & PIDS+=($!)
wait_port "$UP"

RESULTS="$WORK/log/storm.tsv"
SIGNINS="$WORK/log/signins.tsv"
: > "$RESULTS"; : > "$SIGNINS"
NEXT_ADDRESS=0
STORM_PID=

# phase CONFIG ROUND quiet|storm PID PORT TOKEN: measured again (up to RETRIES times) when other
# work on the machine took more than FOREIGN_MAX % of a core meanwhile.
phase() {
  local attempt
  for attempt in $(seq 1 "$RETRIES"); do
    phase_once "$@"
    [ "$FOREIGN" -le "$FOREIGN_MAX" ] && break
    echo "  disturbed: other work took ${FOREIGN}% of a core during this phase; measuring again once the machine is quiet" >&2
    wait_quiet
  done
  echo "$LINE" >> "$RESULTS"
  if [ "$3" = storm ]; then
    # Only the sign-ins sent while the proxied load was measured (after the run-up).
    awk -v c="$1" -v r="$2" -v from="$WARMUP" '$1 >= from { print c "\t" r "\t" $0 }' "$STORM_OUT" >> "$SIGNINS"
  fi
}

phase_once() {
  local config=$1 round=$2 kind=$3 pid=$4 port=$5 token=$6 url="http://127.0.0.1:$5/api/cases"
  local storm_secs=$((WARMUP + DURATION + 2)) storm_out="$WORK/log/storm-$config-$round-$NEXT_ADDRESS.tsv"
  STORM_OUT=$storm_out
  [ "$FIXED_RATE" -gt 0 ] && storm_secs=$((storm_secs + DURATION + 1))
  if [ "$kind" = storm ]; then
    pin "$LOAD_CPU" python3 benches/load/signin_storm.py "$port" "$STORM_RATE" "$storm_secs" \
      "$NEXT_ADDRESS" "$storm_out" & STORM_PID=$!; PIDS+=($STORM_PID)
    NEXT_ADDRESS=$((NEXT_ADDRESS + STORM_RATE * storm_secs + 1))
  fi
  # The warm-up doubles as the storm's run-up.
  pin "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"${WARMUP}s" -H "Authorization: Bearer $token" "$url" >/dev/null
  local cpu0 cpu1 hash0 hash1 load0 load1 all0 all1 out f0
  f0=$(foreign_start "${PIDS[@]}")
  cpu0=$(cpu_us "$pid"); hash0=$(thread_cpu_us "$pid" authgate-hash)
  load0=$(core_stat "$LOAD_CPU"); all0=$(core_stat "")
  out=$(pin "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -H "Authorization: Bearer $token" "$url")
  cpu1=$(cpu_us "$pid"); hash1=$(thread_cpu_us "$pid" authgate-hash)
  load1=$(core_stat "$LOAD_CPU"); all1=$(core_stat "")
  local requests rps p99 non2xx
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" { v = $2; if (v ~ /ms$/) v *= 1000; else if (v ~ /us$/) v += 0; else if (v ~ /s$/) v *= 1000000; print v }')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  [ -z "$non2xx" ] || { echo "$config $kind: $non2xx non-2xx answers to proxied requests" >&2; echo "$out" >&2; exit 1; }
  local us hash_pct load all
  # The proxy's CPU per proxied request: the hashing threads' time is not part of it.
  us=$(awk -v a="$cpu0" -v b="$cpu1" -v c="$hash0" -v d="$hash1" -v r="$requests" 'BEGIN { split(a, x, " "); split(b, y, " "); split(c, h, " "); split(d, k, " ")
    printf "%.1f", (y[1] + y[2] - x[1] - x[2] - (k[1] + k[2] - h[1] - h[2])) / r }')
  hash_pct=$(awk -v a="$hash0" -v b="$hash1" -v d="$DURATION" 'BEGIN { split(a, x, " "); split(b, y, " "); printf "%.0f", (y[1] + y[2] - x[1] - x[2]) / d / 10000 }')
  load=$(busy_pct "$load0" "$load1"); all=$(busy_pct "$all0" "$all1")
  local f_p50=0 f_p99=0 f_p999=0 f_other=0 f_rps=0 f_ok
  if [ "$FIXED_RATE" -gt 0 ]; then
    read -r f_rps f_p50 f_p99 f_p999 f_ok f_other <<< "$(oha_fixed "$LOAD_CPU" "$FIXED_RATE" "$DURATION" "$CONNECTIONS" "$url" "$token")"
  fi
  FOREIGN=$(foreign_pct "$f0" "${PIDS[@]}")
  LINE=$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s' "$config" "$kind" "$round" "$rps" "$p99" \
    "$us" "$hash_pct" "${load% *}" "${all% *}" "$f_rps" "$f_p50" "$f_p99" "$f_p999" "$f_other" "$FOREIGN")
  printf "  %-8s round %d %-5s  wrk %8s req/s p99 %7.0f us  %5s CPU us/req  hashing %3s%% of a core  load core %3s%%  machine %3s%%  other work %3s%%" \
    "$config" "$round" "$kind" "$rps" "$p99" "$us" "$hash_pct" "${load% *}" "${all% *}" "$FOREIGN" >&2
  [ "$FIXED_RATE" -gt 0 ] && printf "  | oha %s/s: p50 %s p99 %s p99.9 %s us (%s not 200)" "$f_rps" "$f_p50" "$f_p99" "$f_p999" "$f_other" >&2
  echo >&2
  if [[ "$config" == pinned* ]] && [ "${load% *}" -ge "$LOAD_BUSY_WARN" ]; then
    echo "  WARNING: the load core (cpu$LOAD_CPU) was ${load% *}% busy: wrk set the pace in this phase, not the gateway" >&2
  fi
  if [ "$kind" = storm ]; then
    wait "$STORM_PID" || true
    awk -v from="$WARMUP" '$1 >= from { n++; s[$3]++ } END { printf "           sign-ins: %d sent,", n; for (k in s) printf " %s: %d", (k == 0 ? "no answer" : k), s[k]; print "" }' "$storm_out" >&2
  fi
}

run_config() { # pinned|unpinned
  local config=$1 cpus port admin pid token
  case "$config" in
    pinned | pinned-low) cpus=0 ;;
    unpinned | unpinned-low) cpus=0-$(($(nproc) - 1)) ;;
    *) echo "unknown configuration $config" >&2; exit 1 ;;
  esac
  port=$(free_port); admin=$(free_port)
  authgate_defaults_conf "$WORK/$config.toml" "$port" "$admin" "$UP"
  if [[ "$config" == *-low ]]; then
    sed -i 's|^hash_priority = "idle"|hash_priority = "low"|' "$WORK/$config.toml"
    grep -q '^hash_priority = "low"' "$WORK/$config.toml" || { echo "no hash_priority line to change" >&2; exit 1; }
  fi
  spawn "$cpus" "$AUTHGATE" --config "$WORK/$config.toml" 2>"$WORK/log/$config.log" & pid=$!; PIDS+=($pid)
  wait_port "$port"
  token=$(signin "$port")
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "http://127.0.0.1:$port/api/cases")" = 200 ] ||
    { echo "authgate ($config) refused the token" >&2; exit 1; }
  echo "authgate ($config, cores $cpus): threads $(thread_names "$pid" | awk '{ c = $1; $1 = ""; sub(/^ /, ""); printf "%s%s x%s", sep, $0, c; sep = ", " }')" >&2
  local round
  for round in $(seq 0 $((ROUNDS - 1))); do
    if [ $((round % 2)) = 0 ]; then
      phase "$config" "$round" quiet "$pid" "$port" "$token"; phase "$config" "$round" storm "$pid" "$port" "$token"
    else
      phase "$config" "$round" storm "$pid" "$port" "$token"; phase "$config" "$round" quiet "$pid" "$port" "$token"
    fi
  done
  echo "authgate ($config): $(curl -s "http://127.0.0.1:$admin/metrics" | grep '^authgate_password_rescues_total' || echo 'no rescue counter')" >&2
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

for config in $CONFIGS; do run_config "$config"; done
cp "$RESULTS" "${RESULTS_COPY:-/tmp/authgate-storm-results.tsv}"
cp "$SIGNINS" "${SIGNINS_COPY:-/tmp/authgate-storm-signins.tsv}"

echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC'); machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(uname -r)"
echo "authgate: conf/authgate.toml defaults; load (wrk -t1 -c$CONNECTIONS, oha, upstream, storm generator) on core $LOAD_CPU"
echo "storm: $STORM_RATE wrong-password sign-ins a second, each from its own address and email; median of $ROUNDS rounds of ${DURATION}s"
echo "a phase during which other work took more than ${FOREIGN_MAX}% of a core was measured again (up to $RETRIES times)"
echo
awk -F'\t' -v fixed="$FIXED_RATE" '
  function median(list,    a, k, c, t, j) {
    c = split(list, a, " ")
    for (k = 2; k <= c; k++) { t = a[k] + 0; j = k - 1; while (j > 0 && a[j] + 0 > t) { a[j + 1] = a[j]; j-- } a[j + 1] = t }
    return (c % 2) ? a[(c + 1) / 2] : (a[c / 2] + a[c / 2 + 1]) / 2
  }
  function lat(u) { return (u >= 1000) ? sprintf("%.2fms", u / 1000) : sprintf("%.0fus", u) }
  FNR == 1 { file++ }
  file == 1 {
    k = $1 SUBSEP $2; if (!($1 in seen)) { seen[$1] = 1; cfg[++nc] = $1 }
    R[k] = R[k] " " $4; P[k] = P[k] " " $5; U[k] = U[k] " " $6; H[k] = H[k] " " $7; L[k] = L[k] " " $8; M[k] = M[k] " " $9
    FR[k] = FR[k] " " $10; F50[k] = F50[k] " " $11; F99[k] = F99[k] " " $12; F999[k] = F999[k] " " $13; FW[k] = FW[k] " " $15
    next
  }
  # Sign-ins: config, round, sent, latency (s), status.
  { n[$1]++; st[$1, $5]++; if ($5 != 0 && $5 != 503) { lat401[$1] = lat401[$1] " " ($4 * 1e6) } ; all[$1] = all[$1] " " ($4 * 1e6) }
  END {
    printf "| configuration | phase | wrk req/s | wrk p99 | proxy CPU us/req | hashing, %% of a core | load core | machine | other work |"
    if (fixed > 0) printf " oha %d/s p50 | p99 | p99.9 |", fixed
    print ""
    printf "|---|---|---|---|---|---|---|---|---|"; if (fixed > 0) printf "---|---|---|"; print ""
    for (c = 1; c <= nc; c++) for (ph = 1; ph <= 2; ph++) {
      kind = (ph == 1) ? "quiet" : "storm"; k = cfg[c] SUBSEP kind
      printf "| %s | %s | %.0f | %s | %.1f | %.0f %% | %.0f %% | %.0f %% | %.0f %% |", cfg[c], kind, median(R[k]), lat(median(P[k])), median(U[k]), median(H[k]), median(L[k]), median(M[k]), median(FW[k])
      if (fixed > 0) printf " %s | %s | %s |", lat(median(F50[k])), lat(median(F99[k])), lat(median(F999[k]))
      print ""
    }
    print ""
    printf "| configuration | throughput storm/quiet (target >= 0.85) | wrk p99 storm/quiet (target <= 1.5) |"
    if (fixed > 0) printf " oha p99 storm/quiet |"
    print " sign-ins sent | answered 503 | 401 | other | sign-in p50 / p99 (all) | p50 / p99 (the hashed ones) |"
    printf "|---|---|---|"; if (fixed > 0) printf "---|"; print "---|---|---|---|---|---|"
    for (c = 1; c <= nc; c++) {
      q = cfg[c] SUBSEP "quiet"; s = cfg[c] SUBSEP "storm"; name = cfg[c]
      tr = median(R[s]) / median(R[q]); pr = median(P[s]) / median(P[q])
      printf "| %s | %.2f %s | %.2f %s |", name, tr, (tr >= 0.85 ? "met" : "MISSED"), pr, (pr <= 1.5 ? "met" : "MISSED")
      if (fixed > 0) printf " %.2f |", median(F99[s]) / median(F99[q])
      other = n[name] - st[name, 503] - st[name, 401]
      printf " %d | %.1f %% | %d | %d |", n[name], 100 * st[name, 503] / (n[name] ? n[name] : 1), st[name, 401], other
      printf " %s / %s |", lat(pct(all[name], 50)), lat(pct(all[name], 99))
      printf " %s / %s |\n", lat(pct(lat401[name], 50)), lat(pct(lat401[name], 99))
    }
  }
  function pct(list, p,    a, c, k, t, j, i) {
    c = split(list, a, " "); if (c == 0) return 0
    for (k = 2; k <= c; k++) { t = a[k] + 0; j = k - 1; while (j > 0 && a[j] + 0 > t) { a[j + 1] = a[j]; j-- } a[j + 1] = t }
    i = int(c * p / 100 + 0.5); if (i < 1) i = 1; if (i > c) i = c
    return a[i]
  }' "$RESULTS" "$SIGNINS"
echo; echo "finished in $((SECONDS - START)) s (build and install included)"
