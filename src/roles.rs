//! The roles `secpipe` runs, each alone (`secpipe gateway`, `secpipe sink clickhouse`) or all in
//! one process (`secpipe run`).
use anyhow::Context;
use secpipe_gateway as gateway;
use secpipe_producers::EventProducer;
use secpipe_schemas::{telemetry::TelemetryCodec, Codec, Decode};
use secpipe_sinks::clickhouse::ScanResultsSink;
use secpipe_sinks::{clickhouse::tables::TableSink, notify::NotifySink, Sink};

use secpipe_processors::{
    admin_events::AdminEvents,
    redact::Redactor,
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
        gateway::Backends {
            producer: producer.clone(),
            topics: settings.kafka.topics.clone(),
            scans: &settings.scans,
            admin: Some(gateway::AdminStore {
                clickhouse: &settings.clickhouse,
                retention_secs: settings.processors.admin_events.retention_secs,
            }),
            notify: Some(&settings.notify),
        },
        async move { shutdown.wait().await },
    )
    .await?;
    producer.flush(std::time::Duration::from_secs(10))?;
    Ok(())
}

/// One table's loader: `run_sink` on `topic` in its own consumer group `<loader group>.<table>`.
fn table_loader<S>(
    settings: &Settings,
    table: &'static str,
    topic: &str,
    decoder: impl Decode<S::Record> + 'static,
    sink: S,
    shutdown: Shutdown,
) -> (
    &'static str,
    futures::future::BoxFuture<'static, anyhow::Result<()>>,
)
where
    S: Sink + 'static,
    S::Record: 'static,
{
    use futures::FutureExt;
    let kafka = settings.kafka.clone();
    let mut cfg = settings.loader.clone();
    cfg.group_id = format!("{}.{table}", cfg.group_id);
    let topic = topic.to_string();
    let stage = format!("sink.clickhouse.{table}");
    (
        table,
        async move { runtime::run_sink(&kafka, &cfg, &stage, &topic, decoder, sink, shutdown).await }.boxed(),
    )
}

/// A table loaded with [`TableSink`] from records of type `T` as rows `R`.
fn rows<T, R>(
    settings: &Settings,
    table: &'static str,
    topic: &str,
    shutdown: Shutdown,
) -> anyhow::Result<(
    &'static str,
    futures::future::BoxFuture<'static, anyhow::Result<()>>,
)>
where
    T: secpipe_schemas::AvroRecord + Send + Sync + 'static,
    TableSink<T, R>: Sink<Record = T> + 'static,
{
    let sink = TableSink::<T, R>::new(&settings.clickhouse, table);
    Ok(table_loader(
        settings,
        table,
        topic,
        Codec::<T>::new()?,
        sink,
        shutdown,
    ))
}

/// The ClickHouse loader until shutdown: one consumer per table (each its own consumer group,
/// so instances share each topic's partitions), plus the retention job.
pub async fn clickhouse_loader(settings: Settings, shutdown: Shutdown) -> anyhow::Result<()> {
    use futures::FutureExt;
    use secpipe_schemas::{
        alert::Alert,
        failures::{AdminEvent, ScanFailure},
        rollups::{HeartbeatRollup, RepoStatus, ScanRollup},
        scan::Finding,
    };
    use secpipe_sinks::clickhouse::tables::*;
    let ch = &settings.clickhouse;
    let t = &settings.kafka.topics;
    let sd = || shutdown.clone();
    let mut roles = vec![
        table_loader(
            &settings,
            "scan_results",
            &t.scan_results,
            Codec::new()?,
            ScanResultsSink::new(ch),
            sd(),
        ),
        rows::<Finding, FindingRow>(&settings, "findings", &t.findings, sd())?,
        rows::<ScanFailure, ScanFailureRow>(&settings, "scan_failures", &t.scan_failures, sd())?,
        rows::<AdminEvent, AdminEventRow>(&settings, "admin_events", &t.admin_events, sd())?,
        rows::<ScanRollup, ScanRollupRow>(&settings, "scan_rollups", &t.scan_rollups, sd())?,
        rows::<RepoStatus, RepoStatusRow>(&settings, "repo_status", &t.repo_status, sd())?,
        table_loader(
            &settings,
            "telemetry_events",
            &t.telemetry_clean,
            TelemetryCodec::new()?,
            TelemetrySink::new(ch),
            sd(),
        ),
        rows::<HeartbeatRollup, HeartbeatRollupRow>(
            &settings,
            "heartbeat_rollups",
            &t.heartbeat_rollups,
            sd(),
        )?,
        rows::<Alert, AlertRow>(&settings, "alerts", &t.alerts, sd())?,
    ];
    roles.push((
        "retention",
        retention(settings.clone(), shutdown.clone()).boxed(),
    ));
    run_roles(roles).await
}

