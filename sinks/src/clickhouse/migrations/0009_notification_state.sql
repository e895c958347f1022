-- The notifier's durable state (secpipe sink notify, issue 17). Numbered 17, not 7, so that
-- migrations added on other branches at the same time do not take its version.
--
-- Each attempt's outcome: `retry` (another attempt follows), `delivered`, `dead`; and the index
-- of the endpoint, which with notification_id and integration keys "already delivered".
ALTER TABLE notification_deliveries ADD COLUMN endpoint_index UInt32 DEFAULT 0;
ALTER TABLE notification_deliveries ADD COLUMN outcome String DEFAULT '';

-- Deliveries handed to a lane, written before the lane starts: a restart resumes those with no
-- final attempt in notification_deliveries, and never queues one notification twice per endpoint.
CREATE TABLE IF NOT EXISTS notification_outbox
(
    notification_id String,
    integration String,
    endpoint_index UInt32,
    notification String,
    record String,
    queued_at UInt64,
    queued_time DateTime MATERIALIZED toDateTime(intDiv(queued_at, 1000))
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(queued_time)
ORDER BY (notification_id, integration, endpoint_index);

-- The throttle, per dedup key: the latest row (by updated_at) wins; zeros mean forgotten.
CREATE TABLE IF NOT EXISTS notification_throttle
(
    dedup_key String,
    last_delivered_ms UInt64,
    held_back UInt64,
    updated_at UInt64
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY dedup_key
