//! ClickHouse cluster mode against a real local cluster (deploy/local/cluster-up.sh: ZooKeeper and
//! three 18.16 servers, two shards: shard 1 on nodes 1 and 2, shard 2 on node 3): the migrations on the cluster, the pipeline loading through
//! it, every view answering the same on every replica, retention and the admin API, and one
//! replica killed under load with nothing lost and the replica catching up when it returns.
mod common;

use std::path::PathBuf;

use common::*;
use secpipe::{roles, runtime::Shutdown, Settings};
use secpipe_schemas::{
    failures::{AdminEvent, Image},
    now_micros,
    scan::{RepoContext, ScanReport, ScannerSummary},
    Codec,
};
use secpipe_sinks::{
    clickhouse::{
        admin_api::{self, AdminEventFilter},
        tables::{AdminEventRow, TableSink},
    },
    Sink,
};

/// The cluster's name and its nodes' HTTP ports (deploy/local/cluster-lib.sh).
fn cluster_name() -> String {
    std::env::var("SECPIPE_CLUSTER_NAME").unwrap_or_else(|_| "secpipe_local".into())
}
const NODES: [u16; 3] = [18123, 18124, 18125];
/// The two replicas of shard 1 (node 3 is shard 2 alone).
const SHARD1: [u16; 2] = [18123, 18124];

fn cluster_dir() -> PathBuf {
    std::env::var("SECPIPE_CLUSTER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".secpipe/cluster"))
}

/// The tests of this file share the cluster, and one of them kills a replica (distributed DDL
/// waits for every node): they take turns.
static CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Test settings in cluster mode with a fresh database, talking to node 1.
async fn cluster_settings(test: &str) -> Settings {
    let mut s = settings(test);
    s.clickhouse.url = format!("http://127.0.0.1:{}", NODES[0]);
    s.clickhouse.cluster = cluster_name();
    s.clickhouse.database = format!("test_{}", uuid::Uuid::new_v4().simple());
    for port in NODES {
        let ping = reqwest::get(format!("http://127.0.0.1:{port}/ping")).await;
        if !matches!(&ping, Ok(r) if r.status().is_success()) {
            panic!(
                "no ClickHouse cluster node on 127.0.0.1:{port}: start the local cluster with \
                 deploy/local/cluster-up.sh (deploy/local/test.sh does it)"
            );
        }
    }
    s
}

async fn migrated(s: &Settings) {
    secpipe_sinks::clickhouse::migrate(&s.clickhouse)
        .await
        .expect("migrations apply on the cluster");
}

/// `sql` on one node (HTTP, TSV), failing the test on an error.
async fn on_node(port: u16, sql: &str) -> String {
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/"))
        .body(sql.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("node {port}: {e}"));
    let status = r.status();
    let body = r.text().await.unwrap();
    assert!(status.is_success(), "node {port}: {sql}: {body}");
    body
}

/// `sql` on node `port`, or `None` if the node refused it (a restarted replica can answer with
/// an error until its ZooKeeper session is back). A `SYNC REPLICA` waits at most 20 s
/// (`receive_timeout`).
async fn try_on_node(port: u16, sql: &str) -> Option<String> {
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/?receive_timeout=20"))
        .body(sql.to_string())
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.text().await.ok()
}

async fn count_on(port: u16, sql: &str) -> u64 {
    on_node(port, sql).await.trim().parse().unwrap()
}

/// Waits until every replica has fetched what the shard's log holds for each local table.
async fn sync_replicas(s: &Settings) {
    let tables = on_node(
        NODES[0],
        &format!(
            "SELECT name FROM system.tables WHERE database = '{}' AND engine LIKE 'Replicated%'",
            s.clickhouse.database
        ),
    )
    .await;
    for port in NODES {
        for t in tables.lines() {
            on_node(
                port,
                &format!("SYSTEM SYNC REPLICA `{}`.`{t}`", s.clickhouse.database),
            )
            .await;
        }
    }
}

fn report(id: &str, repo: &str, team: &str, who: &str, critical: i64, at: i64) -> ScanReport {
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
        repo_type: vec!["nodejs".into()],
        team: Some(team.into()),
        report_summary: vec![ScannerSummary {
            scanner: "JavaScript Source Analyzer".into(),
            tool: None,
            critical,
            high: 1,
            medium: 0,
            low: 2,
            status: if critical > 0 { "❌" } else { "✅" }.into(),
        }],
        origin: "track".into(),
        received_at: at,
    }
}

