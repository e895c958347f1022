//! Rows of the analytics tables (migration 0004) and the sinks that load them. Every loader is
//! a [`TableSink`] with a conversion from the topic's record to the table's row(s); telemetry
//! also splits host-environment package lists into `host_packages`.
use clickhouse::{Row, RowOwned, RowWrite};
use secpipe_schemas::{
    alert::Alert,
    failures::{AdminEvent, Image, ScanFailure},
    rollups::{HeartbeatRollup, RepoStatus, ScanRollup},
    scan::Finding,
    telemetry::TelemetryEvent,
};
use serde::{Deserialize, Serialize};

use super::{classify, ClickHouseConfig};
use crate::{Rejected, Sink, SinkError};

/// Seconds of a microsecond timestamp, for `DateTime` columns.
pub fn secs(micros: i64) -> u32 {
    (micros.max(0) / 1_000_000).min(u32::MAX as i64) as u32
}

fn text(v: &Option<String>) -> String {
    v.clone().unwrap_or_default()
}

fn count(n: i64) -> u64 {
    n.max(0) as u64
}

/// Loads records of type `T` as rows `R` (`R: From<&T>`) into one table.
pub struct TableSink<T, R> {
    client: clickhouse::Client,
    table: &'static str,
    _types: std::marker::PhantomData<fn(&T) -> R>,
}

impl<T, R> TableSink<T, R> {
    pub fn new(cfg: &ClickHouseConfig, table: &'static str) -> Self {
        Self {
            client: cfg.client(),
            table,
            _types: std::marker::PhantomData,
        }
    }
}

async fn insert_rows<R: RowOwned + RowWrite + Send + Sync>(
    client: &clickhouse::Client,
    table: &str,
    rows: impl IntoIterator<Item = R>,
) -> Result<(), SinkError> {
    let mut insert = client.insert::<R>(table).await.map_err(classify)?;
    for row in rows {
        insert.write(&row).await.map_err(classify)?;
    }
    insert.end().await.map_err(classify)
}

impl<T, R> Sink for TableSink<T, R>
where
    T: Send + Sync,
    R: RowOwned + RowWrite + Send + Sync + for<'a> From<&'a T>,
{
    type Record = T;

    async fn write(&mut self, batch: &[T]) -> Result<Vec<Rejected>, SinkError> {
        let rows: Vec<R> = batch.iter().map(|record| R::from(record)).collect();
        insert_rows(&self.client, self.table, rows).await?;
        Ok(Vec::new())
    }
}

/// `findings`.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct FindingRow {
    pub finding_id: String,
    pub scan_id: String,
    pub tool: String,
    pub rule_id: String,
    pub level: String,
    pub message: String,
    pub file: String,
    pub line: Option<i32>,
    pub fingerprint: Option<String>,
    pub repository: String,
    pub received_at: u32,
    pub severity: String,
    pub start_column: Option<i32>,
    pub end_line: Option<i32>,
    pub end_column: Option<i32>,
    pub category: String,
}

impl From<&Finding> for FindingRow {
    fn from(f: &Finding) -> Self {
        Self {
            finding_id: f.finding_id.clone(),
            scan_id: f.scan_id.clone(),
            tool: f.tool.clone(),
            rule_id: f.rule_id.clone(),
            level: f.level.clone(),
            message: f.message.clone(),
            file: f.file.clone(),
            line: f.line,
            fingerprint: f.fingerprint.clone(),
            repository: text(&f.repository),
            received_at: secs(f.received_at),
            severity: f.severity.clone(),
            start_column: f.start_column,
            end_line: f.end_line,
            end_column: f.end_column,
            category: f.category.clone(),
        }
    }
}

/// The image columns shared by `scan_failures` and `admin_events`.
fn image_cols(i: &Image) -> (String, String, String, String, String) {
    (
        i.full_name.clone(),
        text(&i.registry),
        i.repository.clone(),
        text(&i.tag),
        text(&i.digest),
    )
}

