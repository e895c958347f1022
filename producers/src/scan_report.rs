//! The end-of-scan message scan tools POST to `/track`, accepted as they send it today: unknown
//! fields are ignored, a missing `id` gets a fresh UUID v4, the camelCase keys of `repo_context`
//! are mapped to the schema's names. Anything of the wrong type is rejected with the field's path.
//! A message without `report_summary` (the scan client first posts `{"id", "depscan_summary"}`
//! for the same run) is accepted as a fragment of its scan: it counts for nothing until the
//! summary with the same id arrives. Statuses, scanner names and the team are completed by
//! [`crate::scan_settings::ScanSettings::complete`].
use secpipe_schemas::scan::{RepoContext, ScanReport, ScannerSummary};
use serde_json::{Map, Value};
use thiserror::Error;

use crate::plausible;

/// Why a message is not an end-of-scan summary.
#[derive(Debug, Error, PartialEq)]
#[error("{field}: {reason}")]
pub struct InvalidMessage {
    /// JSON path of the offending field, e.g. `report_summary.njsscan.high`.
    pub field: String,
    pub reason: String,
}

/// Findings one scanner may report in one scan: 0 to a billion. No real scan comes near the
/// bound, which keeps the sums of counts the scan-results processor keeps far from overflowing.
pub const FINDINGS: std::ops::RangeInclusive<i64> = 0..=1_000_000_000;

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> InvalidMessage {
    InvalidMessage {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Parses one message. `received_at` is stamped by the caller (microseconds, UTC).
pub fn parse(body: &[u8], received_at: i64) -> Result<ScanReport, InvalidMessage> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| invalid("$", format!("not valid JSON: {e}")))?;
    from_json(&value, received_at)
}

/// Converts an already-parsed message.
pub fn from_json(value: &Value, received_at: i64) -> Result<ScanReport, InvalidMessage> {
    let obj = value
        .as_object()
        .ok_or_else(|| invalid("$", "expected a JSON object"))?;
    let id = match obj.get("id") {
        None | Some(Value::Null) => uuid::Uuid::new_v4().to_string(),
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        Some(_) => return Err(invalid("id", "expected a non-empty string")),
    };
    let repo_context = match obj.get("repo_context") {
        None | Some(Value::Null) => RepoContext::default(),
        Some(Value::Object(rc)) => repo_context(rc)?,
        Some(_) => return Err(invalid("repo_context", "expected an object")),
    };
    let repo_type = match obj.get("repo_type") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| invalid(format!("repo_type[{i}]"), "expected a string"))
            })
            .collect::<Result<_, _>>()?,
        // Some tools send a single language as a plain string.
        Some(Value::String(s)) => vec![s.clone()],
        Some(_) => return Err(invalid("repo_type", "expected a list of strings")),
    };
    let report_summary = match obj.get("report_summary") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(scanners)) => scanners
            .iter()
            .map(|(name, v)| scanner_summary(name, v))
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(invalid(
                "report_summary",
                "expected an object keyed by scanner name",
            ))
        }
    };
    let team = opt_string(obj, "team", "team")?;
    Ok(ScanReport {
        id,
        scan_mode: opt_string(obj, "scan_mode", "scan_mode")?,
        tool: opt_string(obj, "tool", "tool")?,
        repo_context,
        repo_type,
        team,
        report_summary,
        origin: "track".into(),
        received_at,
    })
}

fn repo_context(rc: &Map<String, Value>) -> Result<RepoContext, InvalidMessage> {
    let pull_request = match first(rc, &["pullRequest", "pull_request"]) {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Some(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") || s.is_empty() => Some(false),
        Some(_) => {
            return Err(invalid(
                "repo_context.pullRequest",
                "expected a boolean (or \"true\"/\"false\")",
            ))
        }
    };
    let s = |keys: &[&str]| -> Result<Option<String>, InvalidMessage> {
        match first(rc, keys) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(invalid(
                format!("repo_context.{}", keys[0]),
                "expected a string",
            )),
        }
    };
    Ok(RepoContext {
        branch: s(&["branch"])?,
        pull_request,
        repository_name: s(&["repositoryName", "repository_name"])?,
        // The reference's use cases call it repositoryUrl in places; accept both spellings.
        repository_uri: s(&["repositoryUri", "repositoryUrl", "repository_uri"])?,
        revision_id: s(&["revisionId", "revision_id"])?,
        invoked_by: s(&["invokedBy", "invoked_by"])?,
    })
}

fn scanner_summary(name: &str, v: &Value) -> Result<ScannerSummary, InvalidMessage> {
    let path = format!("report_summary.{name}");
    let obj = v
        .as_object()
        .ok_or_else(|| invalid(&path, "expected an object"))?;
    let count = |key: &str| -> Result<i64, InvalidMessage> {
        let field = || format!("{path}.{key}");
        let n = match obj.get(key) {
            None | Some(Value::Null) => return Ok(0),
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
            Some(_) => None,
        };
        let n = n.ok_or_else(|| invalid(field(), "expected a non-negative integer"))?;
        let what = "findings of one scanner in one scan";
        plausible::in_range(format_args!("{path}.{key}"), n, &FINDINGS, what)?;
        Ok(n)
    };
    Ok(ScannerSummary {
        scanner: name.to_string(),
        tool: opt_string(obj, "tool", &format!("{path}.tool"))?,
        critical: count("critical")?,
        high: count("high")?,
        medium: count("medium")?,
        low: count("low")?,
        status: opt_string(obj, "status", &format!("{path}.status"))?.unwrap_or_default(),
    })
}

