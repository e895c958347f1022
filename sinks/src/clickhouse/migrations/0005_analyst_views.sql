-- Views that answer the analysts' questions in one SELECT each.

-- Findings per team and repository, by scanner (distinct scans only).
CREATE VIEW IF NOT EXISTS v_findings_by_repository AS
SELECT
    team,
    repository_name AS repository,
    summary.scanner AS scanner,
    count() AS scans,
    countIf(summary.status = '❌') AS failed_scans,
    sum(summary.critical) AS critical,
    sum(summary.high) AS high,
    sum(summary.medium) AS medium,
    sum(summary.low) AS low,
    max(received_at) AS last_scan
FROM scan_results FINAL
ARRAY JOIN summary
GROUP BY team, repository, scanner;

-- Findings per team, all repositories and scanners together.
CREATE VIEW IF NOT EXISTS v_findings_by_team AS
SELECT
    team,
    uniqExact(repository_name) AS repositories,
    count() AS scans,
    sum(arraySum(summary.critical)) AS critical,
    sum(arraySum(summary.high)) AS high,
    sum(arraySum(summary.medium)) AS medium,
    sum(arraySum(summary.low)) AS low
FROM scan_results FINAL
GROUP BY team;

-- Who to speak to about a repository: everyone who invoked its scans.
CREATE VIEW IF NOT EXISTS v_repository_contacts AS
SELECT
    repository_name AS repository,
    groupUniqArray(invoked_by) AS invokers,
    count() AS scans,
    max(received_at) AS last_scan
FROM scan_results FINAL
WHERE invoked_by != ''
GROUP BY repository;

-- Status of every Node.js application: its latest JavaScript analysis.
CREATE VIEW IF NOT EXISTS v_nodejs_status AS
SELECT
    repository_name AS repository,
    argMax(summary.status, received_at) AS status,
    argMax(summary.critical, received_at) AS critical,
    argMax(summary.high, received_at) AS high,
    argMax(summary.medium, received_at) AS medium,
    argMax(summary.low, received_at) AS low,
    argMax(branch, received_at) AS branch,
    max(received_at) AS last_scan
FROM scan_results FINAL
ARRAY JOIN summary
WHERE has(repo_type, 'nodejs') AND summary.scanner = 'Source code analyzer for JavaScript'
GROUP BY repository;

-- Failed scans per image and reason, with their frequency (live admin events only).
CREATE VIEW IF NOT EXISTS v_failed_scans AS
SELECT
    image,
    reason,
    command,
    count() AS admin_events,
    sum(occurrences) AS occurrences,
    min(first_seen) AS first_seen,
    max(last_seen) AS last_seen
FROM
(
    SELECT
        id,
        argMax(image, version) AS image,
        argMax(reason, version) AS reason,
        argMax(command, version) AS command,
        argMax(occurrences, version) AS occurrences,
        argMax(first_seen, version) AS first_seen,
        argMax(last_seen, version) AS last_seen,
        argMax(expires_at, version) AS expires_at
    FROM admin_events
    GROUP BY id
)
WHERE expires_at > now()
GROUP BY image, reason, command
