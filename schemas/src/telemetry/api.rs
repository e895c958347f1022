//! Telemetry sent once per observed API invocation. Each carries the call stack at the call.
//! Field docs live in `schemas/avro/telemetry/{Api,File,Network,IdentityChange,Process,MemoryWarning}.v1.avsc`.
use serde::{Deserialize, Serialize};

use super::{Envelope, StackFrame};
use crate::codec::AvroRecord;

/// An observed API no other type covers, or a Java method-usage trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Api {
    pub envelope: Envelope,
    pub api_name: String,
    pub arguments: Vec<String>,
    /// Set for Java method-usage tracing.
    pub class_name: Option<String>,
    pub stack: Vec<StackFrame>,
}

impl AvroRecord for Api {
    const FULL_NAME: &'static str = "io.secpipe.telemetry.Api";
}

/// A file operation (open, read, write, rename, unlink, truncate, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct File {
    pub envelope: Envelope,
    pub operation: String,
    pub paths: Vec<String>,
    pub mode: Option<i32>,
    pub flags: Option<i32>,
    pub stack: Vec<StackFrame>,
}

impl AvroRecord for File {
    const FULL_NAME: &'static str = "io.secpipe.telemetry.File";
}

/// A bind, connect, accept or DNS lookup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Network {
    pub envelope: Envelope,
    /// `bind`, `connect`, `accept` or `dns`.
    pub operation: String,
    pub address_family: String,
    pub local_addr: Option<String>,
    pub local_port: Option<i32>,
    pub remote_addr: Option<String>,
    pub remote_port: Option<i32>,
    pub fqdns: Vec<String>,
    pub stack: Vec<StackFrame>,
}

impl AvroRecord for Network {
    const FULL_NAME: &'static str = "io.secpipe.telemetry.Network";
}

/// A set*id call that changed the process's user or group identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdentityChange {
    pub envelope: Envelope,
    pub change_type: String,
    pub from_id: i64,
    pub to_id: i64,
    pub stack: Vec<StackFrame>,
}

impl AvroRecord for IdentityChange {
    const FULL_NAME: &'static str = "io.secpipe.telemetry.IdentityChange";
}

/// The process launched another (exec, spawn, clone, fork).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Process {
    pub envelope: Envelope,
    pub operation: String,
    pub path: String,
    pub arguments: Vec<String>,
    pub stack: Vec<StackFrame>,
}

impl AvroRecord for Process {
    const FULL_NAME: &'static str = "io.secpipe.telemetry.Process";
}

/// An unsafe memory operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryWarning {
    pub envelope: Envelope,
    pub warning_type: String,
    pub function: Option<String>,
    pub address: Option<i64>,
    pub size: Option<i64>,
    pub stack: Vec<StackFrame>,
}

impl AvroRecord for MemoryWarning {
    const FULL_NAME: &'static str = "io.secpipe.telemetry.MemoryWarning";
}
