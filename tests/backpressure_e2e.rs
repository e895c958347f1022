//! Backpressure by pausing: ClickHouse is unreachable for three times `max.poll.interval.ms`
//! while records keep arriving. The loader must pause its partitions and keep polling, so the
//! group never drops it (no partition is revoked), nothing is committed early, nothing is lost,
//! and it catches up by itself once ClickHouse is back.
mod common;

use std::time::{Duration, Instant};

use common::*;
use secpipe::{roles, runtime::Shutdown};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_longer_than_the_poll_interval_pauses_without_a_rebalance() {
    let mut s = settings("pause");
    fresh_database(&mut s).await;
    require_stack(&s).await;
    secpipe::ops::metrics();
    let run = uuid::Uuid::new_v4().simple().to_string();
    let (proxy, mut through) = Proxy::clickhouse(&s).await;
    through.kafka.session_timeout_ms = 6_000;
    through.kafka.max_poll_interval_ms = 7_000;
    through.loader.batch_max_rows = 50;
    through.loader.retry_initial_backoff_ms = 50;
    through.loader.retry_max_backoff_ms = 500;
    let stage = "sink.clickhouse.findings";

    let (trigger, shutdown) = Shutdown::new();
    let loader = tokio::spawn(roles::clickhouse_loader(through.clone(), shutdown));
    produce_many(&s, &s.kafka.topics.findings, &findings(&run, 0, 200)).await;
    eventually(90, "the first 200 rows", || async {
        (finding_rows(&s).await == 200).then_some(())
    })
    .await;
    let assigned_before = metric_sum("secpipe_partitions_assigned_total", stage);
    assert!(assigned_before >= 1.0, "the loader owns partitions");

    // Three poll intervals without ClickHouse, with records arriving all along.
    proxy.cut();
    let outage = Duration::from_millis(3 * through.kafka.max_poll_interval_ms);
    let started = Instant::now();
    let mut sent = 200;
    while started.elapsed() < outage {
        produce_many(
            &s,
            &s.kafka.topics.findings,
            &findings(&run, sent, sent + 100),
        )
        .await;
        sent += 100;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        finding_rows(&s).await,
        200,
        "nothing lands while ClickHouse is unreachable"
    );
    let group = format!("{}.findings", s.loader.group_id);
    assert_eq!(
        committed(&s, &group, &s.kafka.topics.findings),
        200,
        "nothing is committed during the outage"
    );

    proxy.restore();
    eventually(120, "every row after the outage", || async {
        (finding_rows(&s).await == sent as u64).then_some(())
    })
    .await;
    assert_eq!(
        metric_sum("secpipe_partitions_revoked_total", stage),
        0.0,
        "the group never took the loader's partitions away"
    );
    assert_eq!(
        metric_sum("secpipe_partitions_assigned_total", stage),
        assigned_before,
        "no new assignment: the member stayed in its group"
    );
    trigger.trigger();
    loader.await.unwrap().unwrap();
    assert_eq!(
        records_in(&s, &s.kafka.topics.dead_letter),
        0,
        "an outage dead-letters nothing"
    );
}
