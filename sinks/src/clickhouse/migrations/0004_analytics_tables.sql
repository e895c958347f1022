-- Tables of the processed streams. Each collapses repeats by the record's stable id (a replayed
-- batch, a restarted loader): ReplacingMergeTree whose sorting key holds the id, versioned where
-- the record is re-emitted with a higher version. Read them through the views, or with FINAL /
-- argMax(..., version). Day-partitioned tables are expired by dropping old partitions
-- (`secpipe retention`, run by the loader every hour), which works on every server version.

-- One SARIF result; collapses by finding_id.
CREATE TABLE IF NOT EXISTS findings
(
    finding_id String,
    scan_id String,
    tool String,
    rule_id String,
    level String,
    message String,
    file String,
    line Nullable(Int32),
    fingerprint Nullable(String),
    repository String,
    received_at DateTime
)
ENGINE = ReplacingMergeTree(received_at)
PARTITION BY toYYYYMM(received_at)
ORDER BY (repository, scan_id, finding_id);

-- Each failed ad-hoc scan as reported; collapses by failure_id.
CREATE TABLE IF NOT EXISTS scan_failures
(
    failure_id String,
    command String,
    image String,
    registry String,
    repository String,
    tag String,
    digest String,
    reason String,
    source String,
    cluster String,
    occurred_at DateTime,
    received_at DateTime
)
ENGINE = ReplacingMergeTree(received_at)
PARTITION BY toYYYYMMDD(occurred_at)
ORDER BY (image, failure_id);

-- Admin events, one row per emitted version; the newest version of an id is the event.
-- Partitioned by expiry day: dropping a day drops versions that expired then.
CREATE TABLE IF NOT EXISTS admin_events
(
    id String,
    command String,
    image String,
    registry String,
    repository String,
    tag String,
    digest String,
    reason String,
    cluster String,
    source String,
    first_seen DateTime,
    last_seen DateTime,
    occurrences UInt64,
    version UInt64,
    expires_at DateTime
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMMDD(expires_at)
ORDER BY (image, id);

-- Findings per repository, branch, day and scanner; the newest version is the total.
CREATE TABLE IF NOT EXISTS scan_rollups
(
    rollup_id String,
    repository String,
    team String,
    branch String,
    day Date,
    scanner String,
    scans UInt64,
    failed_scans UInt64,
    critical UInt64,
    high UInt64,
    medium UInt64,
    low UInt64,
    version UInt64,
    updated_at DateTime
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(day)
ORDER BY (repository, branch, day, scanner);

-- The latest status of each repository.
CREATE TABLE IF NOT EXISTS repo_status
(
    repository String,
    team String,
    branch String,
    scan_id String,
    scanned_at DateTime,
    status String,
    failing_scanners Array(String),
    repo_type Array(String),
    critical UInt64,
    high UInt64,
    medium UInt64,
    low UInt64,
    invoked_by String
)
ENGINE = ReplacingMergeTree(scanned_at)
ORDER BY repository;

-- Runtime telemetry after processing (no heartbeats: see heartbeat_rollups), one row per event.
-- Common envelope columns; the whole event as JSON in `details` (visitParamExtract* on 18.16,
-- JSONExtract* on newer servers).
CREATE TABLE IF NOT EXISTS telemetry_events
(
    event_id String,
    event_type String,
    event_time DateTime,
    event_time_us UInt64,
    host String,
    container_id String,
    pod String,
    namespace String,
    pid Int64,
    app String,
    details String
)
ENGINE = ReplacingMergeTree(event_time_us)
PARTITION BY toYYYYMMDD(event_time)
ORDER BY (event_type, host, event_time, event_id);

-- The OS packages of host-environment events, one row per package (~40 KB events stay out of
-- telemetry_events' details).
CREATE TABLE IF NOT EXISTS host_packages
(
    host String,
    container_id String,
    pod String,
    namespace String,
    event_id String,
    observed_at DateTime,
    name String,
    version String,
    source String,
    licenses Array(String)
)
ENGINE = ReplacingMergeTree(observed_at)
PARTITION BY toYYYYMM(observed_at)
ORDER BY (host, container_id, name, version);

-- Per-process, per-minute heartbeat aggregates.
CREATE TABLE IF NOT EXISTS heartbeat_rollups
(
    rollup_id String,
    host String,
    container_id String,
    pod String,
    namespace String,
    pid Int64,
    app String,
    minute DateTime,
    heartbeats UInt64,
    cpu_user_ms UInt64,
    cpu_system_ms UInt64,
    rss_bytes_max UInt64,
    rss_bytes_sum UInt64,
    vm_bytes_max UInt64,
    agent_cpu_ms UInt64,
    agent_rss_bytes_max UInt64,
    threads_created UInt64,
    forks UInt64,
    open_descriptors_max UInt64,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMMDD(minute)
ORDER BY (host, container_id, pid, minute);

-- Alerts the processors raised; collapses by alert_id.
CREATE TABLE IF NOT EXISTS alerts
(
    alert_id String,
    rule String,
    severity String,
    kind String,
    title String,
    description String,
    dedup_key String,
    status String,
    source_topic String,
    source_id String,
    resources Array(String),
    tags Array(String),
    attributes Nested
    (
        key String,
        value String
    ),
    raised_at DateTime
)
ENGINE = ReplacingMergeTree(raised_at)
PARTITION BY toYYYYMM(raised_at)
ORDER BY (rule, alert_id)
