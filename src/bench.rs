//! `secpipe bench ...`: throughput figures measured on the running local stack.
//!
//! `secpipe bench gateway`: the ingest gateway under NDJSON telemetry batches of the reference's
//! 743-event mix. Measures from the first request to the last response (a response is sent only
//! after the broker acknowledged every record of its batch), with request latency percentiles.
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use secpipe_producers::gateway::{hash_token, Role, TokenConfig};
use secpipe_schemas::telemetry::sample;
use tokio::sync::Mutex;

use crate::{roles, runtime::Shutdown, Settings};

/// Figures of one gateway run.
#[derive(Debug)]
pub struct GatewayFigures {
    pub events: usize,
    pub batches: usize,
    pub seconds: f64,
    pub events_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

/// Runs the gateway benchmark: `events` telemetry events in batches of `batch`, `concurrency`
/// requests in flight, against a gateway started in this process.
pub async fn gateway(
    settings: &Settings,
    events: usize,
    batch: usize,
    concurrency: usize,
) -> anyhow::Result<GatewayFigures> {
    crate::topics::create_all(settings).await?;
    let token = uuid::Uuid::new_v4().simple().to_string();
    let mut settings = settings.clone();
    settings.gateway.tokens.push(TokenConfig {
        name: "bench".into(),
        sha256: hash_token(&token),
        role: Role::Producer,
        kinds: Vec::new(),
        rate_per_sec: 0,
    });
    settings.gateway.rate_limit_per_token = 0;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1/telemetry", listener.local_addr()?);
    let (trigger, shutdown) = Shutdown::new();
    let gateway = tokio::spawn(roles::gateway_on(listener, settings.clone(), shutdown));

    eprintln!("preparing {events} events of the reference mix in batches of {batch}");
    let bodies: Vec<bytes::Bytes> = {
        let all: Vec<_> = sample::reference_mix(17, 16, 8).take(events).collect();
        all.chunks(batch)
            .map(|chunk| {
                let mut body = Vec::with_capacity(chunk.len() * 700);
                for ev in chunk {
                    serde_json::to_writer(&mut body, ev).expect("serialize");
                    body.push(b'\n');
                }
                bytes::Bytes::from(body)
            })
            .collect()
    };
    let total_bytes: usize = bodies.iter().map(|b| b.len()).sum();
    eprintln!(
        "{} batches, {:.1} MB of NDJSON; sending with {concurrency} in flight",
        bodies.len(),
        total_bytes as f64 / 1e6
    );

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    // Warm-up: connections and the producer's idempotence set-up are not part of the figure.
    let warm = http
        .post(&url)
        .bearer_auth(&token)
        .body(bodies[0].clone())
        .send()
        .await?;
    anyhow::ensure!(
        warm.status().is_success(),
        "warm-up batch refused: {}",
        warm.text().await?
    );

    let queue = Arc::new(Mutex::new(bodies.into_iter().enumerate()));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (queue, latencies, http, url, token) = (
            queue.clone(),
            latencies.clone(),
            http.clone(),
            url.clone(),
            token.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let next = queue.lock().await.next();
                let Some((i, body)) = next else { break };
                let t = Instant::now();
                let resp = http
                    .post(&url)
                    .bearer_auth(&token)
                    .body(body)
                    .send()
                    .await?;
                let status = resp.status();
                let text = resp.text().await?;
                anyhow::ensure!(status.is_success(), "batch {i}: {status} {text}");
                latencies.lock().await.push(t.elapsed());
            }
            anyhow::Ok(())
        }));
    }
    for w in workers {
        w.await.context("bench worker")??;
    }
    let seconds = started.elapsed().as_secs_f64();
    trigger.trigger();
    gateway.await??;
    let mut lat = latencies.lock().await.clone();
    lat.sort();
    let sent = lat.len() * batch;
    Ok(GatewayFigures {
        events: sent,
        batches: lat.len(),
        seconds,
        events_per_sec: sent as f64 / seconds,
        p50_ms: percentile(&lat, 0.50),
        p99_ms: percentile(&lat, 0.99),
        max_ms: percentile(&lat, 1.0),
    })
}

