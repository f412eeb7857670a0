#!/usr/bin/env bash
# Scale figures: memory per live session and session lookup time with 10k, 100k and 1M
# sessions, in the memory store and in Redis; the verified-token cache (100k entries) with more
# distinct tokens live than it holds; and what that costs the running gateway.
#
#   benches/load/scale.sh        # SIZES="10000 100000 1000000" DURATION=10; about 5 minutes once built
#
# Sessions are created directly through the store API by examples/scale.rs (signing in a million
# users would take hours of argon2). The gateway runs tuned (one thread, no access log) on core
# SUT_CPU (0), with wrk, the upstream and Redis on core LOAD_CPU (1).
set -euo pipefail
cd "$(dirname "$0")/../.."

SIZES=${SIZES:-10000 100000 1000000}
TOKEN_SIZES=${TOKEN_SIZES:-1000 50000 100000 150000 200000}
GATEWAY_TOKENS=${GATEWAY_TOKENS:-1 50000 200000}
GATEWAY_SESSIONS=${GATEWAY_SESSIONS:-100000}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-5}
CONNECTIONS=${CONNECTIONS:-32}
SUT_CPU=${SUT_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}

START=$SECONDS
. benches/load/lib.sh
install_and_build
cargo build --release --quiet --example scale
SCALE=$TARGET/release/examples/scale
wait_quiet
start_work

RP=$(free_port)
spawn "$LOAD_CPU" redis-server --bind 127.0.0.1 --port "$RP" --save "" --appendonly no >/dev/null & PIDS+=($!)
wait_port "$RP"
REDIS_URL="redis://127.0.0.1:$RP"
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }

echo "$(date -u '+%Y-%m-%d %H:%M UTC'); machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(uname -r); redis $(redis-server --version | awk '{print $3}')"
echo
echo "### Sessions: memory per live session and lookup time"
echo
echo "| sessions | memory store: bytes/session (RSS) | lookup mean | p50 | p99 | Redis: bytes/session (used_memory) | lookup mean (round trip) | p50 | p99 |"
echo "|---|---|---|---|---|---|---|---|---|"
for n in $SIZES; do
  read -r _ m_bytes m_mean m_p50 m_p99 <<< "$(pin "$SUT_CPU" "$SCALE" memory "$n")"
  redis-cli -p "$RP" flushall >/dev/null
  read -r _ r_bytes r_mean r_p50 r_p99 <<< "$(pin "$SUT_CPU" "$SCALE" redis "$REDIS_URL" "scale:" "$n")"
  echo "| $n | $m_bytes | ${m_mean} ns | ${m_p50} ns | ${m_p99} ns | $r_bytes | ${r_mean} us | ${r_p50} us | ${r_p99} us |"
done
redis-cli -p "$RP" flushall >/dev/null

echo
echo "### The verified-token cache (TinyUFO, 100k entries) in process"
echo
echo "| distinct tokens | order | hit rate | mean ns per verify |"
echo "|---|---|---|---|"
# shellcheck disable=SC2086
pin "$SUT_CPU" "$SCALE" token-cache $TOKEN_SIZES > "$WORK/log/token-cache.tsv"
awk -F'\t' '$1 != "full" { printf "| %s | %s | %.1f %% | %s |\n", $1, $2, 100 * $3, $4 }' "$WORK/log/token-cache.tsv"
echo
awk -F'\t' '$1 == "full" { printf "A verification without the cache (HS256, claims decoded): %s ns.\n", $2 }' "$WORK/log/token-cache.tsv"

# --- the gateway ------------------------------------------------------------------------------
UP=$(free_port)
upstream_conf "$WORK/up" "$UP"
spawn "$LOAD_CPU" nginx -c "$WORK/up/nginx.conf" -p "$WORK/up" & PIDS+=($!)
wait_port "$UP"
AG=$(free_port); AG_ADMIN=$(free_port)
authgate_conf "$WORK/mem.toml" "$AG" "$AG_ADMIN" "$UP" 'backend = "memory"'
spawn "$SUT_CPU" "$AUTHGATE" --config "$WORK/mem.toml" 2>"$WORK/log/mem.log" & AG_PID=$!; PIDS+=($AG_PID)
wait_port "$AG"
TOKEN=$(signin "$AG")

