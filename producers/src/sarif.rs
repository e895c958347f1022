//! SARIF 2.1.0 reports (`POST /v1/sarif`, `secpipe produce sarif`): one scan-result summary per
//! run and one finding per result, as code-scanning services treat an upload:
//!
//! - **Scan context** comes with the upload ([`UploadContext`]: repository URI, commit, ref,
//!   category, checkout path, scan id, as query parameters of the endpoint) and fills what the log
//!   does not say.
//! - **The scan id** is, in order: the context's `scan_id`; the log's
//!   `inlineExternalProperties[].runGuid` (the scan client's run id, the id of its `/track`
//!   message); the run's `automationDetails.guid`; the run's `properties.runGuid`; a UUID v5 over
//!   the repository, commit, category and tool when the repository and commit are known; else a
//!   UUID v5 over the tool and its results. So a re-upload of one analysis gets the same id.
//! - **A finding's identity** keeps distinct results distinct: the region with its columns, the
//!   tool's fingerprint when present, and the occurrence index among results that agree on all of
//!   that (see [`Finding::derive_id`]).
//! - **Severity** per finding ([`severity`]), and the summary's counts are the findings' severities.
//! - **Paths** relative to the repository root ([`relative_path`]).
use secpipe_schemas::{
    repository,
    scan::{Finding, FindingIdentity, RepoContext, ScanReport, ScannerSummary},
    stable_id,
};
use serde_json::{Map, Value};
use std::collections::HashMap;

use crate::scan_report::InvalidMessage;

/// What one SARIF report turns into.
#[derive(Debug, Default, PartialEq)]
pub struct SarifRecords {
    pub reports: Vec<ScanReport>,
    pub findings: Vec<Finding>,
    /// The JSON path of each finding's result (`runs[0].results[3]`), for errors naming it.
    pub paths: Vec<String>,
}

/// Scan context given with an upload (query parameters of `POST /v1/sarif`, flags of
/// `secpipe produce sarif`), as code-scanning upload APIs take it. Each fills what the log does
/// not say; `scan_id` and `category` win over the log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UploadContext {
    /// The scan this upload belongs to (e.g. the id of the scan tool's `/track` message).
    pub scan_id: Option<String>,
    /// Remote URL of the repository (`repository_uri`).
    pub repository_uri: Option<String>,
    /// Repository name, when no URI is known (`repository`).
    pub repository: Option<String>,
    /// Commit that was analysed (`commit_sha`).
    pub commit_sha: Option<String>,
    /// Git ref that was analysed, `refs/heads/main` or `main` (`ref`).
    pub git_ref: Option<String>,
    /// Analysis category: one upload per (repository, commit, category) (`category`).
    pub category: Option<String>,
    /// Absolute path (or `file://` URI) of the checkout the tool ran in (`checkout_uri`).
    pub checkout_uri: Option<String>,
    /// Who ran the analysis (`invoked_by`).
    pub invoked_by: Option<String>,
}

impl UploadContext {
    /// The query parameters an upload takes, with the field each fills.
    pub const PARAMETERS: [&'static str; 8] = [
        "scan_id",
        "repository_uri",
        "repository",
        "commit_sha",
        "ref",
        "category",
        "checkout_uri",
        "invoked_by",
    ];