/// Figures of one processor run.
#[derive(Debug)]
pub struct ProcessorFigures {
    pub events: i64,
    pub seconds: f64,
    pub events_per_sec: f64,
    pub latency_events: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub peak_rss_mb: f64,
}

fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// The telemetry processor as its own process (`secpipe process telemetry`) on fresh topics:
/// throughput over a backlog of `events` reference-mix events, then end-to-end latency (input
/// append to output append) at `rate` events/s for `seconds`, and the process's peak RSS.
pub async fn processor(
    settings: &Settings,
    events: usize,
    rate: usize,
    seconds: u64,
) -> anyhow::Result<ProcessorFigures> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use secpipe_producers::{EventProducer, OutRecord};
    use secpipe_schemas::telemetry::TelemetryCodec;

    let tag = uuid::Uuid::new_v4().simple().to_string();
    let mut s = settings.clone();
    let t = &mut s.kafka.topics;
    for (topic, name) in [
        (&mut t.telemetry, "telemetry"),
        (&mut t.telemetry_clean, "telemetry.clean"),
        (&mut t.heartbeat_rollups, "heartbeat-rollups"),
        (&mut t.alerts, "alerts"),
        (&mut t.dead_letter, "dead-letter"),
    ] {
        *topic = format!("bench.{tag}.{name}");
    }
    s.processors.changelog_prefix = format!("bench.{tag}.changelog.");
    s.processors.group_prefix = format!("bench.{tag}.");
    crate::topics::create_all(&s).await?;

    // The backlog: reference mix stamped to end now.
    eprintln!(
        "producing {events} reference-mix events to {}",
        s.kafka.topics.telemetry
    );
    let codec = TelemetryCodec::new()?;
    let producer = EventProducer::new(&s.kafka, "bench")?;
    let mut all: Vec<_> = sample::reference_mix(23, 16, 8).take(events).collect();
    let shift = secpipe_schemas::now_micros() - all.last().map_or(0, |e| e.envelope().event_time);
    let encoded: Vec<(String, Vec<u8>)> = all
        .iter_mut()
        .map(|e| {
            e.envelope_mut().event_time += shift;
            (e.partition_key(), codec.encode(e).expect("encode"))
        })
        .collect();
    for chunk in encoded.chunks(10_000) {
        let out: Vec<OutRecord<'_>> = chunk
            .iter()
            .map(|(k, p)| OutRecord {
                topic: &s.kafka.topics.telemetry,
                key: k.as_bytes(),
                payload: p,
                headers: &[],
                partition: None,
            })
            .collect();
        producer.send_all(&out).await?;
    }

    let mut env: Vec<(String, String)> = vec![
        ("KAFKA__BROKERS".into(), s.kafka.brokers.clone()),
        ("OPS__LISTEN".into(), "127.0.0.1:0".into()),
        (
            "PROCESSORS__CHANGELOG_PREFIX".into(),
            s.processors.changelog_prefix.clone(),
        ),
        (
            "PROCESSORS__GROUP_PREFIX".into(),
            s.processors.group_prefix.clone(),
        ),
    ];
    let t = &s.kafka.topics;
    for (k, v) in [
        ("TELEMETRY", &t.telemetry),
        ("TELEMETRY_CLEAN", &t.telemetry_clean),
        ("HEARTBEAT_ROLLUPS", &t.heartbeat_rollups),
        ("ALERTS", &t.alerts),
        ("DEAD_LETTER", &t.dead_letter),
    ] {
        env.push((format!("KAFKA__TOPICS__{k}"), v.clone()));
    }
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(["process", "telemetry"])
        .envs(env.iter().map(|(k, v)| (format!("SECPIPE__{k}"), v)))
        .env("RUST_LOG", "warn")
        .spawn()
        .context("starting secpipe process telemetry")?;

    let group = format!("{}telemetry", s.processors.group_prefix);
    // One client for every look at the committed offsets: the poll must not cost the machine.
    let watcher: BaseConsumer = s
        .kafka
        .client_config("bench-committed")
        .set("group.id", &group)
        .create()?;
    let md = watcher.fetch_metadata(Some(&s.kafka.topics.telemetry), Duration::from_secs(10))?;
    let mut watched = rdkafka::TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        watched.add_partition(&s.kafka.topics.telemetry, p.id());
    }
    let committed = |_: &Settings| -> anyhow::Result<i64> {
        Ok(watcher
            .committed_offsets(watched.clone(), Duration::from_secs(10))?
            .elements()
            .iter()
            .map(|e| match e.offset() {
                rdkafka::Offset::Offset(o) => o,
                _ => 0,
            })
            .sum())
    };
    let total = events as i64;
    let mut first: Option<(Instant, i64)> = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    let last = loop {
        anyhow::ensure!(
            Instant::now() < deadline,
            "processor did not catch up within 600 s"
        );
        let c = committed(&s)?;
        let now = Instant::now();
        if c > 0 && first.is_none() {
            first = Some((now, c));
        }
        if c >= total {
            break now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (t_first, c_first) = first.expect("first commit seen");
    let measured = total - c_first;
    let secs = (last - t_first).as_secs_f64();
    eprintln!("backlog: {measured} events in {secs:.2} s after the first commit");

    // Latency at a steady rate.
    eprintln!("latency phase: {rate} events/s for {seconds} s");
    let steady: Vec<(String, Vec<u8>, String)> = {
        let mut evs: Vec<_> = sample::reference_mix(99, 16, 8)
            .take(rate * seconds as usize)
            .collect();
        let base =
            secpipe_schemas::now_micros() - evs.first().map_or(0, |e| e.envelope().event_time);
        evs.iter_mut()
            .map(|e| {
                e.envelope_mut().event_time += base;
                let id = format!("lat-{}", e.envelope().event_id);
                e.envelope_mut().event_id = id.clone();
                (e.partition_key(), codec.encode(e).expect("encode"), id)
            })
            .collect()
    };
    let tick = Duration::from_millis(100);
    let per_tick = (rate / 10).max(1);
    let started = Instant::now();
    for (i, chunk) in steady.chunks(per_tick).enumerate() {
        let out: Vec<OutRecord<'_>> = chunk
            .iter()
            .map(|(k, p, _)| OutRecord {
                topic: &s.kafka.topics.telemetry,
                key: k.as_bytes(),
                payload: p,
                headers: &[],
                partition: None,
            })
            .collect();
        producer.send_all(&out).await?;
        tokio::time::sleep_until((started + tick * (i as u32 + 1)).into()).await;
    }
    let target = total + steady.len() as i64;
    let deadline = Instant::now() + Duration::from_secs(120);
    while committed(&s)? < target {
        anyhow::ensure!(
            Instant::now() < deadline,
            "processor did not keep up with {rate} events/s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let peak_kb = peak_rss_kb(child.id()).unwrap_or(0);
    // SIGTERM: the processor finishes its batch and leaves the group.
    let _ = std::process::Command::new("kill")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();

    let latencies = append_latencies(
        &s,
        &codec,
        &s.kafka.topics.telemetry,
        &s.kafka.topics.telemetry_clean,
    )?;
    let mut lat = latencies;
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0) as f64
    };
    Ok(ProcessorFigures {
        events: measured,
        seconds: secs,
        events_per_sec: measured as f64 / secs.max(1e-9),
        latency_events: lat.len(),
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        peak_rss_mb: peak_kb as f64 / 1024.0,
    })
}

/// Milliseconds between each latency-phase event's append to `input` and its append to `output`.
fn append_latencies(
    s: &Settings,
    codec: &secpipe_schemas::telemetry::TelemetryCodec,
    input: &str,
    output: &str,
) -> anyhow::Result<Vec<i64>> {
    use rdkafka::{
        consumer::{BaseConsumer, Consumer},
        Message, Offset, TopicPartitionList,
    };
    let read = |topic: &str| -> anyhow::Result<std::collections::HashMap<String, i64>> {
        let c: BaseConsumer = s
            .kafka
            .client_config("bench-reader")
            .set("group.id", format!("bench-reader-{}", uuid::Uuid::new_v4()))
            .set("enable.partition.eof", "true")
            .create()?;
        let md = c.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let mut tpl = TopicPartitionList::new();
        for p in md.topics()[0].partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
        }
        let parts = md.topics()[0].partitions().len();
        c.assign(&tpl)?;
        let mut out = std::collections::HashMap::new();
        let mut eofs = 0;
        let deadline = Instant::now() + Duration::from_secs(120);
        while eofs < parts && Instant::now() < deadline {
            match c.poll(Duration::from_millis(500)) {
                Some(Ok(m)) => {
                    let Some(payload) = m.payload() else { continue };
                    if let Ok(ev) = codec.decode(payload) {
                        let id = &ev.envelope().event_id;
                        if id.starts_with("lat-") {
                            out.insert(id.clone(), m.timestamp().to_millis().unwrap_or(0));
                        }
                    }
                }
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => eofs += 1,
                _ => {}
            }
        }
        Ok(out)
    };
    let appended = read(input)?;
    let emitted = read(output)?;
    Ok(emitted
        .iter()
        .filter_map(|(id, out_ts)| appended.get(id).map(|in_ts| out_ts - in_ts))
        .collect())
}

