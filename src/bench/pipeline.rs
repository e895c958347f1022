//! `secpipe bench pipeline`: every role as its own process, fed through the gateway by this
//! process (the load generator), on fresh topics and a scratch database. Two phases:
//!
//! 1. **Throughput**: `events` reference-mix telemetry events as fast as 8 requests in flight
//!    go, timed until every stage has committed everything it was given.
//! 2. **Latency** at a paced rate (half the phase-1 rate unless given): probes posted every
//!    100 ms, and each timed from the gateway's acknowledgement to the moment a query sees it
//!    in ClickHouse: one telemetry event of each type that becomes a `telemetry_events` row (all
//!    but heartbeats, which become rollups), from its own process so no dedupe or rate limit
//!    swallows it, and one `/track` scan summary.
//!
//! Then the limits, in the same run and on the same data: the broker producing and consuming
//! again exactly the records the pipeline wrote to it (same keys and payloads), and ClickHouse
//! inserting again every row the pipeline wrote (RowBinary through `clickhouse-client`).
use std::collections::{BTreeMap, HashMap};

use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    Message, Offset, TopicPartitionList,
};
use secpipe_producers::{EventProducer, OutRecord};
use secpipe_schemas::telemetry::{TelemetryEvent, TelemetryKind};

use super::*;

