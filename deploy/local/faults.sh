#!/usr/bin/env bash
# The fault suite: kill -9 of each role mid-stream, ClickHouse unreachable for 30 s, the broker
# (sqlite) killed and restarted, malformed and oversized input mixed in; then every event the
# gateway acknowledged must be in ClickHouse exactly once. Takes a few minutes.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
"$REPO_ROOT/deploy/local/install.sh"
"$REPO_ROOT/deploy/local/up.sh"
cargo test --test fault_suite -- --ignored --nocapture 2>&1 | grep -v "rdkafka::client"