fn admin_event(id: &str, image: &str, version: i64, last_seen: i64, expires_at: i64) -> AdminEvent {
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
        reason: "timeout".into(),
        cluster: Some("prod".into()),
        source: "cli".into(),
        first_seen: last_seen - 60_000_000,
        last_seen,
        occurrences: version,
        version,
        expires_at,
        sources: vec!["cli".into()],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_make_replicated_and_distributed_tables_on_every_node() {
    let _turn = CLUSTER.lock().await;
    let s = cluster_settings("cluster-migrate").await;
    let applied = secpipe_sinks::clickhouse::migrate(&s.clickhouse)
        .await
        .expect("migrations apply on the cluster");
    assert_eq!(applied.len(), secpipe_sinks::clickhouse::MIGRATIONS.len());
    let db = &s.clickhouse.database;
    let data_tables = [
        "scan_results",
        "findings",
        "scan_failures",
        "admin_events",
        "scan_rollups",
        "repo_status",
        "telemetry_events",
        "host_packages",
        "heartbeat_rollups",
        "alerts",
        "notification_deliveries",
        "schema_migrations",
    ];
    let mut layouts = Vec::new();
    for port in NODES {
        let tables = on_node(
            port,
            &format!(
                "SELECT name, engine FROM system.tables WHERE database = '{db}' ORDER BY name"
            ),
        )
        .await;
        for t in data_tables {
            assert!(
                tables.contains(&format!("{t}\tDistributed\n")),
                "node {port}: {t} is distributed:\n{tables}"
            );
            assert!(
                tables.contains(&format!("{t}_local\tReplicated")),
                "node {port}: {t}_local is replicated:\n{tables}"
            );
        }
        assert!(
            !tables.contains("\tMergeTree") && !tables.contains("\tReplacingMergeTree"),
            "node {port}: no table is left unreplicated:\n{tables}"
        );
        for v in [
            "v_findings_by_repository",
            "v_findings_by_team",
            "v_repository_contacts",
            "v_nodejs_status",
            "v_failed_scans",
            "v_findings",
        ] {
            assert!(tables.contains(&format!("{v}\tView\n")), "node {port}: {v}");
        }
        assert!(
            !tables.contains("scan_results_v3") && !tables.contains("v2_replaced"),
            "node {port}: the rebuild of scan_results left nothing behind:\n{tables}"
        );
        layouts.push(tables);
    }
    assert_eq!(layouts[0], layouts[1], "both nodes hold the same tables");
    // The columns the later migrations added reached the distributed tables too.
    for port in NODES {
        let cols = on_node(port, &format!("DESCRIBE TABLE `{db}`.scan_results")).await;
        assert!(
            cols.contains("received_at_us\tUInt64"),
            "node {port}: {cols}"
        );
        assert!(cols.contains("precedence\tUInt64"), "node {port}: {cols}");
    }

    // Bookkeeping is replicated: every node knows every migration, and a rerun applies nothing.
    sync_replicas(&s).await;
    for port in NODES {
        let n = count_on(
            port,
            &format!("SELECT uniqExact(version) FROM `{db}`.schema_migrations"),
        )
        .await;
        assert_eq!(
            n as usize,
            secpipe_sinks::clickhouse::MIGRATIONS.len(),
            "node {port}"
        );
    }
    let again = secpipe_sinks::clickhouse::migrate(&s.clickhouse)
        .await
        .unwrap();
    assert!(again.is_empty(), "a rerun applies nothing: {again:?}");
    let status = secpipe_sinks::clickhouse::migration_status(&s.clickhouse)
        .await
        .unwrap();
    assert!(status.iter().all(|m| m.applied_at.is_some()), "{status:?}");

    // Retention on every replica: an expired partition of scan_failures is dropped, an admin
    // event last seen longer ago than the retention is deleted (a mutation); the admin API reads
    // the distributed table.
    let now = now_micros();
    let day = 86_400_000_000;
    TableSink::<AdminEvent, AdminEventRow>::new(&s.clickhouse, "admin_events")
        .write(&[
            admin_event("live", "nginx", 2, now, now + 4 * day),
            admin_event("old", "redis", 9, now - 6 * day, now - 2 * day),
        ])
        .await
        .unwrap();
    on_node(
        NODES[0],
        &format!(
            "INSERT INTO `{db}`.scan_failures_local (failure_id, image, occurred_at, received_at) \
             VALUES ('old', 'redis', now() - 40 * 86400, now()), ('new', 'nginx', now(), now())"
        ),
    )
    .await;
    sync_replicas(&s).await;
    for port in NODES {
        let n = count_on(port, &format!("SELECT count() FROM `{db}`.admin_events")).await;
        let f = count_on(port, &format!("SELECT count() FROM `{db}`.scan_failures")).await;
        assert_eq!(
            (n, f),
            (2, 2),
            "node {port} holds every row before retention"
        );
    }
    let report = secpipe_sinks::clickhouse::retention::run(
        &s.clickhouse,
        &s.retention,
        s.processors.admin_events.retention_secs,
    )
    .await
    .unwrap();
    assert_eq!(report.admin_event_rows_deleted, 1, "{report:?}");
    assert_eq!(report.dropped.len(), 1, "{report:?}");
    assert!(
        report.dropped[0].starts_with("scan_failures/"),
        "{report:?}"
    );
    // The expired partition was on shard 1 only; the mutation runs on every shard.
    for port in NODES {
        eventually(60, "retention on every replica", || async {
            let events = on_node(
                port,
                &format!("SELECT DISTINCT id FROM `{db}`.admin_events ORDER BY id"),
            )
            .await;
            let failures = on_node(
                port,
                &format!("SELECT failure_id FROM `{db}`.scan_failures ORDER BY failure_id"),
            )
            .await;
            (events == "live\n" && failures == "new\n").then_some(())
        })
        .await;
    }
    for table in ["admin_events_local", "scan_failures_local"] {
        let sql = format!("SELECT count() FROM `{db}`.{table}");
        eventually(60, "both replicas of shard 1 alike", || async {
            let a = count_on(SHARD1[0], &sql).await;
            (a == count_on(SHARD1[1], &sql).await).then_some(())
        })
        .await;
    }
    // A table with a computed column (notification_deliveries.at_time) takes inserts through its
    // distributed table and computes the column on every shard.
    s.clickhouse
        .client()
        .query(
            "INSERT INTO notification_deliveries \
             (notification_id, integration, endpoint, attempt, latency_ms, at) \
             VALUES ('n1', 'slack', 'e', 1, 5, 1764547200000), ('n2', 'slack', 'e', 1, 5, 1764547200000), \
             ('n3', 'webhook', 'e', 1, 5, 1764547200000), ('n4', 'webhook', 'e', 1, 5, 1764547200000)",
        )
        .execute()
        .await
        .expect("an insert through the distributed table");
    sync_replicas(&s).await;
    for port in NODES {
        let at = on_node(
            port,
            &format!(
                "SELECT DISTINCT toUnixTimestamp(at_time) FROM `{db}`.notification_deliveries"
            ),
        )
        .await;
        assert_eq!(at, "1764547200\n", "node {port}");
        let n = count_on(
            port,
            &format!("SELECT count() FROM `{db}`.notification_deliveries"),
        )
        .await;
        assert_eq!(n, 4, "node {port}");
    }

    let filter = AdminEventFilter {
        limit: 10,
        retention_secs: s.processors.admin_events.retention_secs,
        ..Default::default()
    };
    let (events, total) = admin_api::list(&s.clickhouse.client(), &filter)
        .await
        .unwrap();
    assert_eq!(total, 1);
    assert_eq!(events[0].id, "live");
    assert!(admin_api::get(
        &s.clickhouse.client(),
        "live",
        s.processors.admin_events.retention_secs
    )
    .await
    .unwrap()
    .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_loads_through_the_cluster_and_every_replica_answers_every_view_alike() {
    let _turn = CLUSTER.lock().await;
    let s = cluster_settings("cluster-views").await;
    migrated(&s).await;
    require_stack(&s).await;
    let pipeline = Pipeline::start(&s).await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let t = now_micros();
    let codec = Codec::<ScanReport>::new().unwrap();
    let mut scans = Vec::new();
    for i in 0..30 {
        let repo = format!("{run}-repo-{}", i % 6);
        let r = report(
            &format!("{run}-scan-{i}"),
            &repo,
            ["shop", "pay", "ops"][i % 3],
            &format!("dev-{}", i % 6),
            (i % 4) as i64,
            t - (30 - i as i64) * 1_000_000,
        );
        scans.push((r.id.clone(), codec.encode(&r).unwrap()));
    }
    // A retried report: one scan, one row.
    scans.push(scans[0].clone());
    produce_many(&s, &s.kafka.topics.scan_results, &scans).await;
    produce_many(&s, &s.kafka.topics.findings, &findings(&run, 0, 300)).await;
    let events = Codec::<AdminEvent>::new().unwrap();
    let admin: Vec<(String, Vec<u8>)> = (0..10)
        .map(|i| {
            let e = admin_event(&format!("{run}-{i}"), "nginx", 1 + i, t, t + 86_400_000_000);
            (e.id.clone(), events.encode(&e).unwrap())
        })
        .collect();
    produce_many(&s, &s.kafka.topics.admin_events, &admin).await;

    let db = s.clickhouse.database.clone();
    eventually(120, "every record in the cluster", || async {
        let scans = count_on(
            NODES[0],
            &format!("SELECT count() FROM `{db}`.scan_results FINAL"),
        )
        .await;
        let found = finding_rows(&s).await;
        let admin = count_on(
            NODES[0],
            &format!("SELECT count() FROM `{db}`.admin_events FINAL"),
        )
        .await;
        (scans == 30 && found == 300 && admin == 10).then_some(())
    })
    .await;
    pipeline.stop().await;
    sync_replicas(&s).await;

    // Each node answers from its own replica (the distributed table prefers the local one).
    let views = [
        ("v_findings_by_repository", 6),
        ("v_findings_by_team", 3),
        ("v_repository_contacts", 6),
        ("v_nodejs_status", 6),
        ("v_failed_scans", 1),
        // Findings of one upload made within a second or two: the latest second's.
        ("v_findings", 0),
    ];
    for (view, rows) in views {
        let mut answers = Vec::new();
        for port in NODES {
            let out = on_node(port, &format!("SELECT * FROM `{db}`.`{view}` FORMAT TSV")).await;
            let mut lines: Vec<&str> = out.lines().collect();
            lines.sort_unstable();
            if rows > 0 {
                assert_eq!(lines.len(), rows, "node {port}: {view}:\n{out}");
            }
            assert!(!lines.is_empty(), "node {port}: {view} answers");
            answers.push(lines.join("\n"));
        }
        for (port, answer) in NODES.iter().zip(&answers) {
            assert_eq!(
                answer, &answers[0],
                "{view} answers on node {port} as on node {}",
                NODES[0]
            );
        }
    }
    // Both shards hold part of the rows; both replicas of shard 1 hold the same.
    let local = format!("SELECT count() FROM `{db}`.findings_local FINAL");
    let (a, b, c) = (
        count_on(SHARD1[0], &local).await,
        count_on(SHARD1[1], &local).await,
        count_on(NODES[2], &local).await,
    );
    assert_eq!(a, b, "the replicas of shard 1 hold the same rows");
    assert_eq!(a + c, 300, "each row on one shard");
    assert!(a > 0 && c > 0, "rows on both shards: {a} and {c}");
}

/// `kill -9` of the clickhouse-server of node `n` (1-based), by the pid file cluster-up.sh wrote.
fn kill_node(n: usize) {
    let pidfile = cluster_dir().join(format!("node{n}.pid"));
    let pid = std::fs::read_to_string(&pidfile).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (was the cluster started by cluster-up.sh?)",
            pidfile.display()
        )
    });
    let status = std::process::Command::new("kill")
        .args(["-9", pid.trim()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -9 {pid}");
}

/// cluster-up.sh starts what is not running and waits until every node is ready.
fn cluster_up() {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/local/cluster-up.sh");
    let out = std::process::Command::new(&script)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_under_load_loses_nothing_and_catches_up_when_it_returns() {
    let _turn = CLUSTER.lock().await;
    let mut s = cluster_settings("cluster-kill").await;
    s.loader.batch_max_rows = 100;
    s.loader.retry_initial_backoff_ms = 50;
    s.loader.retry_max_backoff_ms = 500;
    migrated(&s).await;
    require_stack(&s).await;
    let db = s.clickhouse.database.clone();
    let run = uuid::Uuid::new_v4().simple().to_string();
    let (trigger, shutdown) = Shutdown::new();
    let loader = tokio::spawn(roles::clickhouse_loader(s.clone(), shutdown));
    produce_many(&s, &s.kafka.topics.findings, &findings(&run, 0, 300)).await;
    eventually(90, "the first 300 rows", || async {
        (finding_rows(&s).await == 300).then_some(())
    })
    .await;

    // Node 2 dies while records keep coming.
    let mut sent = 300;
    for round in 0..10 {
        if round == 2 {
            kill_node(2);
        }
        produce_many(
            &s,
            &s.kafka.topics.findings,
            &findings(&run, sent, sent + 150),
        )
        .await;
        sent += 150;
    }
    assert!(
        reqwest::get(format!("http://127.0.0.1:{}/ping", NODES[1]))
            .await
            .is_err(),
        "node 2 is down"
    );
    let total = sent as u64;
    eventually(120, "every row on the surviving replica", || async {
        (finding_rows(&s).await == total).then_some(())
    })
    .await;

    // Node 2 returns and fetches what it missed from its replica. SYNC REPLICA waits for the
    // replica's queue, but a restarted 18.16 replica can answer before it has pulled the missed
    // log entries into that queue: wait until the replicas agree, with a deadline.
    cluster_up();
    let local = format!("SELECT count() FROM `{db}`.findings_local FINAL");
    let count = |port: u16| {
        let local = local.clone();
        async move { try_on_node(port, &local).await?.trim().parse::<u64>().ok() }
    };
    let (a, b, c) = eventually(90, "node 2 caught up with node 1", || async {
        try_on_node(
            NODES[1],
            &format!("SYSTEM SYNC REPLICA `{db}`.findings_local"),
        )
        .await;
        let (a, b, c) = (
            count(SHARD1[0]).await?,
            count(SHARD1[1]).await?,
            count(NODES[2]).await?,
        );
        (a == b).then_some((a, b, c))
    })
    .await;
    assert_eq!(
        a + c,
        total,
        "each row on one shard ({a} on shard 1, {b} on its replica)"
    );
    for port in NODES {
        let (rows, distinct) = (
            count_on(port, &format!("SELECT count() FROM `{db}`.findings FINAL")).await,
            count_on(
                port,
                &format!("SELECT uniqExact(finding_id) FROM `{db}`.findings"),
            )
            .await,
        );
        assert_eq!(
            (rows, distinct),
            (total, total),
            "node {port}: every row, once"
        );
    }
    trigger.trigger();
    loader.await.unwrap().expect("the loader ran without error");
    let group = format!("{}.findings", s.loader.group_id);
    eventually(30, "every offset committed", || async {
        (committed(&s, &group, &s.kafka.topics.findings) == sent as i64).then_some(())
    })
    .await;
}
