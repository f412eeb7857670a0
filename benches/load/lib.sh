# Shared by the load scripts in this directory: installing what they need, building, and the
# configurations of the upstream, authgate and HAProxy. Source it from the repository root.

SECRET="load-test-secret-load-test-secret-0123456789"
TARGET=${CARGO_TARGET_DIR:-target}
AUTHGATE=$TARGET/release/authgate
# Stock Pingora, built as a workspace of its own (without authgate's patches/).
BARE_TARGET=${BARE_TARGET_DIR:-benches/load/bare-pingora/target}
BARE=$BARE_TARGET/release/bare-pingora

# Install the Debian packages that are missing (plus any named as arguments, `command:package`),
# while the release binaries build: one is disk and network, the other CPU.
install_and_build() {
  local need=() extra
  command -v wrk >/dev/null || need+=(wrk)
  command -v nginx >/dev/null || need+=(nginx-light)
  command -v haproxy >/dev/null || need+=(haproxy)
  command -v redis-server >/dev/null || need+=(redis-server)
  command -v taskset >/dev/null || need+=(util-linux)
  command -v python3 >/dev/null || need+=(python3)
  command -v curl >/dev/null || need+=(curl)
  for extra in "$@"; do
    command -v "${extra%%:*}" >/dev/null || need+=("${extra#*:}")
  done
  export DEBIAN_FRONTEND=noninteractive
  if ! command -v cmake >/dev/null; then # the build needs it (zlib-ng under Pingora)
    apt-get update -q && apt-get install -y -q --no-install-recommends cmake
  fi
  local apt_pid=
  if [ ${#need[@]} -gt 0 ]; then
    { apt-get update -q && apt-get install -y -q --no-install-recommends "${need[@]}"; } \
      >/tmp/authgate-bench-apt.log 2>&1 &
    apt_pid=$!
  fi
  # SKIP_BUILD=1 uses the release binaries as they are.
  if [ "${SKIP_BUILD:-0}" != 1 ]; then
    cargo build --release --quiet -p authgate --bins
    cargo build --release --quiet --manifest-path benches/load/bare-pingora/Cargo.toml \
      --target-dir "$BARE_TARGET"
  fi
  if [ -n "$apt_pid" ] && ! wait "$apt_pid"; then
    cat /tmp/authgate-bench-apt.log >&2
    echo "installing ${need[*]} failed" >&2
    return 1
  fi
}

# oha, the open-loop (fixed-rate) load generator, from crates.io when it is missing.
ensure_oha() {
  OHA=$(command -v oha || echo "$HOME/.cargo/bin/oha")
  if [ ! -x "$OHA" ]; then
    echo "installing oha (cargo install oha --locked)..." >&2
    cargo install oha --locked --quiet
  fi
}

# A fixed-rate (open-loop) run with oha: RATE requests a second whatever the answers' pace,
# each latency measured from when its request was due (--latency-correction), so a stall shows
# in the percentiles instead of slowing the load. Prints "RPS P50_US P99_US P999_US OK OTHER".
# oha_fixed CPU RATE SECONDS CONNECTIONS URL [TOKEN]
oha_fixed() {
  local hdr=() out
  [ -n "${6:-}" ] && hdr=(-H "Authorization: Bearer $6")
  out=$(pin "$1" "$OHA" --no-tui --output-format json -q "$2" -z "${3}s" -c "$4" \
    --latency-correction "${hdr[@]}" "$5")
  python3 -c '
import json, sys
d = json.loads(sys.argv[1])
p = d["latencyPercentiles"]
codes = d.get("statusCodeDistribution", {})
ok = int(codes.get("200", 0))
# Requests still in flight when the time is up are "aborted due to deadline": not failures.
errors = {k: v for k, v in d.get("errorDistribution", {}).items() if k != "aborted due to deadline"}
other = sum(int(v) for k, v in codes.items() if k != "200") + sum(int(v) for v in errors.values())
us = lambda v: 1e6 * (v or 0)
print("%.0f %.0f %.0f %.0f %d %d" % (d["summary"]["requestsPerSec"], us(p["p50"]), us(p["p99"]), us(p["p99.9"]), ok, other))
' "$out"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 600); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }
pin() { taskset -c "$1" "${@:2}"; }
# Background with `spawn CPU cmd... &`: exec keeps $! the server's own pid, so it can be measured and stopped.
spawn() { exec taskset -c "$1" "${@:2}"; }

# The fixed upstream: nginx answering a small 200. upstream_conf DIR PORT
upstream_conf() {
  mkdir -p "$1"
  cat > "$1/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $1/nginx.pid;
error_log $1/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$2; location / { return 200 "ok\n"; } }
}
EOF
}

# authgate_conf FILE PORT ADMIN_PORT UPSTREAM_PORT STORE_SECTION [WORK_STEALING]
authgate_conf() {
  cat > "$1" <<EOF
[server]
listen = "127.0.0.1:$2"
threads = 1
access_log = false
work_stealing = ${6:-false}
[admin]
listen = "127.0.0.1:$3"
[token]
secret = "$SECRET"
[store]
users_file = "conf/users.toml"
$5
[rate_limit]
auth_per_minute = 1000
[mfa]
delivery = "webhook"
webhook_url = "http://127.0.0.1:9/unused"
[[upstreams]]
name = "app"
servers = ["127.0.0.1:$4"]
[[routes]]
prefix = "/"
upstream = "app"
auth = "required"
EOF
}

# The shipped configuration, conf/authgate.toml, with only what it takes to run here changed:
# the two listen addresses, the token secret and the upstream. Everything else, server.threads
# = 0 (one worker per core the process may run on) and access_log = true among it, stays.
# authgate_defaults_conf FILE PORT ADMIN_PORT UPSTREAM_PORT
authgate_defaults_conf() {
  sed -e "s|^listen = \"0.0.0.0:8080\"|listen = \"127.0.0.1:$2\"|" \
    -e "s|^listen = \"127.0.0.1:9090\"|listen = \"127.0.0.1:$3\"|" \
    -e "s|^# secret = \"at least 32 bytes of randomness\".*|secret = \"$SECRET\"|" \
    -e "s|^servers = \\[\"127.0.0.1:3000\"\\]|servers = [\"127.0.0.1:$4\"]|" \
    conf/authgate.toml > "$1"
  # Fail loudly if the shipped file changed shape and a substitution no longer applies.
  local want
  for want in "listen = \"127.0.0.1:$2\"" "listen = \"127.0.0.1:$3\"" "secret = \"$SECRET\"" \
    "servers = [\"127.0.0.1:$4\"]"; do
    grep -qF "$want" "$1" || { echo "authgate_defaults_conf: no line $want in $1" >&2; return 1; }
  done
}

signin() {
  curl -sf "http://127.0.0.1:$1/api/auth/signin" -H 'content-type: application/json' \
    -d '{"email":"john.doe@mydomain.com","password":"iLovePria123"}' |
    python3 -c 'import sys,json; print(json.load(sys.stdin)["token"])'
}

# The sessionId claim of a token.
session_id() {
  python3 -c 'import sys,json,base64; p=sys.argv[1].split(".")[1]; p+="="*(-len(p)%4); print(json.loads(base64.urlsafe_b64decode(p))["sessionId"])' "$1"
}

# HAProxy: jwt_verify, expiry, a session map and a stick-table rate limit.
# haproxy_conf FILE PORT UPSTREAM_PORT SESSION_MAP
haproxy_conf() {
  cat > "$1" <<EOF
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
  bind 127.0.0.1:$2
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
  http-request deny deny_status 401 unless { var(txn.sid),map($4) -m found }
  http-request del-header x-user-id
  http-request set-header x-user-id %[var(txn.bearer),jwt_payload_query('\$._id')]
  http-request set-header x-session-id %[var(txn.sid)]
  default_backend be
backend be
  http-reuse always
  server s1 127.0.0.1:$3
EOF
  haproxy -c -q -f "$1"
}

# CPU time of a process and its children, every thread of each: "USER_US SYS_US" (utime and
# stime from /proc/PID/stat, which sum the process's threads, in microseconds).
TICK_US=$((1000000 / $(getconf CLK_TCK)))
tree_pids() { echo "$1"; pgrep -P "$1" || true; }
cpu_us() {
  local p u=0 s=0 line
  for p in $(tree_pids "$1"); do
    line=$(awk '{ sub(/^.*\) /, ""); print $12, $13 }' "/proc/$p/stat" 2>/dev/null) || continue
    [ -n "$line" ] || continue
    u=$((u + ${line% *})); s=$((s + ${line#* }))
  done
  echo "$((u * TICK_US)) $((s * TICK_US))"
}

# CPU time of the threads of process PID whose name starts with PREFIX: "USER_US SYS_US".
thread_cpu_us() {
  local t u=0 s=0 line
  for t in /proc/"$1"/task/*; do
    [[ "$(cat "$t/comm" 2>/dev/null)" == "$2"* ]] || continue
    line=$(awk '{ sub(/^.*\) /, ""); print $12, $13 }' "$t/stat" 2>/dev/null) || continue
    u=$((u + ${line% *})); s=$((s + ${line#* }))
  done
  echo "$((u * TICK_US)) $((s * TICK_US))"
}

# The names of a process's threads, counted ("3 tokio-rt-worker"), numbered ones together.
thread_names() { cat /proc/"$1"/task/*/comm | sed 's/-\?[0-9]*$//' | sort | uniq -c; }

# One line of /proc/stat: "BUSY TOTAL STEAL" in ticks for cpuN ("cpu" alone: the whole machine).
# Busy is everything but idle and iowait; steal (time the hypervisor gave to others) is busy too.
core_stat() {
  awk -v c="cpu$1" '$1 == c { t = 0; for (i = 2; i <= 9; i++) t += $i; print t - $5 - $6, t, $9 }' /proc/stat
}
# Percent busy between two core_stat readings: busy_pct "BEFORE" "AFTER" -> "BUSY STEAL"
busy_pct() {
  awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " "); t = y[2] - x[2]; if (t <= 0) t = 1
    printf "%.0f %.0f\n", 100 * (y[1] - x[1]) / t, 100 * (y[3] - x[3]) / t }'
}
# Wait (at most QUIET_WAIT seconds, 600) until the machine is at most QUIET_BUSY (25) % busy
# over 5 s before measuring: other builds and tests on a shared machine move every figure.
# Call it before anything of this script's own is running.
wait_quiet() {
  local waited=0 a b busy
  while :; do
    a=$(core_stat ""); sleep 5; b=$(core_stat ""); busy=$(busy_pct "$a" "$b"); busy=${busy% *}
    [ "$busy" -le "${QUIET_BUSY:-25}" ] && { echo "machine ${busy}% busy: measuring" >&2; return 0; }
    waited=$((waited + 5))
    if [ "$waited" -ge "${QUIET_WAIT:-600}" ]; then
      echo "WARNING: the machine is still ${busy}% busy with other work after ${waited} s: measuring anyway, expect noise" >&2
      return 0
    fi
    [ $((waited % 60)) = 0 ] && echo "machine ${busy}% busy with other work: waiting (${waited} s so far)" >&2
  done
}

# Work on the machine that is not the benchmark's: machine-wide busy time (/proc/stat) minus
# the CPU time of the benchmark's own processes. Other builds and tests on a shared machine show
# up here, and a run they disturbed is measured again (see `disturbed`).
#   a=$(foreign_start PID...); ...; foreign_pct "$a" PID...   -> percent of one core
# The load generator must run in the foreground of this script (or of a command substitution
# in it): its time is read back from the shell's cutime and cstime once it has exited.
children_us() { # cutime + cstime of this script's shell ($$, even from a subshell)
  awk -v k="$TICK_US" '{ sub(/^.*\) /, ""); print ($14 + $15) * k }' /proc/$$/stat
}
own_us() {
  local p t=0 u s
  for p in "$@"; do read -r u s <<< "$(cpu_us "$p")"; t=$((t + u + s)); done
  echo "$((t + $(children_us)))"
}
foreign_start() {
  local m
  m=$(core_stat "")
  echo "$(( ${m%% *} * TICK_US )) $(own_us "$@") $(date +%s%N)"
}
foreign_pct() {
  local start=$1 m
  shift
  m=$(core_stat "")
  awk -v a="$start" -v m="$(( ${m%% *} * TICK_US ))" -v o="$(own_us "$@")" -v now="$(date +%s%N)" 'BEGIN {
    split(a, x, " "); wall = (now - x[3]) / 1000; f = (m - x[1]) - (o - x[2]); if (f < 0) f = 0
    printf "%.0f\n", 100 * f / wall }'
}
# A run is disturbed when other work took more than FOREIGN_MAX (15) % of a core meanwhile
# (interrupts and kernel threads take a few percent on a quiet machine).
FOREIGN_MAX=${FOREIGN_MAX:-15}
RETRIES=${RETRIES:-3}

# The load side is saturated at or above this many percent busy: throughput measures the load
# generator then, and ratios between systems are squeezed toward 1.
LOAD_BUSY_WARN=${LOAD_BUSY_WARN:-95}

# A scratch folder and the processes started; both are gone when the script exits, however it
# exits. Processes started with `... & PIDS+=($!)` get SIGTERM, then SIGKILL after 3 s.
# Logs and results go to $WORK/log, not beside the configuration files: authgate watches the
# folder of its configuration for changes, and a log written there wakes that watcher on every
# line (see BENCHMARKS.md).
start_work() {
  WORK=$(mktemp -d)
  mkdir -p "$WORK/log"
  PIDS=()
  trap cleanup EXIT
}

cleanup() {
  local p alive
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for _ in $(seq 1 30); do
    # A process that has exited but is not yet reaped (state Z) counts as gone.
    alive=0; for p in "${PIDS[@]}"; do [ "$(ps -o stat= -p "$p" 2>/dev/null | cut -c1)" = "" ] || [ "$(ps -o stat= -p "$p" | cut -c1)" = Z ] || alive=1; done
    [ "$alive" = 0 ] && break; sleep 0.1
  done
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
