//! The producer library the gateway, the `secpipe produce` CLI and Rust agents share: parse what
//! a tool sends, encode it as Avro records keyed for their partition, produce them with
//! acks=all. Preparing and sending are separate steps so a caller can check limits in between.
use secpipe_processors::redact::{RedactionError, Redactor};
use secpipe_schemas::{
    failures::ScanFailure,
    now_micros,
    scan::{Finding, ScanReport},
    telemetry::{TelemetryCodec, TelemetryEvent},
    Codec, EncodeError, SchemaError,
};
use serde_json::{json, Value};

use crate::{
    gateway_config::GatewayConfig,
    kafka::{EventProducer, OutRecord, ProduceError, Topics},
    sarif::{self, UploadContext},
    scan_failure,
    scan_report::{self, InvalidMessage},
    scan_settings::ScanSettings,
    telemetry::{self, Clock, LineError},
};

/// An [`Ingestor`] that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("gateway.redaction: {0}")]
    Redaction(#[from] RedactionError),
}

/// Why input could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("invalid message: {0}")]
    Invalid(#[from] InvalidMessage),
    /// Every line of a telemetry batch was rejected (or there was none).
    #[error("no valid line in the batch ({} rejected)", .0.len())]
    NoValidLine(Vec<LineError>),
    /// A record made from the input is larger than the topics hold (`kafka.max_message_bytes`);
    /// `field` names the part of the input it came from. Nothing was produced.
    #[error("{field}: a record of {size} bytes exceeds kafka.max_message_bytes ({limit})")]
    TooLarge {
        field: String,
        size: usize,
        limit: usize,
    },
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// Encoded records ready to produce, in one buffer.
#[derive(Debug, Default)]
pub struct Prepared {
    buf: Vec<u8>,
    records: Vec<(String, String, std::ops::Range<usize>)>,
    /// What the caller answers with: counts, ids, rejected lines.
    pub summary: Value,
}

impl Prepared {
    fn push<T>(
        &mut self,
        topic: &str,
        key: String,
        record: &T,
        encode: impl FnOnce(&T, &mut Vec<u8>) -> Result<(), EncodeError>,
    ) -> Result<(), EncodeError> {
        let start = self.buf.len();
        encode(record, &mut self.buf)?;
        self.records
            .push((topic.to_string(), key, start..self.buf.len()));
        Ok(())
    }

    /// Fails when the record pushed last is larger than `limit` bytes (key and payload).
    fn check_last(&self, limit: usize, field: impl FnOnce() -> String) -> Result<(), IngestError> {
        let Some((_, key, range)) = self.records.last() else {
            return Ok(());
        };
        let size = key.len() + range.len();
        if size > limit {
            return Err(IngestError::TooLarge {
                field: field(),
                size,
                limit,
            });
        }
        Ok(())
    }

    /// Number of records to produce.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Bytes of encoded records.
    pub fn bytes(&self) -> usize {
        self.buf.len()
    }
}

/// Parses, encodes and produces every kind of event secpipe ingests. Build once, share.
pub struct Ingestor {
    producer: EventProducer,
    topics: Topics,
    scan_reports: Codec<ScanReport>,
    findings: Codec<Finding>,
    failures: Codec<ScanFailure>,
    telemetry: TelemetryCodec,
    redactor: Redactor,
    scans: ScanSettings,
    /// How far after the receiver's clock a telemetry event time may be, in microseconds.
    max_ahead_micros: i64,
}

impl Ingestor {
    /// An ingestor redacting and checking telemetry as `cfg` says (`redaction_key`,
    /// `redaction`, `max_clock_skew_secs`).
    pub fn new(
        producer: EventProducer,
        topics: Topics,
        cfg: &GatewayConfig,
    ) -> Result<Self, SetupError> {
        Ok(Self {
            producer,
            topics,
            scan_reports: Codec::new()?,
            findings: Codec::new()?,
            failures: Codec::new()?,
            telemetry: TelemetryCodec::new()?,
            redactor: Redactor::with_policy(&cfg.redaction_key, &cfg.redaction)?,
            max_ahead_micros: cfg.max_clock_skew_micros(),
            scans: ScanSettings::default(),
        })
    }

    /// Completes scan reports with `scans` (aliases, team mapping) instead of the defaults.
    pub fn with_scan_settings(mut self, scans: ScanSettings) -> Self {
        self.scans = scans;
        self
    }

    fn clock(&self) -> Clock {
        Clock {
            now_micros: now_micros(),
            max_ahead_micros: self.max_ahead_micros,
        }
    }

    /// One end-of-scan message (`/track`).
    pub fn scan_report(&self, body: &[u8]) -> Result<Prepared, IngestError> {
        let mut report = scan_report::parse(body, now_micros())?;
        self.scans.complete(&mut report);
        let mut p = Prepared {
            summary: json!({"success": "true"}),
            ..Prepared::default()
        };
        p.push(
            &self.topics.scan_results,
            report.partition_key(),
            &report,
            |r, b| self.scan_reports.encode_into(r, b),
        )?;
        Ok(p)
    }

    /// A SARIF 2.1.0 report uploaded without context: one summary per run, one finding per
    /// result.
    pub fn sarif(&self, body: &[u8]) -> Result<Prepared, IngestError> {
        self.sarif_with(body, &UploadContext::default())
    }

    /// A SARIF 2.1.0 report uploaded with scan context. All or nothing: a finding too large for
    /// the topics fails the whole upload, naming its result, before anything is produced.
    pub fn sarif_with(&self, body: &[u8], ctx: &UploadContext) -> Result<Prepared, IngestError> {
        let mut parsed = sarif::parse_with(body, now_micros(), ctx)?;
        for r in &mut parsed.reports {
            self.scans.complete(r);
        }
        let mut p = Prepared {
            summary: json!({
                "success": "true",
                "scans": parsed.reports.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
                "findings": parsed.findings.len(),
            }),
            ..Prepared::default()
        };
        let limit = self.producer.max_record_size();
        for (i, r) in parsed.reports.iter().enumerate() {
            p.push(&self.topics.scan_results, r.partition_key(), r, |r, b| {
                self.scan_reports.encode_into(r, b)
            })?;
            p.check_last(limit, || format!("runs[{i}]"))?;
        }
        for (f, path) in parsed.findings.iter().zip(&parsed.paths) {
            p.push(
                &self.topics.findings,
                f.partition_key().to_string(),
                f,
                |f, b| self.findings.encode_into(f, b),
            )?;
            p.check_last(limit, || path.clone())?;
        }
        Ok(p)
    }

    /// One failed ad-hoc scan; a successful scan prepares nothing.
    pub fn scan_failure(&self, body: &[u8]) -> Result<Prepared, IngestError> {
        let Some(failure) = scan_failure::parse(body, now_micros())? else {
            return Ok(Prepared {
                summary: json!({"success": "true", "produced": 0,
                    "reason": "successful scans produce no event"}),
                ..Prepared::default()
            });
        };
        let mut p = Prepared {
            summary: json!({"success": "true", "produced": 1, "failure_id": failure.failure_id}),
            ..Prepared::default()
        };
        p.push(
            &self.topics.scan_failures,
            failure.partition_key().to_string(),
            &failure,
            |f, b| self.failures.encode_into(f, b),
        )?;
        Ok(p)
    }

    /// An NDJSON telemetry batch, per line: valid lines are prepared (redacted), bad lines are
    /// listed in the summary. Fails only when no line is valid.
    pub fn telemetry(&self, body: &[u8]) -> Result<Prepared, IngestError> {
        let batch = telemetry::parse_ndjson(body, &self.redactor, self.clock());
        if batch.events.is_empty() {
            return Err(IngestError::NoValidLine(batch.rejected));
        }
        let mut p = Prepared {
            buf: Vec::with_capacity(body.len()),
            records: Vec::with_capacity(batch.events.len()),
            summary: json!({
                "accepted": batch.events.len(),
                "rejected": batch.rejected,
                "redacted": batch.redactions,
            }),
        };
        for ev in &batch.events {
            p.push(&self.topics.telemetry, ev.partition_key(), ev, |e, b| {
                self.telemetry.encode_into(e, b)
            })?;
        }
        Ok(p)
    }

    /// Telemetry events a Rust agent already holds: checked like NDJSON lines, redacted,
    /// encoded, ready to send. An event that fails the checks is left out and reported in the
    /// summary's `rejected`, its `line` being its 1-based position in `events`; fails only when
    /// no event passes.
    pub fn telemetry_events(&self, events: &mut [TelemetryEvent]) -> Result<Prepared, IngestError> {
        let clock = self.clock();
        let mut p = Prepared::default();
        let mut rejected = Vec::new();
        for (i, ev) in events.iter_mut().enumerate() {
            if let Err(e) = telemetry::checks::check(ev, clock.now_micros, clock.max_ahead_micros) {
                rejected.push(LineError::new(i + 1, e));
                continue;
            }
            self.redactor.redact_event(ev);
            p.push(&self.topics.telemetry, ev.partition_key(), &*ev, |e, b| {
                self.telemetry.encode_into(e, b)
            })?;
        }
        if p.is_empty() && !events.is_empty() {
            return Err(IngestError::NoValidLine(rejected));
        }
        p.summary = json!({"accepted": p.len(), "rejected": rejected});
        Ok(p)
    }

    /// Produces every prepared record; resolves once the broker acknowledged them all.
    pub async fn send(&self, prepared: &Prepared) -> Result<(), ProduceError> {
        if prepared.records.is_empty() {
            return Ok(());
        }
        let out: Vec<OutRecord<'_>> = prepared
            .records
            .iter()
            .map(|(topic, key, range)| OutRecord {
                topic,
                key: key.as_bytes(),
                payload: &prepared.buf[range.clone()],
                headers: &[],
                partition: None,
            })
            .collect();
        self.producer.send_all(&out).await.map(|_| ())
    }

    /// The producer underneath (to flush on shutdown).
    pub fn producer(&self) -> &EventProducer {
        &self.producer
    }
}
