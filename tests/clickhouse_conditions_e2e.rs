//! A condition of the ClickHouse server is not a bad row: with every insert refused because
//! the connection is read-only (Code 164) while records keep arriving, the loader holds its
//! batch, dead-letters nothing, commits nothing, reports not ready, and loads everything once
//! the server takes writes again.
mod common;

use std::time::{Duration, Instant};

use common::*;
use secpipe::{roles, runtime::Shutdown};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_server_holds_batches_and_nothing_is_dead_lettered() {
    let mut s = settings("readonly");
    fresh_database(&mut s).await;
    require_stack(&s).await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let switch = ReadOnlySwitch::start(s.clickhouse.url.clone()).await;
    let mut through = s.clone();
    through.clickhouse.url = format!("http://{}", switch.addr);
    through.loader.retry_initial_backoff_ms = 50;
    through.loader.retry_max_backoff_ms = 300;

    let (trigger, shutdown) = Shutdown::new();
    let loader = tokio::spawn(roles::clickhouse_loader(through.clone(), shutdown));
    produce_many(&s, &s.kafka.topics.findings, &findings(&run, 0, 100)).await;
    eventually(60, "the first 100 rows", || async {
        (finding_rows(&s).await == 100).then_some(())
    })
    .await;

    switch.set_readonly(true);
    let group = format!("{}.findings", s.loader.group_id);
    let mut sent = 100;
    let started = Instant::now();
    let mut saw_not_ready = false;
    while started.elapsed() < Duration::from_secs(8) {
        produce_many(
            &s,
            &s.kafka.topics.findings,
            &findings(&run, sent, sent + 50),
        )
        .await;
        sent += 50;
        if let Err(problems) = secpipe::ops::readiness(&through).await {
            saw_not_ready |= problems
                .iter()
                .any(|p| p.contains("sink.clickhouse.findings") && p.contains("164"));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        saw_not_ready,
        "/readyz reports the held batch while ClickHouse is read-only"
    );
    assert_eq!(
        finding_rows(&s).await,
        100,
        "nothing lands while the server refuses writes"
    );
    assert_eq!(
        committed(&s, &group, &s.kafka.topics.findings),
        100,
        "nothing is committed while the batch is held"
    );
    assert_eq!(
        records_in(&s, &s.kafka.topics.dead_letter),
        0,
        "no row is blamed"
    );

    switch.set_readonly(false);
    eventually(90, "every row once the server takes writes", || async {
        (finding_rows(&s).await == sent as u64).then_some(())
    })
    .await;
    let ready = eventually(30, "/readyz to recover", || async {
        let r = secpipe::ops::readiness(&through).await;
        match r {
            Ok(()) => Some(()),
            Err(p) if !p.iter().any(|p| p.contains("destination unavailable")) => Some(()),
            Err(_) => None,
        }
    });
    ready.await;
    trigger.trigger();
    loader.await.unwrap().unwrap();
    assert_eq!(
        records_in(&s, &s.kafka.topics.dead_letter),
        0,
        "0 dead letters"
    );
}
