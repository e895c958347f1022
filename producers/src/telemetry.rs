//! Runtime telemetry batches as NDJSON (`POST /v1/telemetry`, `secpipe produce telemetry`): one
//! event per line, in the JSON form of [`TelemetryEvent`] (`{"type": "heartbeat", "envelope":
//! {...}, ...}`). A batch is accepted per line: valid lines are produced, every bad line is
//! reported with its number and reason. Secrets are redacted before anything leaves this module.
use secpipe_processors::redact::Redactor;
use secpipe_schemas::telemetry::{
    Api, AuthTokenSighting, ComponentExit, ComponentStart, DependencyInfo, File, Heartbeat,
    HostEnvironment, IdentityChange, MemoryWarning, Network, PackageInfo, Process, TelemetryEvent,
    TelemetryKind, WebappRegistration, WebappUriDiscovery,
};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

use crate::scan_report::InvalidMessage;

pub mod checks;

/// A line of a batch that was not accepted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LineError {
    /// 1-based line number in the batch.
    pub line: usize,
    /// JSON path of the offending field in the line's event (`envelope.pid`,
    /// `open_descriptors[0].local_port`), `type` for an unknown type, `$` for the whole line.
    pub field: String,
    /// Why, starting with the field: `"envelope.pid: -1 is outside 0..=4294967295 (a process
    /// id)"`.
    pub reason: String,
}

impl LineError {
    pub fn new(line: usize, e: InvalidMessage) -> Self {
        Self {
            line,
            reason: e.to_string(),
            field: e.field,
        }
    }
}

/// The events of a batch, redacted, and the lines that were rejected.
#[derive(Debug, Default)]
pub struct Batch {
    pub events: Vec<TelemetryEvent>,
    pub rejected: Vec<LineError>,
    /// Secrets replaced by fingerprints.
    pub redactions: usize,
}

/// The receiver's clock and how far ahead of it an event time may be (see [`checks`]).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Microseconds since the Unix epoch.
    pub now_micros: i64,
    /// `gateway.max_clock_skew_secs`, in microseconds.
    pub max_ahead_micros: i64,
}

impl Clock {
    /// The clock at `now_micros` with the default skew of one day.
    pub fn at(now_micros: i64) -> Self {
        Self {
            now_micros,
            max_ahead_micros: crate::plausible::MAX_AHEAD_MICROS,
        }
    }
}

/// Parses an NDJSON batch received at `clock`. Blank lines are skipped.
pub fn parse_ndjson(body: &[u8], redactor: &Redactor, clock: Clock) -> Batch {
    let mut batch = Batch::default();
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match parse_line(line, clock) {
            Ok(mut event) => {
                batch.redactions += redactor.redact_event(&mut event);
                batch.events.push(event);
            }
            Err(e) => batch.rejected.push(LineError::new(i + 1, e)),
        }
    }
    batch
}

/// One event in its JSON form, typed and checked; an error names the field.
pub fn parse_line(line: &[u8], clock: Clock) -> Result<TelemetryEvent, InvalidMessage> {
    // The fast path reads the tagged enum straight from the bytes; only a line it refuses is
    // read again, more slowly, to find the field to name.
    let event = serde_json::from_slice::<TelemetryEvent>(line).map_err(|e| {
        explain(line).unwrap_or_else(|| invalid("$", format!("not a telemetry event: {e}")))
    })?;
    checks::check(&event, clock.now_micros, clock.max_ahead_micros)?;
    Ok(event)
}

/// Why `line` is not a telemetry event, with the field named; `None` if it is one after all.
fn explain(line: &[u8]) -> Option<InvalidMessage> {
    let value: Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => return Some(invalid("$", format!("not valid JSON: {e}"))),
    };
    let kind = match value.get("type") {
        Some(Value::String(tag)) => match TelemetryKind::from_tag(tag) {
            Some(kind) => kind,
            None => {
                return Some(invalid(
                    "type",
                    format!(
                        "'{tag}' is not one of {}",
                        TelemetryKind::ALL.map(TelemetryKind::as_str).join(", ")
                    ),
                ))
            }
        },
        Some(_) => return Some(invalid("type", "expected a string")),
        None if value.is_object() => return Some(invalid("type", "missing")),
        None => return Some(invalid("$", "expected a JSON object")),
    };
    typed(kind, &value).err()
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> InvalidMessage {
    InvalidMessage {
        field: field.into(),
        reason: reason.into(),
    }
}

