//! The stream processors against the real broker: the numbers they produce, two instances
//! against one, and a kill -9 in the middle of a stream.
mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use secpipe::{
    roles::{self, Proc},
    runtime::Shutdown,
    Settings,
};
use secpipe_processors::{
    telemetry::{Telemetry, TelemetryTopics},
    InRecord, Outputs, Processor,
};
use secpipe_schemas::{
    failures::{AdminEvent, Image, ScanFailure},
    now_micros,
    telemetry::{sample, TelemetryCodec, TelemetryEvent},
    Codec,
};

/// Reference-mix telemetry stamped to end now (the processor drops events older than its
/// horizon), encoded and keyed as the gateway does.
fn telemetry_input(n: usize, seed: u64) -> Vec<(String, Vec<u8>)> {
    let mut events: Vec<TelemetryEvent> = sample::reference_mix(seed, 3, 4).take(n).collect();
    let last = events.last().unwrap().envelope().event_time;
    let shift = now_micros() - last;
    let codec = TelemetryCodec::new().unwrap();
    events
        .iter_mut()
        .map(|e| {
            e.envelope_mut().event_time += shift;
            (e.partition_key(), codec.encode(e).unwrap())
        })
        .collect()
}

fn telemetry_settings(test: &str) -> Settings {
    let mut s = settings(test);
    // Rollups close on the next minute's heartbeat only: the wall clock must not change outputs
    // between the runs this file compares.
    s.processors.telemetry.rollup_flush_after_secs = 365 * 86_400;
    // Nor may the wall clock forget emitted rollups (the late-data horizon) mid-run.
    s.processors.telemetry.rollup_late_horizon_secs = 365 * 86_400;
    s.processors.batch_max_records = 300;
    s
}

/// What the telemetry processor must output for the input as it sits on its topic: the pure
/// processor run partition by partition.
fn expected_telemetry(s: &Settings) -> BTreeSet<(String, Vec<u8>)> {
    let t = &s.kafka.topics;
    let topics = TelemetryTopics {
        input: t.telemetry.clone(),
        clean: t.telemetry_clean.clone(),
        rollups: t.heartbeat_rollups.clone(),
        alerts: t.alerts.clone(),
    };
    let mut p = Telemetry::new(
        s.processors.telemetry.clone(),
        topics,
        &s.processors.alert_rules,
        secpipe_processors::redact::Redactor::new(&s.gateway.redaction_key),
    )
    .unwrap();
    let input = read_partitioned(s, &t.telemetry);
    let mut states: BTreeMap<i32, <Telemetry as Processor>::State> = BTreeMap::new();
    let mut out = Outputs::default();
    for r in &input {
        let rec = InRecord {
            topic: &t.telemetry,
            partition: r.partition,
            offset: r.offset,
            timestamp_ms: r.timestamp_ms,
            key: r.key.as_deref(),
            payload: &r.payload,
        };
        p.process(states.entry(r.partition).or_default(), &rec, &mut out)
            .unwrap();
    }
    out.records
        .into_iter()
        .map(|r| (r.topic, r.payload))
        .collect()
}

/// Every output record on the processor's topics, counted by (topic, payload).
fn actual_telemetry(s: &Settings) -> BTreeMap<(String, Vec<u8>), usize> {
    let t = &s.kafka.topics;
    let mut all = BTreeMap::new();
    for topic in [&t.telemetry_clean, &t.heartbeat_rollups, &t.alerts] {
        for (_, payload) in read_all(s, topic) {
            *all.entry((topic.clone(), payload)).or_insert(0) += 1;
        }
    }
    all
}