/// Latency of one kind of probe: samples, p50 and p99 in ms.
#[derive(Debug, Clone)]
pub struct Latency {
    pub what: String,
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl Latency {
    /// Its p50 and p99 as figures named `<label> p50, paced load` and `... p99 ...`.
    fn figures(&self, label: &str) -> [Figure; 2] {
        [
            Figure::new(format!("{label} p50, paced load"), self.p50_ms, "ms"),
            Figure::new(format!("{label} p99, paced load"), self.p99_ms, "ms"),
        ]
    }
}

/// Figures of one whole-pipeline run.
#[derive(Debug)]
pub struct PipelineFigures {
    pub events: usize,
    pub seconds: f64,
    pub events_per_sec: f64,
    /// Events/s of the latency phase.
    pub paced_rate: f64,
    /// Telemetry ack -> visible, all types together first, then per type; then scans.
    pub latency: Vec<Latency>,
    /// The telemetry probes' latency split at the clean topic.
    pub stages: Vec<Latency>,
    /// How long one round of the visibility poller's queries took (probes are seen within a
    /// round plus its 25 ms pause).
    pub poll: Latency,
    /// Rows per table the run wrote (every inserted row, versions included).
    pub rows: Vec<(String, u64)>,
    pub peak_rss_mb: Vec<(String, f64)>,
    /// CPU each process used in phase 1, in cores (CPU seconds / phase seconds); the machine
    /// has 2.
    pub cores_busy: Vec<(String, f64)>,
    /// Records (and bytes) the pipeline produced to the broker in phase 1, and records its
    /// stages consumed.
    pub records_produced: u64,
    pub bytes_produced: u64,
    pub records_consumed: u64,
    pub broker_produce_per_sec: f64,
    pub broker_consume_per_sec: f64,
    /// Rows the pipeline wrote in phase 1 per second, and ClickHouse inserting the same rows.
    pub pipeline_rows_per_sec: f64,
    pub clickhouse_insert_rows_per_sec: f64,
}

impl Figures for PipelineFigures {
    fn figures(&self) -> Vec<Figure> {
        let mut f = vec![Figure::new(
            "end to end, reference-mix telemetry through the gateway until every stage committed",
            self.events_per_sec,
            "events/s",
        )];
        f.push(Figure::new(
            "latency phase: paced load (half the end-to-end rate unless given)",
            self.paced_rate,
            "events/s",
        ));
        for l in &self.latency {
            f.extend(l.figures(&format!("{} ack -> visible in ClickHouse", l.what)));
        }
        for l in &self.stages {
            f.extend(l.figures(&l.what));
        }
        f.extend(
            self.poll
                .figures("visibility check: one round of the poller's queries"),
        );
        let produce = self.records_produced as f64 / self.seconds;
        let consume = self.records_consumed as f64 / self.seconds;
        f.push(Figure::new(
            "pipeline's produce to the broker (every topic it wrote)",
            produce,
            "records/s",
        ));
        f.push(Figure::new(
            "broker producing the same records again",
            self.broker_produce_per_sec,
            "records/s",
        ));
        f.push(Figure::new(
            "pipeline's produce as a share of the broker's",
            100.0 * produce / self.broker_produce_per_sec,
            "%",
        ));
        f.push(Figure::new(
            "pipeline's consume (every stage)",
            consume,
            "records/s",
        ));
        f.push(Figure::new(
            "broker consuming the same records again",
            self.broker_consume_per_sec,
            "records/s",
        ));
        f.push(Figure::new(
            "pipeline's consume as a share of the broker's",
            100.0 * consume / self.broker_consume_per_sec,
            "%",
        ));
        f.push(Figure::new(
            "pipeline's ClickHouse rows (every table it wrote)",
            self.pipeline_rows_per_sec,
            "rows/s",
        ));
        f.push(Figure::new(
            "clickhouse-client inserting the same rows (quiet server)",
            self.clickhouse_insert_rows_per_sec,
            "rows/s",
        ));
        f.push(Figure::new(
            "pipeline's rows as a share of clickhouse-client's",
            100.0 * self.pipeline_rows_per_sec / self.clickhouse_insert_rows_per_sec,
            "%",
        ));
        for (process, cores) in &self.cores_busy {
            f.push(Figure::new(
                format!("CPU in the end-to-end phase, {process}"),
                *cores,
                "cores",
            ));
        }
        for (role, mb) in &self.peak_rss_mb {
            f.push(Figure::new(format!("peak RSS {role}"), *mb, "MB"));
        }
        f
    }
}

/// Topics of the run, with their per-test names.
fn bench_settings(settings: &Settings, tag: &str) -> Settings {
    let mut s = settings.clone();
    let t = &mut s.kafka.topics;
    for (topic, name) in [
        (&mut t.scan_results, "scan-results"),
        (&mut t.findings, "findings"),
        (&mut t.scan_failures, "scan-failures"),
        (&mut t.telemetry, "telemetry"),
        (&mut t.admin_events, "admin-events"),
        (&mut t.scan_rollups, "scan-rollups"),
        (&mut t.repo_status, "repo-status"),
        (&mut t.telemetry_clean, "telemetry.clean"),
        (&mut t.heartbeat_rollups, "heartbeat-rollups"),
        (&mut t.alerts, "alerts"),
        (&mut t.dead_letter, "dead-letter"),
    ] {
        *topic = format!("bench.{tag}.{name}");
    }
    s.processors.changelog_prefix = format!("bench.{tag}.changelog.");
    s.processors.group_prefix = format!("bench.{tag}.");
    s.loader.group_id = format!("bench.{tag}.loader");
    s.clickhouse.database = format!("bench_{tag}");
    s
}

/// CPU seconds used so far by every process of the run: each role, the broker, ClickHouse, and
/// this process (the load generator and the watcher).
fn cpu_snapshot(s: &Settings, roles: &RoleProcesses) -> Vec<(String, f64)> {
    let mut cpu = roles.cpu_seconds();
    let state = s.stack.state_dir.join("clickhouse");
    let state = state.to_string_lossy();
    for (name, pid) in [
        (
            "broker (tansu)",
            find_process(&["tansu", "broker", &s.kafka.brokers]),
        ),
        (
            "ClickHouse server",
            find_process(&["clickhouse-server", &state]),
        ),
        ("load generator (bench process)", Some(std::process::id())),
    ] {
        if let Some(secs) = pid.and_then(cpu_seconds) {
            cpu.push((name.to_string(), secs));
        }
    }
    cpu
}

/// NDJSON bodies of `events`, `batch` per body.
fn ndjson(events: &[TelemetryEvent], batch: usize) -> Vec<bytes::Bytes> {
    events
        .chunks(batch)
        .map(|c| {
            let mut b = Vec::with_capacity(c.len() * 700);
            for e in c {
                serde_json::to_writer(&mut b, e).expect("serialize");
                b.push(b'\n');
            }
            bytes::Bytes::from(b)
        })
        .collect()
}

/// Posts `bodies` with 8 requests in flight; with `rate`, paced to that many events per second.
async fn load(
    http: &reqwest::Client,
    url: String,
    token: &str,
    bodies: Vec<bytes::Bytes>,
    per_body: usize,
    rate: Option<f64>,
) -> Vec<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let queue = Arc::new(Mutex::new(bodies.into_iter().enumerate()));
    let started = Instant::now();
    (0..8)
        .map(|_| {
            let (queue, http, url, token) =
                (queue.clone(), http.clone(), url.clone(), token.to_string());
            tokio::spawn(async move {
                loop {
                    let Some((i, body)) = queue.lock().await.next() else {
                        break;
                    };
                    if let Some(rate) = rate {
                        let due =
                            started + Duration::from_secs_f64(i as f64 * per_body as f64 / rate);
                        tokio::time::sleep_until(due.into()).await;
                    }
                    let r = http
                        .post(&url)
                        .bearer_auth(&token)
                        .body(body)
                        .send()
                        .await?;
                    anyhow::ensure!(r.status().is_success(), "telemetry batch: {}", r.status());
                }
                anyhow::Ok(())
            })
        })
        .collect()
}

