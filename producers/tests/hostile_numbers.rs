//! Every numeric field of every record the edge builds from posted JSON, set to the extremes of
//! its type and beyond: the edge parser either accepts the value or rejects it naming the field,
//! and no stage panics on what it accepted. What the edge accepts then goes through its
//! processor several times (same process, or image, or repository, in the same minute), and the
//! processor's `tick` runs with extreme clocks.
//!
//! The processors are also fed every value that fits the record's type unchecked, as a producer
//! that bypasses the gateway could write it: the edge is a courtesy to users, not what keeps a
//! stage alive. Both debug builds (where overflow panics) and release builds must pass.
#[path = "support/hostile.rs"]
mod hostile;

use std::panic::{catch_unwind, AssertUnwindSafe};

use hostile::{base_event, hostile_values, numeric_paths, render, slot};
use secpipe_processors::{
    admin_events::{AdminEvents, AdminEventsConfig, AdminEventsState},
    alerts::default_rules,
    scan_results::{ScanResults, ScanResultsConfig, ScanResultsState, ScanResultsTopics},
    telemetry::{Telemetry, TelemetryConfig, TelemetryState, TelemetryTopics},
    InRecord, Outputs, Processor,
};
use secpipe_producers::{
    scan_failure, scan_report,
    telemetry::{parse_ndjson, Clock, LineError},
};
use secpipe_schemas::{
    catalog,
    failures::ScanFailure,
    rollups::HeartbeatRollup,
    scan::ScanReport,
    telemetry::{sample, TelemetryCodec, TelemetryEvent, TelemetryKind},
    Codec,
};
use serde_json::Value;

/// 2026-11-30T00:53:20Z: the receiver's clock, after every sample event.
const NOW: i64 = 1_796_000_000_000_000;

fn telemetry_processor() -> Telemetry {
    let topics = TelemetryTopics {
        input: "raw".into(),
        clean: "clean".into(),
        rollups: "rollups".into(),
        alerts: "alerts".into(),
    };
    Telemetry::new(
        TelemetryConfig::default(),
        topics,
        &default_rules(),
        secpipe_processors::redact::Redactor::new("k"),
    )
    .unwrap()
}

/// The clocks `tick` runs with.
const TICKS: [i64; 6] = [i64::MIN, -1, 0, NOW, NOW + 3_600_000_000, i64::MAX];

fn record(payload: &[u8], offset: i64, timestamp_ms: i64) -> InRecord<'_> {
    InRecord {
        topic: "in",
        partition: 0,
        offset,
        timestamp_ms,
        key: None,
        payload,
    }
}

/// `event` four times in its minute (distinct ids, a microsecond apart: one process, one
/// rollup), once a minute later (which closes the minute), then every tick. The broker
/// timestamps are unknown (0), the receiver's clock and the extremes; the horizon drops the
/// copies whose event time is a day older than their timestamp, the others add up.
fn run_telemetry(p: &mut Telemetry, state: &mut TelemetryState, event: &TelemetryEvent) {
    let codec = TelemetryCodec::new().unwrap();
    let mut out = Outputs::default();
    let copies = [
        (0, 0),
        (1, NOW / 1_000),
        (2, i64::MIN),
        (3, i64::MAX),
        (60_000_000, 0),
    ];
    for (i, (later, timestamp_ms)) in copies.into_iter().enumerate() {
        let mut e = event.clone();
        let env = e.envelope_mut();
        env.event_id = format!("{}-{i}", env.event_id);
        env.event_time = env.event_time.saturating_add(later);
        let payload = codec.encode(&e).unwrap();
        p.process(state, &record(&payload, i as i64, timestamp_ms), &mut out)
            .unwrap();
    }
    for now in TICKS {
        p.tick(state, now, &mut out);
    }
}

/// Runs `f`, turning a panic into a test failure that says which case it was.
fn no_panic(case: &str, f: impl FnOnce()) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(f)) {
        let msg = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        panic!("{case}: panicked: {msg}");
    }
}

