#!/usr/bin/env bash
# The whole test suite on a fresh machine: install what is missing, bring the stack up, check the
# Avro schemas for breaking changes, then `cargo test --workspace` (unit tests and the end-to-end
# tests against the real broker and ClickHouse).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
"$REPO_ROOT/deploy/local/install.sh"
"$REPO_ROOT/deploy/local/up.sh"
# The ClickHouse cluster of tests/clickhouse_cluster_e2e.rs (installs ZooKeeper when missing).
"$REPO_ROOT/deploy/local/cluster-up.sh"
load_settings
python3 -c "import fastavro" 2>/dev/null || {
    say "installing fastavro (the second Avro implementation of the interop test)"
    python3 -m pip install --quiet "fastavro==1.13.1" || die "pip install fastavro failed"
}
# ClickHouse 26.x in process: every migration on a current server (tests/clickhouse_current_ddl.rs).
python3 -c "import chdb" 2>/dev/null || {
    say "installing chdb (a current ClickHouse in process, for the migrations check)"
    python3 -m pip install --quiet "chdb==4.4.0" || die "pip install chdb failed"
}
# A real SAST scanner whose SARIF the scan-ingest tests upload (tests/scan_clients_e2e.rs).
command -v bandit >/dev/null 2>&1 && bandit -f sarif -o /dev/null /dev/null >/dev/null 2>&1 || {
    say "installing bandit with SARIF output (the scanner of the SARIF ingest tests)"
    python3 -m pip install --quiet "bandit[sarif]==1.9.4" || die "pip install bandit failed"
    hash -r
}
# Databases that earlier test runs made for themselves.
for db in $(clickhouse-client --host "$SECPIPE_CH_HOST" --port "$SECPIPE_CH_TCP_PORT" \
        --query "SELECT name FROM system.databases WHERE name LIKE 'test\\_%' OR name LIKE 'bench\\_%'"); do
    clickhouse-client --host "$SECPIPE_CH_HOST" --port "$SECPIPE_CH_TCP_PORT" --query "DROP DATABASE IF EXISTS \`$db\`"
done
# ... and those the cluster tests made on the local cluster.
source "$REPO_ROOT/deploy/local/cluster-lib.sh"
for db in $(clickhouse-client --host 127.0.0.1 --port "$(node_tcp_port 1)" \
        --query "SELECT name FROM system.databases WHERE name LIKE 'test\\_%'"); do
    clickhouse-client --host 127.0.0.1 --port "$(node_tcp_port 1)" \
        --query "DROP DATABASE IF EXISTS \`$db\` ON CLUSTER \`$CLUSTER_NAME\`" >/dev/null
done
say "checking schema compatibility"
"$SECPIPE_BIN" schemas check || die "secpipe schemas check: a schema change breaks compatibility"
say "running cargo test --workspace"
log="$SECPIPE_STATE_DIR/logs/cargo-test.log"
status=0
cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "all tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
