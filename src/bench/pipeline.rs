//! `secpipe bench pipeline`.
use super::*;

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
    let ch = |query: &str, stdin: Option<&std::path::Path>, stdout: Option<&std::path::Path>| {
        clickhouse_client(&s, query, stdin, stdout)
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
