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
        crate::redact::Redactor::new("k"),
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
    let records: Vec<Alert> = out
        .records
        .iter()
        .filter(|r| r.topic == "alerts")
        .map(|r| Codec::<Alert>::new().unwrap().decode(&r.payload).unwrap())
        .collect();
    let alerts: Vec<&str> = records.iter().map(|a| a.rule.as_str()).collect();
    assert_eq!(
        alerts,
        vec![
            "identity_change_to_root",
            "process_from_temp_dir",
            "new_listening_port"
        ]
    );
    // The notifier's event(): the call and the source event (redacted) travel with the alert.
    let root = &records[0];
    assert!(!root.attributes["call"].is_empty());
    let original: serde_json::Value = serde_json::from_str(&root.attributes["original"]).unwrap();
    assert_eq!(original["type"], "identity_change");
    assert_eq!(original["to_id"], 0);
    assert_eq!(records[1].attributes["call"], "exec");
}

fn heartbeat(t: i64, pid: i64, id: &str) -> TelemetryEvent {
    at(of_kind("heartbeat"), t, pid, id)
}

fn rollups_in(out: &Outputs) -> Vec<HeartbeatRollup> {
    let codec = Codec::<HeartbeatRollup>::new().unwrap();
    out.records
        .iter()
        .filter(|r| r.topic == "rollups")
        .map(|r| codec.decode(&r.payload).unwrap())
        .collect()
}

const SEC: i64 = 1_000_000;

#[test]
fn heartbeats_after_the_tick_flush_re_emit_the_minute_with_a_higher_version() {
    let mut p = processor();
    let mut s = TelemetryState::default();
    let mut emitted = Vec::new();
    let before: Vec<_> = (0..4)
        .map(|i| heartbeat(T0 + i * 10 * SEC, 1, &format!("h{i}")))
        .collect();
    emitted.extend(rollups_in(&feed(&mut p, &mut s, &before)));
    assert!(emitted.is_empty(), "the minute is still open");
    let mut out = Outputs::default();
    p.tick(&mut s, T0 + 60 * SEC + 121 * SEC, &mut out);
    emitted.extend(rollups_in(&out));
    assert_eq!(emitted.len(), 1, "flushed by the tick");
    let after = [
        heartbeat(T0 + 40 * SEC, 1, "h4"),
        heartbeat(T0 + 50 * SEC, 1, "h5"),
    ];
    let out = feed(&mut p, &mut s, &after);
    assert_eq!(out.counters.expired, 0);
    emitted.extend(rollups_in(&out));

    assert_eq!(emitted.len(), 3, "each late heartbeat re-emits at once");
    assert!(emitted.iter().all(|r| r.rollup_id == emitted[0].rollup_id));
    let versions: Vec<i64> = emitted.iter().map(|r| r.version).collect();
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
    let newest = emitted.iter().max_by_key(|r| r.version).unwrap();
    assert_eq!(newest, emitted.last().unwrap());
    assert_eq!((newest.minute, newest.heartbeats), (T0, 6));
}

#[test]
fn a_late_heartbeat_of_a_minute_the_next_one_closed_updates_it_at_once() {
    let mut p = processor();
    let mut s = TelemetryState::default();
    let out = feed(
        &mut p,
        &mut s,
        &[
            heartbeat(T0, 1, "a"),
            heartbeat(T0 + 60 * SEC, 1, "b"), // closes T0
            heartbeat(T0 + 5 * SEC, 1, "late"),
            heartbeat(T0 - 60 * SEC, 1, "older"), // a minute never seen: emitted at once too
        ],
    );
    let r: Vec<(i64, i64, i64)> = rollups_in(&out)
        .iter()
        .map(|r| (r.minute, r.heartbeats, r.version))
        .collect();
    assert_eq!(r, [(T0, 1, 1), (T0, 2, 2), (T0 - 60 * SEC, 1, 1)]);
    // The open minute is unaffected and flushed later as usual.
    let mut out = Outputs::default();
    p.tick(&mut s, T0 + 10 * 60 * SEC, &mut out);
    let r: Vec<(i64, i64)> = rollups_in(&out)
        .iter()
        .map(|r| (r.minute, r.heartbeats))
        .collect();
    assert_eq!(r, [(T0 + 60 * SEC, 1)]);
}

