//! The roles `secpipe` runs, each alone (`secpipe gateway`, `secpipe sink clickhouse`) or all in
//! one process (`secpipe run`).
use anyhow::Context;
use secpipe_producers::{gateway, EventProducer};
use secpipe_sinks::clickhouse::ScanResultsSink;

use crate::{runtime, runtime::Shutdown, Settings};

/// The ingest gateway until shutdown.
pub async fn gateway(settings: Settings, shutdown: Shutdown) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(settings.gateway.listen)
        .await
        .with_context(|| format!("gateway cannot listen on {}", settings.gateway.listen))?;
    gateway_on(listener, settings, shutdown).await
}

/// The ingest gateway on an already bound listener (tests bind port 0).
pub async fn gateway_on(
    listener: tokio::net::TcpListener,
    settings: Settings,
    mut shutdown: Shutdown,
) -> anyhow::Result<()> {
    let producer = EventProducer::new(&settings.kafka, "gateway")?;
    gateway::serve(
        listener,
        &settings.gateway,
        producer.clone(),
        settings.kafka.topics.clone(),
        async move { shutdown.wait().await },
    )
    .await?;
    producer.flush(std::time::Duration::from_secs(10))?;
    Ok(())
}

/// The ClickHouse loader until shutdown.
pub async fn clickhouse_loader(settings: Settings, shutdown: Shutdown) -> anyhow::Result<()> {
    runtime::run_sink(
        &settings.kafka,
        &settings.loader,
        "sink.clickhouse",
        &settings.kafka.topics.scan_results,
        ScanResultsSink::new(&settings.clickhouse),
        shutdown,
    )
    .await
}

/// Every role in this process; returns when all have stopped, or with the first error.
pub async fn run_all(settings: Settings, shutdown: Shutdown) -> anyhow::Result<()> {
    let g = tokio::spawn(gateway(settings.clone(), shutdown.clone()));
    let l = tokio::spawn(clickhouse_loader(settings, shutdown));
    let (g, l) = tokio::try_join!(g, l)?;
    g?;
    l?;
    Ok(())
}
