//! `secpipe bench loader`.
use super::*;

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
    let ch = |query: &str, stdin: Option<&std::path::Path>, stdout: Option<&std::path::Path>| {
        clickhouse_client(&s, query, stdin, stdout)
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