#[test]
fn every_numeric_telemetry_field_at_every_extreme_is_rejected_by_name_or_processed_without_panic() {
    let catalog = catalog().unwrap();
    let mut p = telemetry_processor();
    let (mut fields, mut accepted, mut rejected) = (0, 0, 0);
    for kind in TelemetryKind::ALL {
        let paths = numeric_paths(catalog.current(kind.full_name()).unwrap().source);
        assert!(
            paths.len() >= 2,
            "{kind}: the envelope alone has event_time and pid"
        );
        let base = base_event(kind, &paths, NOW);
        for path in &paths {
            fields += 1;
            let field = render(path);
            let mut state = TelemetryState::default();
            for value in hostile_values() {
                let mut json = base.clone();
                *slot(&mut json, path) = value.clone();
                let case = format!("{kind}.{field} = {value}");
                let line = json.to_string();
                no_panic(&case, || {
                    let batch = parse_ndjson(line.as_bytes(), &redactor(), Clock::at(NOW));
                    match (batch.events.as_slice(), batch.rejected.as_slice()) {
                        ([event], []) => {
                            accepted += 1;
                            run_telemetry(&mut p, &mut state, event);
                        }
                        (
                            [],
                            [LineError {
                                field: named,
                                reason,
                                ..
                            }],
                        ) => {
                            rejected += 1;
                            // The one rule on two fields names the mapping that holds both.
                            let mapping = named.starts_with("memory_maps[")
                                && field.starts_with(&format!("{named}."));
                            assert!(
                                *named == field || mapping,
                                "{case}: rejected naming {named}: {reason}"
                            );
                            assert!(reason.starts_with(named.as_str()), "{case}: {reason}");
                        }
                        other => panic!("{case}: {other:?}"),
                    }
                    // Unchecked, straight to the processor, whenever the type holds the value.
                    if let Ok(event) = serde_json::from_value::<TelemetryEvent>(json.clone()) {
                        run_telemetry(&mut p, &mut state, &event);
                    }
                });
            }
        }
    }
    // Not vacuous: every type has fields, and both outcomes happen.
    assert!(fields >= 60, "only {fields} numeric fields found");
    assert!(
        accepted > 0 && rejected > 0,
        "{accepted} accepted, {rejected} rejected"
    );
}

fn redactor() -> secpipe_processors::redact::Redactor {
    secpipe_processors::redact::Redactor::new("k")
}

#[test]
fn the_issues_two_heartbeats_of_4611686018427387905_bytes_are_rejected_and_cannot_crash_the_rollup()
{
    let heartbeat = |id: &str, t: i64| {
        let mut json = serde_json::to_value(
            sample::one_of_each(1)
                .into_iter()
                .find(|e| e.kind() == TelemetryKind::Heartbeat)
                .unwrap(),
        )
        .unwrap();
        json["envelope"]["event_id"] = id.into();
        json["envelope"]["event_time"] = t.into();
        json["rss_bytes"] = 4_611_686_018_427_387_905i64.into();
        json.to_string()
    };
    let body = format!(
        "{}\n{}",
        heartbeat("a", NOW),
        heartbeat("b", NOW + 1_000_000)
    );
    let batch = parse_ndjson(body.as_bytes(), &redactor(), Clock::at(NOW));
    assert!(batch.events.is_empty());
    assert_eq!(
        batch
            .rejected
            .iter()
            .map(|e| e.field.as_str())
            .collect::<Vec<_>>(),
        ["rss_bytes", "rss_bytes"]
    );
    // Written to the topic by something else, they still only saturate the minute's sum.
    let mut p = telemetry_processor();
    let mut state = TelemetryState::default();
    for (i, line) in body.lines().enumerate() {
        let event: TelemetryEvent = serde_json::from_str(line).unwrap();
        let payload = TelemetryCodec::new().unwrap().encode(&event).unwrap();
        p.process(&mut state, &record(&payload, 0, 0), &mut Outputs::default())
            .unwrap_or_else(|e| panic!("heartbeat {i}: {e}"));
    }
    let mut out = Outputs::default();
    p.tick(&mut state, i64::MAX, &mut out);
    assert_eq!(out.records.len(), 1, "the minute is emitted once");
    let rollup = Codec::<HeartbeatRollup>::new()
        .unwrap()
        .decode(&out.records[0].payload)
        .unwrap();
    assert_eq!(
        (rollup.heartbeats, rollup.rss_bytes_sum),
        (2, i64::MAX),
        "the sum sticks at the top"
    );
}

/// A failed scan, with `time` set by `edit`.
fn failure_body(edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut json = serde_json::json!({
        "command": "image scan", "image": "quay.io/acme/api:1.4", "reason": "timeout",
        "source": "cli", "cluster": "prod", "time": "2026-11-29T00:00:00Z"
    });
    edit(&mut json);
    json.to_string().into_bytes()
}

#[test]
fn every_scan_failure_time_at_every_extreme_is_rejected_by_name_or_processed_without_panic() {
    let codec = Codec::<ScanFailure>::new().unwrap();
    let mut p = AdminEvents::new(
        AdminEventsConfig::default(),
        "in",
        "out",
        "alerts",
        &default_rules(),
    )
    .unwrap();
    let mut state = AdminEventsState::default();
    let mut accepted = 0;
    for key in ["time", "occurred_at"] {
        for value in hostile_values() {
            let case = format!("{key} = {value}");
            let body = failure_body(|j| {
                j.as_object_mut().unwrap().remove("time");
                j[key] = value.clone();
            });
            no_panic(&case, || match scan_failure::parse(&body, NOW) {
                Ok(Some(failure)) => {
                    accepted += 1;
                    run_admin_events(&mut p, &mut state, &codec, failure);
                }
                Ok(None) => panic!("{case}: a failure became a success"),
                Err(e) => assert_eq!(e.field, key, "{case}: {e}"),
            });
        }
    }
    // 0 seconds is 1970: every hostile time is implausible.
    assert_eq!(accepted, 0);
    // The processor itself, with the times a producer could write unchecked.
    let base = scan_failure::parse(&failure_body(|_| {}), NOW)
        .unwrap()
        .unwrap();
    for t in [i64::MIN, -1, 0, i64::MAX, 4_611_686_018_427_387_905] {
        for field in ["occurred_at", "received_at"] {
            let mut f = base.clone();
            match field {
                "occurred_at" => f.occurred_at = t,
                _ => f.received_at = t,
            }
            no_panic(&format!("unchecked {field} = {t}"), || {
                run_admin_events(&mut p, &mut state, &codec, f)
            });
        }
    }
}

