//! Chaos while scaling: up to three `secpipe process admin-events` and three
//! `secpipe sink clickhouse` processes, scaled out and in, stopped with SIGTERM and killed with -9
//! while failed scans flow. At the end ClickHouse must hold exactly what one instance fed the
//! same input would produce: one admin event per image and reason, with every failure counted
//! once. Physical duplicate rows (what `FINAL` collapses) are printed next to the collapsed count.
//!
//! After a kill -9, tansu's coordinator can leave the surviving members unassigned for 40 s or
//! more; the final wait allows for it.
mod common;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use common::*;
use secpipe::Settings;
use secpipe_processors::{admin_events::AdminEvents, InRecord, Outputs, Processor};
use secpipe_schemas::{
    alert::Alert,
    failures::{AdminEvent, Image, ScanFailure},
    now_micros, Codec,
};

const IMAGES: usize = 8;

fn failures(run: &str, from: usize, to: usize, t0: i64) -> Vec<(String, Vec<u8>)> {
    let codec = Codec::<ScanFailure>::new().unwrap();
    (from..to)
        .map(|i| {
            let image = format!("chaos/{run}/img-{}", i % IMAGES);
            let f = ScanFailure {
                failure_id: format!("{run}-{i}"),
                command: "image scan".into(),
                image: Image {
                    full_name: image.clone(),
                    registry: None,
                    repository: image.clone(),
                    tag: None,
                    digest: None,
                    original: None,
                },
                reason: if i % 3 == 0 {
                    "timeout"
                } else {
                    "unauthorized"
                }
                .into(),
                source: "api".into(),
                cluster: Some("prod".into()),
                // Strictly increasing per image, all inside one dedupe window.
                occurred_at: t0 + i as i64 * 10_000,
                received_at: t0,
            };
            (image, codec.encode(&f).unwrap())
        })
        .collect()
}

/// (image, reason) -> failures, computed from the input alone.
fn expected(run: &str, n: usize) -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    for i in 0..n {
        let reason = if i % 3 == 0 {
            "timeout"
        } else {
            "unauthorized"
        };
        *out.entry((
            format!("chaos/{run}/img-{}", i % IMAGES),
            reason.to_string(),
        ))
        .or_default() += 1;
    }
    out
}

/// What one instance of the admin-events processor outputs for the input as it sits on its
/// topic: the newest occurrences per admin event id, and the alert ids.
fn single_instance(s: &Settings) -> (BTreeMap<String, u64>, std::collections::BTreeSet<String>) {
    let t = &s.kafka.topics;
    let mut p = AdminEvents::new(
        s.processors.admin_events.clone(),
        &t.scan_failures,
        &t.admin_events,
        &t.alerts,
        &s.processors.alert_rules,
    )
    .unwrap();
    let mut states: BTreeMap<i32, <AdminEvents as Processor>::State> = BTreeMap::new();
    let mut out = Outputs::default();
    for r in read_partitioned(s, &t.scan_failures) {
        let rec = InRecord {
            topic: &t.scan_failures,
            partition: r.partition,
            offset: r.offset,
            timestamp_ms: r.timestamp_ms,
            key: r.key.as_deref(),
            payload: &r.payload,
        };
        p.process(states.entry(r.partition).or_default(), &rec, &mut out)
            .unwrap();
    }
    let (events, alerts) = (
        Codec::<AdminEvent>::new().unwrap(),
        Codec::<Alert>::new().unwrap(),
    );
    let mut newest: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut alert_ids = std::collections::BTreeSet::new();
    for r in out.records {
        if r.topic == t.admin_events {
            let e = events.decode(&r.payload).unwrap();
            let slot = newest.entry(e.id.clone()).or_default();
            if e.version as u64 >= slot.0 {
                *slot = (e.version as u64, e.occurrences as u64);
            }
        } else if r.topic == t.alerts {
            alert_ids.insert(alerts.decode(&r.payload).unwrap().alert_id);
        }
    }
    (
        newest.into_iter().map(|(id, (_, n))| (id, n)).collect(),
        alert_ids,
    )
}

