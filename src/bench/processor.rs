//! `secpipe bench processor`.
use super::*;

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
    /// A fresh instance taking over every partition afterwards: seconds spent restoring (summed
    /// over partitions), partitions, changelog records it read, records the changelog holds.
    pub restore_secs: f64,
    pub restore_partitions: u64,
    pub restore_records_read: u64,
    pub changelog_records: i64,
}

impl Figures for ProcessorFigures {
    fn figures(&self) -> Vec<Figure> {
        vec![
            Figure::new(
                "telemetry processor, one instance, over a backlog",
                self.events_per_sec,
                "events/s",
            ),
            Figure::new(
                "input acknowledged -> output received by a consumer, p50",
                self.p50_ms,
                "ms",
            ),
            Figure::new(
                "input acknowledged -> output received by a consumer, p99",
                self.p99_ms,
                "ms",
            ),
            Figure::new("peak RSS", self.peak_rss_mb, "MB"),
            Figure::new(
                "restore of every partition by a fresh instance (summed)",
                self.restore_secs,
                "s",
            ),
        ]
    }
}

/// The telemetry processor as its own process (`secpipe process telemetry`) on fresh topics:
/// throughput over a backlog of `events` reference-mix events, then end-to-end latency at `rate`
/// events/s for `seconds` (from the broker's acknowledgement of the input record to the moment a
/// consumer of the output topic receives its output, both on this process's clock), and the
/// process's peak RSS.
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
    let watch = OutputWatch::start(&s, &s.kafka.topics.telemetry_clean)?;
    let mut acked_at: std::collections::HashMap<String, Instant> = Default::default();
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
        let now = Instant::now();
        for (_, _, id) in chunk {
            acked_at.insert(id.clone(), now);
        }
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

    // Restore: a fresh instance takes over every partition from the changelog.
    let restore = restore_phase(&s, &env).await?;

    let received = watch.stop();
    let mut lat: Vec<f64> = received
        .iter()
        .filter_map(|(id, got)| {
            acked_at
                .get(id)
                .map(|ack| got.saturating_duration_since(*ack).as_secs_f64() * 1e3)
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    Ok(ProcessorFigures {
        events: measured,
        seconds: secs,
        events_per_sec: measured as f64 / secs.max(1e-9),
        latency_events: lat.len(),
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        peak_rss_mb: peak_kb as f64 / 1024.0,
        restore_secs: restore.0,
        restore_partitions: restore.1,
        restore_records_read: restore.2,
        changelog_records: restore.3,
    })
}

/// Starts `secpipe process telemetry` on the processed topics and reads from its `/metrics` how
/// long restoring every partition took: (seconds summed, partitions, records read, changelog
/// records).
async fn restore_phase(
    s: &Settings,
    env: &[(String, String)],
) -> anyhow::Result<(f64, u64, u64, i64)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let changelog = format!("{}telemetry", s.processors.changelog_prefix);
    let probe: BaseConsumer = s.kafka.client_config("bench-changelog").create()?;
    let md = probe.fetch_metadata(Some(&changelog), Duration::from_secs(10))?;
    let partitions = md.topics()[0].partitions().len() as u64;
    let mut changelog_records = 0;
    for p in md.topics()[0].partitions() {
        changelog_records += probe
            .fetch_watermarks(&changelog, p.id(), Duration::from_secs(10))?
            .1;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(["process", "telemetry"])
        .envs(
            env.iter()
                .filter(|(k, _)| k != "OPS__LISTEN")
                .map(|(k, v)| (format!("SECPIPE__{k}"), v.clone())),
        )
        .env("SECPIPE__OPS__LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .spawn()
        .context("starting the restoring instance")?;
    let value = |page: &str, name: &str| -> f64 {
        page.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    let result = loop {
        if Instant::now() > deadline {
            break Err(anyhow::anyhow!("restore not finished within 300 s"));
        }
        let page = match reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let count = value(&page, "secpipe_state_restore_seconds_count") as u64;
        if count >= partitions {
            break Ok((
                value(&page, "secpipe_state_restore_seconds_sum"),
                count,
                value(&page, "secpipe_state_restore_records_total") as u64,
                changelog_records,
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = std::process::Command::new("kill")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    result
}

/// A consumer of an output topic, from its end, noting when each latency-phase event (`lat-`
/// ids) arrives.
struct OutputWatch {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<std::collections::HashMap<String, Instant>>,
}

impl OutputWatch {
    fn start(s: &Settings, topic: &str) -> anyhow::Result<Self> {
        let codec = secpipe_schemas::telemetry::TelemetryCodec::new()?;
        use rdkafka::{
            consumer::{BaseConsumer, Consumer},
            Message, Offset, TopicPartitionList,
        };
        let c: BaseConsumer = s
            .kafka
            .client_config("bench-watch-output")
            .set("group.id", format!("bench-watch-{}", uuid::Uuid::new_v4()))
            .set("fetch.wait.max.ms", "10")
            .create()?;
        let md = c.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let mut tpl = TopicPartitionList::new();
        for p in md.topics()[0].partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::End)?;
        }
        c.assign(&tpl)?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut seen = std::collections::HashMap::new();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
                    let now = Instant::now();
                    if let Some(ev) = m.payload().and_then(|p| codec.decode(p).ok()) {
                        let id = &ev.envelope().event_id;
                        if id.starts_with("lat-") {
                            seen.entry(id.clone()).or_insert(now);
                        }
                    }
                }
            }
            seen
        });
        Ok(Self { stop, thread })
    }

    fn stop(self) -> std::collections::HashMap<String, Instant> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}