/// Watches one stage: the committed offsets of its consumer group on its input topic. The
/// clients are made before the clock starts, so a check costs one round trip.
struct StageWatch {
    group: BaseConsumer,
    topic: String,
    partitions: TopicPartitionList,
}

impl StageWatch {
    fn new(s: &Settings, watcher: &BaseConsumer, group: &str, topic: &str) -> anyhow::Result<Self> {
        let md = watcher.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let mut partitions = TopicPartitionList::new();
        for p in md.topics()[0].partitions() {
            partitions.add_partition(topic, p.id());
        }
        Ok(Self {
            group: s
                .kafka
                .client_config("bench-watch")
                .set("group.id", group)
                .create()?,
            topic: topic.to_string(),
            partitions,
        })
    }

    /// Sum of the topic's end offsets.
    fn end(&self, watcher: &BaseConsumer) -> anyhow::Result<i64> {
        let mut end = 0;
        for e in self.partitions.elements() {
            end += watcher
                .fetch_watermarks(&self.topic, e.partition(), Duration::from_secs(10))?
                .1;
        }
        Ok(end)
    }

    /// Sum of the group's committed offsets.
    fn committed(&self) -> anyhow::Result<i64> {
        Ok(self
            .group
            .committed_offsets(self.partitions.clone(), Duration::from_secs(10))?
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => o,
                _ => 0,
            })
            .sum())
    }
}

/// The end offset of each partition of `topic`.
fn end_offsets(watcher: &BaseConsumer, topic: &str) -> anyhow::Result<HashMap<i32, i64>> {
    let md = watcher.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut ends = HashMap::new();
    for p in md.topics()[0].partitions() {
        ends.insert(
            p.id(),
            watcher
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))?
                .1,
        );
    }
    Ok(ends)
}

/// The records of `topic` below `ends` (per partition): (key, payload).
fn read_topic(
    s: &Settings,
    topic: &str,
    ends: &HashMap<i32, i64>,
) -> anyhow::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let c: BaseConsumer = s
        .kafka
        .client_config("bench-reader")
        .set("group.id", format!("bench-reader-{}", uuid::Uuid::new_v4()))
        .create()?;
    let mut tpl = TopicPartitionList::new();
    let mut left = 0;
    for (&p, &end) in ends {
        if end > 0 {
            tpl.add_partition_offset(topic, p, Offset::Beginning)?;
            left += 1;
        }
    }
    c.assign(&tpl)?;
    let mut out = Vec::new();
    let mut done = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    while done.len() < left && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(500)) {
            let end = ends.get(&m.partition()).copied().unwrap_or(0);
            if m.offset() < end {
                out.push((
                    m.key().unwrap_or_default().to_vec(),
                    m.payload().unwrap_or_default().to_vec(),
                ));
            }
            if m.offset() + 1 >= end {
                done.insert(m.partition());
            }
        }
    }
    anyhow::ensure!(done.len() == left, "reading {topic} back timed out");
    Ok(out)
}

/// Probes' pids start here; the reference mix's are far below.
const PROBE_PIDS: i64 = 3_000_000;

