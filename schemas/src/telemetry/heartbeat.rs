//! The periodic heartbeat of a monitored process. Field docs live in
//! `schemas/avro/telemetry/Heartbeat.v1.avsc`.
use serde::{Deserialize, Serialize};

use super::Envelope;
use crate::codec::AvroRecord;

/// Resource usage and descriptor activity of a process since its previous heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub envelope: Envelope,
    pub interval_ms: i64,
    pub cpu_user_ms: i64,
    pub cpu_system_ms: i64,
    pub rss_bytes: i64,
    pub vm_bytes: i64,
    pub agent_cpu_ms: i64,
    pub agent_rss_bytes: i64,
    pub threads_created: i64,
    pub forks: i64,
    pub open_descriptors: Vec<OpenDescriptor>,
}

/// A descriptor open at the heartbeat, or opened and closed since the previous one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenDescriptor {
    pub fd: i32,
    /// `file`, `socket`, `pipe` or `other`.
    pub kind: String,
    pub path: Option<String>,
    pub local_addr: Option<String>,
    pub local_port: Option<i32>,
    pub remote_addr: Option<String>,
    pub remote_port: Option<i32>,
    pub closed: bool,
}

impl AvroRecord for Heartbeat {
    const FULL_NAME: &'static str = "io.secpipe.telemetry.Heartbeat";
}
