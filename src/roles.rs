//! The roles `secpipe` runs, each alone (`secpipe gateway`, `secpipe sink clickhouse`) or all in
//! one process (`secpipe run`).
use anyhow::Context;
use secpipe_producers::{gateway, EventProducer};
use secpipe_sinks::clickhouse::ScanResultsSink;
use secpipe_sinks::notify::NotifySink;

use secpipe_processors::{
    admin_events::AdminEvents,
    scan_results::{ScanResults, ScanResultsTopics},
    telemetry::{Telemetry, TelemetryTopics},
};

use crate::{processing::run_processor, runtime, runtime::Shutdown, Settings};

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

/// The notification sink until shutdown: alerts to the configured integrations.
pub async fn notifier(settings: Settings, shutdown: Shutdown) -> anyhow::Result<()> {
    let sink = NotifySink::new(&settings.notify, Some(&settings.clickhouse))
        .context("notify configuration")?;
    runtime::run_sink(
        &settings.kafka,
        &settings.notifier,
        "sink.notify",
        &settings.kafka.topics.alerts,
        sink,
        shutdown,
    )
    .await
}

/// A stream processor until shutdown.
pub async fn processor(settings: Settings, which: Proc, shutdown: Shutdown) -> anyhow::Result<()> {
    let t = &settings.kafka.topics;
    let p = &settings.processors;
    match which {
        Proc::AdminEvents => {
            let proc = AdminEvents::new(
                p.admin_events.clone(),
                &t.scan_failures,
                &t.admin_events,
                &t.alerts,
                &p.alert_rules,
            )?;
            run_processor(&settings.kafka, p, proc, shutdown).await
        }
        Proc::ScanResults => {
            let topics = ScanResultsTopics {
                input: t.scan_results.clone(),
                rollups: t.scan_rollups.clone(),
                status: t.repo_status.clone(),
                alerts: t.alerts.clone(),
            };
            let proc = ScanResults::new(p.scan_results.clone(), topics, &p.alert_rules)?;
            run_processor(&settings.kafka, p, proc, shutdown).await
        }
        Proc::Telemetry => {
            let topics = TelemetryTopics {
                input: t.telemetry.clone(),
                clean: t.telemetry_clean.clone(),
                rollups: t.heartbeat_rollups.clone(),
                alerts: t.alerts.clone(),
            };
            let proc = Telemetry::new(
                p.telemetry.clone(),
                topics,
                &p.alert_rules,
                &settings.gateway.redaction_key,
            )?;
            run_processor(&settings.kafka, p, proc, shutdown).await
        }
    }
}

/// The stream processors `secpipe process` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Proc {
    /// Failed ad-hoc scans -> deduplicated, expiring admin events.
    AdminEvents,
    /// Scan results -> daily rollups, repository status, scan alerts.
    ScanResults,
    /// Raw telemetry -> clean telemetry, heartbeat rollups, runtime alerts.
    Telemetry,
}

impl Proc {
    pub const ALL: [Proc; 3] = [Proc::AdminEvents, Proc::ScanResults, Proc::Telemetry];
}

/// Runs roles side by side; returns when all have stopped, or with the first error (which
/// stops the others).
pub async fn run_roles(
    roles: Vec<(
        &'static str,
        futures::future::BoxFuture<'static, anyhow::Result<()>>,
    )>,
    trigger_on_error: Option<crate::runtime::ShutdownTrigger>,
) -> anyhow::Result<()> {
    let mut set = tokio::task::JoinSet::new();
    for (name, fut) in roles {
        set.spawn(async move { fut.await.with_context(|| format!("role {name}")) });
    }
    let mut first_error = None;
    while let Some(done) = set.join_next().await {
        let result = done.map_err(anyhow::Error::from).and_then(|r| r);
        if let Err(e) = result {
            tracing::error!(error = %format!("{e:#}"), "role failed; stopping the others");
            if let Some(t) = &trigger_on_error {
                t.trigger();
            }
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Every role in this process: gateway, processors, ClickHouse loader.
pub async fn run_all(settings: Settings, shutdown: Shutdown) -> anyhow::Result<()> {
    use futures::FutureExt;
    let mut roles: Vec<(
        &'static str,
        futures::future::BoxFuture<'static, anyhow::Result<()>>,
    )> = vec![
        (
            "gateway",
            gateway(settings.clone(), shutdown.clone()).boxed(),
        ),
        (
            "sink.clickhouse",
            clickhouse_loader(settings.clone(), shutdown.clone()).boxed(),
        ),
    ];
    for p in Proc::ALL {
        roles.push((
            "processor",
            processor(settings.clone(), p, shutdown.clone()).boxed(),
        ));
    }
    run_roles(roles, None).await
}
