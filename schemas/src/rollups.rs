//! Rollups the processors write (`io.secpipe.rollups.*`): findings per repository, branch, day
//! and scanner; each repository's latest status; per-process, per-minute heartbeat aggregates.
//! Each is re-emitted with a higher `version` when it changes; tables keep the newest version.
use serde::{Deserialize, Serialize};

use crate::{codec::AvroRecord, scan::stable_id};

/// Field docs live in `schemas/avro/rollups/ScanRollup.v1.avsc`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanRollup {
    pub rollup_id: String,
    pub repository: String,
    pub team: Option<String>,
    pub branch: String,
    /// Days since 1970-01-01 (UTC).
    pub day: i32,
    pub scanner: String,
    pub scans: i64,
    pub failed_scans: i64,
    pub critical: i64,
    pub high: i64,
    pub medium: i64,
    pub low: i64,
    pub version: i64,
    pub updated_at: i64,
}

impl AvroRecord for ScanRollup {
    const FULL_NAME: &'static str = "io.secpipe.rollups.ScanRollup";
}

impl ScanRollup {
    pub fn derive_id(repository: &str, branch: &str, day: i32, scanner: &str) -> String {
        stable_id(
            Self::FULL_NAME,
            &[repository, branch, &day.to_string(), scanner],
        )
    }
}

/// Field docs live in `schemas/avro/rollups/RepoStatus.v1.avsc`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepoStatus {
    pub repository: String,
    pub team: Option<String>,
    pub branch: String,
    pub scan_id: String,
    pub scanned_at: i64,
    /// `pass` or `fail`.
    pub status: String,
    pub failing_scanners: Vec<String>,
    pub repo_type: Vec<String>,
    pub critical: i64,
    pub high: i64,
    pub medium: i64,
    pub low: i64,
    pub invoked_by: Option<String>,
}

impl AvroRecord for RepoStatus {
    const FULL_NAME: &'static str = "io.secpipe.rollups.RepoStatus";
}

/// Field docs live in `schemas/avro/rollups/HeartbeatRollup.v1.avsc`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatRollup {
    pub rollup_id: String,
    pub host: String,
    pub container_id: Option<String>,
    pub pod: Option<String>,
    pub namespace: Option<String>,
    pub pid: i64,
    pub app: Option<String>,
    /// Start of the minute, microseconds since the Unix epoch.
    pub minute: i64,
    pub heartbeats: i64,
    pub cpu_user_ms: i64,
    pub cpu_system_ms: i64,
    pub rss_bytes_max: i64,
    pub rss_bytes_sum: i64,
    pub vm_bytes_max: i64,
    pub agent_cpu_ms: i64,
    pub agent_rss_bytes_max: i64,
    pub threads_created: i64,
    pub forks: i64,
    pub open_descriptors_max: i64,
    pub version: i64,
}

impl AvroRecord for HeartbeatRollup {
    const FULL_NAME: &'static str = "io.secpipe.rollups.HeartbeatRollup";
}

impl HeartbeatRollup {
    pub fn derive_id(host: &str, container: Option<&str>, pid: i64, minute: i64) -> String {
        stable_id(
            Self::FULL_NAME,
            &[
                host,
                container.unwrap_or(""),
                &pid.to_string(),
                &minute.to_string(),
            ],
        )
    }
}
