-- Every attempt to deliver a notification (secpipe sink notify), for operators' SQL: what went
-- where, how fast, what failed. `at` is milliseconds since the epoch; at_time is derived.
CREATE TABLE IF NOT EXISTS notification_deliveries
(
    notification_id String,
    integration String,
    endpoint String,
    attempt UInt32,
    status Nullable(UInt16),
    error Nullable(String),
    latency_ms UInt64,
    at UInt64,
    at_time DateTime MATERIALIZED toDateTime(intDiv(at, 1000))
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(at_time)
ORDER BY (at_time, notification_id)
