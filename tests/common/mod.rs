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
    use secpipe_gateway::{hash_token, EventKind, Role, TokenConfig};
    let mut s = Settings::load(None).expect("configuration");
    // Tests never write to the database the demo and users read.
    s.clickhouse.database = format!("{}_test", s.clickhouse.database);
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
    // Child processes of a test serve their ops endpoints on a port of their own.
    s.ops.listen = "127.0.0.1:0".parse().unwrap();
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

/// The metadata of `topic`, retried for up to 60 s: a broker busy with the whole suite can drop
/// a connection now and then.
pub fn metadata<C: rdkafka::consumer::ConsumerContext>(
    c: &BaseConsumer<C>,
    topic: &str,
) -> rdkafka::metadata::Metadata {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match c.fetch_metadata(Some(topic), Duration::from_secs(10)) {
            Ok(md) => return md,
            Err(e) if Instant::now() < deadline => {
                eprintln!("metadata of {topic}: {e}; retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => panic!("metadata of {topic}: {e}"),
        }
    }
}

/// Sum of the high watermarks of every partition of `topic`: how many records it holds.
pub fn records_in(s: &Settings, topic: &str) -> i64 {
    let c: BaseConsumer = s.kafka.client_config("test-watermarks").create().unwrap();
    let md = metadata(&c, topic);
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

/// Every record of `topic`, read from the beginning: (key, payload).
pub fn read_all(s: &Settings, topic: &str) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
    read_partitioned(s, topic)
        .into_iter()
        .map(|r| (r.key, r.payload))
        .collect()
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

/// A record read back with where it was.
#[derive(Debug, Clone)]
pub struct Read {
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

/// Every record of `topic` with its partition, offset and timestamp, in partition order.
pub fn read_partitioned(s: &Settings, topic: &str) -> Vec<Read> {
    use rdkafka::{Message, Offset, TopicPartitionList};
    let total = records_in(s, topic);
    let c: BaseConsumer = s
        .kafka
        .client_config("test-reader")
        .set("group.id", format!("reader-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let md = metadata(&c, topic);
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while (out.len() as i64) < total && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            out.push(Read {
                partition: m.partition(),
                offset: m.offset(),
                timestamp_ms: m.timestamp().to_millis().unwrap_or(0),
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().unwrap_or_default().to_vec(),
            });
        }
    }
    out.sort_by_key(|r| (r.partition, r.offset));
    out
}

/// Produces keyed records and waits for every acknowledgement.
pub async fn produce_many(s: &Settings, topic: &str, records: &[(String, Vec<u8>)]) {
    let producer = secpipe_producers::EventProducer::new(&s.kafka, "test").unwrap();
    for chunk in records.chunks(1000) {
        let out: Vec<secpipe_producers::OutRecord<'_>> = chunk
            .iter()
            .map(|(k, p)| secpipe_producers::OutRecord {
                topic,
                key: k.as_bytes(),
                payload: p,
                headers: &[],
                partition: None,
            })
            .collect();
        producer.send_all(&out).await.unwrap();
    }
}

/// Sum over partitions of the offsets `group` committed on `topic`.
pub fn committed(s: &Settings, group: &str, topic: &str) -> i64 {
    use rdkafka::{Offset, TopicPartitionList};
    let c: BaseConsumer = s
        .kafka
        .client_config("test-committed")
        .set("group.id", group)
        .create()
        .unwrap();
    let md = metadata(&c, topic);
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition(topic, p.id());
    }
    let committed = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        })
        .sum()
}

/// Whether the loader's consumer of `table` has committed all of `topic`, which holds at least
/// `at_least` records: "loaded", where a row count cannot say it (a merge may already have
/// collapsed identical rows).
pub fn loader_committed_all(s: &Settings, table: &str, topic: &str, at_least: i64) -> bool {
    let written = records_in(s, topic);
    written >= at_least && committed(s, &format!("{}.{table}", s.loader.group_id), topic) >= written
}