#[test]
fn a_heartbeat_of_a_minute_past_the_late_horizon_is_dropped_and_counted() {
    let mut p = processor();
    let mut s = TelemetryState::default();
    feed(
        &mut p,
        &mut s,
        &[heartbeat(T0, 1, "a"), heartbeat(T0, 2, "b")],
    );
    let mut out = Outputs::default();
    p.tick(&mut s, T0 + 30 * 60 * SEC, &mut out);
    assert_eq!(rollups_in(&out).len(), 2);
    // Past the horizon: forgotten, and a late heartbeat must not start a lower version.
    p.tick(&mut s, T0 + 62 * 60 * SEC, &mut Outputs::default());
    // Through the changelog, as a restarted processor would see it.
    let mut restored = TelemetryState::default();
    for c in s.drain_changes() {
        restored.apply(&c).unwrap();
    }
    let late = heartbeat(T0 + 30 * SEC, 1, "late");
    let codec = TelemetryCodec::new().unwrap();
    let payload = codec.encode(&late).unwrap();
    let rec = InRecord {
        topic: "raw",
        partition: 0,
        offset: 9,
        timestamp_ms: (T0 + 62 * 60 * SEC) / 1000,
        key: None,
        payload: &payload,
    };
    let mut out = Outputs::default();
    p.process(&mut restored, &rec, &mut out).unwrap();
    assert_eq!((out.records.len(), out.counters.expired), (0, 1));
    // A current minute still rolls up.
    let out = feed(
        &mut p,
        &mut restored,
        &[heartbeat(T0 + 62 * 60 * SEC, 1, "now")],
    );
    assert_eq!(out.counters.expired, 0);
}

#[test]
fn hostile_heartbeat_values_saturate_instead_of_overflowing() {
    let mut p = processor();
    let mut s = TelemetryState::default();
    let TelemetryEvent::Heartbeat(mut hb) = of_kind("heartbeat") else {
        unreachable!()
    };
    hb.rss_bytes = 4_611_686_018_427_387_905;
    hb.cpu_user_ms = i64::MAX;
    hb.cpu_system_ms = i64::MIN;
    hb.forks = i64::MAX;
    let beats: Vec<_> = (0..3)
        .map(|i| {
            at(
                TelemetryEvent::Heartbeat(hb.clone()),
                T0 + i,
                1,
                &format!("h{i}"),
            )
        })
        .collect();
    feed(&mut p, &mut s, &beats);
    // Times at the edges of i64 neither.
    let edges = [
        at(TelemetryEvent::Heartbeat(hb.clone()), i64::MIN, 2, "min"),
        at(TelemetryEvent::Heartbeat(hb.clone()), i64::MAX, 2, "max"),
    ];
    feed(&mut p, &mut s, &edges);
    let mut out = Outputs::default();
    p.tick(&mut s, T0 + 10 * 60 * SEC, &mut out);
    let r = rollups_in(&out).into_iter().find(|r| r.pid == 1).unwrap();
    assert_eq!(
        (r.heartbeats, r.rss_bytes_sum, r.rss_bytes_max),
        (3, i64::MAX, 4_611_686_018_427_387_905)
    );
    assert_eq!(
        (r.cpu_user_ms, r.cpu_system_ms, r.forks),
        (i64::MAX, i64::MIN, i64::MAX)
    );
    p.tick(&mut s, i64::MAX, &mut Outputs::default());
    p.tick(&mut s, i64::MIN, &mut Outputs::default());
}

#[test]
fn every_process_of_a_host_shares_its_partition_key_and_its_port_state() {
    let mut p = processor();
    let mut s = TelemetryState::default();
    let TelemetryEvent::WebappRegistration(mut web) = of_kind("webapp_registration") else {
        unreachable!()
    };
    web.local_port = 8080;
    let before = at(TelemetryEvent::WebappRegistration(web.clone()), T0, 1, "w1");
    // The container restarted: a new container and a new pid on the same host.
    let mut after = at(
        TelemetryEvent::WebappRegistration(web),
        T0 + 60 * SEC,
        7,
        "w2",
    );
    after.envelope_mut().container_id = Some("restarted".into());
    assert_eq!(before.partition_key(), after.partition_key());
    assert_ne!(before.process_key(), after.process_key());
    let out = feed(&mut p, &mut s, &[before, after]);
    assert_eq!(out.counters.alerts, 1, "the port is not new to the host");
    assert_eq!(on(&out, "clean"), 2);
}

