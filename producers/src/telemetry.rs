//! Runtime telemetry batches as NDJSON (`POST /v1/telemetry`, `secpipe produce telemetry`): one
//! event per line, in the JSON form of [`TelemetryEvent`] (`{"type": "heartbeat", "envelope":
//! {...}, ...}`). A batch is accepted per line: valid lines are produced, every bad line is
//! reported with its number and reason. Secrets are redacted before anything leaves this module.
use secpipe_processors::redact::Redactor;
use secpipe_schemas::telemetry::TelemetryEvent;
use serde::Serialize;

/// A line of a batch that was not accepted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LineError {
    /// 1-based line number in the batch.
    pub line: usize,
    pub reason: String,
}

/// The events of a batch, redacted, and the lines that were rejected.
#[derive(Debug, Default)]
pub struct Batch {
    pub events: Vec<TelemetryEvent>,
    pub rejected: Vec<LineError>,
    /// Secrets replaced by fingerprints.
    pub redactions: usize,
}

/// Parses an NDJSON batch. Blank lines are skipped.
pub fn parse_ndjson(body: &[u8], redactor: &Redactor) -> Batch {
    let mut batch = Batch::default();
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<TelemetryEvent>(line) {
            Ok(mut event) => match validate(&event) {
                Ok(()) => {
                    batch.redactions += redactor.redact_event(&mut event);
                    batch.events.push(event);
                }
                Err(reason) => batch.rejected.push(LineError {
                    line: i + 1,
                    reason,
                }),
            },
            Err(e) => batch.rejected.push(LineError {
                line: i + 1,
                reason: e.to_string(),
            }),
        }
    }
    batch
}

fn validate(event: &TelemetryEvent) -> Result<(), String> {
    let env = event.envelope();
    if env.event_id.trim().is_empty() {
        return Err("envelope.event_id: must not be empty".into());
    }
    if env.host.trim().is_empty() {
        return Err("envelope.host: must not be empty".into());
    }
    if env.event_time <= 0 {
        return Err("envelope.event_time: expected microseconds since the Unix epoch".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use secpipe_schemas::telemetry::sample;

    #[test]
    fn good_lines_are_kept_and_bad_lines_reported_by_number() {
        let events: Vec<TelemetryEvent> = sample::full_mix(3, 1, 1).take(3).collect();
        let mut body = String::new();
        body.push_str(&serde_json::to_string(&events[0]).unwrap());
        body.push_str("\n{\"type\":\"no_such_type\"}\n\n");
        body.push_str(&serde_json::to_string(&events[1]).unwrap());
        body.push_str("\nnot json\r\n");
        body.push_str(&serde_json::to_string(&events[2]).unwrap());
        let batch = parse_ndjson(body.as_bytes(), &Redactor::new("k"));
        assert_eq!(batch.events.len(), 3);
        let lines: Vec<usize> = batch.rejected.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 5]);
        assert!(
            batch.rejected[0].reason.contains("no_such_type"),
            "{:?}",
            batch.rejected
        );
    }

    #[test]
    fn token_values_never_survive_parsing() {
        let line = r#"{"type":"auth_token_sighting","envelope":{"event_id":"e1","event_time":1700000000000000,"host":"h","container_id":null,"pod":null,"namespace":null,"pid":7,"app":null},"auth_type":"bearer","token_fingerprint":"eyJhbGciOi.payload.sig","local_port":8080}"#;
        let batch = parse_ndjson(line.as_bytes(), &Redactor::new("k"));
        assert_eq!(batch.redactions, 1);
        let json = serde_json::to_string(&batch.events[0]).unwrap();
        assert!(!json.contains("eyJhbGciOi"), "{json}");
        assert!(json.contains("redacted:"));
    }
}
