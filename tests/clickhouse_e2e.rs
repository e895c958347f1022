//! ClickHouse side against the real server: the analyst views on known data, loaders that never
//! double, an outage in the middle of a stream, a rejected row, expiry on this server version,
//! and the admin-events API.
mod common;

use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use secpipe::{
    roles,
    runtime::{run_sink, Shutdown},
    Settings,
};
use secpipe_schemas::{
    failures::{AdminEvent, Image},
    now_micros,
    scan::{RepoContext, ScanReport, ScannerSummary},
    Codec, DecodeError,
};
use secpipe_sinks::{
    clickhouse::{
        tables::{AdminEventRow, TableSink},
        ScanResultsSink,
    },
    Sink,
};
use serde_json::{json, Value};

fn report(
    id: &str,
    repo: &str,
    team: &str,
    who: &str,
    types: &[&str],
    js: Option<(i64, &str)>,
    at: i64,
) -> ScanReport {
    let mut summary = vec![ScannerSummary {
        scanner: "Secrets Audit".into(),
        tool: None,
        critical: 0,
        high: 1,
        medium: 0,
        low: 0,
        status: "✅".into(),
    }];
    if let Some((critical, status)) = js {
        summary.push(ScannerSummary {
            scanner: "Source code analyzer for JavaScript".into(),
            tool: None,
            critical,
            high: 2,
            medium: 0,
            low: 1,
            status: status.into(),
        });
    }
    ScanReport {
        id: id.into(),
        scan_mode: Some("ci".into()),
        tool: None,
        repo_context: RepoContext {
            branch: Some("main".into()),
            repository_name: Some(repo.into()),
            invoked_by: Some(who.into()),
            ..Default::default()
        },
        repo_type: types.iter().map(|t| t.to_string()).collect(),
        team: Some(team.into()),
        report_summary: summary,
        origin: "track".into(),
        received_at: at,
    }
}

