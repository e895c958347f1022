//! `secpipe bench ...`: throughput figures measured on the running local stack, one module per
//! bench: `gateway`, `processor`, `loader`, and `pipeline` (every role, with the limits).
//! Each bench creates its own topics (and ClickHouse database) so runs never mix.
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use secpipe_producers::gateway::{hash_token, Role, TokenConfig};
use secpipe_schemas::telemetry::sample;
use tokio::sync::Mutex;

use crate::{roles, runtime::Shutdown, Settings};

mod gateway;
mod loader;
mod pipeline;
mod processor;

pub use gateway::{gateway, GatewayFigures};
pub use loader::{loader, LoaderFigures};
pub use pipeline::{pipeline, PipelineFigures};
pub use processor::{processor, ProcessorFigures};

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

/// Peak resident set size (VmHWM) of a process, in KiB.
pub(crate) fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}
