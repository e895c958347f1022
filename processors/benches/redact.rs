//! Redaction throughput on one core over the reference mix, per event kind too:
//! `cargo bench -p secpipe-processors --bench redact`. (`secpipe bench redact` gives the same
//! figure and redaction's share of the gateway's CPU work.)
use std::{collections::BTreeMap, time::Instant};

use secpipe_processors::redact::Redactor;
use secpipe_schemas::telemetry::{sample, TelemetryEvent};

fn main() {
    let redactor = Redactor::new("bench");
    let events: Vec<TelemetryEvent> = sample::reference_mix(23, 16, 8).take(200_000).collect();
    let mut runs = Vec::new();
    for _ in 0..3 {
        let mut batch = events.clone();
        let started = Instant::now();
        let n: usize = batch.iter_mut().map(|e| redactor.redact_event(e)).sum();
        let secs = started.elapsed().as_secs_f64();
        std::hint::black_box((&batch, n));
        runs.push(events.len() as f64 / secs);
    }
    runs.sort_by(f64::total_cmp);
    println!(
        "redact, reference mix, one core: median {:.0} events/s (min {:.0}, max {:.0})",
        runs[1], runs[0], runs[2]
    );
    // Where the time goes: nanoseconds per event of each kind.
    let mut by_kind: BTreeMap<&str, (usize, f64)> = BTreeMap::new();
    // Each event copied just before it is redacted: in cache, as in the gateway, where an
    // event is redacted right after it was parsed.
    for original in &events {
        let mut e = original.clone();
        let kind = e.kind().as_str();
        let started = Instant::now();
        std::hint::black_box(redactor.redact_event(&mut e));
        let ns = started.elapsed().as_nanos() as f64;
        let entry = by_kind.entry(kind).or_default();
        entry.0 += 1;
        entry.1 += ns;
    }
    let total: f64 = by_kind.values().map(|(_, ns)| ns).sum();
    for (kind, (n, ns)) in by_kind {
        println!(
            "  {kind:<22} {:>7.0} ns/event  {:>5.1}% of the time",
            ns / n as f64,
            100.0 * ns / total
        );
    }
}
