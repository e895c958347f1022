//! `secpipe bench ...`: throughput figures measured on the running local stack, one module per
//! bench: `gateway`, `processor`, `loader`, `pipeline` (every role, with the limits), and
//! `redact` (the redaction detector on one core, no services needed).
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
mod redact;

pub use gateway::{gateway, GatewayFigures};
pub use loader::{loader, LoaderFigures};
pub use pipeline::{pipeline, PipelineFigures};
pub use processor::{processor, ProcessorFigures};
pub use redact::{redact, RedactFigures, Runs};

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

/// Runs `query` with `clickhouse-client` against the settings' database, with a file as its
/// input or output: the reference insert path the loader is compared with.
pub(crate) fn clickhouse_client(
    s: &Settings,
    query: &str,
    stdin: Option<&std::path::Path>,
    stdout: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let host = s
        .stack_env()
        .into_iter()
        .find(|(k, _)| *k == "SECPIPE_CH_HOST")
        .map(|(_, v)| v)
        .unwrap_or_else(|| "127.0.0.1".into());
    let mut cmd = std::process::Command::new("clickhouse-client");
    cmd.args([
        "--host",
        &host,
        "--port",
        &s.stack.clickhouse_tcp_port.to_string(),
    ]);
    cmd.args(["--database", &s.clickhouse.database, "--query", query]);
    if let Some(p) = stdin {
        cmd.stdin(std::fs::File::open(p)?);
    }
    if let Some(p) = stdout {
        cmd.stdout(std::fs::File::create(p)?);
    }
    let out = cmd.output().context("clickhouse-client")?;
    anyhow::ensure!(
        out.status.success(),
        "clickhouse-client {query}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
