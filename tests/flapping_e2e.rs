//! Many short ClickHouse outages under a steady stream: each lasts long enough for the loader
//! to pause its partitions, and each resume must go on from the record after the last one read
//! (librdkafka drops what it had fetched for a paused partition).
mod common;

use std::time::Duration;

use common::*;
use secpipe::{roles, runtime::Shutdown};

/// Many short outages, each long enough to pause the partitions, while records keep coming:
/// every pause and resume must go on from the record after the last one read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_pauses_and_resumes_lose_nothing() {
    let mut s = settings("flap");
    fresh_database(&mut s).await;
    require_stack(&s).await;
    secpipe::ops::metrics();
    let run = uuid::Uuid::new_v4().simple().to_string();
    let (proxy, mut through) = Proxy::clickhouse(&s).await;
    through.loader.batch_max_rows = 40;
    through.loader.retry_initial_backoff_ms = 20;
    through.loader.retry_max_backoff_ms = 100;
    let (trigger, shutdown) = Shutdown::new();
    let loader = tokio::spawn(roles::clickhouse_loader(through.clone(), shutdown));
    let stage = "sink.clickhouse.findings";
    let mut sent = 0;
    for _ in 0..8 {
        // About 1.8 s without ClickHouse (a pause after 1 s), then records with it back.
        proxy.cut();
        for step in 0..7 {
            if step == 6 {
                proxy.restore();
            }
            produce_many(
                &s,
                &s.kafka.topics.findings,
                &findings(&run, sent, sent + 60),
            )
            .await;
            sent += 60;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let rows = finding_rows(&s).await;
        if rows == sent as u64 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "after 120 s ClickHouse holds {rows} of the {sent} findings sent"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let pauses = metric_sum("secpipe_consumer_pauses_total", stage);
    assert!(
        pauses >= 3.0,
        "the outages paused the partitions ({pauses} pauses)"
    );
    trigger.trigger();
    loader.await.unwrap().unwrap();
}
