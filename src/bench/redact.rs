//! `secpipe bench redact`: redaction throughput on one core, without broker or ClickHouse: the
//! detector over every string of reference-mix events, and its share of the gateway's CPU work
//! per event (NDJSON parse and checks, redaction, Avro encoding).
use std::time::Instant;

use secpipe_processors::redact::Redactor;
use secpipe_producers::telemetry::{parse_line, Clock};
use secpipe_schemas::telemetry::{sample, TelemetryCodec, TelemetryEvent};

use super::*;

/// Events per second of the runs of one measurement.
#[derive(Debug, Clone)]
pub struct Runs {
    /// Events per second of each run, in run order.
    pub per_sec: Vec<f64>,
}

impl Runs {
    fn sorted(&self) -> Vec<f64> {
        let mut v = self.per_sec.clone();
        v.sort_by(f64::total_cmp);
        v
    }
    pub fn min(&self) -> f64 {
        self.sorted().first().copied().unwrap_or(0.0)
    }
    pub fn median(&self) -> f64 {
        let v = self.sorted();
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    }
    pub fn max(&self) -> f64 {
        self.sorted().last().copied().unwrap_or(0.0)
    }
}

/// Figures of `secpipe bench redact`.
#[derive(Debug)]
pub struct RedactFigures {
    pub events: usize,
    /// Redaction alone over the reference mix (743-event cycles of the reference sample).
    pub reference: Runs,
    /// Redaction alone over the full mix (plus process, URI, identity and token events).
    pub full: Runs,
    /// Secrets replaced in one pass over the reference and the full mix.
    pub reference_redactions: usize,
    pub full_redactions: usize,
    /// The gateway's other CPU work per event over the reference mix: parse and check the
    /// NDJSON line, encode the Avro record.
    pub parse_encode: Runs,
}

impl RedactFigures {
    /// Redaction's share of the gateway's CPU time per event (medians).
    pub fn share_of_gateway_cpu(&self) -> f64 {
        let redact = 1.0 / self.reference.median();
        let rest = 1.0 / self.parse_encode.median();
        redact / (redact + rest)
    }
}

/// Redacts `events` fresh events `runs` times on this thread; events per second of each run.
fn time_redaction(redactor: &Redactor, events: &[TelemetryEvent], runs: usize) -> (Runs, usize) {
    let mut per_sec = Vec::with_capacity(runs);
    let mut redactions = 0;
    for _ in 0..runs {
        // A fresh copy each run: redaction rewrites what it finds.
        let mut batch = events.to_vec();
        let started = Instant::now();
        redactions = batch.iter_mut().map(|e| redactor.redact_event(e)).sum();
        let secs = started.elapsed().as_secs_f64();
        std::hint::black_box(&batch);
        per_sec.push(events.len() as f64 / secs);
    }
    (Runs { per_sec }, redactions)
}

/// `events` events of each mix, 3 runs of each measurement, one thread.
pub fn redact(settings: &Settings, events: usize) -> anyhow::Result<RedactFigures> {
    const RUNS: usize = 3;
    let redactor =
        Redactor::with_policy(&settings.gateway.redaction_key, &settings.gateway.redaction)?;
    let reference: Vec<TelemetryEvent> = sample::reference_mix(23, 16, 8).take(events).collect();
    let full: Vec<TelemetryEvent> = sample::full_mix(23, 16, 8).take(events).collect();
    // Warm-up: caches, allocator.
    time_redaction(&redactor, &reference[..events.min(10_000)], 1);
    let (reference_runs, reference_redactions) = time_redaction(&redactor, &reference, RUNS);
    let (full_runs, full_redactions) = time_redaction(&redactor, &full, RUNS);

    let lines: Vec<Vec<u8>> = reference
        .iter()
        .map(serde_json::to_vec)
        .collect::<Result<_, _>>()?;
    let codec = TelemetryCodec::new()?;
    let latest = reference
        .iter()
        .map(|e| e.envelope().event_time)
        .max()
        .unwrap_or_default();
    let clock = Clock::at(latest);
    let mut per_sec = Vec::with_capacity(RUNS);
    let mut buf = Vec::with_capacity(64 * 1024 * 1024);
    for _ in 0..RUNS {
        buf.clear();
        let started = Instant::now();
        for line in &lines {
            let event = parse_line(line, clock).map_err(|e| anyhow::anyhow!("{e}"))?;
            codec.encode_into(&event, &mut buf)?;
        }
        per_sec.push(lines.len() as f64 / started.elapsed().as_secs_f64());
        std::hint::black_box(&buf);
    }
    Ok(RedactFigures {
        events,
        reference: reference_runs,
        full: full_runs,
        reference_redactions,
        full_redactions,
        parse_encode: Runs { per_sec },
    })
}