#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct Occ {
    image: String,
    reason: String,
    occurrences: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_and_killing_members_ends_with_the_output_of_one_instance() {
    let mut s = settings("chaos");
    fresh_database(&mut s).await;
    require_stack(&s).await;
    let env = child_env(&s);
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let t0 = now_micros();
    let total = 900;
    // Each member logs to its own file, kept for a failed run to be read.
    let logs = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("chaos-{run}"));
    std::fs::create_dir_all(&logs).unwrap();
    eprintln!("chaos: member logs in {}", logs.display());
    let started = std::cell::Cell::new(0);
    let start = |args: &[&str]| {
        started.set(started.get() + 1);
        let log = logs.join(format!("{}-{}.log", args.join("-"), started.get()));
        Role::start_logged(args, &env, Some(log), "info")
    };
    let mut procs = vec![start(&["process", "admin-events"])];
    let mut loaders = vec![start(&["sink", "clickhouse"])];

    // The chaos script: one step per slice of the input.
    let steps: [&str; 9] = [
        "scale out processors",
        "scale out loaders",
        "scale out processors",
        "kill -9 a processor",
        "SIGTERM a loader",
        "kill -9 a loader",
        "scale in processors (SIGTERM)",
        "restart killed members",
        "scale out loaders",
    ];
    let slice = total / steps.len();
    for (k, step) in steps.iter().enumerate() {
        let input = failures(&run, k * slice, (k + 1) * slice, t0);
        produce_many(&s, &s.kafka.topics.scan_failures, &input).await;
        eprintln!("chaos: {step}");
        match *step {
            "scale out processors" => procs.push(start(&["process", "admin-events"])),
            "scale out loaders" => loaders.push(start(&["sink", "clickhouse"])),
            "kill -9 a processor" => procs[0].kill_9(),
            "kill -9 a loader" => loaders[0].kill_9(),
            "SIGTERM a loader" => {
                let l = loaders.iter_mut().rfind(|l| l.is_running()).unwrap();
                let status = tokio::task::block_in_place(|| l.sigterm(40));
                assert!(
                    status.success(),
                    "a loader stops cleanly on SIGTERM: {status}"
                );
            }
            "scale in processors (SIGTERM)" => {
                let p = procs.iter_mut().rfind(|p| p.is_running()).unwrap();
                let status = tokio::task::block_in_place(|| p.sigterm(40));
                assert!(
                    status.success(),
                    "a processor stops cleanly on SIGTERM: {status}"
                );
            }
            "restart killed members" => {
                for r in procs.iter_mut().chain(loaders.iter_mut()) {
                    if !r.is_running() {
                        r.restart();
                    }
                }
            }
            other => unreachable!("{other}"),
        }
        // Let the group settle a little while records flow, as an operator's actions would.
        let until = Instant::now() + Duration::from_secs(4);
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    let fed = slice * steps.len();
    let want = expected(&run, fed);
    let ch = s.clickhouse.client();
    let occurrences = || async {
        let rows: Vec<Occ> = ch
            .query(
                "SELECT image, reason, toUInt64(occurrences) AS occurrences \
                 FROM admin_events FINAL",
            )
            .fetch_all()
            .await
            .unwrap_or_default();
        rows.into_iter()
            .map(|r| ((r.image, r.reason), r.occurrences))
            .collect::<BTreeMap<(String, String), u64>>()
    };
    let failure_rows = || async {
        ch.query("SELECT uniqExact(failure_id) FROM scan_failures")
            .fetch_one::<u64>()
            .await
            .unwrap_or_default()
    };
    // Both paths: the processors' admin events and the loader's raw failures. A loader partition
    // moved after a kill -9 can stay unassigned on tansu for 40 s or more, hence the deadline.
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut got = occurrences().await;
    let mut failure_count = failure_rows().await;
    while (got != want || failure_count != fed as u64) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        got = occurrences().await;
        failure_count = failure_rows().await;
    }
    assert_eq!(got, want, "every failure counted once in ClickHouse");
    assert_eq!(got.len(), IMAGES * 2, "every image failed for both reasons");
    let physical: u64 = ch
        .query("SELECT count() FROM admin_events")
        .fetch_one()
        .await
        .unwrap();
    let collapsed: u64 = ch
        .query("SELECT count() FROM admin_events FINAL")
        .fetch_one()
        .await
        .unwrap();
    eprintln!(
        "chaos: {fed} failures -> {collapsed} admin events under FINAL; {physical} physical rows \
         ({} physical duplicates collapsed); {failure_count} distinct scan_failures rows",
        physical - collapsed
    );
    assert_eq!(failure_count, fed as u64, "every failure landed once");

    // Byte for byte what one instance makes of the same input: events by id, and alerts.
    let (events, alert_ids) = tokio::task::spawn_blocking({
        let s = s.clone();
        move || single_instance(&s)
    })
    .await
    .unwrap();
    #[derive(Debug, clickhouse::Row, serde::Deserialize)]
    struct ById {
        id: String,
        occurrences: u64,
    }
    let by_id: BTreeMap<String, u64> = ch
        .query("SELECT id, toUInt64(occurrences) AS occurrences FROM admin_events FINAL")
        .fetch_all::<ById>()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.id, r.occurrences))
        .collect();
    assert_eq!(by_id, events, "admin events equal a single instance's");
    let alerts: std::collections::BTreeSet<String> = eventually(120, "every alert", || {
        let ch = ch.clone();
        let want = alert_ids.clone();
        async move {
            let got: Vec<String> = ch
                .query("SELECT DISTINCT alert_id FROM alerts")
                .fetch_all()
                .await
                .ok()?;
            let got: std::collections::BTreeSet<String> = got.into_iter().collect();
            (got.len() >= want.len()).then_some(got)
        }
    })
    .await;
    assert_eq!(alerts, alert_ids, "alerts equal a single instance's");
    eprintln!(
        "chaos: {} alerts, as one instance raises them",
        alerts.len()
    );
    drop(procs);
    drop(loaders);
}