/// `scan_failures`.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct ScanFailureRow {
    pub failure_id: String,
    pub command: String,
    pub image: String,
    pub registry: String,
    pub repository: String,
    pub tag: String,
    pub digest: String,
    pub reason: String,
    pub source: String,
    pub cluster: String,
    pub occurred_at: u32,
    pub received_at: u32,
    pub original: String,
}

impl From<&ScanFailure> for ScanFailureRow {
    fn from(f: &ScanFailure) -> Self {
        let (image, registry, repository, tag, digest) = image_cols(&f.image);
        Self {
            failure_id: f.failure_id.clone(),
            command: f.command.clone(),
            image,
            registry,
            repository,
            tag,
            digest,
            reason: f.reason.clone(),
            source: f.source.clone(),
            cluster: text(&f.cluster),
            occurred_at: secs(f.occurred_at),
            received_at: secs(f.received_at),
            original: text(&f.image.original),
        }
    }
}

/// `admin_events`: one row per emitted version.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct AdminEventRow {
    pub id: String,
    pub command: String,
    pub image: String,
    pub registry: String,
    pub repository: String,
    pub tag: String,
    pub digest: String,
    pub reason: String,
    pub cluster: String,
    pub source: String,
    pub first_seen: u32,
    pub last_seen: u32,
    pub occurrences: u64,
    pub version: u64,
    pub expires_at: u32,
    pub original: String,
    pub sources: Vec<String>,
}

impl From<&AdminEvent> for AdminEventRow {
    fn from(e: &AdminEvent) -> Self {
        let (image, registry, repository, tag, digest) = image_cols(&e.image);
        Self {
            id: e.id.clone(),
            command: e.command.clone(),
            image,
            registry,
            repository,
            tag,
            digest,
            reason: e.reason.clone(),
            cluster: text(&e.cluster),
            source: e.source.clone(),
            first_seen: secs(e.first_seen),
            last_seen: secs(e.last_seen),
            occurrences: count(e.occurrences),
            version: count(e.version),
            expires_at: secs(e.expires_at),
            original: text(&e.image.original),
            sources: e.all_sources(),
        }
    }
}

/// `scan_rollups`.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct ScanRollupRow {
    pub rollup_id: String,
    pub repository: String,
    pub team: String,
    pub branch: String,
    /// Days since 1970-01-01.
    pub day: u16,
    pub scanner: String,
    pub scans: u64,
    pub failed_scans: u64,
    pub critical: u64,
    pub high: u64,
    pub medium: u64,
    pub low: u64,
    pub version: u64,
    pub updated_at: u32,
}

impl From<&ScanRollup> for ScanRollupRow {
    fn from(r: &ScanRollup) -> Self {
        Self {
            rollup_id: r.rollup_id.clone(),
            repository: r.repository.clone(),
            team: text(&r.team),
            branch: r.branch.clone(),
            day: r.day.clamp(0, u16::MAX as i32) as u16,
            scanner: r.scanner.clone(),
            scans: count(r.scans),
            failed_scans: count(r.failed_scans),
            critical: count(r.critical),
            high: count(r.high),
            medium: count(r.medium),
            low: count(r.low),
            version: count(r.version),
            updated_at: secs(r.updated_at),
        }
    }
}

/// `repo_status`.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct RepoStatusRow {
    pub repository: String,
    pub team: String,
    pub branch: String,
    pub scan_id: String,
    pub scanned_at: u32,
    pub status: String,
    pub failing_scanners: Vec<String>,
    pub repo_type: Vec<String>,
    pub critical: u64,
    pub high: u64,
    pub medium: u64,
    pub low: u64,
    pub invoked_by: String,
}