# rotate PID PORT TOKENS_FILE ORDER SECONDS -> "REQ/S USER_US SYS_US"
rotate() {
  local before after out requests rps non2xx
  before=$(cpu_us "$1")
  out=$(ORDER=$4 pin "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"${5}s" -s benches/load/rotate.lua "http://127.0.0.1:$2/api/cases" -- "$3")
  after=$(cpu_us "$1")
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  [ -z "$non2xx" ] || { echo "$non2xx refused requests:" >&2; echo "$out" >&2; exit 1; }
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  awk -v a="$before" -v b="$after" -v r="$requests" -v q="$rps" 'BEGIN { split(a, x, " "); split(b, y, " ")
    printf "%.0f %.2f %.2f\n", q, (y[1] - x[1]) / r, (y[2] - x[2]) / r }'
}

echo
echo "### The gateway with many distinct tokens live (memory store, one session, tokens differing in iat)"
echo
echo "| distinct tokens | order | req/s | CPU us/req | user | sys | gateway RSS after |"
echo "|---|---|---|---|---|---|---|"
for n in $GATEWAY_TOKENS; do
  pin "$LOAD_CPU" "$SCALE" tokens "$SECRET" "$TOKEN" "$n" "$WORK/tokens-$n.txt" >/dev/null
  for order in random; do
    rotate "$AG_PID" "$AG" "$WORK/tokens-$n.txt" "$order" "$WARMUP" >/dev/null
    read -r rps u s <<< "$(rotate "$AG_PID" "$AG" "$WORK/tokens-$n.txt" "$order" "$DURATION")"
    echo "| $n | $order | $rps | $(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.1f", u + s }') | $u | $s | $(( $(rss_kib "$AG_PID") / 1024 )) MiB |"
  done
done
MEM_RSS=$(rss_kib "$AG_PID")
kill "$AG_PID"

echo
echo "### The gateway's memory with $GATEWAY_SESSIONS sessions in use (Redis store)"
echo
AGR=$(free_port); AGR_ADMIN=$(free_port)
authgate_conf "$WORK/redis.toml" "$AGR" "$AGR_ADMIN" "$UP" "backend = \"redis\"
redis_url = \"$REDIS_URL\""
spawn "$SUT_CPU" "$AUTHGATE" --config "$WORK/redis.toml" 2>"$WORK/log/redis.log" & AGR_PID=$!; PIDS+=($AGR_PID)
wait_port "$AGR"
TOKEN_R=$(signin "$AGR")
pin "$LOAD_CPU" "$SCALE" redis-sessions "$REDIS_URL" "authgate:" "$SECRET" "$TOKEN_R" "$GATEWAY_SESSIONS" "$WORK/sessions.txt" >/dev/null
head -1000 "$WORK/sessions.txt" > "$WORK/sessions-1k.txt"
rotate "$AGR_PID" "$AGR" "$WORK/sessions-1k.txt" cycle 2 >/dev/null
RSS0=$(rss_kib "$AGR_PID")
# Through every session at least once, in turn: each token is verified and its session read from
# Redis and cached.
read -r rps1 u1 s1 <<< "$(rotate "$AGR_PID" "$AGR" "$WORK/sessions.txt" cycle "$DURATION")"
RSS1=$(rss_kib "$AGR_PID")
read -r rps2 u2 s2 <<< "$(rotate "$AGR_PID" "$AGR" "$WORK/sessions.txt" random "$DURATION")"
RSS2=$(rss_kib "$AGR_PID")
echo "| what | figure |"
echo "|---|---|"
echo "| memory-store gateway RSS after the token runs above | $((MEM_RSS / 1024)) MiB |"
echo "| Redis-store gateway RSS, 1k sessions in use | $((RSS0 / 1024)) MiB |"
echo "| ... after a pass through $GATEWAY_SESSIONS sessions in turn ($rps1 req/s, $(awk -v u="$u1" -v s="$s1" 'BEGIN { printf "%.1f", u + s }') CPU us/req) | $((RSS1 / 1024)) MiB: $(( (RSS1 - RSS0) * 1024 / GATEWAY_SESSIONS )) bytes per session |"
echo "| ... then $DURATION s at random among them ($rps2 req/s, $(awk -v u="$u2" -v s="$s2" 'BEGIN { printf "%.1f", u + s }') CPU us/req) | $((RSS2 / 1024)) MiB |"
echo "| Redis used_memory with those sessions | $(redis-cli -p "$RP" info memory | awk -F: '/^used_memory:/ { printf "%.0f MiB", $2 / 1048576 }') |"
echo; echo "finished in $((SECONDS - START)) s (build and install included)"
