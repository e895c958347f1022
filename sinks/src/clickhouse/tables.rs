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

use super::{classify, rowbinary::RowBinaryInsert, ClickHouseConfig};
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

/// Columns of `telemetry_events`, in the order [`write_event`] writes them.
pub const TELEMETRY_COLUMNS: &[&str] = &[
    "event_id",
    "event_type",
    "event_time",
    "event_time_us",
    "host",
    "container_id",
    "pod",
    "namespace",
    "pid",
    "app",
    "details",
];

/// Columns of `host_packages`, in the order [`write_packages`] writes them.
pub const PACKAGE_COLUMNS: &[&str] = &[
    "host",
    "container_id",
    "pod",
    "namespace",
    "event_id",
    "observed_at",
    "name",
    "version",
    "source",
    "licenses",
];

fn opt(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("")
}

/// The `telemetry_events` row of an event. `details` is the event as JSON (`{"type": ...,
/// "envelope": ..., <its fields>}`); a host-environment event keeps only its package count,
/// its packages being rows of `host_packages`.
pub async fn write_event(ev: &TelemetryEvent, rows: &mut RowBinaryInsert) -> Result<(), SinkError> {
    let e = ev.envelope();
    rows.string(&e.event_id)
        .string(ev.kind().as_str())
        .u32(secs(e.event_time))
        .u64(e.event_time.max(0) as u64)
        .string(&e.host)
        .string(opt(&e.container_id))
        .string(opt(&e.pod))
        .string(opt(&e.namespace))
        .i64(e.pid)
        .string(opt(&e.app));
    match ev {
        TelemetryEvent::HostEnvironment(h) => rows.string(&format!(
            "{{\"type\":\"host_environment\",\"package_count\":{}}}",
            h.packages.len()
        )),
        // The event's own JSON form, in one pass (the envelope's fields are columns too).
        _ => rows.json(ev),
    };
    rows.row_done().await
}

/// The `host_packages` rows of a host-environment event, one per package (none for the other
/// types).
pub async fn write_packages(
    ev: &TelemetryEvent,
    rows: &mut RowBinaryInsert,
) -> Result<(), SinkError> {
    let TelemetryEvent::HostEnvironment(h) = ev else {
        return Ok(());
    };
    let e = &h.envelope;
    for p in &h.packages {
        rows.string(&e.host)
            .string(opt(&e.container_id))
            .string(opt(&e.pod))
            .string(opt(&e.namespace))
            .string(&e.event_id)
            .u32(secs(e.event_time))
            .string(&p.name)
            .string(&p.version)
            .string(&p.source)
            .strings(p.licenses.iter().map(String::as_str));
        rows.row_done().await?;
    }
    Ok(())
}

