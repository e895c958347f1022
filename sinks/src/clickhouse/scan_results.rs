//! Loader for `scan_results`: one row per scan, with one `summary` entry per scanner.
use secpipe_schemas::scan::ScanReport;
use serde::{Deserialize, Serialize};

use super::{classify, ClickHouseConfig};
use crate::{Rejected, Sink, SinkError};

/// A row of `scan_results`, field for field.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct ScanResultRow {
    pub scan_id: String,
    /// Seconds since the Unix epoch.
    pub received_at: u32,
    pub scan_mode: String,
    pub tool: String,
    pub branch: String,
    pub pull_request: Option<u8>,
    pub repository_name: String,
    pub repository_uri: String,
    pub revision_id: String,
    pub invoked_by: String,
    pub repo_type: Vec<String>,
    pub team: String,
    #[serde(rename = "summary.scanner")]
    pub summary_scanner: Vec<String>,
    #[serde(rename = "summary.tool")]
    pub summary_tool: Vec<String>,
    #[serde(rename = "summary.critical")]
    pub summary_critical: Vec<u32>,
    #[serde(rename = "summary.high")]
    pub summary_high: Vec<u32>,
    #[serde(rename = "summary.medium")]
    pub summary_medium: Vec<u32>,
    #[serde(rename = "summary.low")]
    pub summary_low: Vec<u32>,
    #[serde(rename = "summary.status")]
    pub summary_status: Vec<String>,
    /// `track` or `sarif`.
    pub origin: String,
    /// The collapsing version: the tool's own message outranks a SARIF-derived summary, which
    /// outranks a fragment without summaries; then the newest wins.
    pub precedence: u64,
    /// The repository's key (normalised URI, else name).
    pub repository: String,
    /// `received_at` in microseconds.
    pub received_at_us: u64,
}

/// `precedence` of a summary: rank in the high bits (a fragment without scanner summaries 0, a
/// SARIF-derived summary 1, the tool's own message 2), receive second in the low ones.
pub fn precedence(origin: &str, has_summary: bool, received_at_secs: u32) -> u64 {
    let rank: u64 = match (has_summary, origin) {
        (false, _) => 0,
        (true, "sarif") => 1,
        (true, _) => 2,
    };
    (rank << 32) | u64::from(received_at_secs)
}

fn count(n: i64) -> u32 {
    n.clamp(0, u32::MAX as i64) as u32
}

impl From<&ScanReport> for ScanResultRow {
    fn from(r: &ScanReport) -> Self {
        let rc = &r.repo_context;
        let s = &r.report_summary;
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        Self {
            scan_id: r.id.clone(),
            received_at: (r.received_at.max(0) / 1_000_000) as u32,
            scan_mode: text(&r.scan_mode),
            tool: text(&r.tool),
            branch: text(&rc.branch),
            pull_request: rc.pull_request.map(u8::from),
            repository_name: text(&rc.repository_name),
            repository_uri: text(&rc.repository_uri),
            revision_id: text(&rc.revision_id),
            invoked_by: text(&rc.invoked_by),
            repo_type: r.repo_type.clone(),
            team: text(&r.team),
            summary_scanner: s.iter().map(|x| x.scanner.clone()).collect(),
            summary_tool: s.iter().map(|x| text(&x.tool)).collect(),
            summary_critical: s.iter().map(|x| count(x.critical)).collect(),
            summary_high: s.iter().map(|x| count(x.high)).collect(),
            summary_medium: s.iter().map(|x| count(x.medium)).collect(),
            summary_low: s.iter().map(|x| count(x.low)).collect(),
            summary_status: s.iter().map(|x| x.status.clone()).collect(),
            origin: r.origin.clone(),
            precedence: precedence(
                &r.origin,
                !s.is_empty(),
                (r.received_at.max(0) / 1_000_000) as u32,
            ),
            repository: r.repository_key().unwrap_or_default(),
            received_at_us: r.received_at.max(0) as u64,
        }
    }
}

/// Inserts scan reports into `scan_results`.
pub struct ScanResultsSink {
    client: clickhouse::Client,
}

impl ScanResultsSink {
    pub fn new(cfg: &ClickHouseConfig) -> Self {
        Self {
            client: cfg.client(),
        }
    }
}

impl Sink for ScanResultsSink {
    type Record = ScanReport;

    async fn write(&mut self, batch: &[ScanReport]) -> Result<Vec<Rejected>, SinkError> {
        let mut insert = self
            .client
            .insert::<ScanResultRow>("scan_results")
            .await
            .map_err(classify)?;
        for report in batch {
            insert
                .write(&ScanResultRow::from(report))
                .await
                .map_err(classify)?;
        }
        insert.end().await.map_err(classify)?;
        Ok(Vec::new())
    }
}
