//! Failed ad-hoc scans (`POST /v1/scan-failures`, `secpipe produce scan-failure`): which image,
//! which command, why, from where. A successful scan produces no event.
use secpipe_schemas::{
    failures::{Image, ScanFailure, COMMANDS, SOURCES},
    AvroRecord,
};
use serde_json::{Map, Value};

use crate::{plausible, scan_report::InvalidMessage};

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> InvalidMessage {
    InvalidMessage {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Parses one report of an ad-hoc scan. `Ok(None)` for a scan that succeeded.
pub fn parse(body: &[u8], received_at: i64) -> Result<Option<ScanFailure>, InvalidMessage> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| invalid("$", format!("not valid JSON: {e}")))?;
    from_json(&v, received_at)
}

/// Converts an already-parsed report.
pub fn from_json(v: &Value, received_at: i64) -> Result<Option<ScanFailure>, InvalidMessage> {
    let obj = v
        .as_object()
        .ok_or_else(|| invalid("$", "expected a JSON object"))?;
    match obj.get("status").and_then(Value::as_str) {
        None | Some("failed" | "failure" | "error") => {}
        Some("succeeded" | "success" | "ok") => return Ok(None),
        Some(other) => {
            return Err(invalid(
                "status",
                format!("'{other}' is neither failed nor succeeded"),
            ))
        }
    }
    let command = text(obj, "command")?
        .map(|c| c.trim().to_ascii_lowercase())
        .ok_or_else(|| invalid("command", "missing"))?;
    if !COMMANDS.contains(&command.as_str()) {
        return Err(invalid(
            "command",
            format!("'{command}' is not one of {}", COMMANDS.join(", ")),
        ));
    }
    let image = match obj.get("image") {
        Some(Value::String(s)) => parse_image(s).map_err(|r| invalid("image", r))?,
        Some(Value::Object(o)) => {
            let full =
                text(o, "full_name")?.ok_or_else(|| invalid("image.full_name", "missing"))?;
            let image = parse_image(&full).map_err(|r| invalid("image.full_name", r))?;
            match text(o, "digest")? {
                // A digest the registry resolved: part of the reference, so normalised with it.
                Some(d) if image.digest.is_none() => {
                    let mut with = parse_image(&format!("{full}@{d}"))
                        .map_err(|r| invalid("image.digest", r))?;
                    with.original = image.original;
                    with
                }
                _ => image,
            }
        }
        _ => {
            return Err(invalid(
                "image",
                "expected an image reference string or object",
            ))
        }
    };
    let reason = text(obj, "reason")?
        .filter(|r| !r.trim().is_empty())
        .ok_or_else(|| invalid("reason", "missing: a failed scan says why it failed"))?;
    let source = text(obj, "source")?
        .map(|s| s.to_ascii_lowercase())
        .unwrap_or_else(|| "api".into());
    if !SOURCES.contains(&source.as_str()) {
        return Err(invalid(
            "source",
            format!("'{source}' is not one of cli, api"),
        ));
    }
    let cluster = text(obj, "cluster")?;
    // Either spelling; an error names the one the report used.
    let time = ["time", "occurred_at"]
        .into_iter()
        .find_map(|key| obj.get(key).map(|v| (key, v)));
    let occurred_at = match time {
        None | Some((_, Value::Null)) => received_at,
        Some((key, t)) => {
            let micros = parse_time(t).map_err(|r| invalid(key, r))?;
            plausible::event_time(key, micros, received_at)?
        }
    };
    let failure_id = secpipe_schemas::stable_id(
        ScanFailure::FULL_NAME,
        &[
            &image.full_name,
            &command,
            &reason,
            cluster.as_deref().unwrap_or(""),
            &occurred_at.to_string(),
        ],
    );
    Ok(Some(ScanFailure {
        failure_id,
        command,
        image,
        reason,
        source,
        cluster,
        occurred_at,
        received_at,
    }))
}

fn text(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, InvalidMessage> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(key, "expected a string")),
    }
}

/// Parses an image reference and normalises it as registries resolve it
/// ([`secpipe_schemas::image_ref`]): `nginx:1` becomes `docker.io/library/nginx:1`. The
/// reference as given is kept in `original`.
pub fn parse_image(reference: &str) -> Result<Image, String> {
    let r = secpipe_schemas::image_ref::ImageRef::parse(reference)?;
    Ok(Image {
        full_name: r.canonical(),
        registry: Some(r.registry),
        repository: r.repository,
        tag: r.tag,
        digest: r.digest,
        original: Some(reference.trim().to_string()),
    })
}

