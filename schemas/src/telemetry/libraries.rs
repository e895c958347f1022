//! Telemetry about the code a process loads: shared libraries and language dependencies.
//! Field docs live in `schemas/avro/telemetry/{PackageInfo,DependencyInfo}.v1.avsc`.
use serde::{Deserialize, Serialize};

use super::Envelope;
use crate::codec::AvroRecord;

/// A shared library (.so) the process loaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackageInfo {
    pub envelope: Envelope,
    pub path: String,
    pub name: String,
    pub version: Option<String>,
    pub sha256: Option<String>,
}

impl AvroRecord for PackageInfo {
    const FULL_NAME: &'static str = "io.secpipe.telemetry.PackageInfo";
}

/// A dependency the process loaded: a shared library or a language package (.jar, .zip, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DependencyInfo {
    pub envelope: Envelope,
    pub path: String,
    pub sha256: String,
    /// The dependency containing this one; keeps the nesting (a jar inside a jar).
    pub parent_path: Option<String>,
    pub language: Option<String>,
    pub version: Option<String>,
}

impl AvroRecord for DependencyInfo {
    const FULL_NAME: &'static str = "io.secpipe.telemetry.DependencyInfo";
}