impl From<&RepoStatus> for RepoStatusRow {
    fn from(r: &RepoStatus) -> Self {
        Self {
            repository: r.repository.clone(),
            team: text(&r.team),
            branch: r.branch.clone(),
            scan_id: r.scan_id.clone(),
            scanned_at: secs(r.scanned_at),
            status: r.status.clone(),
            failing_scanners: r.failing_scanners.clone(),
            repo_type: r.repo_type.clone(),
            critical: count(r.critical),
            high: count(r.high),
            medium: count(r.medium),
            low: count(r.low),
            invoked_by: text(&r.invoked_by),
        }
    }
}

/// `heartbeat_rollups`.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct HeartbeatRollupRow {
    pub rollup_id: String,
    pub host: String,
    pub container_id: String,
    pub pod: String,
    pub namespace: String,
    pub pid: i64,
    pub app: String,
    pub minute: u32,
    pub heartbeats: u64,
    pub cpu_user_ms: u64,
    pub cpu_system_ms: u64,
    pub rss_bytes_max: u64,
    pub rss_bytes_sum: u64,
    pub vm_bytes_max: u64,
    pub agent_cpu_ms: u64,
    pub agent_rss_bytes_max: u64,
    pub threads_created: u64,
    pub forks: u64,
    pub open_descriptors_max: u64,
    pub version: u64,
}

impl From<&HeartbeatRollup> for HeartbeatRollupRow {
    fn from(r: &HeartbeatRollup) -> Self {
        Self {
            rollup_id: r.rollup_id.clone(),
            host: r.host.clone(),
            container_id: text(&r.container_id),
            pod: text(&r.pod),
            namespace: text(&r.namespace),
            pid: r.pid,
            app: text(&r.app),
            minute: secs(r.minute),
            heartbeats: count(r.heartbeats),
            cpu_user_ms: count(r.cpu_user_ms),
            cpu_system_ms: count(r.cpu_system_ms),
            rss_bytes_max: count(r.rss_bytes_max),
            rss_bytes_sum: count(r.rss_bytes_sum),
            vm_bytes_max: count(r.vm_bytes_max),
            agent_cpu_ms: count(r.agent_cpu_ms),
            agent_rss_bytes_max: count(r.agent_rss_bytes_max),
            threads_created: count(r.threads_created),
            forks: count(r.forks),
            open_descriptors_max: count(r.open_descriptors_max),
            version: count(r.version),
        }
    }
}

/// `alerts`.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct AlertRow {
    pub alert_id: String,
    pub rule: String,
    pub severity: String,
    pub kind: String,
    pub title: String,
    pub description: String,
    pub dedup_key: String,
    pub status: String,
    pub source_topic: String,
    pub source_id: String,
    pub resources: Vec<String>,
    pub tags: Vec<String>,
    #[serde(rename = "attributes.key")]
    pub attribute_keys: Vec<String>,
    #[serde(rename = "attributes.value")]
    pub attribute_values: Vec<String>,
    pub raised_at: u32,
}

impl From<&Alert> for AlertRow {
    fn from(a: &Alert) -> Self {
        Self {
            alert_id: a.alert_id.clone(),
            rule: a.rule.clone(),
            severity: a.severity.clone(),
            kind: a.kind.clone(),
            title: a.title.clone(),
            description: a.description.clone(),
            dedup_key: a.dedup_key.clone(),
            status: a.status.clone(),
            source_topic: a.source_topic.clone(),
            source_id: a.source_id.clone(),
            resources: a.resources.clone(),
            tags: a.tags.clone(),
            attribute_keys: a.attributes.keys().cloned().collect(),
            attribute_values: a.attributes.values().cloned().collect(),
            raised_at: secs(a.raised_at),
        }
    }
}

/// `telemetry_events`.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct TelemetryRow {
    pub event_id: String,
    pub event_type: String,
    pub event_time: u32,
    pub event_time_us: u64,
    pub host: String,
    pub container_id: String,
    pub pod: String,
    pub namespace: String,
    pub pid: i64,
    pub app: String,
    /// The event as JSON (`{"type": ..., "envelope": ..., <its fields>}`; a host-environment
    /// event keeps only its package count: its packages are rows of host_packages).
    pub details: String,
}

