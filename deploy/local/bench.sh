#!/usr/bin/env bash
# Throughput figures on this machine. Starts a second, in-memory broker for the benchmark
# (memory://tansu/ is about ten times faster than the durable sqlite storage; figures say which
# broker they used) next to the local ClickHouse, builds secpipe in release mode, and runs:
#   secpipe bench gateway     telemetry NDJSON through the gateway to the broker
#   secpipe bench processor   the telemetry processor: backlog throughput, latency, peak RSS
#   secpipe bench loader      the ClickHouse loader against clickhouse-client, same rows
#   secpipe bench pipeline    every role as its own process: end-to-end rate, ack -> ClickHouse
#                             latency, peak RSS per role, and the broker's and ClickHouse's limits
#   secpipe bench notify      the notifier as its own process: deliveries/s to four local
#                             integrations, one of them hung (median of 3 runs, min, max)
#   secpipe bench redact      redaction on one core over the reference mix (no stack needed):
#                             events/s, median of 3 runs with min and max
# Usage: deploy/local/bench.sh [gateway|processor|loader|pipeline|notify|redact] [extra args]
#        (default: all but redact)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
if [ "${1:-}" = redact ]; then
    shift
    say "building secpipe (release)"
    cargo build --release --quiet --bin secpipe || die "release build failed"
    exec "$REPO_ROOT/target/release/secpipe" bench redact "$@"
fi
export SECPIPE__KAFKA__BROKERS="${BENCH_BROKERS:-127.0.0.1:19092}"
export SECPIPE__STACK__BROKER_STORAGE=memory
export SECPIPE__STACK__STATE_DIR=.secpipe/bench
"$REPO_ROOT/deploy/local/install.sh"
say "building secpipe (release)"
cargo build --release --quiet --bin secpipe || die "release build failed"
# Each bench starts on a fresh memory broker and ClickHouse: tansu's memory storage keeps every
# record of every earlier run (3.6 GB resident after eight pipeline runs), so a bench never
# measures what the ones before it left behind.
bench() {
    "$REPO_ROOT/deploy/local/down.sh" >/dev/null 2>&1 || true
    "$REPO_ROOT/deploy/local/up.sh"
    "$REPO_ROOT/target/release/secpipe" bench "$@"
}
case "${1:-all}" in
    gateway | processor | loader | pipeline | notify)
        what=$1; shift
        bench "$what" "$@" ;;
    all)
        for what in gateway processor loader pipeline notify; do bench "$what"; done ;;
    *) die "unknown bench '$1' (gateway, processor, loader, pipeline, notify, redact)" ;;
esac