/// The event of type `kind` in `value`. Each type is read on its own (rather than through
/// [`TelemetryEvent`]'s tagged enum, which buffers the fields and loses their path) so that a
/// value of the wrong type, such as 2^40 in an `i32` field, is reported with its field's path.
fn typed(kind: TelemetryKind, value: &Value) -> Result<TelemetryEvent, InvalidMessage> {
    fn read<T: DeserializeOwned>(value: &Value) -> Result<T, InvalidMessage> {
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." { "$".to_string() } else { path };
            invalid(field, e.into_inner().to_string())
        })
    }
    use TelemetryEvent as E;
    use TelemetryKind as K;
    Ok(match kind {
        K::ComponentStart => E::ComponentStart(read::<ComponentStart>(value)?),
        K::ComponentExit => E::ComponentExit(read::<ComponentExit>(value)?),
        K::HostEnvironment => E::HostEnvironment(read::<HostEnvironment>(value)?),
        K::PackageInfo => E::PackageInfo(read::<PackageInfo>(value)?),
        K::Api => E::Api(read::<Api>(value)?),
        K::Heartbeat => E::Heartbeat(read::<Heartbeat>(value)?),
        K::Network => E::Network(read::<Network>(value)?),
        K::DependencyInfo => E::DependencyInfo(read::<DependencyInfo>(value)?),
        K::MemoryWarning => E::MemoryWarning(read::<MemoryWarning>(value)?),
        K::File => E::File(read::<File>(value)?),
        K::IdentityChange => E::IdentityChange(read::<IdentityChange>(value)?),
        K::Process => E::Process(read::<Process>(value)?),
        K::WebappRegistration => E::WebappRegistration(read::<WebappRegistration>(value)?),
        K::WebappUriDiscovery => E::WebappUriDiscovery(read::<WebappUriDiscovery>(value)?),
        K::AuthTokenSighting => E::AuthTokenSighting(read::<AuthTokenSighting>(value)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use secpipe_schemas::telemetry::sample;

    /// 2026-11-30T00:53:20Z: after every sample event, as a real receiver's clock is.
    const NOW: i64 = 1_796_000_000_000_000;

    #[test]
    fn good_lines_are_kept_and_bad_lines_reported_by_number() {
        let events: Vec<TelemetryEvent> = sample::full_mix(3, 1, 1).take(3).collect();
        let mut body = String::new();
        body.push_str(&serde_json::to_string(&events[0]).unwrap());
        body.push_str("\n{\"type\":\"no_such_type\"}\n\n");
        body.push_str(&serde_json::to_string(&events[1]).unwrap());
        body.push_str("\nnot json\r\n");
        body.push_str(&serde_json::to_string(&events[2]).unwrap());
        let batch = parse_ndjson(body.as_bytes(), &Redactor::new("k"), Clock::at(NOW));
        assert_eq!(batch.events.len(), 3);
        let lines: Vec<usize> = batch.rejected.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 5]);
        assert!(
            batch.rejected[0].reason.contains("no_such_type"),
            "{:?}",
            batch.rejected
        );
        let fields: Vec<&str> = batch.rejected.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["type", "$"]);
    }

    #[test]
    fn every_sample_event_passes_the_checks() {
        for event in sample::full_mix(5, 3, 3).take(2_000) {
            let line = serde_json::to_vec(&event).unwrap();
            assert_eq!(parse_line(&line, Clock::at(NOW)), Ok(event));
        }
    }

    /// The JSON of the sample event of `kind`, changed by `edit`, as one parsed line.
    fn edited(
        kind: TelemetryKind,
        edit: impl FnOnce(&mut Value),
    ) -> Result<TelemetryEvent, InvalidMessage> {
        let event = (0..)
            .flat_map(sample::one_of_each)
            .find(|e| {
                e.kind() == kind
                    && !matches!(e, TelemetryEvent::Heartbeat(h) if h.open_descriptors.is_empty())
            })
            .unwrap();
        let mut json = serde_json::to_value(&event).unwrap();
        edit(&mut json);
        parse_line(json.to_string().as_bytes(), Clock::at(NOW))
    }

    #[test]
    fn a_value_its_field_type_cannot_hold_is_rejected_with_the_field_path() {
        let e = edited(TelemetryKind::Heartbeat, |j| {
            j["open_descriptors"][0]["local_port"] = (1i64 << 40).into()
        })
        .unwrap_err();
        assert_eq!(e.field, "open_descriptors[0].local_port", "{e}");
        let e = edited(TelemetryKind::ComponentExit, |j| {
            j["exit_code"] = 1.5.into()
        })
        .unwrap_err();
        assert_eq!(e.field, "exit_code", "{e}");
        let e = edited(TelemetryKind::Api, |j| j["envelope"]["pid"] = "7".into()).unwrap_err();
        assert_eq!(e.field, "envelope.pid", "{e}");
        let e = edited(TelemetryKind::Heartbeat, |j| {
            j["rss_bytes"] = u64::MAX.into()
        })
        .unwrap_err();
        assert_eq!(e.field, "rss_bytes", "{e}");
    }

    #[test]
    fn a_value_its_type_holds_but_the_world_does_not_is_rejected_with_the_range() {
        let e = edited(TelemetryKind::Heartbeat, |j| {
            j["rss_bytes"] = 4_611_686_018_427_387_905i64.into()
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "rss_bytes: 4611686018427387905 is outside 0..=1125899906842624 (bytes of resident memory)"
        );
        let e = edited(TelemetryKind::Network, |j| j["remote_port"] = 65_536.into()).unwrap_err();
        assert_eq!(e.field, "remote_port");
        let e = edited(TelemetryKind::Heartbeat, |j| {
            j["open_descriptors"][0]["fd"] = (-1).into()
        })
        .unwrap_err();
        assert_eq!(e.field, "open_descriptors[0].fd");
        let e = edited(TelemetryKind::File, |j| {
            j["stack"][1]["offset"] = (-1).into()
        })
        .unwrap_err();
        assert_eq!(e.field, "stack[1].offset");
        let e = edited(TelemetryKind::ComponentStart, |j| {
            j["memory_maps"][2]["end"] = 0.into()
        })
        .unwrap_err();
        assert_eq!(e.field, "memory_maps[2]", "{e}");
        let e = edited(TelemetryKind::Process, |j| {
            j["envelope"]["pid"] = (-1).into()
        })
        .unwrap_err();
        assert_eq!(e.field, "envelope.pid");
        // Addresses are two's complement: any value is one.
        assert!(edited(TelemetryKind::MemoryWarning, |j| j["address"] =
            i64::MIN.into())
        .is_ok());
    }

    #[test]
    fn event_times_outside_2000_to_a_day_ahead_are_rejected_naming_the_likely_unit() {
        let at = |t: i64| {
            edited(TelemetryKind::Heartbeat, |j| {
                j["envelope"]["event_time"] = t.into()
            })
        };
        assert!(at(NOW).is_ok());
        let e = at(NOW / 1_000_000).unwrap_err();
        assert_eq!(e.field, "envelope.event_time");
        assert!(e.reason.contains("seconds"), "{e}");
        let e = at(NOW * 1_000).unwrap_err();
        assert!(e.reason.contains("nanoseconds"), "{e}");
        for t in [
            i64::MIN,
            -1,
            0,
            946_684_799_999_999,
            NOW + 86_400_000_001,
            i64::MAX,
        ] {
            assert_eq!(at(t).unwrap_err().field, "envelope.event_time", "{t}");
        }
    }

    #[test]
    fn token_values_never_survive_parsing() {
        let line = r#"{"type":"auth_token_sighting","envelope":{"event_id":"e1","event_time":1700000000000000,"host":"h","container_id":null,"pod":null,"namespace":null,"pid":7,"app":null},"auth_type":"bearer","token_fingerprint":"eyJhbGciOi.payload.sig","local_port":8080}"#;
        let batch = parse_ndjson(line.as_bytes(), &Redactor::new("k"), Clock::at(NOW));
        assert_eq!(batch.redactions, 1);
        let json = serde_json::to_string(&batch.events[0]).unwrap();
        assert!(!json.contains("eyJhbGciOi"), "{json}");
        assert!(json.contains("redacted:"));
    }
}
