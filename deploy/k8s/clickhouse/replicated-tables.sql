-- secpipe's tables on a replicated ClickHouse cluster (config.d/secpipe-cluster.xml): run once,
-- BEFORE the first `secpipe migrate`, against any one server:
--   clickhouse-client --multiquery < replicated-tables.sql
--
-- `secpipe migrate` creates its tables with CREATE TABLE IF NOT EXISTS and non-replicated engines
-- (ReplacingMergeTree, MergeTree) on the one server it connects to. Creating them here first, ON
-- CLUSTER and with Replicated* engines, makes every replica hold them; migrate then skips those
-- CREATEs and its ALTERs of a Replicated table reach every replica through Keeper.
--
-- The columns are those of the CREATE TABLE migrations in sinks/src/clickhouse/migrations/, not of
-- later ALTERs (0002 adds scan_results.team: creating it here would make that ALTER fail).
-- tests/deploy_manifests.rs checks that every table a migration creates is listed here.
-- A migration that creates a new table needs its line here too, run before that migration.

CREATE DATABASE IF NOT EXISTS secpipe ON CLUSTER '{cluster}';

CREATE TABLE IF NOT EXISTS secpipe.schema_migrations ON CLUSTER '{cluster}'
(
    version UInt32,
    name String,
    applied_at DateTime
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
ORDER BY version;

-- 0001_scan_results.sql
CREATE TABLE IF NOT EXISTS secpipe.scan_results ON CLUSTER '{cluster}'
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
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}', received_at)
ORDER BY scan_id;

-- 0003_notification_deliveries.sql
CREATE TABLE IF NOT EXISTS secpipe.notification_deliveries ON CLUSTER '{cluster}'
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
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
PARTITION BY toYYYYMM(at_time)
ORDER BY (at_time, notification_id);