fn first<'a>(obj: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().find_map(|k| obj.get(*k))
}

fn opt_string(
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<String>, InvalidMessage> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(path, "expected a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &str = r#"{
        "scan_mode": "ci",
        "tool": "@ShiftLeft/scan",
        "id": "1b6a3c52-4d8e-4a57-9c1e-0c8d4b7f2a10",
        "repo_context": {
            "branch": "main", "pullRequest": false, "repositoryName": "shop-web",
            "repositoryUri": "https://git.example.com/shop/shop-web", "revisionId": "a1b2c3d",
            "invokedBy": "bob", "somethingNew": 42
        },
        "repo_type": ["nodejs"],
        "report_summary": {
            "Source code analyzer for JavaScript": {
                "critical": 0, "high": 3, "medium": 1, "low": 7, "status": "❌",
                "tool": "Source code analyzer for JavaScript"
            },
            "Secrets Audit": {"critical": 0, "high": 0, "medium": 0, "low": 0, "status": "✅", "tool": "Secrets Audit"}
        },
        "unknown_top_level": {"ignored": true}
    }"#;

    #[test]
    fn message_as_scan_tools_send_it_is_accepted_unchanged() {
        let r = parse(MESSAGE.as_bytes(), 7).unwrap();
        assert_eq!(r.id, "1b6a3c52-4d8e-4a57-9c1e-0c8d4b7f2a10");
        assert_eq!(r.repo_context.pull_request, Some(false));
        assert_eq!(r.repo_context.invoked_by.as_deref(), Some("bob"));
        assert_eq!(r.report_summary.len(), 2);
        let js = r
            .report_summary
            .iter()
            .find(|s| s.scanner == "Source code analyzer for JavaScript")
            .unwrap();
        assert_eq!((js.high, js.low, js.status.as_str()), (3, 7, "❌"));
        assert_eq!(r.received_at, 7);
    }

    #[test]
    fn the_team_is_what_the_message_says() {
        let r = parse(MESSAGE.as_bytes(), 0).unwrap();
        assert_eq!(r.team, None);
        let r = parse(
            br#"{"team":"payments","repo_context":{"repositoryUri":"https://h/x/y"}}"#,
            0,
        )
        .unwrap();
        assert_eq!(r.team.as_deref(), Some("payments"));
    }

    #[test]
    fn a_message_without_summary_is_a_fragment_of_its_scan() {
        let r = parse(
            br#"{"id":"run-1","depscan_summary":[{"package":"lodash","severity":"HIGH"}]}"#,
            0,
        )
        .unwrap();
        assert_eq!(r.id, "run-1");
        assert!(r.report_summary.is_empty());
    }

    #[test]
    fn missing_id_gets_a_fresh_uuid() {
        let r = parse(br#"{"tool":"x"}"#, 0).unwrap();
        assert_eq!(uuid::Uuid::parse_str(&r.id).unwrap().get_version_num(), 4);
    }

    #[test]
    fn wrong_types_are_rejected_with_the_field_path() {
        assert_eq!(parse(b"[1]", 0).unwrap_err().field, "$");
        assert_eq!(parse(b"{nope", 0).unwrap_err().field, "$");
        let e = parse(br#"{"report_summary":{"njs":{"high":-1}}}"#, 0).unwrap_err();
        assert_eq!(e.field, "report_summary.njs.high");
        let e = parse(br#"{"repo_context":{"pullRequest":3}}"#, 0).unwrap_err();
        assert_eq!(e.field, "repo_context.pullRequest");
        let e = parse(br#"{"id": 5}"#, 0).unwrap_err();
        assert_eq!(e.field, "id");
    }

    #[test]
    fn finding_counts_outside_zero_to_a_billion_are_rejected_with_the_field_path() {
        for count in ["0", "1000000000", "\"42\""] {
            let body = format!(r#"{{"report_summary":{{"njs":{{"low":{count}}}}}}}"#);
            assert!(parse(body.as_bytes(), 0).is_ok(), "{count}");
        }
        for count in [
            "-1",
            "1000000001",
            "4611686018427387905",
            "9223372036854775807",
            "-9223372036854775808",
            "18446744073709551615",
            "1.5",
            "\"-3\"",
        ] {
            let body = format!(r#"{{"report_summary":{{"njs":{{"low":{count}}}}}}}"#);
            let e = parse(body.as_bytes(), 0).unwrap_err();
            assert_eq!(e.field, "report_summary.njs.low", "{count}: {e}");
        }
    }
}