#[test]
fn per_process_state_stays_per_process_within_a_host_partition() {
    let mut p = processor();
    let mut s = TelemetryState::default();
    let pkg = of_kind("package_info");
    let mut in_container = at(pkg.clone(), T0, 1, "c");
    in_container.envelope_mut().container_id = Some("c1".into());
    let out = feed(
        &mut p,
        &mut s,
        &[
            at(pkg, T0, 1, "a"),
            in_container,
            heartbeat(T0, 1, "h1"),
            heartbeat(T0, 2, "h2"),
        ],
    );
    assert_eq!((on(&out, "clean"), out.counters.dedupe_hits), (2, 0));
    let mut out = Outputs::default();
    p.tick(&mut s, T0 + 10 * 60 * SEC, &mut out);
    let mut pids: Vec<i64> = rollups_in(&out).iter().map(|r| r.pid).collect();
    pids.sort_unstable();
    assert_eq!(pids, [1, 2], "one rollup per process");
}

#[test]
fn a_snapshot_restores_every_store_of_the_telemetry_state() {
    let mut p = processor();
    let mut s = TelemetryState::default();
    let TelemetryEvent::WebappRegistration(mut web) = of_kind("webapp_registration") else {
        unreachable!()
    };
    web.local_port = 8443;
    feed(
        &mut p,
        &mut s,
        &[
            at(of_kind("package_info"), T0, 1, "p"),
            at(of_kind("memory_warning"), T0, 1, "m"),
            at(TelemetryEvent::WebappRegistration(web), T0, 1, "w"),
            heartbeat(T0, 1, "h1"),
            heartbeat(T0 + 60 * SEC, 1, "h2"),
        ],
    );
    p.tick(&mut s, T0 + 2 * 3600 * SEC, &mut Outputs::default());
    feed(
        &mut p,
        &mut s,
        &[
            heartbeat(T0 + 2 * 3600 * SEC, 1, "h3"),
            heartbeat(T0 + 2 * 3600 * SEC + 60 * SEC, 1, "h4"),
        ],
    );
    // seen, warned, port, the open and the emitted minute, the floor.
    assert_eq!(s.live_keys(), 6, "{:?}", s.snapshot());
    crate::state::assert_snapshot_round_trips(&s);
}

#[test]
fn a_backfill_of_hours_old_heartbeats_is_rolled_up_not_dropped() {
    // The wall clock is far past the data: ticks run between the batches of the backfill.
    let mut p = processor();
    let mut s = TelemetryState::default();
    let now = T0 + 5 * 3600 * SEC;
    let mut emitted = Vec::new();
    for minute in 0..4 {
        let mut out = Outputs::default();
        for i in 0..3 {
            let hb = heartbeat(T0 + minute * 60 * SEC + i * 10 * SEC, 1, "backfill");
            let codec = TelemetryCodec::new().unwrap();
            let payload = codec.encode(&hb).unwrap();
            let rec = InRecord {
                topic: "raw",
                partition: 0,
                offset: minute * 3 + i,
                timestamp_ms: now / 1000,
                key: None,
                payload: &payload,
            };
            p.process(&mut s, &rec, &mut out).unwrap();
        }
        p.tick(&mut s, now, &mut out);
        emitted.extend(rollups_in(&out));
        assert_eq!(out.counters.expired, 0, "nothing of a backfill is dropped");
    }
    let mut newest: std::collections::BTreeMap<i64, i64> = Default::default();
    for r in emitted {
        let n = newest.entry(r.minute).or_default();
        *n = (*n).max(r.heartbeats);
    }
    assert_eq!(newest.len(), 4, "one rollup per minute");
    assert!(newest.values().all(|&n| n == 3), "{newest:?}");
}

#[test]
fn a_secret_that_reached_kafka_is_redacted_before_dedupe_keys_and_state() {
    let mut p = processor();
    let mut s = TelemetryState::default();
    let TelemetryEvent::WebappUriDiscovery(mut u) = at(of_kind("webapp_uri_discovery"), T0, 1, "u")
    else {
        unreachable!()
    };
    u.uri = "/sso/callback?jwt=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJzdGF0ZSJ9.c3RhdGU&x=1".into();
    let out = feed(&mut p, &mut s, &[TelemetryEvent::WebappUriDiscovery(u)]);
    assert_eq!(out.counters.redacted, 1);
    // The state (and so the changelog) keys the URI only in its redacted form.
    let state = format!("{s:?}");
    assert!(state.contains("jwt=redacted:"), "{state}");
    assert!(!state.contains("eyJzdWIiOiJzdGF0ZSJ9"), "{state}");
    let mut changes = Vec::new();
    s.seen.drain_into(&mut changes);
    assert!(!format!("{changes:?}").contains("eyJzdWIiOiJzdGF0ZSJ9"));
}
