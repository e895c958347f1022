//! Shared set-up of the end-to-end tests: the real broker and ClickHouse of the local stack
//! (`deploy/local/up.sh`), a fresh topic per test, and the pipeline's roles in this process.
#![allow(dead_code)]

use std::{
    future::Future,
    net::SocketAddr,
    time::{Duration, Instant},
};

use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    producer::{BaseRecord, DefaultProducerContext, ThreadedProducer},
};
use secpipe::{
    roles,
    runtime::{Shutdown, ShutdownTrigger},
    Settings,
};

/// Bearer token of a producer allowed to write every kind of event.
pub const PRODUCER_TOKEN: &str = "test-producer-token";
/// Bearer token of a producer that may only write scan reports.
pub const SCAN_ONLY_TOKEN: &str = "test-scan-only-token";
/// Bearer token of an analyst (no writes).
pub const ANALYST_TOKEN: &str = "test-analyst-token";

/// Settings from the environment, with topics and consumer groups of this test only, and the
/// test tokens above.
pub fn settings(test: &str) -> Settings {
    use secpipe_producers::gateway::{hash_token, EventKind, Role, TokenConfig};
    let mut s = Settings::load(None).expect("configuration");
    let tag = format!("{test}-{}", uuid::Uuid::new_v4().simple());
    let t = &mut s.kafka.topics;
    t.scan_results = format!("test.{tag}.scan-results");
    t.findings = format!("test.{tag}.findings");
    t.scan_failures = format!("test.{tag}.scan-failures");
    t.telemetry = format!("test.{tag}.telemetry");
    t.admin_events = format!("test.{tag}.admin-events");
    t.scan_rollups = format!("test.{tag}.scan-rollups");
    t.repo_status = format!("test.{tag}.repo-status");
    t.telemetry_clean = format!("test.{tag}.telemetry.clean");
    t.heartbeat_rollups = format!("test.{tag}.heartbeat-rollups");
    t.alerts = format!("test.{tag}.alerts");
    t.dead_letter = format!("test.{tag}.dead-letter");
    s.processors.changelog_prefix = format!("test.{tag}.changelog.");
    s.processors.group_prefix = format!("test.{tag}.");
    s.processors.batch_max_wait_ms = 100;
    let token = |name: &str, secret: &str, role, kinds: Vec<EventKind>| TokenConfig {
        name: name.into(),
        sha256: hash_token(secret),
        role,
        kinds,
        rate_per_sec: 0,
    };
    s.gateway.tokens = vec![
        token("producer", PRODUCER_TOKEN, Role::Producer, vec![]),
        token(
            "scan-only",
            SCAN_ONLY_TOKEN,
            Role::Producer,
            vec![EventKind::ScanReport],
        ),
        token("analyst", ANALYST_TOKEN, Role::Analyst, vec![]),
    ];
    s.gateway.redaction_key = "test-redaction-key".into();
    s.kafka.partitions = 2;
    s.loader.group_id = format!("test.{tag}.loader");
    s.loader.batch_max_wait_ms = 100;
    s.kafka.message_timeout_ms = 5_000;
    s
}

/// Fails with instructions when the stack is not running; creates this test's topics and applies
/// migrations when it is.
pub async fn require_stack(s: &Settings) {
    let broker = s.kafka.brokers.split(',').next().unwrap().to_string();
    if tokio::net::TcpStream::connect(&broker).await.is_err() {
        panic!("no Kafka broker at {broker}: start the local stack with deploy/local/up.sh (or run the suite with deploy/local/test.sh)");
    }
    let ping = reqwest::get(format!("{}/ping", s.clickhouse.url)).await;
    if !matches!(&ping, Ok(r) if r.status().is_success()) {
        panic!("no ClickHouse at {}: start the local stack with deploy/local/up.sh (or run the suite with deploy/local/test.sh)", s.clickhouse.url);
    }
    // Migrations are not meant to run concurrently (ClickHouse has no DDL locks): once per
    // test process.
    static MIGRATED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    MIGRATED
        .get_or_init(|| async {
            secpipe_sinks::clickhouse::migrate(&s.clickhouse)
                .await
                .expect("migrations apply");
        })
        .await;
    let created = secpipe::topics::create_all(s).await.expect("topics");
    assert_eq!(
        created.len(),
        secpipe::topics::all(s).len(),
        "fresh topics per test"
    );
}

/// The pipeline's roles running in this process.
pub struct Pipeline {
    pub gateway: SocketAddr,
    trigger: ShutdownTrigger,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Pipeline {
    /// Starts the gateway (on a free port) and the ClickHouse loader.
    pub async fn start(s: &Settings) -> Self {
        let (trigger, shutdown) = Shutdown::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gateway = listener.local_addr().unwrap();
        let tasks = vec![
            tokio::spawn(roles::gateway_on(listener, s.clone(), shutdown.clone())),
            tokio::spawn(roles::clickhouse_loader(s.clone(), shutdown)),
        ];
        Self {
            gateway,
            trigger,
            tasks,
        }
    }

    /// Only the gateway (for tests of the ingest side).
    pub async fn gateway_only(s: &Settings) -> Self {
        let (trigger, shutdown) = Shutdown::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gateway = listener.local_addr().unwrap();
        let tasks = vec![tokio::spawn(roles::gateway_on(
            listener,
            s.clone(),
            shutdown,
        ))];
        Self {
            gateway,
            trigger,
            tasks,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.gateway)
    }

    /// Stops every role and checks that none failed.
    pub async fn stop(self) {
        self.trigger.trigger();
        for t in self.tasks {
            t.await.expect("role task").expect("role ran without error");
        }
    }
}

/// Polls `check` until it returns `Some` or `secs` pass.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sum of the high watermarks of every partition of `topic`: how many records it holds.
pub fn records_in(s: &Settings, topic: &str) -> i64 {
    let c: BaseConsumer = s.kafka.client_config("test-watermarks").create().unwrap();
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    md.topics()[0]
        .partitions()
        .iter()
        .map(|p| {
            c.fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .unwrap()
                .1
        })
        .sum()
}

/// Every record of `topic`, read from the beginning.
pub fn read_all(s: &Settings, topic: &str) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
    use rdkafka::{Message, Offset, TopicPartitionList};
    let total = records_in(s, topic);
    let c: BaseConsumer = s
        .kafka
        .client_config("test-reader")
        .set("group.id", format!("reader-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while (out.len() as i64) < total && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            out.push((
                m.key().map(<[u8]>::to_vec),
                m.payload().unwrap_or_default().to_vec(),
            ));
        }
    }
    out
}

/// Produces raw bytes straight to a topic, bypassing the gateway.
pub fn produce_raw(s: &Settings, topic: &str, key: &[u8], payload: &[u8]) {
    let p: ThreadedProducer<DefaultProducerContext> = s
        .kafka
        .client_config("test-raw")
        .set("acks", "all")
        .create()
        .unwrap();
    p.send(BaseRecord::to(topic).key(key).payload(payload))
        .map_err(|(e, _)| e)
        .unwrap();
    rdkafka::producer::Producer::flush(&p, Duration::from_secs(10)).unwrap();
}
