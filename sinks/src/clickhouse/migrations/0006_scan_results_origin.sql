-- ScanReport v3 says where a summary came from: the tool's own end-of-scan message ('track') or
-- a SARIF run with the same scan id ('sarif'). Both describe one scan; the tool's message is the
-- summary of record whatever the arrival order, so the collapsing version puts the origin first:
-- precedence = rank(origin) * 2^32 + received_at. The table is rebuilt with that version column
-- (ClickHouse cannot change an engine's version column in place).
CREATE TABLE IF NOT EXISTS scan_results_v3
(
    scan_id String,
    received_at DateTime,
    scan_mode String,
    tool String,
    branch String,
    pull_request Nullable(UInt8),
    repository_name String,
    repository_uri String,
    revision_id String,
    invoked_by String,
    repo_type Array(String),
    team String,
    summary Nested
    (
        scanner String,
        tool String,
        critical UInt32,
        high UInt32,
        medium UInt32,
        low UInt32,
        status String
    ),
    origin String,
    precedence UInt64
)
ENGINE = ReplacingMergeTree(precedence)
ORDER BY scan_id;

INSERT INTO scan_results_v3
SELECT scan_id, received_at, scan_mode, tool, branch, pull_request, repository_name, repository_uri,
       revision_id, invoked_by, repo_type, team, summary.scanner, summary.tool, summary.critical,
       summary.high, summary.medium, summary.low, summary.status,
       'track', 2 * 4294967296 + toUInt64(received_at)
FROM scan_results;

RENAME TABLE scan_results TO scan_results_v2_replaced, scan_results_v3 TO scan_results;

DROP TABLE scan_results_v2_replaced
