#!/usr/bin/env bash
# Fixed-rate latency: p50/p99/p99.9 at RATE (10000) requests a second, open loop (oha with
# --latency-correction), for authgate tuned and with its shipped defaults, HAProxy jwt_verify,
# bare Pingora and nginx, each pinned to core 0 with the load on core 1. The same setup as
# run.sh (see there); this is `run.sh --latency`.
#
#   benches/load/latency.sh                     # RATE=10000 DURATION=8 ROUNDS=4 CONNECTIONS=32
#   RATE=20000 ROUNDS=3 benches/load/latency.sh
exec "$(dirname "$0")/run.sh" --latency "$@"