/// RFC 3339 text, or a number of seconds (or milliseconds, when larger than 10^11) since the
/// epoch; returns microseconds. Only the form is checked here: [`from_json`] then requires a
/// time from 2000-01-01 to one day after the report was received
/// ([`plausible::event_time`]).
pub fn parse_time(v: &Value) -> Result<i64, String> {
    match v {
        Value::String(s) => {
            let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map_err(|e| format!("'{s}' is not an RFC 3339 time: {e}"))?;
            // Years 0..=9999 only, so always inside i64 microseconds.
            i64::try_from(t.unix_timestamp_nanos() / 1_000)
                .map_err(|_| format!("'{s}' is not a plausible time"))
        }
        Value::Number(n) => {
            let x = n.as_f64().ok_or("not a number")?;
            let micros = if x.abs() > 1e11 { x * 1e3 } else { x * 1e6 };
            // Checked before the cast, which would saturate silently.
            if !(-9.0e18..9.0e18).contains(&micros) {
                return Err(format!("{n} is not a plausible epoch time"));
            }
            Ok(micros as i64)
        }
        _ => Err("expected RFC 3339 text or epoch seconds".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-30T09:33:20Z: when the reports of these tests are received.
    const NOW: i64 = 1_796_031_200_000_000;

    #[test]
    fn a_failed_scan_becomes_one_failure_record() {
        let body = br#"{"command":"image scan","image":"quay.io/acme/api:1.4@sha256:abcd","reason":"registry unreachable","source":"cli","cluster":"prod","time":"2026-11-24T06:00:00Z"}"#;
        let f = parse(body, NOW).unwrap().unwrap();
        assert_eq!(f.command, "image scan");
        assert_eq!(f.image.registry.as_deref(), Some("quay.io"));
        assert_eq!(f.image.repository, "acme/api");
        assert_eq!(f.image.tag.as_deref(), Some("1.4"));
        assert_eq!(f.image.digest.as_deref(), Some("sha256:abcd"));
        assert_eq!(f.occurred_at, 1_795_500_000_000_000);
        assert_eq!(
            (f.source.as_str(), f.cluster.as_deref()),
            ("cli", Some("prod"))
        );
        // The same report posted again has the same id.
        assert_eq!(
            parse(body, NOW + 1).unwrap().unwrap().failure_id,
            f.failure_id
        );
    }

    #[test]
    fn a_successful_scan_produces_nothing() {
        let body = br#"{"status":"succeeded","command":"image check","image":"nginx"}"#;
        assert_eq!(parse(body, 0).unwrap(), None);
    }

    #[test]
    fn image_references_split_like_container_tools_do() {
        let i = parse_image("nginx").unwrap();
        assert_eq!(
            (
                i.registry.as_deref(),
                i.repository.as_str(),
                i.tag.as_deref()
            ),
            (Some("docker.io"), "library/nginx", Some("latest"))
        );
        assert_eq!(i.full_name, "docker.io/library/nginx:latest");
        assert_eq!(i.original.as_deref(), Some("nginx"));
        assert_eq!(
            parse_image("index.docker.io/library/nginx:1")
                .unwrap()
                .full_name,
            parse_image(" nginx:1").unwrap().full_name
        );
        let i = parse_image("localhost:5000/team/app:dev").unwrap();
        assert_eq!(i.registry.as_deref(), Some("localhost:5000"));
        assert_eq!(
            (i.repository.as_str(), i.tag.as_deref()),
            ("team/app", Some("dev"))
        );
        assert!(parse_image("bad ref").is_err());
    }

    #[test]
    fn bad_reports_name_the_field() {
        let e = parse(br#"{"command":"image pull","image":"x","reason":"r"}"#, 0).unwrap_err();
        assert_eq!(e.field, "command");
        let e = parse(br#"{"command":"image scan","image":"x"}"#, 0).unwrap_err();
        assert_eq!(e.field, "reason");
        let e = parse(
            br#"{"command":"image scan","image":"x","reason":"r","time":"yesterday"}"#,
            0,
        )
        .unwrap_err();
        assert_eq!(e.field, "time");
        let e = parse(
            br#"{"command":"image scan","image":"x","reason":"r","source":"ui"}"#,
            0,
        )
        .unwrap_err();
        assert_eq!(e.field, "source");
    }

    fn at(time: &str) -> Result<Option<ScanFailure>, InvalidMessage> {
        let body = format!(r#"{{"command":"image scan","image":"x","reason":"r",{time}}}"#);
        parse(body.as_bytes(), NOW)
    }

    #[test]
    fn times_in_seconds_milliseconds_or_rfc_3339_from_2000_to_a_day_ahead_are_accepted() {
        for time in [
            r#""time":1796031200"#,
            r#""time":1796031200000"#,
            r#""time":1796031200.5"#,
            r#""time":"2026-11-30T09:33:20Z""#,
            r#""occurred_at":"2000-01-01T00:00:00Z""#,
            r#""time":"2026-12-01T09:33:20Z""#,
        ] {
            assert!(at(time).is_ok(), "{time}: {:?}", at(time));
        }
        assert_eq!(
            at(r#""time":1796031200"#).unwrap().unwrap().occurred_at,
            NOW
        );
    }

    #[test]
    fn implausible_times_are_rejected_naming_the_key_the_report_used() {
        for (time, field) in [
            (r#""time":-1"#, "time"),
            (r#""time":0"#, "time"),
            (r#""time":9223372036854775807"#, "time"),
            (r#""time":-9223372036854775808"#, "time"),
            (r#""time":18446744073709551615"#, "time"),
            (r#""time":1e300"#, "time"),
            (r#""time":"1999-12-31T23:59:59Z""#, "time"),
            (r#""time":"2026-12-01T09:33:21Z""#, "time"),
            (r#""time":"9999-12-31T23:59:59Z""#, "time"),
            (r#""occurred_at":4611686018427387905"#, "occurred_at"),
            (r#""occurred_at":true"#, "occurred_at"),
        ] {
            let e = at(time).unwrap_err();
            assert_eq!(e.field, field, "{time}: {e}");
        }
        let e = at(r#""time":"1970-01-01T00:00:00Z""#).unwrap_err();
        assert!(e.reason.contains("before 2000-01-01"), "{e}");
    }
}
