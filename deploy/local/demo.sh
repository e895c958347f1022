#!/usr/bin/env bash
# The main job on a fresh machine: install what is missing, bring the stack up, run the whole
# pipeline fed with sample events, and show what landed in ClickHouse.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
"$REPO_ROOT/deploy/local/install.sh"
"$REPO_ROOT/deploy/local/up.sh"
load_settings
"$SECPIPE_BIN" demo
say "the same rows, straight from clickhouse-client:"
clickhouse-client --host "$SECPIPE_CH_HOST" --port "$SECPIPE_CH_TCP_PORT" --database "$SECPIPE_CH_DATABASE" \
    --query "SELECT scan_id, repository_name, branch, invoked_by, repo_type, summary.scanner, summary.critical, summary.high, summary.status FROM scan_results FINAL ORDER BY repository_name, scan_id FORMAT PrettyCompactMonoBlock"
