//! `secpipe bench ...`: throughput figures measured on the running local stack, one module per
//! bench: `gateway`, `processor`, `loader`, `pipeline` (every role, with the limits), `notify`
//! (the notifier with one integration hung), and `redact` (the redaction detector on one core, no
//! services needed).
//! Each bench creates its own topics (and ClickHouse database) so runs never mix.
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use secpipe_gateway::hash_token;
use secpipe_schemas::telemetry::sample;
use tokio::sync::Mutex;

use crate::Settings;

mod gateway;
mod loader;
mod notify;
mod pipeline;
mod processor;
mod redact;

pub use gateway::{gateway, GatewayFigures};
pub use loader::{loader, LoaderFigures};
pub use notify::{notify, NotifyFigures};
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

/// CPU time (user + system) a process has used so far, in seconds. `/proc/<pid>/stat` counts
/// in USER_HZ ticks, which Linux fixes at 100 per second for user space.
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// The pid of the running process whose command line contains every one of `needles`.
pub(crate) fn find_process(needles: &[&str]) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        needles.iter().all(|n| cmdline.contains(n)).then_some(pid)
    })
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

/// Waits (up to 120 s) until ClickHouse runs no merge, so that neither side of a comparison
/// pays for the background merges of the rows the other one just inserted. Returns how long it
/// waited.
pub(crate) async fn wait_for_quiet_server(client: &clickhouse::Client) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let merges: u64 = client
            .query("SELECT count() FROM system.merges")
            .fetch_one()
            .await?;
        if merges == 0 {
            return Ok(started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(120) {
            eprintln!("ClickHouse still merging after 120 s; measuring anyway");
            return Ok(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One figure of one bench run, named in the words of its README row.
#[derive(Debug, Clone)]
pub struct Figure {
    pub what: String,
    pub value: f64,
    pub unit: &'static str,
}

impl Figure {
    pub fn new(what: impl Into<String>, value: f64, unit: &'static str) -> Self {
        Self {
            what: what.into(),
            value,
            unit,
        }
    }
}

/// What every bench's figures struct gives [`summarize`].
pub trait Figures {
    fn figures(&self) -> Vec<Figure>;
}

/// (min, median, max) of `values`; the median of an even count is the mean of the middle two.
pub fn min_median_max(values: &[f64]) -> (f64, f64, f64) {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (v[0], median, v[n - 1])
}

/// The figures of several runs of one bench, each as median (min-max) over the runs, in the
/// order the first run gave them.
pub fn summarize(runs: &[Vec<Figure>]) -> Vec<String> {
    let Some(first) = runs.first() else {
        return Vec::new();
    };
    first
        .iter()
        .map(|f| {
            let values: Vec<f64> = runs
                .iter()
                .filter_map(|r| r.iter().find(|g| g.what == f.what).map(|g| g.value))
                .collect();
            let (min, median, max) = min_median_max(&values);
            format!(
                "{}: median {} {} (min {}, max {}; {} runs)",
                f.what,
                fmt_value(median),
                f.unit,
                fmt_value(min),
                fmt_value(max),
                values.len()
            )
        })
        .collect()
}

fn fmt_value(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Runs `bench` `runs` times, printing each run's figures as it ends and then the summary.
pub async fn repeat<F, Fut, T>(title: &str, runs: usize, mut bench: F) -> anyhow::Result<Vec<T>>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
    T: Figures,
{
    let runs = runs.max(1);
    let mut all = Vec::with_capacity(runs);
    let mut figures = Vec::with_capacity(runs);
    for i in 0..runs {
        eprintln!("{title}: run {} of {runs}", i + 1);
        let f = bench(i).await?;
        for g in f.figures() {
            println!(
                "  run {}: {}: {} {}",
                i + 1,
                g.what,
                fmt_value(g.value),
                g.unit
            );
        }
        figures.push(f.figures());
        all.push(f);
    }
    println!("{title}:");
    for line in summarize(&figures) {
        println!("  {line}");
    }
    Ok(all)
}

/// secpipe roles started as child processes of a bench (`secpipe gateway`, `secpipe process
/// ...`, `secpipe sink ...`), configured for the bench's topics, groups and database, with one
/// producer token.
pub(crate) struct RoleProcesses {
    dir: std::path::PathBuf,
    config: std::path::PathBuf,
    env: Vec<(String, String)>,
    children: Vec<(String, std::process::Child)>,
}

impl RoleProcesses {
    /// `token` is the bearer token the gateway will accept; `gateway` its listen address.
    pub fn new(
        s: &Settings,
        tag: &str,
        token: &str,
        gateway: std::net::SocketAddr,
    ) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("secpipe-bench-{tag}"));
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("secpipe.toml");
        std::fs::write(
            &config,
            format!(
                "[[gateway.tokens]]\nname = \"bench\"\nsha256 = \"{}\"\n",
                hash_token(token)
            ),
        )?;
        let t = &s.kafka.topics;
        let mut env: Vec<(String, String)> = vec![
            ("KAFKA__BROKERS".into(), s.kafka.brokers.clone()),
            ("OPS__LISTEN".into(), "127.0.0.1:0".into()),
            ("GATEWAY__LISTEN".into(), gateway.to_string()),
            ("GATEWAY__RATE_LIMIT_PER_TOKEN".into(), "0".into()),
            ("GATEWAY__REDACTION_KEY".into(), "bench".into()),
            ("CLICKHOUSE__DATABASE".into(), s.clickhouse.database.clone()),
            ("LOADER__GROUP_ID".into(), s.loader.group_id.clone()),
            (
                "PROCESSORS__CHANGELOG_PREFIX".into(),
                s.processors.changelog_prefix.clone(),
            ),
            (
                "PROCESSORS__GROUP_PREFIX".into(),
                s.processors.group_prefix.clone(),
            ),
        ];
        for (k, v) in [
            ("SCAN_RESULTS", &t.scan_results),
            ("FINDINGS", &t.findings),
            ("SCAN_FAILURES", &t.scan_failures),
            ("TELEMETRY", &t.telemetry),
            ("ADMIN_EVENTS", &t.admin_events),
            ("SCAN_ROLLUPS", &t.scan_rollups),
            ("REPO_STATUS", &t.repo_status),
            ("TELEMETRY_CLEAN", &t.telemetry_clean),
            ("HEARTBEAT_ROLLUPS", &t.heartbeat_rollups),
            ("ALERTS", &t.alerts),
            ("DEAD_LETTER", &t.dead_letter),
        ] {
            env.push((format!("KAFKA__TOPICS__{k}"), v.clone()));
        }
        Ok(Self {
            dir,
            config,
            env,
            children: Vec::new(),
        })
    }

    /// Starts `secpipe <args>` as role `name`.
    pub fn spawn(&mut self, name: &str, args: &[&str]) -> anyhow::Result<()> {
        let child = std::process::Command::new(std::env::current_exe()?)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (format!("SECPIPE__{k}"), v)))
            .env("RUST_LOG", "error")
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        self.children.push((name.to_string(), child));
        Ok(())
    }

    /// CPU seconds each role has used so far.
    pub fn cpu_seconds(&self) -> Vec<(String, f64)> {
        self.children
            .iter()
            .map(|(name, child)| (name.clone(), cpu_seconds(child.id()).unwrap_or(0.0)))
            .collect()
    }

    /// Stops every role (SIGTERM, then waits) and gives each one's peak RSS in MB.
    pub fn stop(&mut self) -> Vec<(String, f64)> {
        let mut peaks = Vec::new();
        for (name, child) in &mut self.children {
            peaks.push((
                name.clone(),
                peak_rss_kb(child.id()).unwrap_or(0) as f64 / 1024.0,
            ));
            let _ = std::process::Command::new("kill")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
        self.children.clear();
        peaks
    }
}

impl Drop for RoleProcesses {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits until the gateway at `base` answers `/healthz`.
pub(crate) async fn wait_for_gateway(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        anyhow::ensure!(Instant::now() < deadline, "gateway did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// A free local port.
pub(crate) fn free_addr() -> anyhow::Result<std::net::SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(min_median_max(&[3.0, 1.0, 2.0]), (1.0, 2.0, 3.0));
        assert_eq!(min_median_max(&[4.0, 1.0, 2.0, 3.0]), (1.0, 2.5, 4.0));
        assert_eq!(min_median_max(&[]), (0.0, 0.0, 0.0));
    }

    #[test]
    fn the_summary_names_each_figure_with_its_spread() {
        let run = |v| vec![Figure::new("rate", v, "events/s")];
        let lines = summarize(&[run(100.0), run(300.0), run(200.0)]);
        assert_eq!(
            lines,
            vec!["rate: median 200 events/s (min 100, max 300; 3 runs)".to_string()]
        );
    }
}
