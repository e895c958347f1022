//! Event-time correctness on the real broker and ClickHouse: heartbeats of a minute whose rollup
//! was already emitted (a backlog catch-up, a late agent) update that rollup, so `FINAL` shows
//! one row per process and minute with every heartbeat counted.
mod common;

use common::*;
use secpipe::{
    roles::{self, Proc},
    runtime::Shutdown,
};
use secpipe_schemas::{
    now_micros,
    telemetry::{sample, TelemetryCodec, TelemetryEvent},
};

const MINUTE: i64 = 60_000_000;

fn heartbeat(host: &str, id: &str, at: i64) -> (String, Vec<u8>) {
    let mut ev = sample::one_of_each(7)
        .into_iter()
        .find(|e| matches!(e, TelemetryEvent::Heartbeat(_)))
        .unwrap();
    let e = ev.envelope_mut();
    e.host = host.into();
    e.pid = 42;
    e.container_id = None;
    e.event_id = id.into();
    e.event_time = at;
    (
        ev.partition_key(),
        TelemetryCodec::new().unwrap().encode(&ev).unwrap(),
    )
}

#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct Rollup {
    rows: u64,
    heartbeats: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_heartbeats_after_the_flush_update_their_minute() {
    let mut s = settings("late");
    fresh_database(&mut s).await;
    // Flush a minute as soon as it ended, and look often.
    s.processors.telemetry.rollup_flush_after_secs = 0;
    s.processors.tick_interval_ms = 200;
    require_stack(&s).await;
    let host = format!("late-{}", uuid::Uuid::new_v4().simple());
    let minute = (now_micros() - 3 * MINUTE).div_euclid(MINUTE) * MINUTE;

    let (trigger, shutdown) = Shutdown::new();
    let processor = tokio::spawn(roles::processor(
        s.clone(),
        Proc::Telemetry,
        shutdown.clone(),
    ));
    let loader = tokio::spawn(roles::clickhouse_loader(s.clone(), shutdown));
    let on_time: Vec<_> = (0..4)
        .map(|i| heartbeat(&host, &format!("{host}-{i}"), minute + (i + 1) * 1_000_000))
        .collect();
    produce_many(&s, &s.kafka.topics.telemetry, &on_time).await;

    let ch = s.clickhouse.client();
    let query = format!(
        "SELECT count() AS rows, toUInt64(sum(heartbeats)) AS heartbeats \
         FROM heartbeat_rollups FINAL WHERE host = '{host}'"
    );
    let first: Rollup = eventually(90, "the minute's rollup with 4 heartbeats", || {
        let (ch, query) = (ch.clone(), query.clone());
        async move {
            let r: Rollup = ch.query(&query).fetch_one().await.ok()?;
            (r.heartbeats == 4).then_some(r)
        }
    })
    .await;
    assert_eq!(first.rows, 1);

    // Two more heartbeats of the same minute, after its rollup was emitted.
    let late: Vec<_> = (4..6)
        .map(|i| heartbeat(&host, &format!("{host}-{i}"), minute + (i * 10) * 1_000_000))
        .collect();
    produce_many(&s, &s.kafka.topics.telemetry, &late).await;
    let done: Rollup = eventually(90, "the same rollup with all 6 heartbeats", || {
        let (ch, query) = (ch.clone(), query.clone());
        async move {
            let r: Rollup = ch.query(&query).fetch_one().await.ok()?;
            (r.heartbeats >= 6).then_some(r)
        }
    })
    .await;
    assert_eq!(
        (done.rows, done.heartbeats),
        (1, 6),
        "one row per process and minute under FINAL, every heartbeat counted"
    );
    trigger.trigger();
    processor.await.unwrap().unwrap();
    loader.await.unwrap().unwrap();
}