fn percentiles(what: &str, mut ms: Vec<f64>) -> Latency {
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        ms.get(((ms.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    Latency {
        what: what.to_string(),
        samples: ms.len(),
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
    }
}

/// The whole pipeline; see the module docs. `paced_rate` 0 = half the phase-1 rate.
pub async fn pipeline(
    settings: &Settings,
    events: usize,
    paced_rate: f64,
    paced_secs: u64,
) -> anyhow::Result<PipelineFigures> {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let s = bench_settings(settings, &tag);
    crate::topics::create_all(&s).await?;
    secpipe_sinks::clickhouse::migrate(&s.clickhouse).await?;

    let token = uuid::Uuid::new_v4().simple().to_string();
    let gw_addr = free_addr()?;
    let mut roles = RoleProcesses::new(&s, &tag, &token, gw_addr)?;
    for (name, args) in [
        ("gateway", &["gateway"][..]),
        ("process telemetry", &["process", "telemetry"]),
        ("process scan-results", &["process", "scan-results"]),
        ("process admin-events", &["process", "admin-events"]),
        ("sink clickhouse", &["sink", "clickhouse"]),
    ] {
        roles.spawn(name, args)?;
    }
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(16)
        .build()?;
    let base = format!("http://{gw_addr}");
    wait_for_gateway(&http, &base).await?;
    let client = s.clickhouse.client();

    // Warm-up: one scan summary through every stage, so consumers have joined their groups
    // before the clock starts.
    let warm = format!("{tag}-warm");
    let r = http
        .post(format!("{base}/track"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"id": warm, "repo_context": {"repositoryName": "bench"}}))
        .send()
        .await?;
    anyhow::ensure!(
        r.status().is_success(),
        "warm-up scan refused: {}",
        r.status()
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n: u64 = client
            .query("SELECT count() FROM scan_results WHERE scan_id = ?")
            .bind(&warm)
            .fetch_one()
            .await?;
        if n > 0 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "warm-up scan never reached ClickHouse"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Phase 1: throughput.
    eprintln!("pipeline: {events} reference-mix events through the gateway");
    let stamp = |evs: &mut Vec<TelemetryEvent>, prefix: &str| {
        let shift =
            secpipe_schemas::now_micros() - evs.last().map_or(0, |e| e.envelope().event_time);
        for (i, e) in evs.iter_mut().enumerate() {
            e.envelope_mut().event_time += shift;
            e.envelope_mut().event_id = format!("{prefix}-{i}");
        }
    };
    let mut all: Vec<TelemetryEvent> = sample::reference_mix(57, 16, 8).take(events).collect();
    stamp(&mut all, &format!("{tag}-load"));
    let bodies = ndjson(&all, 500);
    let watcher: BaseConsumer = s.kafka.client_config("bench-watch").create()?;
    let t = &s.kafka.topics;
    let loader = |table: &str| format!("{}.{table}", s.loader.group_id);
    // Every stage of the telemetry path, the processor first.
    let stages = [
        StageWatch::new(
            &s,
            &watcher,
            &format!("{}telemetry", s.processors.group_prefix),
            &t.telemetry,
        )?,
        StageWatch::new(
            &s,
            &watcher,
            &loader("telemetry_events"),
            &t.telemetry_clean,
        )?,
        StageWatch::new(
            &s,
            &watcher,
            &loader("heartbeat_rollups"),
            &t.heartbeat_rollups,
        )?,
        StageWatch::new(&s, &watcher, &loader("alerts"), &t.alerts)?,
    ];
    let cpu_before = cpu_snapshot(&s, &roles);
    let started = Instant::now();
    let senders = load(
        &http,
        format!("{base}/v1/telemetry"),
        &token,
        bodies,
        500,
        None,
    )
    .await;
    for h in senders {
        h.await??;
    }
    let acked_secs = started.elapsed().as_secs_f64();
    // Drained, stage by stage in pipeline order: once the processor has committed the whole
    // input, its outputs are complete, and each loader stage must commit up to their end.
    let deadline = Instant::now() + Duration::from_secs(600);
    for stage in &stages {
        let end = stage.end(&watcher)?;
        while stage.committed()? < end {
            anyhow::ensure!(
                Instant::now() < deadline,
                "pipeline did not drain within 600 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu_after = cpu_snapshot(&s, &roles);
    let events_per_sec = events as f64 / seconds;
    eprintln!(
        "phase 1: {events_per_sec:.0} events/s end to end; the gateway acknowledged the last \
         event after {acked_secs:.2} s, every stage had committed {:.2} s later",
        seconds - acked_secs
    );
    let cores_busy: Vec<(String, f64)> = cpu_after
        .iter()
        .map(|(name, after)| {
            let before = cpu_before
                .iter()
                .find(|(n, _)| n == name)
                .map_or(0.0, |(_, b)| *b);
            (name.clone(), (after - before) / seconds)
        })
        .collect();

    // What phase 1 wrote: records per topic (the probes of phase 2 are not in it) and rows.
    let mut written_topics: Vec<String> = vec![
        t.telemetry.clone(),
        t.telemetry_clean.clone(),
        t.heartbeat_rollups.clone(),
        t.alerts.clone(),
    ];
    for p in ["telemetry", "scan-results", "admin-events"] {
        written_topics.push(format!("{}{p}", s.processors.changelog_prefix));
    }
    let mut records_produced = 0u64;
    let mut records_consumed = 0u64;
    let mut phase1_ends = Vec::new();
    for topic in &written_topics {
        let ends = end_offsets(&watcher, topic)?;
        let n: i64 = ends.values().sum();
        phase1_ends.push((topic.clone(), ends));
        records_produced += n as u64;
        // Every topic but the changelogs is read by one stage.
        if !topic.starts_with(&s.processors.changelog_prefix) {
            records_consumed += n as u64;
        }
    }
    let tables = [
        "telemetry_events",
        "host_packages",
        "heartbeat_rollups",
        "alerts",
    ];
    let mut rows = Vec::new();
    let mut rows_total = 0u64;
    for table in tables {
        let n: u64 = client
            .query(&format!("SELECT count() FROM {table}"))
            .fetch_one()
            .await?;
        rows_total += n;
        rows.push((table.to_string(), n));
    }
    let pipeline_rows_per_sec = rows_total as f64 / seconds;

    // Phase 2: latency at a paced rate, with probes.
    let paced_rate = if paced_rate > 0.0 {
        paced_rate
    } else {
        events_per_sec / 2.0
    };
    let paced_events = (paced_rate * paced_secs as f64) as usize;
    eprintln!("phase 2: {paced_events} events at {paced_rate:.0} events/s with probes");
    let mut paced: Vec<TelemetryEvent> = sample::reference_mix(58, 16, 8)
        .take(paced_events)
        .collect();
    stamp(&mut paced, &format!("{tag}-paced"));
    let templates: Vec<TelemetryEvent> = TelemetryKind::ALL
        .iter()
        .filter(|k| **k != TelemetryKind::Heartbeat)
        .filter_map(|k| {
            sample::reference_mix(59, 16, 8)
                .take(5_000)
                .find(|e| e.kind() == *k)
        })
        .collect();
    let senders = load(
        &http,
        format!("{base}/v1/telemetry"),
        &token,
        ndjson(&paced, 100),
        100,
        Some(paced_rate),
    )
    .await;
    let mut acked: HashMap<String, (String, Instant)> = HashMap::new();
    let prefix = format!("{tag}-probe-");
    // Where the time goes: a reader of the clean topic notes when each telemetry probe leaves
    // the processor (its id is plain bytes in the Avro record), splitting ack -> visible into
    // ack -> processed and processed -> visible.
    let processed_at: Arc<std::sync::Mutex<HashMap<String, Instant>>> = Arc::default();
    let reading = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let clean_reader = {
        let ends = end_offsets(&watcher, &s.kafka.topics.telemetry_clean)?;
        let mut tpl = TopicPartitionList::new();
        for (&p, &end) in &ends {
            tpl.add_partition_offset(&s.kafka.topics.telemetry_clean, p, Offset::Offset(end))?;
        }
        let c: BaseConsumer = s
            .kafka
            .client_config("bench-clean-reader")
            .set("group.id", format!("bench-clean-{tag}"))
            .set("fetch.wait.max.ms", "10")
            .create()?;
        c.assign(&tpl)?;
        let (processed_at, reading, needle) = (
            processed_at.clone(),
            reading.clone(),
            prefix.clone().into_bytes(),
        );
        std::thread::spawn(move || {
            while reading.load(std::sync::atomic::Ordering::Relaxed) {
                let Some(Ok(m)) = c.poll(Duration::from_millis(50)) else {
                    continue;
                };
                let payload = m.payload().unwrap_or_default();
                if let Some(at) = payload.windows(needle.len()).position(|w| w == needle) {
                    let id: Vec<u8> = payload[at..]
                        .iter()
                        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'-')
                        .copied()
                        .collect();
                    let id = String::from_utf8_lossy(&id).into_owned();
                    processed_at
                        .lock()
                        .expect("not poisoned")
                        .entry(id)
                        .or_insert_with(Instant::now);
                }
            }
        })
    };
    // A poller apart from the prober, every 25 ms, so visibility is seen to within a poll. Its
    // query reads the 8-byte pid column first (probes have pids from PROBE_PIDS on, no load
    // event has) and event ids only of the granules that hold probes: a scan of every event id
    // 40 times a second would cost ClickHouse CPU the pipeline needs, and slow each poll as
    // the table grows. How long each round took is reported.
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let rounds: Arc<Mutex<Vec<f64>>> = Arc::default();
    let polling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let poller = {
        let (client, prefix, seen, polling, rounds) = (
            client.clone(),
            prefix.clone(),
            seen.clone(),
            polling.clone(),
            rounds.clone(),
        );
        tokio::spawn(async move {
            while polling.load(std::sync::atomic::Ordering::Relaxed) {
                let began = Instant::now();
                let mut ids: Vec<String> = client
                    .query(
                        "SELECT event_id FROM telemetry_events PREWHERE pid >= ? \
                         WHERE startsWith(event_id, ?)",
                    )
                    .bind(PROBE_PIDS)
                    .bind(&prefix)
                    .fetch_all()
                    .await?;
                let scans: Vec<String> = client
                    .query("SELECT scan_id FROM scan_results WHERE startsWith(scan_id, ?)")
                    .bind(&prefix)
                    .fetch_all()
                    .await?;
                ids.extend(scans);
                let now = Instant::now();
                let mut seen = seen.lock().await;
                for id in ids {
                    seen.entry(id).or_insert(now);
                }
                drop(seen);
                rounds
                    .lock()
                    .await
                    .push(now.duration_since(began).as_secs_f64() * 1e3);
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            anyhow::Ok(())
        })
    };
    let mut round = 0usize;
    let mut next = Instant::now();
    while senders.iter().any(|h| !h.is_finished()) {
        let mut probes = templates.clone();
        let mut body = Vec::new();
        for (i, e) in probes.iter_mut().enumerate() {
            let env = e.envelope_mut();
            env.event_id = format!("{prefix}{round}-{i}");
            env.event_time = secpipe_schemas::now_micros();
            // A process of its own: no per-process dedupe or rate limit applies to a probe.
            env.pid = PROBE_PIDS + (round * 32 + i) as i64;
            serde_json::to_writer(&mut body, e)?;
            body.push(b'\n');
        }
        let r = http
            .post(format!("{base}/v1/telemetry"))
            .bearer_auth(&token)
            .body(body)
            .send()
            .await?;
        let now = Instant::now();
        if r.status().is_success() {
            for e in &probes {
                acked.insert(
                    e.envelope().event_id.clone(),
                    (e.kind().as_str().to_string(), now),
                );
            }
        }
        let scan = format!("{prefix}scan-{round}");
        let r = http
            .post(format!("{base}/track"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"id": scan, "repo_context": {"repositoryName": "bench"}}))
            .send()
            .await?;
        if r.status().is_success() {
            acked.insert(scan, ("scan".into(), Instant::now()));
        }
        round += 1;
        next += Duration::from_millis(100);
        tokio::time::sleep_until(next.into()).await;
    }
    for h in senders {
        h.await??;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.lock().await.len() < acked.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    polling.store(false, std::sync::atomic::Ordering::Relaxed);
    reading.store(false, std::sync::atomic::Ordering::Relaxed);
    poller.await??;
    let _ = clean_reader.join();
    let seen = seen.lock().await.clone();
    let processed_at = processed_at.lock().expect("not poisoned").clone();
    let (mut to_processed, mut to_visible) = (Vec::new(), Vec::new());
    for (id, (kind, at)) in &acked {
        if let (Some(p), Some(v), true) = (processed_at.get(id), seen.get(id), kind != "scan") {
            to_processed.push(p.saturating_duration_since(*at).as_secs_f64() * 1e3);
            to_visible.push(v.saturating_duration_since(*p).as_secs_f64() * 1e3);
        }
    }
    let stages = vec![
        percentiles(
            "telemetry ack -> on the clean topic (gateway, broker, processor)",
            to_processed,
        ),
        percentiles(
            "telemetry on the clean topic -> visible (loader, ClickHouse)",
            to_visible,
        ),
    ];
    let mut by_kind: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (id, (kind, at)) in &acked {
        if let Some(v) = seen.get(id) {
            by_kind
                .entry(kind.clone())
                .or_default()
                .push(v.saturating_duration_since(*at).as_secs_f64() * 1e3);
        }
    }
    let telemetry_all: Vec<f64> = by_kind
        .iter()
        .filter(|(k, _)| k.as_str() != "scan")
        .flat_map(|(_, v)| v.iter().copied())
        .collect();
    let mut latency = vec![percentiles("telemetry, every type", telemetry_all)];
    for (kind, ms) in &by_kind {
        if kind != "scan" {
            latency.push(percentiles(&format!("telemetry {kind}"), ms.clone()));
        }
    }
    if let Some(ms) = by_kind.get("scan") {
        latency.push(percentiles("scan summary (/track)", ms.clone()));
    }
    let poll = percentiles(
        "visibility check (one round of the poller's queries)",
        rounds.lock().await.clone(),
    );
    let peak_rss_mb = roles.stop();

    // The limits, on the same data: the records phase 1 wrote, produced and consumed again.
    let mut records: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for (topic, ends) in &phase1_ends {
        records.extend(read_topic(&s, topic, ends)?);
    }
    let bytes_produced: u64 = records
        .iter()
        .map(|(k, p)| (k.len() + p.len()) as u64)
        .sum();
    let raw_topic = format!("bench.{tag}.raw");
    let mut raw_settings = s.clone();
    raw_settings.kafka.topics.dead_letter = raw_topic.clone();
    crate::topics::create_all(&raw_settings).await?;
    let producer = EventProducer::new(&s.kafka, "bench-raw")?;
    let t0 = Instant::now();
    for chunk in records.chunks(10_000) {
        let out: Vec<OutRecord<'_>> = chunk
            .iter()
            .map(|(k, p)| OutRecord {
                topic: &raw_topic,
                key: k,
                payload: p,
                headers: &[],
                partition: None,
            })
            .collect();
        producer.send_all(&out).await?;
    }
    let broker_produce_per_sec = records.len() as f64 / t0.elapsed().as_secs_f64();
    let reader: BaseConsumer = s
        .kafka
        .client_config("bench-raw-read")
        .set("group.id", format!("bench-raw-{tag}"))
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "20")
        .create()?;
    reader.subscribe(&[&raw_topic])?;
    let t0 = Instant::now();
    let mut read = 0usize;
    let want = records_consumed.min(records.len() as u64) as usize;
    let deadline = Instant::now() + Duration::from_secs(300);
    while read < want && Instant::now() < deadline {
        if let Some(Ok(_)) = reader.poll(Duration::from_millis(100)) {
            read += 1;
        }
    }
    let broker_consume_per_sec = read as f64 / t0.elapsed().as_secs_f64();

    // Every row the pipeline wrote, inserted again by clickhouse-client from RowBinary files.
    let dir = std::env::temp_dir().join(format!("secpipe-bench-rows-{tag}"));
    std::fs::create_dir_all(&dir)?;
    let ch = |query: &str, stdin: Option<&std::path::Path>, stdout: Option<&std::path::Path>| {
        clickhouse_client(&s, query, stdin, stdout)
    };
    let mut insert_secs = 0.0;
    let mut insert_rows = 0u64;
    for (table, n) in &rows {
        if *n == 0 {
            continue;
        }
        let file = dir.join(format!("{table}.rowbinary"));
        // Phase 1's rows only: the paced phase and the probes came later.
        ch(
            &format!("SELECT * FROM {table} LIMIT {n} FORMAT RowBinary"),
            None,
            Some(&file),
        )?;
        ch(&format!("CREATE TABLE {table}_copy AS {table}"), None, None)?;
        wait_for_quiet_server(&s.clickhouse.client()).await?;
        let t0 = Instant::now();
        ch(
            &format!("INSERT INTO {table}_copy FORMAT RowBinary"),
            Some(&file),
            None,
        )?;
        insert_secs += t0.elapsed().as_secs_f64();
        insert_rows += n;
    }
    let clickhouse_insert_rows_per_sec = insert_rows as f64 / insert_secs.max(1e-9);
    let _ = std::fs::remove_dir_all(&dir);
    s.clickhouse
        .server_client()
        .query(&format!(
            "DROP DATABASE IF EXISTS {}",
            s.clickhouse.database
        ))
        .execute()
        .await?;
    Ok(PipelineFigures {
        events,
        seconds,
        events_per_sec,
        paced_rate,
        latency,
        stages,
        poll,
        rows,
        peak_rss_mb,
        cores_busy,
        records_produced,
        bytes_produced,
        records_consumed,
        broker_produce_per_sec,
        broker_consume_per_sec,
        pipeline_rows_per_sec,
        clickhouse_insert_rows_per_sec,
    })
}
