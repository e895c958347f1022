-- One row per scan invocation. Retried POSTs and replayed batches carry the same scan_id and
-- collapse to one row (ReplacingMergeTree; read with FINAL or through the views).
CREATE TABLE IF NOT EXISTS scan_results
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
    summary Nested
    (
        scanner String,
        tool String,
        critical UInt32,
        high UInt32,
        medium UInt32,
        low UInt32,
        status String
    )
)
ENGINE = ReplacingMergeTree(received_at)
ORDER BY scan_id