/// Runs the retention job every `retention.interval_secs` until shutdown.
pub async fn retention(settings: Settings, mut shutdown: Shutdown) -> anyhow::Result<()> {
    let every = settings.retention.interval_secs;
    if every == 0 {
        return Ok(());
    }
    let mut ticker = tokio::time::interval(std::time::Duration::from_secs(every));
    loop {
        tokio::select! {
            _ = shutdown.wait() => return Ok(()),
            _ = ticker.tick() => {
                let admin_retention = settings.processors.admin_events.retention_secs;
                match secpipe_sinks::clickhouse::retention::run(&settings.clickhouse, &settings.retention, admin_retention).await {
                    Ok(r) if !r.dropped.is_empty() || r.admin_event_rows_deleted > 0 => {
                        tracing::info!(dropped = ?r.dropped, admin_event_rows_deleted = r.admin_event_rows_deleted, "retention")
                    }
                    Ok(_) => {}
                    // Retention is best effort: the next run tries again.
                    Err(e) => tracing::warn!(error = %e, "retention job failed"),
                }
            }
        }
    }
}

/// The notification sink until shutdown: alerts and events to the configured integrations,
/// and, when a route asks for `result`, a summary of every scan report (a second consumer, in
/// group `<notifier group>.results`).
pub async fn notifier(settings: Settings, shutdown: Shutdown) -> anyhow::Result<()> {
    use futures::FutureExt;
    use secpipe_schemas::{alert::Alert, scan::ScanReport};
    use secpipe_sinks::notify::Kind;
    let alerts = NotifySink::<Alert>::new(&settings.notify, Some(&settings.clickhouse))
        .context("notify configuration")?;
    let mut roles = Vec::new();
    {
        let (settings, shutdown) = (settings.clone(), shutdown.clone());
        roles.push((
            "sink.notify",
            async move {
                runtime::run_sink(
                    &settings.kafka,
                    &settings.notifier,
                    "sink.notify",
                    &settings.kafka.topics.alerts,
                    Codec::new()?,
                    alerts,
                    shutdown,
                )
                .await
            }
            .boxed(),
        ));
    }
    if settings
        .notify
        .routes
        .iter()
        .any(|r| r.kinds.contains(&Kind::Result))
    {
        let results = NotifySink::<ScanReport>::new(&settings.notify, Some(&settings.clickhouse))
            .context("notify configuration")?;
        let mut cfg = settings.notifier.clone();
        cfg.group_id = format!("{}.results", cfg.group_id);
        roles.push((
            "sink.notify.results",
            async move {
                runtime::run_sink(
                    &settings.kafka,
                    &cfg,
                    "sink.notify.results",
                    &settings.kafka.topics.scan_results,
                    Codec::new()?,
                    results,
                    shutdown,
                )
                .await
            }
            .boxed(),
        ));
    }
    run_roles(roles).await
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
                Redactor::with_policy(
                    &settings.gateway.redaction_key,
                    &settings.gateway.redaction,
                )?,
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

/// Runs roles side by side. Returns when all have stopped, or at once with the first error:
/// the other roles are dropped (aborted), so a process whose role failed exits instead of
/// lingering half-alive. What they had not committed is read again after the restart.
pub async fn run_roles(
    roles: Vec<(
        &'static str,
        futures::future::BoxFuture<'static, anyhow::Result<()>>,
    )>,
) -> anyhow::Result<()> {
    let mut set = tokio::task::JoinSet::new();
    for (name, fut) in roles {
        set.spawn(async move { fut.await.with_context(|| format!("role {name}")) });
    }
    while let Some(done) = set.join_next().await {
        if let Err(e) = done.map_err(anyhow::Error::from).and_then(|r| r) {
            tracing::error!(error = %format!("{e:#}"), "role failed; stopping the process");
            set.abort_all();
            return Err(e);
        }
    }
    Ok(())
}

/// Every role in this process: gateway, processors, ClickHouse loader, notifier.
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
    roles.push((
        "sink.notify",
        notifier(settings.clone(), shutdown.clone()).boxed(),
    ));
    run_roles(roles).await
}