/// Figures of one loader run.
#[derive(Debug)]
pub struct LoaderFigures {
    pub rows: u64,
    pub package_rows: u64,
    pub loader_secs: f64,
    pub loader_rows_per_sec: f64,
    pub client_secs: f64,
    pub client_rows_per_sec: f64,
}

/// The ClickHouse loader of `telemetry_events` (+ `host_packages`) against `clickhouse-client`
/// inserting the very same rows from RowBinary files, side by side in one run, into a scratch
/// database.
pub async fn loader(settings: &Settings, events: usize) -> anyhow::Result<LoaderFigures> {
    use secpipe_producers::{EventProducer, OutRecord};
    use secpipe_schemas::telemetry::{TelemetryCodec, TelemetryEvent};
    use secpipe_sinks::clickhouse::tables::TelemetrySink;

    let tag = uuid::Uuid::new_v4().simple().to_string();
    let mut s = settings.clone();
    s.kafka.topics.telemetry_clean = format!("bench.{tag}.telemetry.clean");
    s.kafka.topics.dead_letter = format!("bench.{tag}.dead-letter");
    s.clickhouse.database = format!("bench_{tag}");
    s.loader.group_id = format!("bench.{tag}.loader");
    crate::topics::create_all(&s).await?;
    secpipe_sinks::clickhouse::migrate(&s.clickhouse).await?;

    eprintln!("producing {events} processed telemetry events");
    let codec = TelemetryCodec::new()?;
    let producer = EventProducer::new(&s.kafka, "bench")?;
    let encoded: Vec<(String, Vec<u8>)> = sample::reference_mix(31, 16, 8)
        .filter(|e| !matches!(e, TelemetryEvent::Heartbeat(_)))
        .take(events)
        .map(|e| (e.partition_key(), codec.encode(&e).expect("encode")))
        .collect();
    for chunk in encoded.chunks(10_000) {
        let out: Vec<OutRecord<'_>> = chunk
            .iter()
            .map(|(k, p)| OutRecord {
                topic: &s.kafka.topics.telemetry_clean,
                key: k.as_bytes(),
                payload: p,
                headers: &[],
                partition: None,
            })
            .collect();
        producer.send_all(&out).await?;
    }

    let (trigger, shutdown) = crate::runtime::Shutdown::new();
    let (kafka, cfg, topic) = (
        s.kafka.clone(),
        s.loader.clone(),
        s.kafka.topics.telemetry_clean.clone(),
    );
    let sink = TelemetrySink::new(&s.clickhouse);
    let task = tokio::spawn(async move {
        crate::runtime::run_sink(
            &kafka,
            &cfg,
            "bench.loader",
            &topic,
            TelemetryCodec::new()?,
            sink,
            shutdown,
        )
        .await
    });
    let client = s.clickhouse.client();
    let count = |table: &'static str| {
        let client = client.clone();
        async move {
            client
                .query(&format!("SELECT count() FROM {table}"))
                .fetch_one::<u64>()
                .await
        }
    };
    let mut first: Option<(Instant, u64)> = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    let (last, rows) = loop {
        anyhow::ensure!(
            Instant::now() < deadline,
            "loader did not finish within 600 s"
        );
        let n = count("telemetry_events").await?;
        let now = Instant::now();
        if n > 0 && first.is_none() {
            first = Some((now, n));
        }
        if n >= events as u64 {
            break (now, n);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    trigger.trigger();
    task.await??;
    let (t_first, n_first) = first.expect("rows seen");
    let loader_secs = (last - t_first).as_secs_f64();
    let loader_rows = rows - n_first;
    let package_rows = count("host_packages").await?;

    // The same rows through clickhouse-client, from RowBinary files, into empty copies.
    let dir = std::env::temp_dir().join(format!("secpipe-bench-{tag}"));
    std::fs::create_dir_all(&dir)?;
    let (host, port) = (
        s.stack_env()
            .into_iter()
            .find(|(k, _)| *k == "SECPIPE_CH_HOST")
            .map(|(_, v)| v)
            .unwrap_or_default(),
        s.stack.clickhouse_tcp_port.to_string(),
    );
    let ch = |query: &str,
              stdin: Option<&std::path::Path>,
              stdout: Option<&std::path::Path>|
     -> anyhow::Result<()> {
        let mut cmd = std::process::Command::new("clickhouse-client");
        cmd.args([
            "--host",
            &host,
            "--port",
            &port,
            "--database",
            &s.clickhouse.database,
            "--query",
            query,
        ]);
        if let Some(p) = stdin {
            cmd.stdin(std::fs::File::open(p)?);
        }
        if let Some(p) = stdout {
            cmd.stdout(std::fs::File::create(p)?);
        }
        let out = cmd.output().context("clickhouse-client")?;
        anyhow::ensure!(
            out.status.success(),
            "clickhouse-client {query}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    };
    let mut client_secs = 0.0;
    for table in ["telemetry_events", "host_packages"] {
        let file = dir.join(format!("{table}.rowbinary"));
        ch(
            &format!("SELECT * FROM {table} FORMAT RowBinary"),
            None,
            Some(&file),
        )?;
        ch(&format!("CREATE TABLE {table}_copy AS {table}"), None, None)?;
        let started = Instant::now();
        ch(
            &format!("INSERT INTO {table}_copy FORMAT RowBinary"),
            Some(&file),
            None,
        )?;
        client_secs += started.elapsed().as_secs_f64();
    }
    // Each client insert loaded every row; the loader figure excludes its first batch.
    let client_rows_per_sec = rows as f64 / client_secs;
    let _ = std::fs::remove_dir_all(&dir);
    s.clickhouse
        .server_client()
        .query(&format!(
            "DROP DATABASE IF EXISTS {}",
            s.clickhouse.database
        ))
        .execute()
        .await?;
    Ok(LoaderFigures {
        rows: loader_rows,
        package_rows,
        loader_secs,
        loader_rows_per_sec: loader_rows as f64 / loader_secs.max(1e-9),
        client_secs,
        client_rows_per_sec,
    })
}

/// Figures of one whole-pipeline run.
#[derive(Debug)]
pub struct PipelineFigures {
    pub events: usize,
    pub seconds: f64,
    pub events_per_sec: f64,
    pub latency_samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub peak_rss_mb: Vec<(String, f64)>,
    pub broker_produce_per_sec: f64,
    pub broker_consume_per_sec: f64,
    pub clickhouse_insert_rows_per_sec: f64,
}

/// The whole pipeline, each role its own process, on fresh topics and a scratch database:
/// `events` reference-mix telemetry events through the gateway (batches of 500, 8 in flight)
/// while scan reports are posted every 50 ms to time gateway acknowledgement -> ClickHouse
/// visibility. Then, in the same run, the limits: the broker's raw produce and consume rates and
/// ClickHouse's raw insert rate.
pub async fn pipeline(settings: &Settings, events: usize) -> anyhow::Result<PipelineFigures> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use secpipe_producers::{EventProducer, OutRecord};

    let tag = uuid::Uuid::new_v4().simple().to_string();
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
    crate::topics::create_all(&s).await?;
    secpipe_sinks::clickhouse::migrate(&s.clickhouse).await?;

    let token = uuid::Uuid::new_v4().simple().to_string();
    let dir = std::env::temp_dir().join(format!("secpipe-bench-{tag}"));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("secpipe.toml");
    std::fs::write(
        &config,
        format!(
            "[[gateway.tokens]]\nname = \"bench\"\nsha256 = \"{}\"\n",
            hash_token(&token)
        ),
    )?;
    let gw_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let gw_addr = gw_listener.local_addr()?;
    drop(gw_listener);
    let t = &s.kafka.topics;
    let mut env: Vec<(String, String)> = vec![
        ("KAFKA__BROKERS".into(), s.kafka.brokers.clone()),
        ("OPS__LISTEN".into(), "127.0.0.1:0".into()),
        ("GATEWAY__LISTEN".into(), gw_addr.to_string()),
        ("GATEWAY__RATE_LIMIT_PER_TOKEN".into(), "0".into()),
        ("GATEWAY__REDACTION_KEY".into(), "bench".into()),
        ("CLICKHOUSE__DATABASE".into(), s.clickhouse.database.clone()),
        ("LOADER__GROUP_ID".into(), s.loader.group_id.clone()),
        (
            "PROCESSORS__CHANGELOG_PREFIX".into(),
            s.processors.changelog_prefix.clone(),
        ),
        (
            "PROCESSORS__GROUP_PREFIX".into(),
            s.processors.group_prefix.clone(),
        ),
    ];
    for (k, v) in [
        ("SCAN_RESULTS", &t.scan_results),
        ("FINDINGS", &t.findings),
        ("SCAN_FAILURES", &t.scan_failures),
        ("TELEMETRY", &t.telemetry),
        ("ADMIN_EVENTS", &t.admin_events),
        ("SCAN_ROLLUPS", &t.scan_rollups),
        ("REPO_STATUS", &t.repo_status),
        ("TELEMETRY_CLEAN", &t.telemetry_clean),
        ("HEARTBEAT_ROLLUPS", &t.heartbeat_rollups),
        ("ALERTS", &t.alerts),
        ("DEAD_LETTER", &t.dead_letter),
    ] {
        env.push((format!("KAFKA__TOPICS__{k}"), v.clone()));
    }
    let exe = std::env::current_exe()?;
    let roles: [(&str, &[&str]); 5] = [
        ("gateway", &["gateway"]),
        ("process telemetry", &["process", "telemetry"]),
        ("process scan-results", &["process", "scan-results"]),
        ("process admin-events", &["process", "admin-events"]),
        ("sink clickhouse", &["sink", "clickhouse"]),
    ];
    let mut children = Vec::new();
    for (name, args) in roles {
        let child = std::process::Command::new(&exe)
            .arg("--config")
            .arg(&config)
            .args(args)
            .envs(env.iter().map(|(k, v)| (format!("SECPIPE__{k}"), v)))
            .env("RUST_LOG", "error")
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        children.push((name, child));
    }
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(16)
        .build()?;
    let base = format!("http://{gw_addr}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        anyhow::ensure!(Instant::now() < deadline, "gateway did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Consumers join their groups (about 3 s) before the clock starts.
    tokio::time::sleep(Duration::from_secs(8)).await;

    eprintln!("pipeline: {events} reference-mix events through the gateway");
    let mut all: Vec<_> = sample::reference_mix(57, 16, 8).take(events).collect();
    let shift = secpipe_schemas::now_micros() - all.last().map_or(0, |e| e.envelope().event_time);
    for (i, e) in all.iter_mut().enumerate() {
        e.envelope_mut().event_time += shift;
        e.envelope_mut().event_id = format!("{tag}-{i}");
    }
    let bodies: Vec<bytes::Bytes> = all
        .chunks(500)
        .map(|c| {
            let mut b = Vec::with_capacity(c.len() * 700);
            for e in c {
                serde_json::to_writer(&mut b, e).expect("serialize");
                b.push(b'\n');
            }
            bytes::Bytes::from(b)
        })
        .collect();
    let queue = Arc::new(Mutex::new(bodies.into_iter()));
    let started = Instant::now();
    let mut senders = Vec::new();
    for _ in 0..8 {
        let (queue, http, url, token) = (
            queue.clone(),
            http.clone(),
            format!("{base}/v1/telemetry"),
            token.clone(),
        );
        senders.push(tokio::spawn(async move {
            loop {
                let Some(body) = queue.lock().await.next() else {
                    break;
                };
                let r = http
                    .post(&url)
                    .bearer_auth(&token)
                    .body(body)
                    .send()
                    .await?;
                anyhow::ensure!(r.status().is_success(), "telemetry batch: {}", r.status());
            }
            anyhow::Ok(())
        }));
    }
    // Latency probes: a scan report every 50 ms while the load runs.
    let client = s.clickhouse.client();
    let mut acked: Vec<(String, Instant)> = Vec::new();
    let mut seen: std::collections::HashMap<String, Instant> = Default::default();
    let mut probe = 0;
    while senders.iter().any(|h| !h.is_finished()) || probe < 40 {
        let id = format!("{tag}-probe-{probe}");
        probe += 1;
        let r = http
            .post(format!("{base}/track"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"id": id, "repo_context": {"repositoryName": "bench"}}))
            .send()
            .await?;
        if r.status().is_success() {
            acked.push((id, Instant::now()));
        }
        let visible: Vec<String> = client
            .query("SELECT scan_id FROM scan_results WHERE startsWith(scan_id, ?)")
            .bind(format!("{tag}-probe-"))
            .fetch_all()
            .await?;
        let now = Instant::now();
        for v in visible {
            seen.entry(v).or_insert(now);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for h in senders {
        h.await??;
    }
    // Done when every stage has committed everything it was given.
    let watcher: BaseConsumer = s.kafka.client_config("bench-watch").create()?;
    let stages = [
        (
            format!("{}telemetry", s.processors.group_prefix),
            s.kafka.topics.telemetry.clone(),
        ),
        (
            format!("{}.telemetry_events", s.loader.group_id),
            s.kafka.topics.telemetry_clean.clone(),
        ),
        (
            format!("{}.heartbeat_rollups", s.loader.group_id),
            s.kafka.topics.heartbeat_rollups.clone(),
        ),
    ];
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let mut done = true;
        for (group, topic) in &stages {
            let c: BaseConsumer = s
                .kafka
                .client_config("bench-watch")
                .set("group.id", group)
                .create()?;
            let md = watcher.fetch_metadata(Some(topic), Duration::from_secs(10))?;
            let mut tpl = rdkafka::TopicPartitionList::new();
            let mut high = 0;
            for p in md.topics()[0].partitions() {
                tpl.add_partition(topic, p.id());
                high += watcher
                    .fetch_watermarks(topic, p.id(), Duration::from_secs(10))?
                    .1;
            }
            let committed: i64 = c
                .committed_offsets(tpl, Duration::from_secs(10))?
                .elements()
                .iter()
                .map(|e| match e.offset() {
                    rdkafka::Offset::Offset(o) => o,
                    _ => 0,
                })
                .sum();
            done &= committed >= high;
        }
        if done {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "pipeline did not drain within 600 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    // Remaining probes.
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < acked.len() && Instant::now() < deadline {
        let visible: Vec<String> = client
            .query("SELECT scan_id FROM scan_results WHERE startsWith(scan_id, ?)")
            .bind(format!("{tag}-probe-"))
            .fetch_all()
            .await?;
        let now = Instant::now();
        for v in visible {
            seen.entry(v).or_insert(now);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut lat: Vec<f64> = acked
        .iter()
        .filter_map(|(id, at)| {
            seen.get(id)
                .map(|v| v.saturating_duration_since(*at).as_secs_f64() * 1e3)
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    let mut peak_rss_mb = Vec::new();
    for (name, child) in &mut children {
        peak_rss_mb.push((
            name.to_string(),
            peak_rss_kb(child.id()).unwrap_or(0) as f64 / 1024.0,
        ));
        let _ = std::process::Command::new("kill")
            .arg(child.id().to_string())
            .status();
        let _ = child.wait();
    }

    // The limits, measured now on the same machine: raw broker produce and consume of
    // 600-byte records, and ClickHouse's raw insert of the rows the pipeline loaded.
    let raw_topic = format!("bench.{tag}.raw");
    let mut raw_settings = s.clone();
    raw_settings.kafka.topics.dead_letter = raw_topic.clone();
    crate::topics::create_all(&raw_settings).await?;
    let producer = EventProducer::new(&s.kafka, "bench-raw")?;
    let payload = vec![7u8; 600];
    let keys: Vec<String> = (0..200_000).map(|i| format!("k{}", i % 1024)).collect();
    let t0 = Instant::now();
    for chunk in keys.chunks(10_000) {
        let out: Vec<OutRecord<'_>> = chunk
            .iter()
            .map(|k| OutRecord {
                topic: &raw_topic,
                key: k.as_bytes(),
                payload: &payload,
                headers: &[],
                partition: None,
            })
            .collect();
        producer.send_all(&out).await?;
    }
    let broker_produce_per_sec = keys.len() as f64 / t0.elapsed().as_secs_f64();
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
    let deadline = Instant::now() + Duration::from_secs(300);
    while read < keys.len() && Instant::now() < deadline {
        if let Some(Ok(_)) = reader.poll(Duration::from_millis(100)) {
            read += 1;
        }
    }
    let broker_consume_per_sec = read as f64 / t0.elapsed().as_secs_f64();
    let rows: u64 = client
        .query("SELECT count() FROM telemetry_events")
        .fetch_one()
        .await?;
    let file = dir.join("telemetry_events.rowbinary");
    let ch = |query: &str,
              stdin: Option<&std::path::Path>,
              stdout: Option<&std::path::Path>|
     -> anyhow::Result<()> {
        let mut cmd = std::process::Command::new("clickhouse-client");
        cmd.args([
            "--port",
            &s.stack.clickhouse_tcp_port.to_string(),
            "--database",
            &s.clickhouse.database,
            "--query",
            query,
        ]);
        if let Some(p) = stdin {
            cmd.stdin(std::fs::File::open(p)?);
        }
        if let Some(p) = stdout {
            cmd.stdout(std::fs::File::create(p)?);
        }
        let out = cmd.output().context("clickhouse-client")?;
        anyhow::ensure!(
            out.status.success(),
            "clickhouse-client: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    };
    ch(
        "SELECT * FROM telemetry_events FORMAT RowBinary",
        None,
        Some(&file),
    )?;
    ch(
        "CREATE TABLE telemetry_events_copy AS telemetry_events",
        None,
        None,
    )?;
    let t0 = Instant::now();
    ch(
        "INSERT INTO telemetry_events_copy FORMAT RowBinary",
        Some(&file),
        None,
    )?;
    let clickhouse_insert_rows_per_sec = rows as f64 / t0.elapsed().as_secs_f64();
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
        events_per_sec: events as f64 / seconds,
        latency_samples: lat.len(),
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        peak_rss_mb,
        broker_produce_per_sec,
        broker_consume_per_sec,
        clickhouse_insert_rows_per_sec,
    })
}
