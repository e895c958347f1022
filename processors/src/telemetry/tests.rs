use secpipe_schemas::telemetry::sample;

use super::*;

const T0: i64 = 1_789_999_980 * 1_000_000; // a minute boundary

fn processor() -> Telemetry {
    let topics = TelemetryTopics {
        input: "raw".into(),
        clean: "clean".into(),
        rollups: "rollups".into(),
        alerts: "alerts".into(),
    };
    Telemetry::new(
        TelemetryConfig::default(),
        topics,
        &crate::alerts::default_rules(),
        "k",
    )
    .unwrap()
}

fn of_kind(kind: &str) -> TelemetryEvent {
    sample::one_of_each(9)
        .into_iter()
        .find(|e| e.kind().as_str() == kind)
        .unwrap()
}

/// `ev` at `t` micros, in process (host-1, pid).
fn at(mut ev: TelemetryEvent, t: i64, pid: i64, id: &str) -> TelemetryEvent {
    let e = ev.envelope_mut();
    e.event_time = t;
    e.pid = pid;
    e.host = "host-1".into();
    e.container_id = None;
    e.event_id = id.into();
    ev
}

fn feed(p: &mut Telemetry, state: &mut TelemetryState, events: &[TelemetryEvent]) -> Outputs {
    let codec = TelemetryCodec::new().unwrap();
    let mut out = Outputs::default();
    for (i, ev) in events.iter().enumerate() {
        let payload = codec.encode(ev).unwrap();
        let ts = ev.envelope().event_time / 1000 + 5;
        let rec = InRecord {
            topic: "raw",
            partition: 0,
            offset: i as i64,
            timestamp_ms: ts,
            key: None,
            payload: &payload,
        };
        p.process(state, &rec, &mut out).unwrap();
    }
    out
}

fn on(out: &Outputs, topic: &str) -> usize {
    out.records.iter().filter(|r| r.topic == topic).count()
}

#[test]
fn the_same_library_or_uri_is_reported_once_per_process() {
    let mut p = processor();
    let mut s = TelemetryState::default();
    let pkg = of_kind("package_info");
    let uri = of_kind("webapp_uri_discovery");
    let out = feed(
        &mut p,
        &mut s,
        &[
            at(pkg.clone(), T0, 1, "a"),
            at(pkg.clone(), T0 + 1, 1, "b"),
            at(pkg, T0 + 2, 2, "c"), // another process: reported again
            at(uri.clone(), T0 + 3, 1, "d"),
            at(uri, T0 + 4, 1, "e"),
        ],
    );
    assert_eq!(on(&out, "clean"), 3);
    assert_eq!(out.counters.dedupe_hits, 2);
}

#[test]
fn memory_warnings_pass_once_per_minute_per_type_per_process() {
    let mut p = processor();
    let mut s = TelemetryState::default();
    let w = of_kind("memory_warning");
    let sec = 1_000_000;
    let out = feed(
        &mut p,
        &mut s,
        &[
            at(w.clone(), T0, 1, "a"),
            at(w.clone(), T0 + 10 * sec, 1, "b"),
            at(w.clone(), T0 + 59 * sec, 1, "c"),
            at(w.clone(), T0 + 60 * sec, 1, "d"),
            at(w, T0 + 5 * sec, 2, "e"),
        ],
    );
    assert_eq!(on(&out, "clean"), 3, "t0, t0+60 s, and the other process");
    assert_eq!(out.counters.rate_limited, 2);
}

