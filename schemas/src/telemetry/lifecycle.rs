//! Telemetry sent once per process (start, exit) and once per environment (container, pod, VM).
//! Field docs live in `schemas/avro/telemetry/{ComponentStart,ComponentExit,HostEnvironment}.v1.avsc`.
use serde::{Deserialize, Serialize};

use super::Envelope;
use crate::codec::AvroRecord;

/// A monitored process started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentStart {
    pub envelope: Envelope,
    pub uptime_secs: i64,
    pub cpu_count: i64,
    pub cpu_model: String,
    pub os_name: String,
    pub os_version: String,
    pub cloud_provider: Option<String>,
    pub container_runtime: Option<String>,
    pub ppid: i64,
    pub uid: i64,
    pub gid: i64,
    pub executable: String,
    pub memory_maps: Vec<MemoryMap>,
    pub environment: Vec<EnvironmentVariable>,
}

/// One line of `/proc/<pid>/maps`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryMap {
    pub start: i64,
    pub end: i64,
    pub perms: String,
    pub offset: i64,
    pub path: Option<String>,
}

/// One environment variable of a process. `value` is clear as the agent sends it; the gateway
/// (and again the telemetry processor) redacts it before the event reaches any storage: whole
/// when the name names a secret, else only the secrets inside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvironmentVariable {
    pub name: String,
    pub value: String,
}

impl AvroRecord for ComponentStart {
    const FULL_NAME: &'static str = "io.secpipe.telemetry.ComponentStart";
}

/// A monitored process ended (not guaranteed: a crash may leave no trace).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentExit {
    pub envelope: Envelope,
    pub exit_code: i32,
    pub signal: Option<i32>,
}

impl AvroRecord for ComponentExit {
    const FULL_NAME: &'static str = "io.secpipe.telemetry.ComponentExit";
}

/// The OS packages of a new container, pod or VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostEnvironment {
    pub envelope: Envelope,
    pub packages: Vec<OsPackage>,
}

/// One installed OS package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsPackage {
    pub name: String,
    pub version: String,
    pub source: String,
    pub licenses: Vec<String>,
}

impl AvroRecord for HostEnvironment {
    const FULL_NAME: &'static str = "io.secpipe.telemetry.HostEnvironment";
}