    /// Sets parameter `name`; `false` when no parameter has that name.
    pub fn set(&mut self, name: &str, value: &str) -> bool {
        let value = value.trim();
        let value = (!value.is_empty()).then(|| value.to_string());
        let slot = match name {
            "scan_id" => &mut self.scan_id,
            "repository_uri" => &mut self.repository_uri,
            "repository" => &mut self.repository,
            "commit_sha" => &mut self.commit_sha,
            "ref" => &mut self.git_ref,
            "category" => &mut self.category,
            "checkout_uri" => &mut self.checkout_uri,
            "invoked_by" => &mut self.invoked_by,
            _ => return false,
        };
        *slot = value;
        true
    }
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> InvalidMessage {
    InvalidMessage {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Parses a SARIF 2.1.0 log uploaded without context.
pub fn parse(body: &[u8], received_at: i64) -> Result<SarifRecords, InvalidMessage> {
    parse_with(body, received_at, &UploadContext::default())
}

/// Parses a SARIF 2.1.0 log uploaded with `ctx`.
pub fn parse_with(
    body: &[u8],
    received_at: i64,
    ctx: &UploadContext,
) -> Result<SarifRecords, InvalidMessage> {
    let log: Value =
        serde_json::from_slice(body).map_err(|e| invalid("$", format!("not valid JSON: {e}")))?;
    let obj = log
        .as_object()
        .ok_or_else(|| invalid("$", "expected a SARIF log object"))?;
    match obj.get("version").and_then(Value::as_str) {
        Some("2.1.0") => {}
        Some(v) => {
            return Err(invalid(
                "version",
                format!("SARIF {v} is not supported (2.1.0 is)"),
            ))
        }
        None => return Err(invalid("version", "missing: expected \"2.1.0\"")),
    }
    let runs = obj
        .get("runs")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("runs", "expected an array of runs"))?;
    // The scan client names its run once for the whole log.
    let log_run_guid = obj
        .get("inlineExternalProperties")
        .and_then(Value::as_array)
        .and_then(|props| {
            props
                .iter()
                .find_map(|p| p.get("runGuid").and_then(Value::as_str))
        })
        .map(str::trim)
        .filter(|g| !g.is_empty());
    let mut out = SarifRecords::default();
    for (i, run) in runs.iter().enumerate() {
        let path = format!("runs[{i}]");
        if !run.is_object() {
            return Err(invalid(&path, "expected an object"));
        }
        parse_run(run, &path, received_at, ctx, log_run_guid, &mut out)?;
    }
    Ok(out)
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(v, |v, k| v.get(*k))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// A region's optional integer (`startColumn`, `endLine`, …): 1..=i32::MAX or absent.
fn region_number(
    region: Option<&Value>,
    key: &str,
    field: impl Fn() -> String,
) -> Result<Option<i32>, InvalidMessage> {
    match region.and_then(|r| r.get(key)) {
        None | Some(Value::Null) => Ok(None),
        Some(n) => positive_i32(n)
            .map(Some)
            .map_err(|reason| invalid(field(), reason)),
    }
}

fn parse_run(
    run_v: &Value,
    path: &str,
    received_at: i64,
    ctx: &UploadContext,
    log_run_guid: Option<&str>,
    out: &mut SarifRecords,
) -> Result<(), InvalidMessage> {
    let driver = run_v
        .get("tool")
        .and_then(|t| t.get("driver"))
        .ok_or_else(|| invalid(format!("{path}.tool.driver"), "missing"))?;
    let tool = str_at(driver, &["name"])
        .ok_or_else(|| invalid(format!("{path}.tool.driver.name"), "missing"))?
        .to_string();
    let scanner = str_at(driver, &["fullName"]).unwrap_or(&tool).to_string();
    let vcp = run_v
        .get("versionControlProvenance")
        .and_then(Value::as_array)
        .and_then(|a| a.first());
    let repository_uri = ctx.repository_uri.clone().or_else(|| {
        vcp.and_then(|v| str_at(v, &["repositoryUri"]))
            .map(str::to_string)
    });
    let repository_name = ctx.repository.clone().or_else(|| {
        repository_uri.as_deref().and_then(|u| {
            let name = u.trim_end_matches('/').rsplit(['/', ':']).next()?;
            let name = name.trim_end_matches(".git");
            (!name.is_empty()).then(|| name.to_string())
        })
    });
    let repo_key = repository::key(repository_uri.as_deref(), repository_name.as_deref());
    let commit = ctx.commit_sha.clone().or_else(|| {
        vcp.and_then(|v| str_at(v, &["revisionId"]))
            .map(str::to_string)
    });
    let (branch, pull_request) = match ctx.git_ref.as_deref() {
        Some(r) => branch_of_ref(r),
        None => (
            vcp.and_then(|v| str_at(v, &["branch"])).map(str::to_string),
            None,
        ),
    };
    let category = ctx
        .category
        .clone()
        .or_else(|| str_at(run_v, &["automationDetails", "id"]).map(str::to_string))
        .unwrap_or_default();
    let rules = driver.get("rules").and_then(Value::as_array);
    let results = match run_v.get("results") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(a)) => a.as_slice(),
        Some(_) => return Err(invalid(format!("{path}.results"), "expected an array")),
    };
    let scan_id = ctx
        .scan_id
        .clone()
        .or_else(|| log_run_guid.map(str::to_string))
        .or_else(|| str_at(run_v, &["automationDetails", "guid"]).map(str::to_string))
        .or_else(|| str_at(run_v, &["properties", "runGuid"]).map(str::to_string))
        .unwrap_or_else(|| match (&repo_key, &commit) {
            (Some(repo), Some(commit)) => stable_id(
                "io.secpipe.scan.Analysis",
                &["repo", repo, commit, &category, &tool],
            ),
            _ => {
                let content = serde_json::to_string(results).unwrap_or_default();
                let version = str_at(driver, &["version"]).unwrap_or_default();
                stable_id(
                    "io.secpipe.scan.Analysis",
                    &["content", &tool, version, &category, &content],
                )
            }
        });
    let roots = checkout_roots(run_v, ctx);

    let mut counts = [0i64; 4]; // critical, high, medium, low
    let mut occurrences: HashMap<String, u32> = HashMap::new();
    for (j, result) in results.iter().enumerate() {
        let rpath = format!("{path}.results[{j}]");
        if !result.is_object() {
            return Err(invalid(rpath, "expected an object"));
        }
        // Only a lookup: an index that is -1 (SARIF's "none"), negative or past the rules
        // finds no rule, as an absent one does.
        let rule_index = result
            .get("ruleIndex")
            .and_then(Value::as_u64)
            .and_then(|i| usize::try_from(i).ok());
        let rule = rules.and_then(|r| match rule_index {
            Some(i) => r.get(i),
            None => {
                let id = result.get("ruleId").and_then(Value::as_str)?;
                r.iter()
                    .find(|r| r.get("id").and_then(Value::as_str) == Some(id))
            }
        });
        let rule_id = result
            .get("ruleId")
            .and_then(Value::as_str)
            .or_else(|| rule.and_then(|r| r.get("id")).and_then(Value::as_str))
            .unwrap_or_default()
            .to_string();
        let level = result
            .get("level")
            .and_then(Value::as_str)
            .or_else(|| rule.and_then(|r| str_at(r, &["defaultConfiguration", "level"])))
            .unwrap_or("warning");
        if !Finding::LEVELS.contains(&level) {
            return Err(invalid(
                format!("{rpath}.level"),
                format!("'{level}' is not one of none, note, warning, error"),
            ));
        }
        let message = str_at(result, &["message", "text"])
            .or_else(|| str_at(result, &["message", "markdown"]))
            .or_else(|| str_at(result, &["message", "id"]))
            .unwrap_or_default()
            .to_string();
        let location = result
            .get("locations")
            .and_then(Value::as_array)
            .and_then(|l| l.first())
            .and_then(|l| l.get("physicalLocation"));
        let artifact = location.and_then(|l| l.get("artifactLocation"));
        let file = artifact
            .and_then(|a| str_at(a, &["uri"]))
            .map(|uri| relative_path(uri, &roots, repository_name.as_deref()))
            .unwrap_or_default();
        let region = location.and_then(|l| l.get("region"));
        let region_path = |key: &str| format!("{rpath}.locations[0].physicalLocation.region.{key}");
        let line = region_number(region, "startLine", || region_path("startLine"))?;
        let start_column = region_number(region, "startColumn", || region_path("startColumn"))?;
        let end_line = region_number(region, "endLine", || region_path("endLine"))?;
        let end_column = region_number(region, "endColumn", || region_path("endColumn"))?;
        let fingerprint = first_fingerprint(result.get("fingerprints"))
            .or_else(|| first_fingerprint(result.get("partialFingerprints")));
        let severity = severity(result, rule, level);
        let bucket = match severity {
            "critical" => 0,
            "high" => 1,
            "medium" => 2,
            _ => 3,
        };
        counts[bucket] = counts[bucket].saturating_add(1);
        let mut identity = FindingIdentity {
            scan_id: &scan_id,
            tool: &tool,
            rule_id: &rule_id,
            file: &file,
            line,
            start_column,
            end_line,
            end_column,
            fingerprint: fingerprint.as_deref(),
            occurrence: 0,
        };
        let seen = occurrences
            .entry(Finding::derive_id(&identity))
            .or_insert(0);
        identity.occurrence = *seen;
        *seen += 1;
        out.findings.push(Finding {
            finding_id: Finding::derive_id(&identity),
            scan_id: scan_id.clone(),
            tool: tool.clone(),
            rule_id,
            level: level.to_string(),
            severity: severity.to_string(),
            message,
            file,
            line,
            start_column,
            end_line,
            end_column,
            fingerprint,
            repository: repo_key.clone(),
            category: category.clone(),
            received_at,
        });
        out.paths.push(rpath);
    }
    let [critical, high, medium, low] = counts;
    out.reports.push(ScanReport {
        id: scan_id,
        scan_mode: str_at(run_v, &["properties", "scan_mode"]).map(str::to_string),
        tool: Some(tool.clone()),
        repo_context: RepoContext {
            branch,
            pull_request,
            repository_name,
            repository_uri,
            revision_id: commit,
            invoked_by: ctx
                .invoked_by
                .clone()
                .or_else(|| str_at(run_v, &["properties", "invokedBy"]).map(str::to_string)),
        },
        repo_type: Vec::new(),
        team: None,
        report_summary: vec![ScannerSummary {
            scanner,
            tool: Some(tool),
            critical,
            high,
            medium,
            low,
            status: if critical + high > 0 {
                repository::FAILED
            } else {
                repository::PASSED
            }
            .into(),
        }],
        origin: "sarif".into(),
        received_at,
    });
    Ok(())
}

/// The branch a git ref names, and whether it is a pull request's: `refs/heads/main` → `main`;
/// `refs/pull/12/merge` → `pull/12/merge`, a pull request; anything else as given.
pub fn branch_of_ref(r: &str) -> (Option<String>, Option<bool>) {
    let r = r.trim();
    if let Some(b) = r.strip_prefix("refs/heads/") {
        return (Some(b.to_string()), Some(false));
    }
    for prefix in ["refs/pull/", "refs/merge-requests/"] {
        if r.starts_with(prefix) {
            return (Some(r.trim_start_matches("refs/").to_string()), Some(true));
        }
    }
    ((!r.is_empty()).then(|| r.to_string()), None)
}

/// Where the checkout lived on the machine that ran the tool, as path prefixes ending in `/`:
/// the upload's `checkout_uri`, the run's `originalUriBaseIds`, and its invocations'
/// `workingDirectory`.
fn checkout_roots(run: &Value, ctx: &UploadContext) -> Vec<String> {
    let mut roots: Vec<String> = Vec::new();
    let mut add = |uri: &str| {
        let mut p = strip_file_scheme(&percent_decode(uri));
        if p.is_empty() {
            return;
        }
        if !p.ends_with('/') {
            p.push('/');
        }
        if !roots.contains(&p) {
            roots.push(p);
        }
    };
    if let Some(c) = &ctx.checkout_uri {
        add(c);
    }
    if let Some(bases) = run.get("originalUriBaseIds").and_then(Value::as_object) {
        for base in bases.values() {
            if let Some(u) = str_at(base, &["uri"]) {
                add(u);
            }
        }
    }
    if let Some(invocations) = run.get("invocations").and_then(Value::as_array) {
        for inv in invocations {
            if let Some(u) = str_at(inv, &["workingDirectory", "uri"]) {
                add(u);
            }
        }
    }
    // Longest first, so a nested root wins over its parent.
    roots.sort_by_key(|r| std::cmp::Reverse(r.len()));
    roots
}

fn strip_file_scheme(uri: &str) -> String {
    match uri.strip_prefix("file://") {
        // file:///abs, file://localhost/abs
        Some(rest) => match rest.find('/') {
            Some(i) => rest[i..].to_string(),
            None => rest.to_string(),
        },
        None => uri.to_string(),
    }
}

/// A result's file as a path relative to the repository root. A relative URI (with or without a
/// `uriBaseId`) already is one. An absolute one (`file:///root/app/src/a.py`, `/root/app/src/a.py`) loses the
/// longest checkout root that prefixes it (see [`checkout_roots`]), else everything up to the
/// last path segment equal to the repository's name; otherwise it is kept, without `file://`.
/// Percent-encoding is decoded and a leading `./` dropped.
pub fn relative_path(uri: &str, roots: &[String], repository_name: Option<&str>) -> String {
    let decoded = percent_decode(uri);
    let is_absolute = decoded.starts_with("file:") || decoded.starts_with('/');
    if !is_absolute {
        return decoded.trim_start_matches("./").to_string();
    }
    let path = strip_file_scheme(&decoded);
    for root in roots {
        if let Some(rel) = path.strip_prefix(root.as_str()) {
            return rel.to_string();
        }
    }
    if let Some(name) = repository_name.filter(|n| !n.is_empty()) {
        let marker = format!("/{name}/");
        if let Some(i) = path.rfind(&marker) {
            return path[i + marker.len()..].to_string();
        }
    }
    path
}

/// Decodes `%XX` escapes; malformed escapes and invalid UTF-8 are kept as they were.
fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_string())
}

