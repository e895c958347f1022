-- Repository identity and SARIF as code-scanning users expect (issue 15).
--
-- scan_results.repository: the repository's key, its normalised URI (host/path, lower case) or,
-- without a URI, its name; same-named repositories of two organisations stay two repositories.
-- Rows written before this migration read their lower-cased name.
ALTER TABLE scan_results ADD COLUMN repository String DEFAULT lower(repository_name);

-- When the summary arrived, in microseconds: orders two scans of one second.
ALTER TABLE scan_results ADD COLUMN received_at_us UInt64 DEFAULT toUInt64(received_at) * 1000000;

-- Findings v2: severity, the whole region, the analysis category.
ALTER TABLE findings ADD COLUMN severity String;
ALTER TABLE findings ADD COLUMN start_column Nullable(Int32);
ALTER TABLE findings ADD COLUMN end_line Nullable(Int32);
ALTER TABLE findings ADD COLUMN end_column Nullable(Int32);
ALTER TABLE findings ADD COLUMN category String;

-- The views key repositories by `repository` and leave out scans that carried no scanner
-- summary (a fragment whose summary never came).
DROP TABLE IF EXISTS v_findings_by_repository;
CREATE VIEW v_findings_by_repository AS
SELECT
    team,
    repository,
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

DROP TABLE IF EXISTS v_findings_by_team;
CREATE VIEW v_findings_by_team AS
SELECT
    team,
    uniqExact(repository) AS repositories,
    count() AS scans,
    sum(arraySum(summary.critical)) AS critical,
    sum(arraySum(summary.high)) AS high,
    sum(arraySum(summary.medium)) AS medium,
    sum(arraySum(summary.low)) AS low
FROM scan_results FINAL
WHERE length(summary.scanner) > 0
GROUP BY team;

DROP TABLE IF EXISTS v_repository_contacts;
CREATE VIEW v_repository_contacts AS
SELECT
    repository,
    groupUniqArray(invoked_by) AS invokers,
    count() AS scans,
    max(received_at) AS last_scan
FROM scan_results FINAL
WHERE invoked_by != '' AND length(summary.scanner) > 0
GROUP BY repository;

-- The status of every Node.js application on each branch: its latest JavaScript analysis, the
-- latest by the microsecond. Scanner names are canonical (the gateway maps the pre-2020
-- "Source code analyzer for JavaScript" to today's "JavaScript Source Analyzer").
DROP TABLE IF EXISTS v_nodejs_status;
CREATE VIEW v_nodejs_status AS
SELECT
    repository,
    branch,
    argMax(summary.status, received_at_us) AS status,
    argMax(summary.critical, received_at_us) AS critical,
    argMax(summary.high, received_at_us) AS high,
    argMax(summary.medium, received_at_us) AS medium,
    argMax(summary.low, received_at_us) AS low,
    argMax(scan_id, received_at_us) AS scan_id,
    max(received_at) AS last_scan
FROM scan_results FINAL
ARRAY JOIN summary
WHERE has(repo_type, 'nodejs')
    AND summary.scanner IN ('JavaScript Source Analyzer', 'Source code analyzer for JavaScript')
GROUP BY repository, branch;

-- The findings of each analysis's latest upload: a re-upload of one analysis (same scan id and
-- tool) replaces the results it no longer reports instead of adding to them.
CREATE VIEW IF NOT EXISTS v_findings AS
SELECT *
FROM findings FINAL
WHERE (scan_id, tool, received_at) IN
(
    SELECT scan_id, tool, max(received_at)
    FROM findings
    GROUP BY scan_id, tool
)
