//! SARIF 2.1.0 reports (`POST /v1/sarif`, `secpipe produce sarif`): one scan-result summary per
//! run and one finding per result. The run's `automationDetails.guid` is the scan's id, the same
//! id the scan tool's end-of-scan message carries, so summaries and findings join on it.
use secpipe_schemas::scan::{Finding, RepoContext, ScanReport, ScannerSummary};
use serde_json::{Map, Value};

use crate::scan_report::{team_from_uri, InvalidMessage};

/// What one SARIF report turns into.
#[derive(Debug, Default, PartialEq)]
pub struct SarifRecords {
    pub reports: Vec<ScanReport>,
    pub findings: Vec<Finding>,
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> InvalidMessage {
    InvalidMessage {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Parses a SARIF 2.1.0 log.
pub fn parse(body: &[u8], received_at: i64) -> Result<SarifRecords, InvalidMessage> {
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
    let mut out = SarifRecords::default();
    for (i, run) in runs.iter().enumerate() {
        let path = format!("runs[{i}]");
        let run = run
            .as_object()
            .ok_or_else(|| invalid(&path, "expected an object"))?;
        parse_run(run, &path, received_at, &mut out)?;
    }
    Ok(out)
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(v, |v, k| v.get(*k))
        .and_then(Value::as_str)
}

fn parse_run(
    run: &Map<String, Value>,
    path: &str,
    received_at: i64,
    out: &mut SarifRecords,
) -> Result<(), InvalidMessage> {
    let run_v = Value::Object(run.clone());
    let driver = run_v
        .get("tool")
        .and_then(|t| t.get("driver"))
        .ok_or_else(|| invalid(format!("{path}.tool.driver"), "missing"))?;
    let tool = driver
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{path}.tool.driver.name"), "missing"))?
        .to_string();
    let scanner = driver
        .get("fullName")
        .and_then(Value::as_str)
        .unwrap_or(&tool)
        .to_string();
    let scan_id = str_at(&run_v, &["automationDetails", "guid"])
        .or_else(|| str_at(&run_v, &["properties", "runGuid"]))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let vcp = run_v
        .get("versionControlProvenance")
        .and_then(Value::as_array)
        .and_then(|a| a.first());
    let repository_uri = vcp
        .and_then(|v| str_at(v, &["repositoryUri"]))
        .map(str::to_string);
    let repository_name = repository_uri.as_deref().and_then(|u| {
        u.trim_end_matches('/')
            .rsplit(['/', ':'])
            .next()
            .map(|s| s.trim_end_matches(".git").to_string())
    });
    let rules = driver.get("rules").and_then(Value::as_array);

    let mut counts = [0i64; 4]; // critical, high, medium, low
    let results = run_v
        .get("results")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
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
        let file = location
            .and_then(|l| str_at(l, &["artifactLocation", "uri"]))
            .unwrap_or_default()
            .to_string();
        let line = match location
            .and_then(|l| l.get("region"))
            .and_then(|r| r.get("startLine"))
        {
            None | Some(Value::Null) => None,
            Some(n) => Some(start_line(n).map_err(|reason| {
                invalid(
                    format!("{rpath}.locations[0].physicalLocation.region.startLine"),
                    reason,
                )
            })?),
        };
        let fingerprint = first_fingerprint(result.get("partialFingerprints"))
            .or_else(|| first_fingerprint(result.get("fingerprints")));
        let count = &mut counts[severity_index(result, rule, level)];
        *count = count.saturating_add(1);
        out.findings.push(Finding {
            finding_id: Finding::derive_id(&scan_id, &rule_id, &file, line, fingerprint.as_deref()),
            scan_id: scan_id.clone(),
            tool: tool.clone(),
            rule_id,
            level: level.to_string(),
            message,
            file,
            line,
            fingerprint,
            repository: repository_name.clone(),
            received_at,
        });
    }
    let [critical, high, medium, low] = counts;
    out.reports.push(ScanReport {
        id: scan_id,
        scan_mode: str_at(&run_v, &["properties", "scan_mode"]).map(str::to_string),
        tool: Some(tool.clone()),
        repo_context: RepoContext {
            branch: vcp.and_then(|v| str_at(v, &["branch"])).map(str::to_string),
            pull_request: None,
            repository_name,
            repository_uri: repository_uri.clone(),
            revision_id: vcp
                .and_then(|v| str_at(v, &["revisionId"]))
                .map(str::to_string),
            invoked_by: str_at(&run_v, &["properties", "invokedBy"]).map(str::to_string),
        },
        repo_type: Vec::new(),
        team: team_from_uri(repository_uri.as_deref()),
        report_summary: vec![ScannerSummary {
            scanner,
            tool: Some(tool),
            critical,
            high,
            medium,
            low,
            status: if critical + high > 0 { "❌" } else { "✅" }.into(),
        }],
        origin: "sarif".into(),
        received_at,
    });
    Ok(())
}

/// A SARIF `startLine`: lines are numbered from 1 (SARIF 2.1.0 §3.30.5), and the schema stores
/// them as an `int`, so 1..=i32::MAX. Errors: `"{n} is outside 1..=2147483647 (SARIF lines
/// start at 1)"`, or `"expected an integer"`.
fn start_line(v: &Value) -> Result<i32, String> {
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
    let map = v?.as_object()?;
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    keys.into_iter()
        .find_map(|k| map.get(k).and_then(Value::as_str))
        .map(str::to_string)
}

/// 0 critical, 1 high, 2 medium, 3 low. A scanner's own severity wins (`issue_severity` as the
/// scan tool writes it, then GitHub's numeric `security-severity` on the rule), else the level.
fn severity_index(result: &Value, rule: Option<&Value>, level: &str) -> usize {
    let named = str_at(result, &["properties", "issue_severity"])
        .or_else(|| rule.and_then(|r| str_at(r, &["properties", "issue_severity"])));
    if let Some(s) = named {
        return match s.to_ascii_lowercase().as_str() {
            "critical" => 0,
            "high" => 1,
            "medium" | "moderate" => 2,
            _ => 3,
        };
    }
    let score = rule
        .and_then(|r| r.get("properties"))
        .and_then(|p| p.get("security-severity"))
        .and_then(|s| {
            s.as_str()
                .and_then(|s| s.parse::<f64>().ok())
                .or(s.as_f64())
        });
    if let Some(score) = score {
        return match score {
            s if s >= 9.0 => 0,
            s if s >= 7.0 => 1,
            s if s >= 4.0 => 2,
            _ => 3,
        };
    }
    match level {
        "error" => 1,
        "warning" => 2,
        _ => 3,
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
        assert_eq!(r.team.as_deref(), Some("shop"));
        let s = &r.report_summary[0];
        assert_eq!(s.scanner, "Source code analyzer for JavaScript");
        // security-severity 9.1 -> critical; warning -> medium; issue_severity HIGH -> high.
        assert_eq!((s.critical, s.high, s.medium, s.low), (1, 1, 1, 0));
        assert_eq!(s.status, "❌");
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
}