/// A SARIF region number (`startLine`, `startColumn`, …): numbered from 1 (SARIF 2.1.0
/// §3.30.5), and the schema stores them as an `int`, so 1..=i32::MAX. Errors: `"{n} is outside
/// 1..=2147483647 (SARIF lines start at 1)"`, or `"expected an integer"`.
fn positive_i32(v: &Value) -> Result<i32, String> {
    const LINES: std::ops::RangeInclusive<i64> = 1..=i32::MAX as i64;
    // An integer past i64 (a u64) is as out of range as one past i32.
    let n = v
        .as_i64()
        .or_else(|| v.as_u64().map(|_| i64::MAX))
        .ok_or("expected an integer")?;
    match i32::try_from(n) {
        Ok(line) if LINES.contains(&n) => Ok(line),
        _ => Err(format!(
            "{v} is outside {}..={} (SARIF lines start at 1)",
            LINES.start(),
            LINES.end()
        )),
    }
}

/// The value of the alphabetically first key, so the same result always gives the same one.
fn first_fingerprint(v: Option<&Value>) -> Option<String> {
    let map: &Map<String, Value> = v?.as_object()?;
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    keys.into_iter()
        .find_map(|k| map.get(k).and_then(Value::as_str))
        .map(str::to_string)
}

/// The severity of a result, one of [`Finding::SEVERITIES`]: the tool's own (`issue_severity`
/// on the result or its rule, as bandit and the scan client write it), else the rule's (or the
/// result's) numeric `security-severity` (>= 9 critical, >= 7 high, >= 4 medium, > 0 low, 0
/// info), else the level (error high, warning medium, note low, none info).
pub fn severity(result: &Value, rule: Option<&Value>, level: &str) -> &'static str {
    let named = str_at(result, &["properties", "issue_severity"])
        .or_else(|| rule.and_then(|r| str_at(r, &["properties", "issue_severity"])));
    if let Some(s) = named {
        match s.to_ascii_lowercase().as_str() {
            "critical" => return "critical",
            "high" | "error" => return "high",
            "medium" | "moderate" | "warning" => return "medium",
            "low" | "note" => return "low",
            "info" | "informational" | "none" | "undefined" => return "info",
            _ => {}
        }
    }
    let score_of = |v: Option<&Value>| {
        v.and_then(|p| p.get("properties"))
            .and_then(|p| p.get("security-severity"))
            .and_then(|s| {
                s.as_str()
                    .and_then(|s| s.trim().parse::<f64>().ok())
                    .or(s.as_f64())
            })
            .filter(|s| s.is_finite())
    };
    if let Some(score) = score_of(Some(result)).or_else(|| score_of(rule)) {
        return match score {
            s if s >= 9.0 => "critical",
            s if s >= 7.0 => "high",
            s if s >= 4.0 => "medium",
            s if s > 0.0 => "low",
            _ => "info",
        };
    }
    match level {
        "error" => "high",
        "warning" => "medium",
        "note" => "low",
        _ => "info",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const REPORT: &str = r#"{
      "version": "2.1.0",
      "runs": [{
        "tool": {"driver": {"name": "njsscan", "fullName": "Source code analyzer for JavaScript",
          "rules": [{"id": "node_sqli", "defaultConfiguration": {"level": "error"},
                     "properties": {"security-severity": "9.1"}},
                    {"id": "node_xss"}]}},
        "automationDetails": {"guid": "1b6a3c52-4d8e-4a57-9c1e-0c8d4b7f2a10"},
        "versionControlProvenance": [{"repositoryUri": "https://git.example.com/shop/shop-web.git",
          "revisionId": "a1b2c3d", "branch": "main"}],
        "results": [
          {"ruleId": "node_sqli", "message": {"text": "SQL injection"},
           "locations": [{"physicalLocation": {"artifactLocation": {"uri": "src/db.js"},
                                               "region": {"startLine": 42}}}],
           "partialFingerprints": {"primaryLocationLineHash": "abc123:1"}},
          {"ruleId": "node_xss", "level": "warning", "message": {"text": "XSS"},
           "locations": [{"physicalLocation": {"artifactLocation": {"uri": "src/view.js"}}}]},
          {"ruleId": "node_xss", "level": "note", "message": {"text": "maybe"},
           "properties": {"issue_severity": "HIGH"}}
        ]
      }]
    }"#;

    #[test]
    fn one_summary_per_run_and_one_finding_per_result() {
        let out = parse(REPORT.as_bytes(), 5).unwrap();
        assert_eq!(out.reports.len(), 1);
        assert_eq!(out.findings.len(), 3);
        let r = &out.reports[0];
        assert_eq!(r.id, "1b6a3c52-4d8e-4a57-9c1e-0c8d4b7f2a10");
        assert_eq!(r.repo_context.repository_name.as_deref(), Some("shop-web"));
        assert_eq!(r.team, None, "the Ingestor completes the team");
        assert_eq!(
            r.repository_key().as_deref(),
            Some("git.example.com/shop/shop-web")
        );
        let s = &r.report_summary[0];
        assert_eq!(s.scanner, "Source code analyzer for JavaScript");
        // security-severity 9.1 -> critical; warning -> medium; issue_severity HIGH -> high.
        assert_eq!((s.critical, s.high, s.medium, s.low), (1, 1, 1, 0));
        assert_eq!(s.status, "❌");
        let severities: Vec<&str> = out.findings.iter().map(|f| f.severity.as_str()).collect();
        assert_eq!(severities, vec!["critical", "medium", "high"]);
        let f = &out.findings[0];
        assert_eq!(
            (f.rule_id.as_str(), f.level.as_str()),
            ("node_sqli", "error")
        );
        assert_eq!((f.file.as_str(), f.line), ("src/db.js", Some(42)));
        assert_eq!(f.fingerprint.as_deref(), Some("abc123:1"));
        assert_eq!(f.scan_id, r.id);
    }

    #[test]
    fn the_same_report_gives_the_same_finding_ids() {
        let a = parse(REPORT.as_bytes(), 1).unwrap();
        let b = parse(REPORT.as_bytes(), 2).unwrap();
        let ids = |o: &SarifRecords| {
            o.findings
                .iter()
                .map(|f| f.finding_id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&a), ids(&b));
        let mut unique = ids(&a);
        unique.dedup();
        assert_eq!(unique.len(), 3);
    }

    #[test]
    fn bad_reports_name_the_field() {
        assert_eq!(
            parse(br#"{"version":"2.0.0","runs":[]}"#, 0)
                .unwrap_err()
                .field,
            "version"
        );
        assert_eq!(
            parse(br#"{"version":"2.1.0"}"#, 0).unwrap_err().field,
            "runs"
        );
        let e = parse(br#"{"version":"2.1.0","runs":[{"tool":{}}]}"#, 0).unwrap_err();
        assert_eq!(e.field, "runs[0].tool.driver");
        let e = parse(
            br#"{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"x"}},"results":[{"level":"fatal"}]}]}"#,
            0,
        )
        .unwrap_err();
        assert_eq!(e.field, "runs[0].results[0].level");
    }

    #[test]
    fn start_lines_outside_one_to_i32_max_are_rejected_with_the_field_path() {
        let with_line = |line: &str| {
            let body = format!(
                r#"{{"version":"2.1.0","runs":[{{"tool":{{"driver":{{"name":"x"}}}},"results":[{{"ruleIndex":-1,"locations":[{{"physicalLocation":{{"region":{{"startLine":{line}}}}}}}]}}]}}]}}"#
            );
            parse(body.as_bytes(), 0)
        };
        assert_eq!(with_line("1").unwrap().findings[0].line, Some(1));
        assert_eq!(with_line("null").unwrap().findings[0].line, None);
        assert_eq!(
            with_line("2147483647").unwrap().findings[0].line,
            Some(i32::MAX)
        );
        for line in [
            "0",
            "-1",
            "2147483648",
            "4611686018427387905",
            "-9223372036854775808",
            "18446744073709551615",
            "1.5",
            "\"12\"",
        ] {
            let e = with_line(line).unwrap_err();
            assert_eq!(
                e.field, "runs[0].results[0].locations[0].physicalLocation.region.startLine",
                "{line}: {e}"
            );
        }
    }

    fn log(results: &str, extra_run: &str, extra_log: &str) -> String {
        format!(
            r#"{{"version":"2.1.0",{extra_log}"runs":[{{"tool":{{"driver":{{"name":"bandit"}}}},{extra_run}"results":[{results}]}}]}}"#
        )
    }

    fn result(line: u32, column: u32) -> String {
        format!(
            r#"{{"ruleId":"B602","level":"error","message":{{"text":"shell"}},"properties":{{"issue_severity":"HIGH"}},
               "locations":[{{"physicalLocation":{{"artifactLocation":{{"uri":"file:///root/work/shop-web/src/app.py"}},
               "region":{{"startLine":{line},"startColumn":{column}}}}}}}]}}"#
        )
    }

    #[test]
    fn two_results_of_one_rule_on_one_line_stay_two_findings() {
        let body = log(
            &[result(7, 5), result(7, 30), result(7, 30)].join(","),
            "",
            "",
        );
        let out = parse(body.as_bytes(), 0).unwrap();
        let mut ids: Vec<&str> = out.findings.iter().map(|f| f.finding_id.as_str()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(
            ids.len(),
            3,
            "distinct columns and a repeated result keep their ids"
        );
        assert_eq!(out.reports[0].report_summary[0].high, 3);
        assert_eq!(out.findings[1].start_column, Some(30));
        assert_eq!(
            out.paths,
            vec![
                "runs[0].results[0]",
                "runs[0].results[1]",
                "runs[0].results[2]"
            ]
        );
    }

    #[test]
    fn a_reupload_of_the_same_output_gets_the_same_scan_and_finding_ids() {
        let body = log(
            &result(3, 1),
            r#""invocations":[{"endTimeUtc":"2026-01-01T00:00:00Z"}],"#,
            "",
        );
        let again = body.replace("2026-01-01", "2026-01-02");
        let (a, b) = (
            parse(body.as_bytes(), 1).unwrap(),
            parse(again.as_bytes(), 2).unwrap(),
        );
        assert_eq!(a.reports[0].id, b.reports[0].id);
        assert_eq!(a.findings[0].finding_id, b.findings[0].finding_id);
        let other = log(&result(4, 1), "", "");
        assert_ne!(
            parse(other.as_bytes(), 1).unwrap().reports[0].id,
            a.reports[0].id
        );
    }

    #[test]
    fn the_scan_id_comes_from_the_context_then_the_run_guid_then_automation_details() {
        let with_both = log(
            &result(1, 1),
            r#""automationDetails":{"guid":"per-report"},"#,
            r#""inlineExternalProperties":[{"guid":"log","runGuid":"run-uuid"}],"#,
        );
        assert_eq!(
            parse(with_both.as_bytes(), 0).unwrap().reports[0].id,
            "run-uuid"
        );
        let ctx = UploadContext {
            scan_id: Some("given".into()),
            ..Default::default()
        };
        let out = parse_with(with_both.as_bytes(), 0, &ctx).unwrap();
        assert_eq!(
            (out.reports[0].id.as_str(), out.findings[0].scan_id.as_str()),
            ("given", "given")
        );
        let only_details = log(
            &result(1, 1),
            r#""automationDetails":{"guid":"per-report"},"#,
            "",
        );
        assert_eq!(
            parse(only_details.as_bytes(), 0).unwrap().reports[0].id,
            "per-report"
        );
        // Repository and commit: one analysis per (repository, commit, category, tool).
        let ctx = |category: &str| UploadContext {
            repository_uri: Some("https://github.com/Shop/shop-web.git".into()),
            commit_sha: Some("abc".into()),
            git_ref: Some("refs/heads/main".into()),
            category: Some(category.into()),
            ..Default::default()
        };
        let plain = log(&result(1, 1), "", "");
        let a = parse_with(plain.as_bytes(), 0, &ctx("py")).unwrap();
        let b = parse_with(log(&result(9, 9), "", "").as_bytes(), 0, &ctx("py")).unwrap();
        let c = parse_with(plain.as_bytes(), 0, &ctx("js")).unwrap();
        assert_eq!(a.reports[0].id, b.reports[0].id);
        assert_ne!(a.reports[0].id, c.reports[0].id);
        let r = &a.reports[0];
        assert_eq!(r.repo_context.branch.as_deref(), Some("main"));
        assert_eq!(r.repo_context.revision_id.as_deref(), Some("abc"));
        assert_eq!(
            a.findings[0].repository.as_deref(),
            Some("github.com/shop/shop-web")
        );
        assert_eq!(a.findings[0].category, "py");
    }

    #[test]
    fn paths_become_relative_to_the_repository_root() {
        let roots = vec!["/root/work/shop-web/".to_string()];
        assert_eq!(
            relative_path("file:///root/work/shop-web/src/a.py", &roots, None),
            "src/a.py"
        );
        assert_eq!(
            relative_path("/root/work/shop-web/src/a.py", &roots, None),
            "src/a.py"
        );
        assert_eq!(relative_path("src/a%20b.py", &[], None), "src/a b.py");
        assert_eq!(relative_path("./src/a.py", &[], None), "src/a.py");
        assert_eq!(
            relative_path("file:///builds/x/shop-web/lib/b.py", &[], Some("shop-web")),
            "lib/b.py"
        );
        assert_eq!(
            relative_path("file:///elsewhere/c.py", &roots, None),
            "/elsewhere/c.py"
        );
        // The run's own roots: originalUriBaseIds and the invocation's working directory.
        let body = log(
            &result(2, 2),
            r#""invocations":[{"workingDirectory":{"uri":"file:///root/work/shop-web"}}],"#,
            "",
        );
        assert_eq!(
            parse(body.as_bytes(), 0).unwrap().findings[0].file,
            "src/app.py"
        );
    }

    #[test]
    fn severity_prefers_the_tool_then_the_score_then_the_level() {
        let r = |props: &str| {
            serde_json::from_str::<Value>(&format!(r#"{{"properties":{props}}}"#)).unwrap()
        };
        assert_eq!(
            severity(&r(r#"{"issue_severity":"LOW"}"#), None, "error"),
            "low"
        );
        assert_eq!(
            severity(&r(r#"{"security-severity":"9.8"}"#), None, "note"),
            "critical"
        );
        assert_eq!(severity(&r("{}"), None, "note"), "low");
        assert_eq!(severity(&r("{}"), None, "none"), "info");
        assert_eq!(severity(&r("{}"), None, "warning"), "medium");
    }

    #[test]
    fn refs_name_branches_and_pull_requests() {
        assert_eq!(
            branch_of_ref("refs/heads/main"),
            (Some("main".into()), Some(false))
        );
        assert_eq!(
            branch_of_ref("refs/pull/12/merge"),
            (Some("pull/12/merge".into()), Some(true))
        );
        assert_eq!(branch_of_ref("dev"), (Some("dev".into()), None));
    }
}
