//! `secpipe bench redact`: redaction throughput on one core, without broker or ClickHouse: the
//! detector over every string of reference-mix events, and what it costs the gateway's CPU work
//! per event (NDJSON parse and checks, then Avro encoding, with and without redaction).
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
    /// The gateway's CPU work per event over the reference mix, as it runs: parse and check
    /// the NDJSON line, then encode the Avro record, without redaction and with it in between.
    pub gateway_without: Runs,
    pub gateway_with: Runs,
}

impl RedactFigures {
    /// How much redaction lowers the gateway's events/s per core (medians), in percent.
    pub fn gateway_drop_percent(&self) -> f64 {
        100.0 * (1.0 - self.gateway_with.median() / self.gateway_without.median())
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
    let mut buf = Vec::with_capacity(64 * 1024 * 1024);
    // The two variants alternate, so a busy machine slows both alike.
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        for redact in [false, true] {
            buf.clear();
            let started = Instant::now();
            for line in &lines {
                let mut event = parse_line(line, clock).map_err(|e| anyhow::anyhow!("{e}"))?;
                if redact {
                    redactor.redact_event(&mut event);
                }
                codec.encode_into(&event, &mut buf)?;
            }
            let rate = lines.len() as f64 / started.elapsed().as_secs_f64();
            std::hint::black_box(&buf);
            if redact {
                with.push(rate)
            } else {
                without.push(rate)
            }
        }
    }
    Ok(RedactFigures {
        events,
        reference: reference_runs,
        full: full_runs,
        reference_redactions,
        full_redactions,
        gateway_without: Runs { per_sec: without },
        gateway_with: Runs { per_sec: with },
    })
}