/// `host_packages`.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct PackageRow {
    pub host: String,
    pub container_id: String,
    pub pod: String,
    pub namespace: String,
    pub event_id: String,
    pub observed_at: u32,
    pub name: String,
    pub version: String,
    pub source: String,
    pub licenses: Vec<String>,
}

/// The row of an event, and the package rows of a host-environment event.
pub fn telemetry_rows(ev: &TelemetryEvent, packages: &mut Vec<PackageRow>) -> TelemetryRow {
    let e = ev.envelope();
    let details = match ev {
        // The package list goes to host_packages, one row per package.
        TelemetryEvent::HostEnvironment(h) => {
            packages.extend(h.packages.iter().map(|p| PackageRow {
                host: e.host.clone(),
                container_id: text(&e.container_id),
                pod: text(&e.pod),
                namespace: text(&e.namespace),
                event_id: e.event_id.clone(),
                observed_at: secs(e.event_time),
                name: p.name.clone(),
                version: p.version.clone(),
                source: p.source.clone(),
                licenses: p.licenses.clone(),
            }));
            format!(
                "{{\"type\":\"host_environment\",\"package_count\":{}}}",
                h.packages.len()
            )
        }
        // The event's own JSON form, in one pass (the envelope's fields are columns too).
        _ => serde_json::to_string(ev).unwrap_or_default(),
    };
    TelemetryRow {
        event_id: e.event_id.clone(),
        event_type: ev.kind().as_str().to_string(),
        event_time: secs(e.event_time),
        event_time_us: e.event_time.max(0) as u64,
        host: e.host.clone(),
        container_id: text(&e.container_id),
        pod: text(&e.pod),
        namespace: text(&e.namespace),
        pid: e.pid,
        app: text(&e.app),
        details,
    }
}

/// Loads clean telemetry into `telemetry_events` and `host_packages`.
pub struct TelemetrySink {
    client: clickhouse::Client,
}

impl TelemetrySink {
    pub fn new(cfg: &ClickHouseConfig) -> Self {
        Self {
            client: cfg.client(),
        }
    }
}

impl Sink for TelemetrySink {
    type Record = TelemetryEvent;

    async fn write(&mut self, batch: &[TelemetryEvent]) -> Result<Vec<Rejected>, SinkError> {
        let mut packages = Vec::new();
        let rows: Vec<TelemetryRow> = batch
            .iter()
            .map(|e| telemetry_rows(e, &mut packages))
            .collect();
        // Packages first: if the events insert fails, the retry rewrites both and the package
        // rows collapse.
        if !packages.is_empty() {
            insert_rows(&self.client, "host_packages", packages).await?;
        }
        insert_rows(&self.client, "telemetry_events", rows).await?;
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use secpipe_schemas::telemetry::sample;

    use super::*;

    #[test]
    fn host_environment_packages_get_their_own_rows() {
        let ev = sample::one_of_each(4)
            .into_iter()
            .find(|e| matches!(e, TelemetryEvent::HostEnvironment(_)))
            .unwrap();
        let TelemetryEvent::HostEnvironment(h) = &ev else {
            unreachable!()
        };
        let mut packages = Vec::new();
        let row = telemetry_rows(&ev, &mut packages);
        assert_eq!(packages.len(), h.packages.len());
        assert!(
            !row.details.contains("licenses"),
            "package lists stay out of details"
        );
        assert!(row.details.contains("package_count"));
        assert_eq!(row.event_type, "host_environment");
    }

    #[test]
    fn times_become_seconds_and_negatives_clamp() {
        assert_eq!(secs(1_700_000_000_999_999), 1_700_000_000);
        assert_eq!(secs(-5), 0);
    }
}
