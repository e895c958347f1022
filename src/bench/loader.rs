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

impl Figures for LoaderFigures {
    fn figures(&self) -> Vec<Figure> {
        vec![
            Figure::new(
                "loader, telemetry_events rows (plus host_packages) from produced to visible, every batch",
                self.loader_rows_per_sec,
                "rows/s",
            ),
            Figure::new(
                "clickhouse-client inserting the same rows from RowBinary files, right after (quiet server)",
                self.client_rows_per_sec,
                "rows/s",
            ),
            Figure::new(
                "loader as a share of clickhouse-client",
                100.0 * self.loader_rows_per_sec / self.client_rows_per_sec,
                "%",
            ),
        ]
    }
}

/// The ClickHouse loader of `telemetry_events` (+ `host_packages`) against `clickhouse-client`
/// inserting the very same rows from RowBinary files, one right after the other (A then B; the
/// bench's runs alternate A B A B), into a scratch database. Each side starts on a quiet server
/// (no merge running), so neither pays for the other's merges. The loader is started first and
/// has loaded one warm-up row, so its consumer has joined; the clock runs from the first
/// record produced to the last row visible, so every batch counts.
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

    let codec = TelemetryCodec::new()?;
    let producer = EventProducer::new(&s.kafka, "bench")?;
    let mut mix =
        sample::reference_mix(31, 16, 8).filter(|e| !matches!(e, TelemetryEvent::Heartbeat(_)));
    let warm = mix.next().context("the reference mix is empty")?;
    let encoded: Vec<(String, Vec<u8>)> = mix
        .take(events)
        .map(|e| (e.partition_key(), codec.encode(&e).expect("encode")))
        .collect();
    fn produce<'a>(topic: &'a str, records: &'a [(String, Vec<u8>)]) -> Vec<OutRecord<'a>> {
        records
            .iter()
            .map(|(k, p)| OutRecord {
                topic,
                key: k.as_bytes(),
                payload: p,
                headers: &[],
                partition: None,
            })
            .collect()
    }
    // The loader first, on the empty topic.
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
    let warm_record = vec![(warm.partition_key(), codec.encode(&warm)?)];
    producer
        .send_all(&produce(&s.kafka.topics.telemetry_clean, &warm_record))
        .await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while count("telemetry_events").await? == 0 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the loader never loaded the warm-up row"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_for_quiet_server(&client).await?;
    eprintln!("loader running; producing {events} processed telemetry events");
    let started = Instant::now();
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

    let deadline = Instant::now() + Duration::from_secs(600);
    let (last, rows) = loop {
        anyhow::ensure!(
            Instant::now() < deadline,
            "loader did not finish within 600 s"
        );
        let n = count("telemetry_events").await?;
        if n > events as u64 {
            break (Instant::now(), n - 1);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    trigger.trigger();
    task.await??;
    let loader_secs = (last - started).as_secs_f64();
    let loader_rows = rows;
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
        wait_for_quiet_server(&client).await?;
        let started = Instant::now();
        ch(
            &format!("INSERT INTO {table}_copy FORMAT RowBinary"),
            Some(&file),
            None,
        )?;
        client_secs += started.elapsed().as_secs_f64();
    }
    // Rates in telemetry_events rows per second for both (each also wrote the host_packages
    // rows); the client's files hold the warm-up row too.
    let client_rows_per_sec = (rows + 1) as f64 / client_secs;
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