#[test]
fn heartbeats_become_one_rollup_per_process_and_minute() {
    let mut p = processor();
    let mut s = TelemetryState::default();
    let TelemetryEvent::Heartbeat(mut hb) = of_kind("heartbeat") else {
        unreachable!()
    };
    hb.cpu_user_ms = 10;
    hb.rss_bytes = 100;
    let sec = 1_000_000;
    let mut beats: Vec<TelemetryEvent> = (0..6)
        .map(|i| {
            at(
                TelemetryEvent::Heartbeat(hb.clone()),
                T0 + i * 10 * sec,
                1,
                &format!("h{i}"),
            )
        })
        .collect();
    let mut bigger = hb.clone();
    bigger.rss_bytes = 300;
    beats.push(at(
        TelemetryEvent::Heartbeat(bigger),
        T0 + 61 * sec,
        1,
        "h6",
    ));
    let out = feed(&mut p, &mut s, &beats);
    assert_eq!(on(&out, "clean"), 0, "heartbeats are not forwarded raw");
    let rollups: Vec<HeartbeatRollup> = out
        .records
        .iter()
        .filter(|r| r.topic == "rollups")
        .map(|r| {
            Codec::<HeartbeatRollup>::new()
                .unwrap()
                .decode(&r.payload)
                .unwrap()
        })
        .collect();
    assert_eq!(
        rollups.len(),
        1,
        "the first minute closed when the second began"
    );
    let r = &rollups[0];
    assert_eq!(
        (
            r.minute,
            r.heartbeats,
            r.cpu_user_ms,
            r.rss_bytes_max,
            r.rss_bytes_sum
        ),
        (T0, 6, 60, 100, 600)
    );
    // The open minute is flushed by tick once it is long over.
    let mut out = Outputs::default();
    p.tick(&mut s, T0 + 10 * 60 * sec, &mut out);
    assert_eq!(on(&out, "rollups"), 1);
    let r = Codec::<HeartbeatRollup>::new()
        .unwrap()
        .decode(&out.records[0].payload)
        .unwrap();
    assert_eq!(
        (r.minute, r.heartbeats, r.rss_bytes_max),
        (T0 + 60 * sec, 1, 300)
    );
}

#[test]
fn events_older_than_the_horizon_are_dropped_and_counted() {
    let mut p = processor();
    let mut s = TelemetryState::default();
    let ev = at(of_kind("file"), T0, 1, "old");
    let payload = TelemetryCodec::new().unwrap().encode(&ev).unwrap();
    let two_days_later_ms = (T0 + 2 * 86_400 * 1_000_000) / 1000;
    let rec = InRecord {
        topic: "raw",
        partition: 0,
        offset: 0,
        timestamp_ms: two_days_later_ms,
        key: None,
        payload: &payload,
    };
    let mut out = Outputs::default();
    p.process(&mut s, &rec, &mut out).unwrap();
    assert_eq!((out.records.len(), out.counters.expired), (0, 1));
}

#[test]
fn unchanged_events_are_forwarded_byte_for_byte_and_secrets_are_redacted() {
    let mut p = processor();
    let mut s = TelemetryState::default();
    let file = at(of_kind("file"), T0, 1, "f");
    let TelemetryEvent::Process(mut proc_ev) = at(of_kind("process"), T0, 1, "p") else {
        unreachable!()
    };
    proc_ev.path = "/usr/bin/curl".into();
    proc_ev.arguments = vec!["-H".into(), "Authorization: Bearer abc.def".into()];
    let codec = TelemetryCodec::new().unwrap();
    let out = feed(
        &mut p,
        &mut s,
        &[file.clone(), TelemetryEvent::Process(proc_ev)],
    );
    assert_eq!(out.records[0].payload, codec.encode(&file).unwrap());
    let forwarded = codec.decode(&out.records[1].payload).unwrap();
    let TelemetryEvent::Process(fw) = forwarded else {
        unreachable!()
    };
    assert!(!fw.arguments[1].contains("abc.def"), "{:?}", fw.arguments);
    assert_eq!(out.counters.redacted, 1);
}

#[test]
fn root_identity_changes_temp_dir_launches_and_new_ports_raise_alerts() {
    let mut p = processor();
    let mut s = TelemetryState::default();
    let TelemetryEvent::IdentityChange(mut idc) = of_kind("identity_change") else {
        unreachable!()
    };
    idc.from_id = 1000;
    idc.to_id = 0;
    let TelemetryEvent::Process(mut pr) = of_kind("process") else {
        unreachable!()
    };
    pr.path = "/tmp/.x/miner".into();
    let TelemetryEvent::WebappRegistration(mut web) = of_kind("webapp_registration") else {
        unreachable!()
    };
    web.local_port = 8443;
    let out = feed(
        &mut p,
        &mut s,
        &[
            at(TelemetryEvent::IdentityChange(idc), T0, 1, "i"),
            at(TelemetryEvent::Process(pr), T0, 1, "p"),
            at(TelemetryEvent::WebappRegistration(web.clone()), T0, 1, "w1"),
            at(TelemetryEvent::WebappRegistration(web), T0, 2, "w2"), // same host and port
        ],
    );
    let alerts: Vec<String> = out
        .records
        .iter()
        .filter(|r| r.topic == "alerts")
        .map(|r| {
            Codec::<Alert>::new()
                .unwrap()
                .decode(&r.payload)
                .unwrap()
                .rule
        })
        .collect();
    assert_eq!(
        alerts,
        vec![
            "identity_change_to_root",
            "process_from_temp_dir",
            "new_listening_port"
        ]
    );
}