async fn wait_consumed(s: &Settings, processor: &str, topic: &str, secs: u64) {
    let group = format!("{}{processor}", s.processors.group_prefix);
    let total = records_in(s, topic);
    eventually(secs, "the processor to commit every input offset", || {
        let s = s.clone();
        let group = group.clone();
        let topic = topic.to_string();
        async move {
            tokio::task::spawn_blocking(move || {
                (committed(&s, &group, &topic) >= total).then_some(())
            })
            .await
            .unwrap()
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_become_admin_events_with_the_right_counts() {
    let s = settings("adminevents");
    require_stack(&s).await;
    let codec = Codec::<ScanFailure>::new().unwrap();
    let t0 = now_micros();
    let failure = |image: &str, reason: &str, dt_secs: i64| {
        let f = ScanFailure {
            failure_id: uuid::Uuid::new_v4().to_string(),
            command: "image scan".into(),
            image: Image {
                full_name: image.into(),
                registry: None,
                repository: image.into(),
                tag: None,
                digest: None,
                original: None,
            },
            reason: reason.into(),
            source: "api".into(),
            cluster: Some("prod".into()),
            occurred_at: t0 + dt_secs * 1_000_000,
            received_at: t0,
        };
        (f.image.full_name.clone(), codec.encode(&f).unwrap())
    };
    let mut input: Vec<_> = (0..5)
        .map(|i| failure("app-a", "timeout", i * 10))
        .collect();
    input.push(failure("app-a", "unauthorized", 3));
    input.push(failure("app-b", "timeout", 4));
    input.push(failure("app-b", "timeout", 50));
    produce_many(&s, &s.kafka.topics.scan_failures, &input).await;

    let (trigger, shutdown) = Shutdown::new();
    let task = tokio::spawn(roles::processor(s.clone(), Proc::AdminEvents, shutdown));
    wait_consumed(&s, "admin-events", &s.kafka.topics.scan_failures, 60).await;
    trigger.trigger();
    task.await.unwrap().unwrap();

    let events: Vec<AdminEvent> = read_all(&s, &s.kafka.topics.admin_events)
        .iter()
        .map(|(_, p)| Codec::<AdminEvent>::new().unwrap().decode(p).unwrap())
        .collect();
    assert_eq!(events.len(), 8, "one emission per failure");
    let mut newest: BTreeMap<String, AdminEvent> = BTreeMap::new();
    for e in events {
        if newest.get(&e.id).is_none_or(|n| n.version < e.version) {
            newest.insert(e.id.clone(), e);
        }
    }
    let mut counts: Vec<(String, String, i64)> = newest
        .values()
        .map(|e| (e.image.full_name.clone(), e.reason.clone(), e.occurrences))
        .collect();
    counts.sort();
    assert_eq!(
        counts,
        vec![
            ("app-a".into(), "timeout".into(), 5),
            ("app-a".into(), "unauthorized".into(), 1),
            ("app-b".into(), "timeout".into(), 2),
        ]
    );
    let a = newest.values().find(|e| e.occurrences == 5).unwrap();
    assert_eq!((a.first_seen, a.last_seen), (t0, t0 + 40_000_000));
    assert_eq!(
        a.expires_at,
        a.last_seen + 4 * 86_400 * 1_000_000,
        "4 days by default"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_outputs_match_the_processor_logic_and_two_instances_match_one() {
    let s = telemetry_settings("twoinstances");
    require_stack(&s).await;
    produce_many(&s, &s.kafka.topics.telemetry, &telemetry_input(3_000, 5)).await;
    let expected = expected_telemetry(&s);
    assert!(
        expected.len() > 500,
        "the mix produces outputs: {}",
        expected.len()
    );

    let (trigger, shutdown) = Shutdown::new();
    let a = tokio::spawn(roles::processor(
        s.clone(),
        Proc::Telemetry,
        shutdown.clone(),
    ));
    let b = tokio::spawn(roles::processor(s.clone(), Proc::Telemetry, shutdown));
    wait_consumed(&s, "telemetry", &s.kafka.topics.telemetry, 240).await;
    trigger.trigger();
    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();

    let actual = actual_telemetry(&s);
    let distinct: BTreeSet<_> = actual.keys().cloned().collect();
    assert_eq!(
        distinct.len(),
        expected.len(),
        "nothing lost, nothing extra"
    );
    assert!(distinct == expected);
    assert!(
        actual.values().all(|&n| n == 1),
        "a clean run duplicates nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_loses_nothing_and_duplicates_only_identical_records() {
    let mut s = telemetry_settings("kill9");
    s.processors.batch_max_records = 200;
    require_stack(&s).await;
    produce_many(&s, &s.kafka.topics.telemetry, &telemetry_input(6_000, 9)).await;
    let expected = expected_telemetry(&s);
    let group = format!("{}telemetry", s.processors.group_prefix);
    let total = records_in(&s, &s.kafka.topics.telemetry);

    let spawn = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_secpipe"))
            .args(["process", "telemetry"])
            .envs(child_env(&s))
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("secpipe binary")
    };
    let mut child = ChildGuard(spawn());
    // Kill it once it has committed part of the stream, but not all of it.
    let partway = eventually(240, "the first commits", || {
        let (s, group, topic) = (s.clone(), group.clone(), s.kafka.topics.telemetry.clone());
        async move {
            let c = tokio::task::spawn_blocking(move || committed(&s, &group, &topic))
                .await
                .unwrap();
            (c > 0).then_some(c)
        }
    })
    .await;
    child.0.kill().expect("kill -9");
    child.0.wait().unwrap();
    assert!(
        partway < total,
        "killed mid-stream ({partway} of {total} committed)"
    );

    let child = ChildGuard(spawn());
    wait_consumed(&s, "telemetry", &s.kafka.topics.telemetry, 240).await;
    drop(child);

    let actual = actual_telemetry(&s);
    let distinct: BTreeSet<_> = actual.keys().cloned().collect();
    let lost: Vec<_> = expected.difference(&distinct).collect();
    let extra: Vec<_> = distinct.difference(&expected).collect();
    assert!(lost.is_empty(), "{} outputs lost", lost.len());
    assert!(
        extra.is_empty(),
        "{} outputs that a clean run would not have written",
        extra.len()
    );
    // Copies from the replayed batch are byte-identical, with the same stable ids: the tables
    // keep one row of each.
    let copies: usize = actual.values().map(|n| n - 1).sum();
    eprintln!("kill -9 at {partway}/{total} committed: {copies} identical re-emitted records");
}

/// Heartbeats of `processes` processes (one host each), `n` in all, spread over the last three
/// minutes: a workload whose state (a few open rollups) stays small while its changelog grows.
fn heartbeats(n: usize, processes: usize) -> Vec<(String, Vec<u8>)> {
    let codec = TelemetryCodec::new().unwrap();
    let template = sample::one_of_each(5)
        .into_iter()
        .find(|e| matches!(e, TelemetryEvent::Heartbeat(_)))
        .unwrap();
    let start = now_micros() - 180_000_000;
    (0..n)
        .map(|i| {
            let mut ev = template.clone();
            let e = ev.envelope_mut();
            e.host = format!("snap-host-{}", i % processes);
            e.container_id = None;
            e.pid = 100;
            e.event_id = format!("hb-{i}");
            e.event_time = start + (i as i64) * 180_000_000 / n as i64;
            (ev.partition_key(), codec.encode(&ev).unwrap())
        })
        .collect()
}

/// Restore starts at the latest snapshot, not at the changelog's beginning, and the restored
/// state is exact: a restarted processor fed more input writes exactly what one uninterrupted
/// run over all of it writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_reads_from_the_latest_snapshot_and_the_state_is_exact() {
    let mut s = telemetry_settings("snapshot");
    // Small batches: every flush rewrites the open rollups, so history outgrows the state.
    s.processors.batch_max_records = 10;
    s.processors.batch_max_wait_ms = 5;
    s.processors.snapshot_min_records = 100;
    require_stack(&s).await;
    secpipe::ops::metrics();
    let input = heartbeats(3_000, 6);
    produce_many(&s, &s.kafka.topics.telemetry, &input[..2_000]).await;
    let (trigger, shutdown) = Shutdown::new();
    let task = tokio::spawn(roles::processor(s.clone(), Proc::Telemetry, shutdown));
    wait_consumed(&s, "telemetry", &s.kafka.topics.telemetry, 240).await;
    trigger.trigger();
    task.await.unwrap().unwrap();
    let changelog = format!("{}telemetry", s.processors.changelog_prefix);
    let history = records_in(&s, &changelog);

    let metric = |name: &str| -> f64 {
        secpipe::ops::metrics()
            .render()
            .lines()
            .filter(|l| l.starts_with(name) && l.contains(&changelog))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let (read_before, restores_before) = (
        metric("secpipe_state_restore_records_total"),
        metric("secpipe_state_restore_seconds_count"),
    );
    let (trigger, shutdown) = Shutdown::new();
    let task = tokio::spawn(roles::processor(s.clone(), Proc::Telemetry, shutdown));
    produce_many(&s, &s.kafka.topics.telemetry, &input[2_000..]).await;
    wait_consumed(&s, "telemetry", &s.kafka.topics.telemetry, 240).await;
    trigger.trigger();
    task.await.unwrap().unwrap();
    let restores = metric("secpipe_state_restore_seconds_count") - restores_before;
    let read = metric("secpipe_state_restore_records_total") - read_before;
    // Both partitions restored; a late rebalance on tansu (the previous member's leave handled
    // after this one joined) can move them once more, and each move restores again.
    assert!(restores >= 2.0, "both partitions restored: {restores}");
    let per_round = read / (restores / 2.0);
    eprintln!("restore read {read} of the changelog's {history} records in {restores} restores");
    assert!(
        per_round < history as f64 / 2.0,
        "restore read {per_round} of {history} changelog records per round: it must start at a snapshot"
    );

    let expected = expected_telemetry(&s);
    let actual = actual_telemetry(&s);
    let distinct: BTreeSet<_> = actual.keys().cloned().collect();
    assert_eq!(
        distinct.len(),
        expected.len(),
        "nothing lost, nothing extra"
    );
    assert!(
        distinct == expected,
        "the restored state made the same outputs"
    );
}

/// A processor that has caught up flushes once `processors.batch_min_wait_ms` has passed, not
/// after `batch_max_wait_ms` or at the next tick (both two minutes here, longer than the test
/// waits): its outputs are on the topic and its input committed within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caught_up_processor_flushes_without_waiting_out_batch_max_wait() {
    let mut s = settings("caughtupproc");
    s.processors.batch_max_wait_ms = 120_000;
    s.processors.tick_interval_ms = 120_000;
    s.processors.batch_min_wait_ms = 10;
    s.processors.batch_max_records = 100_000;
    require_stack(&s).await;
    let (trigger, shutdown) = Shutdown::new();
    let task = tokio::spawn(roles::processor(s.clone(), Proc::AdminEvents, shutdown));
    let codec = Codec::<ScanFailure>::new().unwrap();
    let t0 = now_micros();
    let input: Vec<(String, Vec<u8>)> = (0..3)
        .map(|i| {
            let f = ScanFailure {
                failure_id: format!("caught-up-{i}"),
                command: "image check".into(),
                image: Image {
                    full_name: format!("app-{i}"),
                    registry: None,
                    repository: format!("app-{i}"),
                    tag: None,
                    digest: None,
                    original: None,
                },
                reason: "timeout".into(),
                source: "api".into(),
                cluster: None,
                occurred_at: t0,
                received_at: t0,
            };
            (f.image.full_name.clone(), codec.encode(&f).unwrap())
        })
        .collect();
    produce_many(&s, &s.kafka.topics.scan_failures, &input).await;
    // 60 s covers the group join on a loaded machine and is still half of batch_max_wait_ms.
    wait_consumed(&s, "admin-events", &s.kafka.topics.scan_failures, 60).await;
    assert_eq!(read_all(&s, &s.kafka.topics.admin_events).len(), 3);
    trigger.trigger();
    task.await.unwrap().unwrap();
}
