#!/usr/bin/env bash
# TLS on loopback: authgate terminating TLS against HAProxy terminating TLS with the same
# certificate (ECDSA P-256, made here with openssl) and doing the same token checks
# (`haproxy_conf` in lib.sh), both in front of the same plain-HTTP nginx upstream.
#
#   benches/load/tls.sh                 # DURATION=8 ROUNDS=3 CONNECTIONS=32 by default
#
# Measured, each system pinned to core 0 (one worker thread), the load generator, the upstream
# on core 1:
#   - full handshakes per second: wrk over HTTPS with `Connection: close`, so that every request
#     opens a new connection (wrk resumes no sessions);
#   - proxied requests per second on kept-alive connections: wrk (HTTP/1.1) and h2load (h2);
#   - server CPU per request (utime + stime from /proc, around the measured run).
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION=${DURATION:-8}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-2}
CONNECTIONS=${CONNECTIONS:-32}
H2_STREAMS=${H2_STREAMS:-4}     # concurrent streams per h2 connection
SUT_CPU=${SUT_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}

START=$SECONDS
. benches/load/lib.sh
install_and_build h2load:nghttp2-client openssl:openssl
echo "built and installed in $((SECONDS - START)) s" >&2

start_work

# --- one certificate for both: a private CA signing a P-256 server certificate ---------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=bench CA" -keyout "$WORK/ca.key" -out "$WORK/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
  -keyout "$WORK/server.key" -out "$WORK/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$WORK/san.cnf"
openssl x509 -req -days 2 -in "$WORK/server.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" \
  -CAcreateserial -extfile "$WORK/san.cnf" -out "$WORK/server.crt" 2>/dev/null
cat "$WORK/server.crt" "$WORK/server.key" > "$WORK/haproxy.pem"

# --- the fixed upstream -----------------------------------------------------------------------
UP=$(free_port)
upstream_conf "$WORK/up" "$UP"
spawn "$LOAD_CPU" nginx -c "$WORK/up/nginx.conf" -p "$WORK/up" & PIDS+=($!)
wait_port "$UP"

# --- authgate: the plain listener (to sign in) and the TLS one ------------------------------
AG=$(free_port); AG_ADMIN=$(free_port); AG_TLS=$(free_port)
authgate_conf "$WORK/ag.toml" "$AG" "$AG_ADMIN" "$UP" 'backend = "memory"'
cat >> "$WORK/ag.toml" <<EOF
[server.tls]
listen = "127.0.0.1:$AG_TLS"
cert_file = "$WORK/server.crt"
key_file = "$WORK/server.key"
EOF
"$AUTHGATE" check-config --config "$WORK/ag.toml" >/dev/null
RUST_LOG=warn spawn "$SUT_CPU" "$AUTHGATE" --config "$WORK/ag.toml" 2>"$WORK/ag.log" & AG_PID=$!; PIDS+=($AG_PID)
wait_port "$AG"; wait_port "$AG_TLS"
TOKEN=$(signin "$AG")

# --- HAProxy: the same checks, TLS 1.2+ with the same certificate and ALPN ------------------
HA=$(free_port)
session_id "$TOKEN" | sed 's/$/ 1/' > "$WORK/sessions.map"
haproxy_conf "$WORK/haproxy.cfg" "$HA" "$UP" "$WORK/sessions.map"
sed -i "s#^  bind 127.0.0.1:$HA\$#  bind 127.0.0.1:$HA ssl crt $WORK/haproxy.pem alpn h2,http/1.1 ssl-min-ver TLSv1.2#" "$WORK/haproxy.cfg"
grep -q "ssl crt" "$WORK/haproxy.cfg" || { echo "could not enable TLS in haproxy.cfg" >&2; exit 1; }
haproxy -c -q -f "$WORK/haproxy.cfg"
spawn "$SUT_CPU" haproxy -f "$WORK/haproxy.cfg" -db >"$WORK/haproxy.log" 2>&1 & HA_PID=$!; PIDS+=($HA_PID)
wait_port "$HA"

# Every check must pass before anything is measured.
for port in "$AG_TLS" "$HA"; do
  for proto in --http1.1 --http2; do
    got=$(curl -s -o /dev/null -w '%{http_code} %{http_version}' --cacert "$WORK/ca.pem" "$proto" \
      -H "Authorization: Bearer $TOKEN" "https://localhost:$port/api/cases")
    case "$proto $got" in
      "--http1.1 200 1.1" | "--http2 200 2") ;;
      *) echo "port $port answered '$got' to $proto" >&2; exit 1 ;;
    esac
  done
  code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$WORK/ca.pem" "https://localhost:$port/api/cases")
  [ "$code" = 401 ] || { echo "port $port let an anonymous request through ($code)" >&2; exit 1; }
done

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