/// Loads clean telemetry into `telemetry_events` and `host_packages`, encoding `RowBinary`
/// straight from the decoded events (no row structs, no copies of their strings).
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
        // Both inserts run at once (a batch's write time is one insert's, not two). The batch
        // counts as written only if both succeed; otherwise it is written again, both tables
        // collapsing the rows that had landed.
        let packages = async {
            if !batch
                .iter()
                .any(|e| matches!(e, TelemetryEvent::HostEnvironment(_)))
            {
                return Ok(());
            }
            let mut rows = RowBinaryInsert::new(&self.client, "host_packages", PACKAGE_COLUMNS);
            for ev in batch {
                write_packages(ev, &mut rows).await?;
            }
            rows.end().await
        };
        let events = async {
            let mut rows =
                RowBinaryInsert::new(&self.client, "telemetry_events", TELEMETRY_COLUMNS);
            for ev in batch {
                write_event(ev, &mut rows).await?;
            }
            rows.end().await
        };
        tokio::try_join!(packages, events)?;
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use secpipe_schemas::telemetry::sample;

    use super::*;

    /// Reads `RowBinary` back: a LEB128 length and the bytes.
    fn read_string(b: &mut &[u8]) -> String {
        let (mut n, mut shift) = (0u64, 0);
        loop {
            let byte = b[0];
            *b = &b[1..];
            n |= u64::from(byte & 0x7f) << shift;
            shift += 7;
            if byte < 0x80 {
                break;
            }
        }
        let (s, rest) = b.split_at(n as usize);
        *b = rest;
        String::from_utf8(s.to_vec()).unwrap()
    }

    fn read_u32(b: &mut &[u8]) -> u32 {
        let (n, rest) = b.split_at(4);
        *b = rest;
        u32::from_le_bytes(n.try_into().unwrap())
    }

    fn read_u64(b: &mut &[u8]) -> u64 {
        let (n, rest) = b.split_at(8);
        *b = rest;
        u64::from_le_bytes(n.try_into().unwrap())
    }

    #[tokio::test]
    async fn host_environment_packages_get_their_own_rows() {
        let ev = sample::one_of_each(4)
            .into_iter()
            .find(|e| matches!(e, TelemetryEvent::HostEnvironment(_)))
            .unwrap();
        let TelemetryEvent::HostEnvironment(h) = &ev else {
            unreachable!()
        };
        let client = clickhouse::Client::default();
        let mut packages = RowBinaryInsert::new(&client, "host_packages", PACKAGE_COLUMNS);
        write_packages(&ev, &mut packages).await.unwrap();
        assert_eq!(packages.rows(), h.packages.len() as u64);
        let mut b = packages.buffered();
        for p in &h.packages {
            assert_eq!(read_string(&mut b), h.envelope.host);
            for _ in 0..3 {
                read_string(&mut b);
            }
            assert_eq!(read_string(&mut b), h.envelope.event_id);
            assert_eq!(read_u32(&mut b), secs(h.envelope.event_time));
            assert_eq!(read_string(&mut b), p.name);
            assert_eq!(read_string(&mut b), p.version);
            assert_eq!(read_string(&mut b), p.source);
            let count = b[0] as usize; // fewer than 128 licenses: a one-byte LEB128
            b = &b[1..];
            assert_eq!(count, p.licenses.len());
            for l in &p.licenses {
                assert_eq!(&read_string(&mut b), l);
            }
        }
        assert!(b.is_empty(), "nothing after the last package row");

        let mut events = RowBinaryInsert::new(&client, "telemetry_events", TELEMETRY_COLUMNS);
        write_event(&ev, &mut events).await.unwrap();
        let mut b = events.buffered();
        assert_eq!(read_string(&mut b), h.envelope.event_id);
        assert_eq!(read_string(&mut b), "host_environment");
        assert_eq!(read_u32(&mut b), secs(h.envelope.event_time));
        assert_eq!(read_u64(&mut b), h.envelope.event_time as u64);
        assert_eq!(read_string(&mut b), h.envelope.host);
        for _ in 0..3 {
            read_string(&mut b);
        }
        b = &b[8..]; // pid
        read_string(&mut b); // app
        let details = read_string(&mut b);
        assert!(
            !details.contains("licenses"),
            "package lists stay out of details"
        );
        assert_eq!(
            details,
            format!(
                "{{\"type\":\"host_environment\",\"package_count\":{}}}",
                h.packages.len()
            )
        );
        assert!(b.is_empty());
    }

    #[tokio::test]
    async fn other_events_keep_their_json_in_details() {
        let client = clickhouse::Client::default();
        for ev in sample::one_of_each(4)
            .into_iter()
            .filter(|e| !matches!(e, TelemetryEvent::HostEnvironment(_)))
        {
            let mut packages = RowBinaryInsert::new(&client, "host_packages", PACKAGE_COLUMNS);
            write_packages(&ev, &mut packages).await.unwrap();
            assert_eq!(packages.rows(), 0);
            let mut events = RowBinaryInsert::new(&client, "telemetry_events", TELEMETRY_COLUMNS);
            write_event(&ev, &mut events).await.unwrap();
            let mut b = events.buffered();
            for _ in 0..2 {
                read_string(&mut b);
            }
            b = &b[12..]; // event_time, event_time_us
            for _ in 0..4 {
                read_string(&mut b);
            }
            b = &b[8..]; // pid
            read_string(&mut b);
            let details: serde_json::Value = serde_json::from_str(&read_string(&mut b)).unwrap();
            assert_eq!(details, serde_json::to_value(&ev).unwrap());
            assert!(b.is_empty());
        }
    }

    #[test]
    fn times_become_seconds_and_negatives_clamp() {
        assert_eq!(secs(1_700_000_000_999_999), 1_700_000_000);
        assert_eq!(secs(-5), 0);
    }
}
