-- Admin events v2: the image reference as given (full_name is now the normalised reference), every
-- source of an event, and the retention an administrator set at run time. Expiry is evaluated
-- from last_seen and the retention in force when read or pruned, not from the stored expires_at.
ALTER TABLE scan_failures ADD COLUMN original String DEFAULT '';

ALTER TABLE admin_events ADD COLUMN original String DEFAULT '';

ALTER TABLE admin_events ADD COLUMN sources Array(String) DEFAULT emptyArrayString();

-- Settings changed at run time (PUT /v1/admin-events/settings); the newest row of a name wins.
-- value 0 means "the configured value" (processors.admin_events.retention_secs).
CREATE TABLE IF NOT EXISTS admin_event_settings
(
    name String,
    value UInt64,
    changed_at_us UInt64,
    changed_by String
)
ENGINE = ReplacingMergeTree(changed_at_us)
ORDER BY name;

-- The view follows the run-time retention when one is set, else each version's own expiry.
DROP TABLE IF EXISTS v_failed_scans;

-- (Inner columns are prefixed: ClickHouse resolves the outer aliases in WHERE too.)
CREATE VIEW IF NOT EXISTS v_failed_scans AS
SELECT
    e_image AS image,
    e_reason AS reason,
    e_command AS command,
    count() AS admin_events,
    sum(e_occurrences) AS occurrences,
    min(e_first_seen) AS first_seen,
    max(e_last_seen) AS last_seen
FROM
(
    SELECT
        id,
        argMax(image, version) AS e_image,
        argMax(reason, version) AS e_reason,
        argMax(command, version) AS e_command,
        argMax(occurrences, version) AS e_occurrences,
        argMax(first_seen, version) AS e_first_seen,
        argMax(last_seen, version) AS e_last_seen,
        argMax(expires_at, version) AS e_expires_at
    FROM admin_events
    GROUP BY id
)
WHERE if(
    (SELECT argMax(value, changed_at_us) FROM admin_event_settings WHERE name = 'retention_secs') > 0,
    toUInt64(e_last_seen) + (SELECT argMax(value, changed_at_us) FROM admin_event_settings WHERE name = 'retention_secs') > toUInt64(now()),
    e_expires_at > now())
GROUP BY e_image, e_reason, e_command;