# load KIND PORT SECONDS: run one load, print "requests rps" (and fail on any non-2xx).
load() {
  local kind=$1 port=$2 secs=$3 url out requests rps
  url="https://127.0.0.1:$port/api/cases"
  case "$kind" in
    handshakes | h1)
      local close=()
      [ "$kind" = handshakes ] && close=(-H "Connection: close")
      out=$(pin "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"${secs}s" -H "Authorization: Bearer $TOKEN" "${close[@]}" "$url")
      if echo "$out" | grep -q "Non-2xx"; then echo "$out" >&2; return 1; fi
      requests=$(echo "$out" | awk '/requests in/ {print $1}')
      rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
      ;;
    h2)
      out=$(pin "$LOAD_CPU" h2load -t1 -c"$((CONNECTIONS / H2_STREAMS))" -m"$H2_STREAMS" -D"$secs" \
        -H "Authorization: Bearer $TOKEN" "$url")
      if ! echo "$out" | grep -q " 0 failed, 0 errored"; then echo "$out" >&2; return 1; fi
      if ! echo "$out" | grep -qE "status codes: [0-9]+ 2xx, 0 3xx, 0 4xx, 0 5xx"; then echo "$out" >&2; return 1; fi
      requests=$(echo "$out" | awk '/^requests:/ {print $8}')   # "... N succeeded, ..."
      rps=$(echo "$out" | awk '/^finished in/ {print $4}')
      ;;
  esac
  echo "$requests $rps"
}

RESULTS="$WORK/results.tsv"
: > "$RESULTS"
measure() { # name pid kind port
  local name=$1 pid=$2 kind=$3 port=$4 before after result requests rps us
  load "$kind" "$port" "$WARMUP" >/dev/null
  before=$(cpu_ticks "$pid")
  result=$(load "$kind" "$port" "$DURATION")
  after=$(cpu_ticks "$pid")
  read -r requests rps <<< "$result"
  us=$(awk -v t=$((after - before)) -v r="$requests" -v k="$TICK_US" 'BEGIN { printf "%.1f", t * k / r }')
  printf '%s\t%s\t%s\t%s\n' "$kind" "$name" "$rps" "$us" >> "$RESULTS"
  printf "  %-10s %-9s %10s req/s %8s us/req\n" "$kind" "$name" "$rps" "$us" >&2
}

echo "Running: ${DURATION}s per system and kind (after ${WARMUP}s warm-up), $ROUNDS rounds" >&2
SYSTEMS=("authgate|$AG_PID|$AG_TLS" "haproxy|$HA_PID|$HA")
for round in $(seq 0 $((ROUNDS - 1))); do
  for kind in handshakes h1 h2; do
    for i in 0 1; do
      IFS='|' read -r name pid port <<< "${SYSTEMS[$(((i + round) % 2))]}"
      measure "$name" "$pid" "$kind" "$port"
    done
  done
done
echo
echo "machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo); systems pinned to core $SUT_CPU, load + upstream to core $LOAD_CPU"
echo "ECDSA P-256 certificate; handshakes and h1: wrk -t1 -c$CONNECTIONS; h2: h2load -t1 -c$((CONNECTIONS / H2_STREAMS)) -m$H2_STREAMS; ${DURATION}s, median of $ROUNDS interleaved rounds"
echo
awk -F'\t' '
  function median(list,    a, k, c, t, j) {
    c = split(list, a, " ")
    for (k = 2; k <= c; k++) { t = a[k]; j = k - 1; while (j > 0 && a[j] > t) { a[j + 1] = a[j]; j-- } a[j + 1] = t }
    return (c % 2) ? a[(c + 1) / 2] : (a[c / 2] + a[c / 2 + 1]) / 2
  }
  { R[$1, $2] = R[$1, $2] " " $3; US[$1, $2] = US[$1, $2] " " $4 }
  END {
    split("handshakes h1 h2", kinds, " ")
    label["handshakes"] = "full handshakes (1 request each)"
    label["h1"] = "kept-alive HTTP/1.1 over TLS"
    label["h2"] = "kept-alive h2"
    printf "| %-34s | %14s | %14s | %14s | %14s | %16s | %16s |\n", "load", "authgate /s", "haproxy /s", "authgate us/req", "haproxy us/req", "throughput ratio", "CPU/request ratio"
    print "|------------------------------------|----------------|----------------|-----------------|----------------|------------------|-------------------|"
    for (k = 1; k <= 3; k++) {
      kind = kinds[k]
      ar = median(R[kind, "authgate"]); hr = median(R[kind, "haproxy"])
      au = median(US[kind, "authgate"]); hu = median(US[kind, "haproxy"])
      printf "| %-34s | %14.0f | %14.0f | %15.1f | %14.1f | %16.2f | %17.2f |\n", label[kind], ar, hr, au, hu, ar / hr, au / hu
    }
  }' "$RESULTS"
echo; echo "finished in $((SECONDS - START)) s (build and install included)"