async fn rows<T: clickhouse::RowOwned + clickhouse::RowRead>(s: &Settings, sql: &str) -> Vec<T> {
    s.clickhouse
        .client()
        .query(sql)
        .fetch_all::<T>()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_view_answers_its_question_on_known_data() {
    let mut s = settings("views");
    fresh_database(&mut s).await;
    let t = now_micros();
    let reports = [
        report(
            "s1",
            "shop-web",
            "shop",
            "alice",
            &["nodejs"],
            Some((1, "❌")),
            t - 3_000_000,
        ),
        report(
            "s2",
            "shop-web",
            "shop",
            "bob",
            &["nodejs"],
            Some((0, "✅")),
            t - 2_000_000,
        ),
        report(
            "s2",
            "shop-web",
            "shop",
            "bob",
            &["nodejs"],
            Some((0, "✅")),
            t - 2_000_000,
        ), // a retry
        report(
            "s3",
            "cart",
            "shop",
            "carol",
            &["nodejs", "python"],
            Some((2, "❌")),
            t - 1_000_000,
        ),
        report("s4", "ledger", "pay", "dave", &["java"], None, t),
    ];
    ScanResultsSink::new(&s.clickhouse)
        .write(&reports)
        .await
        .unwrap();

    let by_repo: Vec<(String, String, String, u64, u64, u64)> = rows(
        &s,
        "SELECT team, repository, scanner, scans, failed_scans, critical FROM v_findings_by_repository ORDER BY repository, scanner",
    )
    .await;
    assert_eq!(
        by_repo,
        vec![
            (
                "shop".into(),
                "cart".into(),
                "Secrets Audit".into(),
                1,
                0,
                0
            ),
            (
                "shop".into(),
                "cart".into(),
                "Source code analyzer for JavaScript".into(),
                1,
                1,
                2
            ),
            (
                "pay".into(),
                "ledger".into(),
                "Secrets Audit".into(),
                1,
                0,
                0
            ),
            (
                "shop".into(),
                "shop-web".into(),
                "Secrets Audit".into(),
                2,
                0,
                0
            ),
            (
                "shop".into(),
                "shop-web".into(),
                "Source code analyzer for JavaScript".into(),
                2,
                1,
                1
            ),
        ],
        "the retried scan counts once"
    );
    let by_team: Vec<(String, u64, u64, u64, u64)> = rows(
        &s,
        "SELECT team, repositories, scans, critical, high FROM v_findings_by_team ORDER BY team",
    )
    .await;
    assert_eq!(
        by_team,
        vec![("pay".into(), 1, 1, 0, 1), ("shop".into(), 2, 3, 3, 9)]
    );
    #[derive(Debug, PartialEq, clickhouse::Row, serde::Deserialize)]
    struct Contacts {
        repository: String,
        invokers: Vec<String>,
    }
    let contacts: Vec<Contacts> = rows(
        &s,
        "SELECT repository, arraySort(invokers) AS invokers FROM v_repository_contacts WHERE repository = 'shop-web'",
    )
    .await;
    assert_eq!(
        contacts,
        vec![Contacts {
            repository: "shop-web".into(),
            invokers: vec!["alice".into(), "bob".into()]
        }]
    );
    let nodejs: Vec<(String, String, u32)> = rows(
        &s,
        "SELECT repository, status, critical FROM v_nodejs_status ORDER BY repository",
    )
    .await;
    assert_eq!(
        nodejs,
        vec![
            ("cart".into(), "❌".into(), 2),
            ("shop-web".into(), "✅".into(), 0)
        ],
        "latest JavaScript status of every Node.js repository"
    );
}

fn admin_event(
    id: &str,
    image: &str,
    reason: &str,
    cluster: &str,
    occurrences: i64,
    last_seen: i64,
    expires_at: i64,
) -> AdminEvent {
    AdminEvent {
        id: id.into(),
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
        cluster: Some(cluster.into()),
        source: "cli".into(),
        first_seen: last_seen - 60_000_000,
        last_seen,
        occurrences,
        version: occurrences,
        expires_at,
        sources: vec!["cli".into()],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_scans_view_and_expiry_by_last_seen_and_retention_on_this_server() {
    let mut s = settings("expiry");
    fresh_database(&mut s).await;
    let now = now_micros();
    let day = 86_400_000_000;
    let events = [
        admin_event(
            "a",
            "nginx",
            "timeout",
            "prod",
            1,
            now - 60_000_000,
            now + 4 * day,
        ),
        admin_event("a", "nginx", "timeout", "prod", 3, now, now + 4 * day), // newer version
        admin_event("b", "nginx", "unauthorized", "prod", 2, now, now + 4 * day),
        admin_event(
            "old",
            "redis",
            "timeout",
            "dev",
            9,
            now - 6 * day,
            now - 2 * day,
        ), // expired
    ];
    TableSink::<AdminEvent, AdminEventRow>::new(&s.clickhouse, "admin_events")
        .write(&events)
        .await
        .unwrap();
    let failed: Vec<(String, String, u64)> = rows(
        &s,
        "SELECT image, reason, occurrences FROM v_failed_scans ORDER BY image, reason",
    )
    .await;
    assert_eq!(
        failed,
        vec![
            ("nginx".into(), "timeout".into(), 3),
            ("nginx".into(), "unauthorized".into(), 2)
        ],
        "newest version per event; the expired one is not counted"
    );
    let report = secpipe_sinks::clickhouse::retention::run(
        &s.clickhouse,
        &s.retention,
        s.processors.admin_events.retention_secs,
    )
    .await
    .unwrap();
    assert_eq!(
        report.admin_event_rows_deleted, 1,
        "the event last seen 6 days ago, by last_seen and the 4-day retention"
    );
    assert!(report.dropped.is_empty(), "{:?}", report.dropped);
    assert!(
        report.ttl_set.is_empty(),
        "18.16 has no table TTL: partitions are dropped instead"
    );
    // The delete is a mutation the server applies in the background.
    let left = eventually(30, "the expired admin event deleted", || async {
        let left: Vec<String> = rows(&s, "SELECT DISTINCT id FROM admin_events ORDER BY id").await;
        (left.len() == 2).then_some(left)
    })
    .await;
    assert_eq!(left, vec!["a".to_string(), "b".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_loader_and_replayed_records_collapse_to_one_row_each() {
    let mut s = settings("nodoubles");
    fresh_database(&mut s).await;
    require_stack(&s).await;
    let codec = Codec::<ScanReport>::new().unwrap();
    let t = now_micros();
    let input: Vec<(String, Vec<u8>)> = (0..200)
        .map(|i| {
            let r = report(
                &format!("scan-{i}"),
                &format!("repo-{}", i % 7),
                "t",
                "x",
                &["go"],
                None,
                t,
            );
            (r.partition_key().to_string(), codec.encode(&r).unwrap())
        })
        .collect();
    produce_many(&s, &s.kafka.topics.scan_results, &input).await;
    let count = |s: Settings| async move {
        let n: (u64, u64) = s
            .clickhouse
            .client()
            .query("SELECT count(), uniqExact(scan_id) FROM scan_results FINAL")
            .fetch_one()
            .await
            .unwrap();
        n
    };
    for (round, group) in ["first", "second"].iter().enumerate() {
        // A second loader with a fresh group re-reads everything: every row is written twice.
        let mut s2 = s.clone();
        s2.loader.group_id = format!("{}.{group}", s.loader.group_id);
        let (trigger, shutdown) = Shutdown::new();
        let s3 = s2.clone();
        let task = tokio::spawn(async move {
            run_sink(
                &s3.kafka,
                &s3.loader,
                "test-loader",
                &s3.kafka.topics.scan_results,
                Codec::<ScanReport>::new().unwrap(),
                ScanResultsSink::new(&s3.clickhouse),
                shutdown,
            )
            .await
        });
        let group_id = s2.loader.group_id.clone();
        eventually(60, "the loader to commit everything", || {
            let (s, g, topic) = (
                s.clone(),
                group_id.clone(),
                s.kafka.topics.scan_results.clone(),
            );
            async move {
                tokio::task::spawn_blocking(move || {
                    (committed(&s, &g, &topic) >= 200).then_some(())
                })
                .await
                .unwrap()
            }
        })
        .await;
        trigger.trigger();
        task.await.unwrap().unwrap();
        // Also produce the same records again (a producer retry): still one row per scan.
        if round == 0 {
            produce_many(&s, &s.kafka.topics.scan_results, &input[..50]).await;
        }
    }
    let raw: u64 = s
        .clickhouse
        .client()
        .query("SELECT count() FROM scan_results")
        .fetch_one()
        .await
        .unwrap();
    assert!(raw >= 200, "rows were written more than once ({raw})");
    assert_eq!(count(s.clone()).await, (200, 200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clickhouse_outage_mid_stream_holds_offsets_and_loses_nothing() {
    let mut s = settings("outage");
    fresh_database(&mut s).await;
    require_stack(&s).await;
    let ch = s.clickhouse.url.trim_start_matches("http://").to_string();
    let proxy = Proxy::start(ch).await;
    let mut through = s.clone();
    through.clickhouse.url = format!("http://{}", proxy.addr);
    through.loader.retry_initial_backoff_ms = 50;
    through.loader.retry_max_backoff_ms = 200;
    let codec = Codec::<ScanReport>::new().unwrap();
    let t = now_micros();
    let batch = |from: usize, to: usize| -> Vec<(String, Vec<u8>)> {
        (from..to)
            .map(|i| {
                let r = report(&format!("o-{i}"), "repo", "t", "x", &[], None, t);
                (r.partition_key().to_string(), codec.encode(&r).unwrap())
            })
            .collect()
    };
    produce_many(&s, &s.kafka.topics.scan_results, &batch(0, 100)).await;
    let (trigger, shutdown) = Shutdown::new();
    let task = tokio::spawn(roles::clickhouse_loader(through.clone(), shutdown));
    let rows_now = |s: Settings| async move {
        let n: u64 = s
            .clickhouse
            .client()
            .query("SELECT uniqExact(scan_id) FROM scan_results")
            .fetch_one()
            .await
            .unwrap();
        n
    };
    let group = format!("{}.scan_results", s.loader.group_id);
    // Commits after a write are not waited for: wait until the first 100 are committed too.
    eventually(60, "the first 100 rows, committed", || async {
        (rows_now(s.clone()).await == 100
            && committed(&s, &group, &s.kafka.topics.scan_results) == 100)
            .then_some(())
    })
    .await;

    proxy.cut();
    produce_many(&s, &s.kafka.topics.scan_results, &batch(100, 300)).await;
    let before = committed(&s, &group, &s.kafka.topics.scan_results);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        rows_now(s.clone()).await,
        100,
        "nothing lands while ClickHouse is unreachable"
    );
    assert_eq!(
        committed(&s, &group, &s.kafka.topics.scan_results),
        before,
        "no offset commit during the outage"
    );

    proxy.restore();
    eventually(60, "every row after the outage", || async {
        (rows_now(s.clone()).await == 300).then_some(())
    })
    .await;
    trigger.trigger();
    task.await.unwrap().unwrap();
    assert_eq!(
        records_in(&s, &s.kafka.topics.dead_letter),
        0,
        "an outage dead-letters nothing"
    );
}

/// A record of a test table that accepts only rows of kind 1.
#[derive(Debug, Clone, serde::Deserialize)]
struct Probe {
    id: String,
    kind: i8,
}

#[derive(Debug, clickhouse::Row, serde::Serialize)]
struct ProbeRow {
    id: String,
    kind: i8,
}

impl From<&Probe> for ProbeRow {
    fn from(p: &Probe) -> Self {
        Self {
            id: p.id.clone(),
            kind: p.kind,
        }
    }
}

struct JsonProbe;

impl secpipe_schemas::Decode<Probe> for JsonProbe {
    fn decode(&self, bytes: &[u8]) -> Result<Probe, DecodeError> {
        serde_json::from_slice(bytes).map_err(|e| DecodeError::Body {
            schema: "probe".into(),
            reason: e.to_string(),
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_clickhouse_rejects_is_dead_lettered_and_the_rest_lands() {
    let mut s = settings("rejected");
    fresh_database(&mut s).await;
    require_stack(&s).await;
    s.clickhouse
        .client()
        // ClickHouse checks each row: a kind other than 1 makes the insert fail (Code 395).
        .query("CREATE TABLE probes (id String, kind Int8, checked UInt8 MATERIALIZED throwIf(kind != 1)) ENGINE = MergeTree ORDER BY id")
        .execute()
        .await
        .unwrap();
    let input: Vec<(String, Vec<u8>)> = (0..20)
        .map(|i| {
            let kind = if i == 13 { 5 } else { 1 };
            (
                format!("k{i}"),
                json!({"id": format!("p{i}"), "kind": kind})
                    .to_string()
                    .into_bytes(),
            )
        })
        .collect();
    produce_many(&s, &s.kafka.topics.scan_results, &input).await;
    let (trigger, shutdown) = Shutdown::new();
    let sink = TableSink::<Probe, ProbeRow>::new(&s.clickhouse, "probes");
    let s3 = s.clone();
    let task = tokio::spawn(async move {
        run_sink(
            &s3.kafka,
            &s3.loader,
            "test-probes",
            &s3.kafka.topics.scan_results,
            JsonProbe,
            sink,
            shutdown,
        )
        .await
    });
    eventually(60, "19 rows and one dead letter", || async {
        let n: u64 = s
            .clickhouse
            .client()
            .query("SELECT count() FROM probes")
            .fetch_one()
            .await
            .unwrap();
        (n == 19 && records_in(&s, &s.kafka.topics.dead_letter) == 1).then_some(())
    })
    .await;
    trigger.trigger();
    task.await.unwrap().unwrap();
    let letter = Codec::<secpipe_schemas::ops::DeadLetter>::new()
        .unwrap()
        .decode(&read_all(&s, &s.kafka.topics.dead_letter)[0].1)
        .unwrap();
    assert!(
        letter.payload.windows(4).any(|w| w == b"p13\""),
        "the rejected record itself"
    );
    assert!(
        letter.error.contains("Code:"),
        "ClickHouse's message: {}",
        letter.error
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_events_api_filters_pages_sorts_and_checks_the_role() {
    let mut s = settings("adminapi");
    fresh_database(&mut s).await;
    require_stack(&s).await;
    let now = now_micros();
    let day = 86_400_000_000;
    let min = 60_000_000;
    let events = [
        admin_event(
            "e1",
            "quay.io/acme/api:1",
            "timeout",
            "prod",
            5,
            now - 30 * min,
            now + 4 * day,
        ),
        admin_event(
            "e2",
            "quay.io/acme/api:1",
            "unauthorized",
            "prod",
            2,
            now - 20 * min,
            now + 4 * day,
        ),
        admin_event(
            "e3",
            "nginx:1.25",
            "timeout",
            "dev",
            9,
            now - 10 * min,
            now + 4 * day,
        ),
        admin_event(
            "e4",
            "redis:7",
            "timeout",
            "dev",
            1,
            now - 5 * day,
            now - day,
        ), // expired: last seen more than the 4-day retention ago
    ];
    TableSink::<AdminEvent, AdminEventRow>::new(&s.clickhouse, "admin_events")
        .write(&events)
        .await
        .unwrap();
    s.gateway.tokens.push(secpipe_gateway::TokenConfig {
        name: "admin".into(),
        sha256: secpipe_gateway::hash_token("admin-token"),
        role: secpipe_gateway::Role::Admin,
        kinds: vec![],
        rate_per_sec: 0,
    });
    let gw = Pipeline::gateway_only(&s).await;
    let http = reqwest::Client::new();
    let get = |path: &str, token: Option<&str>| {
        let mut req = http.get(gw.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    let ids = |v: &Value| -> Vec<String> {
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    };
    let list = |path: &str| {
        let fut = get(path, Some("admin-token"));
        async move {
            let r = fut.await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };

    let all = list("/v1/admin-events").await;
    assert_eq!(all["total"], 3, "expired events are gone");
    assert_eq!(
        ids(&all),
        vec!["e3", "e2", "e1"],
        "newest last_seen first by default"
    );
    assert_eq!(
        ids(&list("/v1/admin-events?image=quay.io/acme/api:1").await),
        vec!["e2", "e1"]
    );
    assert_eq!(
        ids(&list("/v1/admin-events?reason=timeout&cluster=prod").await),
        vec!["e1"]
    );
    assert_eq!(
        ids(&list("/v1/admin-events?command=image%20scan&sort=-occurrences").await),
        vec!["e3", "e1", "e2"]
    );
    let since = time_rfc3339(now - 25 * min);
    assert_eq!(
        ids(&list(&format!("/v1/admin-events?since={since}&sort=last_seen")).await),
        vec!["e2", "e3"]
    );
    let page = list("/v1/admin-events?sort=occurrences&limit=2&offset=1").await;
    assert_eq!(
        (ids(&page), page["total"].as_u64()),
        (vec!["e1".to_string(), "e3".to_string()], Some(3))
    );
    let one = get("/v1/admin-events/e1", Some("admin-token"))
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(
        (
            one["occurrences"].as_u64(),
            one["image"]["full_name"].as_str()
        ),
        (Some(5), Some("quay.io/acme/api:1"))
    );

    assert_eq!(
        get("/v1/admin-events/e4", Some("admin-token"))
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get("/v1/admin-events", None).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    for token in [ANALYST_TOKEN, PRODUCER_TOKEN] {
        let r = get("/v1/admin-events", Some(token)).await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "forbidden");
    }
    let bad = get("/v1/admin-events?limit=0", Some("admin-token"))
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(bad.json::<Value>().await.unwrap()["field"], "limit");
    gw.stop().await;
}

fn time_rfc3339(micros: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(micros / 1_000_000)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// A loader that has caught up writes what it read once `loader.batch_min_wait_ms` has passed,
/// not after `batch_max_wait_ms` (two minutes here, longer than the test waits), and the
/// telemetry rows it encodes straight from the events read back as those events: their columns,
/// their JSON in `details`, and one `host_packages` row per package.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caught_up_loader_writes_at_once_and_telemetry_rows_read_back_as_the_events() {
    use secpipe_schemas::telemetry::{sample, TelemetryCodec, TelemetryEvent};
    use secpipe_sinks::clickhouse::tables::TelemetrySink;

    let mut s = settings("caughtup");
    fresh_database(&mut s).await;
    require_stack(&s).await;
    s.loader.batch_max_wait_ms = 120_000;
    s.loader.batch_min_wait_ms = 20;
    s.loader.batch_max_rows = 100_000;
    let (trigger, shutdown) = Shutdown::new();
    let s2 = s.clone();
    let task = tokio::spawn(async move {
        run_sink(
            &s2.kafka,
            &s2.loader,
            "test-loader",
            &s2.kafka.topics.telemetry_clean,
            TelemetryCodec::new().unwrap(),
            TelemetrySink::new(&s2.clickhouse),
            shutdown,
        )
        .await
    });
    // What the processor passes on: every type but heartbeats.
    let events: Vec<TelemetryEvent> = sample::one_of_each(7)
        .into_iter()
        .filter(|e| !matches!(e, TelemetryEvent::Heartbeat(_)))
        .collect();
    let codec = TelemetryCodec::new().unwrap();
    let encoded: Vec<(String, Vec<u8>)> = events
        .iter()
        .map(|e| (e.partition_key(), codec.encode(e).unwrap()))
        .collect();
    produce_many(&s, &s.kafka.topics.telemetry_clean, &encoded).await;
    let client = s.clickhouse.client();
    // Both tables of the write: the two inserts run side by side, so either may land first.
    let packages: u64 = events
        .iter()
        .map(|e| match e {
            TelemetryEvent::HostEnvironment(h) => h.packages.len() as u64,
            _ => 0,
        })
        .sum();
    // 60 s covers the group join on a loaded machine and is still half of batch_max_wait_ms.
    eventually(
        60,
        "every event in telemetry_events and host_packages",
        || {
            let client = client.clone();
            let want = events.len() as u64;
            async move {
                let n: u64 = client
                    .query("SELECT uniqExact(event_id) FROM telemetry_events")
                    .fetch_one()
                    .await
                    .ok()?;
                let p: u64 = client
                    .query("SELECT count() FROM host_packages")
                    .fetch_one()
                    .await
                    .ok()?;
                (n == want && p >= packages).then_some(())
            }
        },
    )
    .await;
    for e in &events {
        let env = e.envelope();
        let (event_type, host, pid, time_us, details): (String, String, i64, u64, String) = client
            .query(
                "SELECT event_type, host, pid, event_time_us, details FROM telemetry_events \
                     WHERE event_id = ?",
            )
            .bind(&env.event_id)
            .fetch_one()
            .await
            .unwrap();
        assert_eq!(event_type, e.kind().as_str());
        assert_eq!(host, env.host);
        assert_eq!(pid, env.pid);
        assert_eq!(time_us, env.event_time as u64);
        let details: Value = serde_json::from_str(&details).unwrap();
        match e {
            TelemetryEvent::HostEnvironment(h) => {
                assert_eq!(details["package_count"], json!(h.packages.len()));
                let packages: u64 = client
                    .query("SELECT count() FROM host_packages WHERE event_id = ?")
                    .bind(&env.event_id)
                    .fetch_one()
                    .await
                    .unwrap();
                assert_eq!(packages, h.packages.len() as u64);
            }
            _ => assert_eq!(details, serde_json::to_value(e).unwrap()),
        }
    }
    trigger.trigger();
    task.await.unwrap().unwrap();
}

/// Retention on this server drops whole expired partitions: a telemetry day older than
/// `retention.telemetry_days`, and the months of `host_packages` and of the notifier's attempts
/// and outbox that are wholly older than theirs. What is recent stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_expired_days_and_whole_expired_months() {
    let mut s = settings("retentionparts");
    fresh_database(&mut s).await;
    let client = s.clickhouse.client();
    for sql in [
        "INSERT INTO telemetry_events (event_id, event_type, event_time, event_time_us) \
         VALUES ('old', 'file', now() - 40 * 86400, 1), ('new', 'file', now(), 2)",
        "INSERT INTO host_packages (host, event_id, observed_at, name) \
         VALUES ('h', 'old', now() - 100 * 86400, 'a'), ('h', 'new', now(), 'b')",
        "INSERT INTO notification_deliveries \
         (notification_id, integration, endpoint, attempt, latency_ms, at) \
         VALUES ('old', 'w', 'e', 1, 1, (toUInt64(now()) - 200 * 86400) * 1000), \
         ('new', 'w', 'e', 1, 1, toUInt64(now()) * 1000)",
        "INSERT INTO notification_outbox \
         (notification_id, integration, endpoint_index, notification, record, queued_at) \
         VALUES ('old', 'w', 0, '', '', (toUInt64(now()) - 200 * 86400) * 1000), \
         ('new', 'w', 0, '', '', toUInt64(now()) * 1000)",
    ] {
        client.query(sql).execute().await.unwrap();
    }
    let report = secpipe_sinks::clickhouse::retention::run(
        &s.clickhouse,
        &s.retention,
        s.processors.admin_events.retention_secs,
    )
    .await
    .unwrap();
    let mut tables: Vec<&str> = report
        .dropped
        .iter()
        .map(|d| d.split('/').next().unwrap())
        .collect();
    tables.sort();
    assert_eq!(
        tables,
        [
            "host_packages",
            "notification_deliveries",
            "notification_outbox",
            "telemetry_events"
        ],
        "{report:?}"
    );
    for (table, id) in [
        ("telemetry_events", "event_id"),
        ("host_packages", "event_id"),
        ("notification_deliveries", "notification_id"),
        ("notification_outbox", "notification_id"),
    ] {
        let left: Vec<String> = rows(&s, &format!("SELECT {id} FROM {table}")).await;
        assert_eq!(left, ["new"], "{table}");
    }
}
