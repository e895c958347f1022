//! Partition ownership as operators exercise it, each role its own `secpipe` process on the real
//! broker: members join and leave a processor's group while failures flow, a role fails inside
//! `secpipe run`, and ClickHouse stays away longer than `max.poll.interval.ms`.
//!
//! tansu's group coordinator can take tens of seconds to settle a rebalance, so the waits here
//! are generous deadlines on conditions, never sleeps.
mod common;

use std::collections::BTreeMap;

use common::*;
use secpipe::Settings;
use secpipe_producers::{EventProducer, OutRecord};
use secpipe_schemas::{
    failures::{AdminEvent, Image, ScanFailure},
    now_micros, Codec,
};

fn failure(image: &str, t: i64) -> ScanFailure {
    ScanFailure {
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
        reason: "timeout".into(),
        source: "api".into(),
        cluster: Some("prod".into()),
        occurred_at: t,
        received_at: t,
    }
}

/// Produces `failures` to an explicit partition of the scan-failures topic.
async fn produce_to(s: &Settings, partition: i32, failures: &[ScanFailure]) {
    let codec = Codec::<ScanFailure>::new().unwrap();
    let producer = EventProducer::new(&s.kafka, "test").unwrap();
    let payloads: Vec<Vec<u8>> = failures.iter().map(|f| codec.encode(f).unwrap()).collect();
    let records: Vec<OutRecord<'_>> = failures
        .iter()
        .zip(&payloads)
        .map(|(f, p)| OutRecord {
            topic: &s.kafka.topics.scan_failures,
            key: f.image.full_name.as_bytes(),
            payload: p,
            headers: &[],
            partition: Some(partition),
        })
        .collect();
    producer.send_all(&records).await.unwrap();
}

/// The highest `occurrences` emitted per image on the admin-events topic.
fn occurrences(s: &Settings) -> BTreeMap<String, i64> {
    let codec = Codec::<AdminEvent>::new().unwrap();
    let mut out: BTreeMap<String, i64> = BTreeMap::new();
    for (_, payload) in read_all(s, &s.kafka.topics.admin_events) {
        let e = codec.decode(&payload).unwrap();
        let n = out.entry(e.image.full_name.clone()).or_default();
        *n = (*n).max(e.occurrences);
    }
    out
}

async fn wait_occurrences(s: &Settings, want: i64, secs: u64) {
    eventually(
        secs,
        &format!("both admin events at {want} occurrences"),
        || {
            let s = s.clone();
            async move {
                tokio::task::spawn_blocking(move || {
                    let o = occurrences(&s);
                    (o.len() == 2 && o.values().all(|&n| n >= want)).then_some(())
                })
                .await
                .unwrap()
            }
        },
    )
    .await;
}

async fn wait_ready(port: u16, secs: u64) {
    let url = format!("http://127.0.0.1:{port}/readyz");
    eventually(secs, "the second instance to own a partition", || {
        let url = url.clone();
        async move {
            let r = reqwest::get(&url).await.ok()?;
            r.status().is_success().then_some(())
        }
    })
    .await;
}

/// Scale out to two instances, then back in: the instance that gets its partition back must
/// restore the state the other instance left, not reuse what it held before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_out_then_in_keeps_counting_every_occurrence() {
    let s = settings("scalein");
    require_stack(&s).await;
    let env = child_env(&s);
    let t0 = now_micros();
    // One image per partition: whichever partition the second instance takes moves twice.
    let at = |i: i64| t0 + i * 1_000_000;

    let a = Role::start(&["process", "admin-events"], &env);
    produce_to(&s, 0, &[failure("img-a", at(0)), failure("img-a", at(1))]).await;
    produce_to(&s, 1, &[failure("img-b", at(0)), failure("img-b", at(1))]).await;
    wait_occurrences(&s, 2, 90).await;

    let b_port = free_port();
    let mut b_env = env.clone();
    b_env.retain(|(k, _)| k != "SECPIPE__OPS__LISTEN");
    b_env.push(("SECPIPE__OPS__LISTEN".into(), format!("127.0.0.1:{b_port}")));
    let mut b = Role::start(&["process", "admin-events"], &b_env);
    wait_ready(b_port, 120).await;
    produce_to(&s, 0, &[failure("img-a", at(2)), failure("img-a", at(3))]).await;
    produce_to(&s, 1, &[failure("img-b", at(2)), failure("img-b", at(3))]).await;
    wait_occurrences(&s, 4, 120).await;

    let status = b.sigterm(40);
    assert!(
        status.success(),
        "SIGTERM ends the instance cleanly: {status}"
    );
    produce_to(&s, 0, &[failure("img-a", at(4)), failure("img-a", at(5))]).await;
    produce_to(&s, 1, &[failure("img-b", at(4)), failure("img-b", at(5))]).await;
    wait_occurrences(&s, 6, 150).await;
    assert!(a.is_running());
    let o = occurrences(&s);
    assert_eq!(
        o,
        BTreeMap::from([("img-a".to_string(), 6), ("img-b".to_string(), 6)]),
        "6 failures per image, each counted once"
    );
}

/// `secpipe run` whose gateway cannot bind: the process ends non-zero within seconds instead of
/// running its other roles half-alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_exits_non_zero_when_a_role_fails_at_start() {
    let s = settings("runfails");
    require_stack(&s).await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut env = child_env(&s);
    env.push((
        "SECPIPE__GATEWAY__LISTEN".into(),
        taken.local_addr().unwrap().to_string(),
    ));
    let mut run = Role::start(&["run"], &env);
    let status = tokio::task::spawn_blocking(move || run.wait_exit_secs(20))
        .await
        .unwrap()
        .expect("secpipe run exits when its gateway cannot listen");
    assert!(!status.success(), "exit status {status}");
}

/// A processor role whose dead-letter topic does not exist fails on the first bad record; inside
/// `secpipe run` that ends the whole process with a non-zero status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_exits_non_zero_when_a_role_fails_mid_stream() {
    let s = settings("runfailslater");
    require_stack(&s).await;
    let mut env = child_env(&s);
    env.retain(|(k, _)| k != "SECPIPE__KAFKA__TOPICS__DEAD_LETTER");
    env.push((
        "SECPIPE__KAFKA__TOPICS__DEAD_LETTER".into(),
        format!("{}-missing", s.kafka.topics.dead_letter),
    ));
    env.push((
        "SECPIPE__GATEWAY__LISTEN".into(),
        format!("127.0.0.1:{}", free_port()),
    ));
    env.push(("SECPIPE__KAFKA__MESSAGE_TIMEOUT_MS".into(), "3000".into()));
    let mut run = Role::start(&["run"], &env);
    // Running, until the garbage arrives.
    let mut run = tokio::task::spawn_blocking(move || {
        assert!(
            run.wait_exit_secs(5).is_none(),
            "secpipe run starts and keeps running"
        );
        run
    })
    .await
    .unwrap();
    produce_raw(&s, &s.kafka.topics.scan_failures, b"k", b"not avro at all");
    let status = tokio::task::spawn_blocking(move || run.wait_exit_secs(60))
        .await
        .unwrap()
        .expect("secpipe run exits once a role failed");
    assert!(!status.success(), "exit status {status}");
}