/// Environment variables that make a `secpipe` child process use these test settings.
pub fn child_env(s: &Settings) -> Vec<(String, String)> {
    let t = &s.kafka.topics;
    let p = &s.processors;
    [
        ("KAFKA__BROKERS", s.kafka.brokers.clone()),
        ("KAFKA__TOPICS__SCAN_RESULTS", t.scan_results.clone()),
        ("KAFKA__TOPICS__FINDINGS", t.findings.clone()),
        ("KAFKA__TOPICS__SCAN_FAILURES", t.scan_failures.clone()),
        ("KAFKA__TOPICS__TELEMETRY", t.telemetry.clone()),
        ("KAFKA__TOPICS__ADMIN_EVENTS", t.admin_events.clone()),
        ("KAFKA__TOPICS__SCAN_ROLLUPS", t.scan_rollups.clone()),
        ("KAFKA__TOPICS__REPO_STATUS", t.repo_status.clone()),
        ("KAFKA__TOPICS__TELEMETRY_CLEAN", t.telemetry_clean.clone()),
        (
            "KAFKA__TOPICS__HEARTBEAT_ROLLUPS",
            t.heartbeat_rollups.clone(),
        ),
        ("KAFKA__TOPICS__ALERTS", t.alerts.clone()),
        ("KAFKA__TOPICS__DEAD_LETTER", t.dead_letter.clone()),
        ("PROCESSORS__CHANGELOG_PREFIX", p.changelog_prefix.clone()),
        ("PROCESSORS__GROUP_PREFIX", p.group_prefix.clone()),
        (
            "PROCESSORS__BATCH_MAX_RECORDS",
            p.batch_max_records.to_string(),
        ),
        (
            "PROCESSORS__BATCH_MAX_WAIT_MS",
            p.batch_max_wait_ms.to_string(),
        ),
        (
            "PROCESSORS__TELEMETRY__ROLLUP_FLUSH_AFTER_SECS",
            p.telemetry.rollup_flush_after_secs.to_string(),
        ),
        (
            "PROCESSORS__TELEMETRY__ROLLUP_LATE_HORIZON_SECS",
            p.telemetry.rollup_late_horizon_secs.to_string(),
        ),
        ("GATEWAY__REDACTION_KEY", s.gateway.redaction_key.clone()),
        ("CLICKHOUSE__URL", s.clickhouse.url.clone()),
        ("LOADER__GROUP_ID", s.loader.group_id.clone()),
        ("CLICKHOUSE__DATABASE", s.clickhouse.database.clone()),
        ("OPS__LISTEN", s.ops.listen.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (format!("SECPIPE__{k}"), v))
    .collect()
}

/// Gives `s` a ClickHouse database of its own, with every migration applied.
pub async fn fresh_database(s: &mut Settings) {
    s.clickhouse.database = format!("test_{}", uuid::Uuid::new_v4().simple());
    secpipe_sinks::clickhouse::migrate(&s.clickhouse)
        .await
        .expect("migrations apply to a fresh database");
}

/// A TCP proxy in front of a real server that can be cut (connections refused and open ones
/// dropped) and restored: an outage as the client sees it, without stopping the server.
pub struct Proxy {
    pub addr: SocketAddr,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    generation: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Proxy {
    pub async fn start(target: String) -> Self {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = std::sync::Arc::new(AtomicBool::new(true));
        let generation = std::sync::Arc::new(AtomicU64::new(0));
        let (up2, gen2) = (up.clone(), generation.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                if !up2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let target = target.clone();
                let (up3, gen3) = (up2.clone(), gen2.clone());
                let born = gen2.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    let copy = tokio::io::copy_bidirectional(&mut client, &mut server);
                    tokio::pin!(copy);
                    loop {
                        tokio::select! {
                            _ = &mut copy => return,
                            _ = tokio::time::sleep(Duration::from_millis(50)) => {
                                if !up3.load(Ordering::SeqCst) || gen3.load(Ordering::SeqCst) != born {
                                    return; // cut: drop both ends
                                }
                            }
                        }
                    }
                });
            }
        });
        Self {
            addr,
            up,
            generation,
        }
    }

    /// A proxy in front of the ClickHouse of `s`, and settings that reach ClickHouse through it.
    pub async fn clickhouse(s: &Settings) -> (Self, Settings) {
        let proxy = Self::start(s.clickhouse.url.trim_start_matches("http://").to_string()).await;
        let mut through = s.clone();
        through.clickhouse.url = format!("http://{}", proxy.addr);
        (proxy, through)
    }

    pub fn cut(&self) {
        use std::sync::atomic::Ordering;
        self.up.store(false, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    pub fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A child process that is killed when the test ends, even by a panic.
pub struct ChildGuard(pub std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free TCP port on the loopback interface.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One `secpipe` role as its own process. Its log (stderr, `RUST_LOG` as given) goes to a file
/// when one is named, so a test can read what the role reported.
pub struct Role {
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: Option<std::path::PathBuf>,
    rust_log: String,
    child: Option<ChildGuard>,
}

impl Role {
    /// Starts `secpipe ARGS` with `env`, logging errors only (to the test's stderr).
    pub fn start(args: &[&str], env: &[(String, String)]) -> Self {
        Self::start_logged(args, env, None, "error")
    }

    /// Starts `secpipe ARGS` with `env`, its log appended to `log` at `rust_log` level.
    pub fn start_logged(
        args: &[&str],
        env: &[(String, String)],
        log: Option<std::path::PathBuf>,
        rust_log: &str,
    ) -> Self {
        let mut r = Self {
            args: args.iter().map(|a| a.to_string()).collect(),
            env: env.to_vec(),
            log,
            rust_log: rust_log.to_string(),
            child: None,
        };
        r.restart();
        r
    }

    pub fn restart(&mut self) {
        use std::process::{Command, Stdio};
        let stderr = match &self.log {
            Some(path) => Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .unwrap(),
            ),
            None => Stdio::inherit(),
        };
        self.child = Some(ChildGuard(
            Command::new(env!("CARGO_BIN_EXE_secpipe"))
                .args(&self.args)
                .envs(self.env.iter().cloned())
                .env("RUST_LOG", &self.rust_log)
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .unwrap(),
        ));
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn kill_9(&mut self) {
        drop(self.child.take()); // ChildGuard kills with SIGKILL
    }

    /// Sends SIGTERM and waits (at most `secs`) for the process to exit; returns its status.
    pub fn sigterm(&mut self, secs: u64) -> std::process::ExitStatus {
        let mut guard = self.child.take().expect("running");
        let pid = guard.0.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM {pid}");
        self.wait_exit(&mut guard, secs)
    }

    /// Waits (at most `secs`) for the process to exit by itself; returns its status.
    pub fn wait_exit_secs(&mut self, secs: u64) -> Option<std::process::ExitStatus> {
        let mut guard = self.child.take()?;
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(status) = guard.0.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                self.child = Some(guard);
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_exit(&mut self, guard: &mut ChildGuard, secs: u64) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(status) = guard.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "secpipe {:?} still running {secs} s after SIGTERM",
                self.args
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// An HTTP proxy in front of the real ClickHouse server that can make every query it forwards
/// read-only (`readonly=1`): the server itself then refuses inserts (Code 164), as it does for a
/// user switched to a read-only profile.
pub struct ReadOnlySwitch {
    pub addr: SocketAddr,
    readonly: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl ReadOnlySwitch {
    pub async fn start(target: String) -> Self {
        use axum::{
            body::Bytes,
            extract::State,
            http::{HeaderMap, Method, StatusCode, Uri},
            response::IntoResponse,
        };
        use std::sync::{atomic::AtomicBool, Arc};
        type Shared = (reqwest::Client, String, Arc<AtomicBool>);
        async fn forward(
            State((client, target, readonly)): State<Shared>,
            method: Method,
            uri: Uri,
            headers: HeaderMap,
            body: Bytes,
        ) -> axum::response::Response {
            let mut query = uri.query().unwrap_or_default().to_string();
            if readonly.load(std::sync::atomic::Ordering::SeqCst) {
                if !query.is_empty() {
                    query.push('&');
                }
                query.push_str("readonly=1");
            }
            let url = format!("{target}{}?{query}", uri.path());
            let method = reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap();
            let mut req = client.request(method, url).body(body);
            for (name, value) in &headers {
                if name != "host" && name != "content-length" {
                    req = req.header(name.as_str(), value.as_bytes());
                }
            }
            match req.send().await {
                Ok(r) => {
                    let status = StatusCode::from_u16(r.status().as_u16()).unwrap();
                    let mut out = HeaderMap::new();
                    for (name, value) in r.headers() {
                        if name.as_str().starts_with("x-clickhouse")
                            || name == "content-type"
                            || name == "content-encoding"
                        {
                            out.insert(
                                axum::http::HeaderName::from_bytes(name.as_str().as_bytes())
                                    .unwrap(),
                                axum::http::HeaderValue::from_bytes(value.as_bytes()).unwrap(),
                            );
                        }
                    }
                    let body = r.bytes().await.unwrap_or_default();
                    (status, out, body).into_response()
                }
                Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
            }
        }
        let readonly = Arc::new(AtomicBool::new(false));
        let state: Shared = (reqwest::Client::new(), target, readonly.clone());
        let app = axum::Router::new().fallback(forward).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, readonly }
    }

    pub fn set_readonly(&self, on: bool) {
        self.readonly.store(on, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A tansu broker of the test's own, with sqlite storage in a folder of the test (it survives a
/// kill -9, and it keeps SCRAM users, which tansu's memory storage drops).
pub struct Broker {
    pub port: u16,
    dir: std::path::PathBuf,
    /// Start with `--authentication` (SASL SCRAM required).
    pub authentication: bool,
    child: Option<std::process::Child>,
}

impl Broker {
    pub fn start(port: u16, dir: std::path::PathBuf) -> Self {
        let mut b = Self {
            port,
            dir,
            authentication: false,
            child: None,
        };
        b.restart();
        b
    }

    pub fn restart(&mut self) {
        std::fs::create_dir_all(&self.dir).unwrap();
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("tansu.log"))
            .unwrap();
        let mut cmd = std::process::Command::new("tansu");
        cmd.args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "sqlite://tansu.db"]);
        if self.authentication {
            cmd.arg("--authentication");
        }
        self.child = Some(
            cmd.current_dir(&self.dir)
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("tansu is installed (deploy/local/install.sh)"),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "test broker did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Encoded findings `{run}-{from}` .. `{run}-{to}` (five repositories), keyed as the gateway does.
pub fn findings(run: &str, from: usize, to: usize) -> Vec<(String, Vec<u8>)> {
    use secpipe_schemas::{scan::Finding, Codec};
    let codec = Codec::<Finding>::new().unwrap();
    (from..to)
        .map(|i| {
            let f = Finding {
                finding_id: format!("{run}-{i}"),
                scan_id: format!("{run}-scan"),
                tool: "bandit".into(),
                rule_id: "B101".into(),
                level: "warning".into(),
                severity: "medium".into(),
                message: "assert used".into(),
                file: "app.py".into(),
                line: Some(i as i32),
                start_column: None,
                end_line: None,
                end_column: None,
                fingerprint: None,
                repository: Some(format!("repo-{}", i % 5)),
                category: String::new(),
                received_at: secpipe_schemas::now_micros(),
            };
            (f.partition_key().to_string(), codec.encode(&f).unwrap())
        })
        .collect()
}

/// Distinct findings in ClickHouse.
pub async fn finding_rows(s: &Settings) -> u64 {
    s.clickhouse
        .client()
        .query("SELECT uniqExact(finding_id) FROM findings")
        .fetch_one()
        .await
        .unwrap()
}

/// The sum of metric `name` over the lines of this process's metrics page that name `stage`.
pub fn metric_sum(name: &str, stage: &str) -> f64 {
    secpipe::ops::metrics()
        .render()
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(&format!("stage=\"{stage}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