/// `failure` three times (as three distinct failures: one admin event), then every tick.
fn run_admin_events(
    p: &mut AdminEvents,
    state: &mut AdminEventsState,
    codec: &Codec<ScanFailure>,
    failure: ScanFailure,
) {
    let mut out = Outputs::default();
    for i in 0..3 {
        let mut f = failure.clone();
        // A new failure every time, so the one admin event keeps counting across cases.
        f.failure_id = uuid::Uuid::new_v4().to_string();
        let payload = codec.encode(&f).unwrap();
        p.process(state, &record(&payload, i, 0), &mut out).unwrap();
    }
    for now in TICKS {
        p.tick(state, now, &mut out);
    }
}

const SCAN_REPORT: &str = r#"{
    "id": "scan", "repo_context": {"repositoryName": "web", "branch": "main"},
    "report_summary": {"njs": {"critical": 1, "high": 2, "medium": 3, "low": 4, "status": "❌"},
                       "gitleaks": {"critical": 0, "high": 0, "medium": 0, "low": 0, "status": "✅"}}
}"#;

#[test]
fn every_scan_report_count_at_every_extreme_is_rejected_by_name_or_processed_without_panic() {
    let codec = Codec::<ScanReport>::new().unwrap();
    let topics = ScanResultsTopics {
        input: "in".into(),
        rollups: "rollups".into(),
        status: "status".into(),
        alerts: "alerts".into(),
    };
    let mut p = ScanResults::new(ScanResultsConfig::default(), topics, &default_rules()).unwrap();
    let mut state = ScanResultsState::default();
    let (mut accepted, mut rejected) = (0, 0);
    for count in ["critical", "high", "medium", "low"] {
        for value in hostile_values() {
            let case = format!("report_summary.njs.{count} = {value}");
            let mut json: Value = serde_json::from_str(SCAN_REPORT).unwrap();
            json["report_summary"]["njs"][count] = value.clone();
            // The same number as text, which the parser also takes.
            let mut as_text = json.clone();
            as_text["report_summary"]["njs"][count] = value.to_string().into();
            for body in [json, as_text] {
                let body = body.to_string();
                no_panic(&case, || match scan_report::parse(body.as_bytes(), NOW) {
                    Ok(report) => {
                        accepted += 1;
                        run_scan_results(&mut p, &mut state, &codec, report);
                    }
                    Err(e) => {
                        rejected += 1;
                        assert_eq!(
                            e.field,
                            format!("report_summary.njs.{count}"),
                            "{case}: {e}"
                        );
                    }
                });
            }
            // Unchecked: whatever fits the i64 of the record.
            if let Some(n) = value.as_i64() {
                let mut report = scan_report::parse(SCAN_REPORT.as_bytes(), NOW).unwrap();
                let njs = report
                    .report_summary
                    .iter_mut()
                    .find(|s| s.scanner == "njs")
                    .unwrap();
                *match count {
                    "critical" => &mut njs.critical,
                    "high" => &mut njs.high,
                    "medium" => &mut njs.medium,
                    _ => &mut njs.low,
                } = n;
                for received_at in [NOW, i64::MIN, i64::MAX] {
                    report.received_at = received_at;
                    no_panic(&format!("unchecked {case}"), || {
                        run_scan_results(&mut p, &mut state, &codec, report.clone())
                    });
                }
            }
        }
    }
    assert!(
        accepted > 0 && rejected > 0,
        "{accepted} accepted, {rejected} rejected"
    );
}

/// `report` three times (as three scans of one repository, branch and day), then every tick.
fn run_scan_results(
    p: &mut ScanResults,
    state: &mut ScanResultsState,
    codec: &Codec<ScanReport>,
    report: ScanReport,
) {
    let mut out = Outputs::default();
    for i in 0..3 {
        let mut r = report.clone();
        // A new scan every time, so the day's rollup keeps adding up across cases.
        r.id = uuid::Uuid::new_v4().to_string();
        let payload = codec.encode(&r).unwrap();
        p.process(state, &record(&payload, i, 0), &mut out).unwrap();
    }
    for now in TICKS {
        p.tick(state, now, &mut out);
    }
}
