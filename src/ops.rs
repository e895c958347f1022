//! What operators see of every role: `/metrics` (Prometheus text), `/healthz` (every consume
//! loop of the process is going round) and `/readyz` (its consumers have partitions, and the
//! broker and ClickHouse answer), on `ops.listen`. One server per process, shared by every role
//! `secpipe run` starts.
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, OnceLock,
    },
    time::{Duration, Instant},
};

use axum::{http::StatusCode, routing::get, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::{Deserialize, Serialize};

use crate::{runtime::Shutdown, Settings};

/// The ops endpoints (section `[ops]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OpsConfig {
    /// Address of `/metrics`, `/healthz` and `/readyz`. Default `127.0.0.1:9464`; in containers
    /// `0.0.0.0:9464`.
    pub listen: SocketAddr,
    /// Serve them at all. Default true.
    pub enabled: bool,
    /// `/healthz` answers 503 when a consume loop made no progress for this many seconds (a
    /// stuck loop; an idle one still goes round every few seconds). 0 disables it. Default 60.
    pub liveness_timeout_secs: u64,
}

impl Default for OpsConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            enabled: true,
            liveness_timeout_secs: 60,
        }
    }
}

/// The process's metrics recorder, installed on first use.
pub fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0,
            ])
            .expect("static buckets")
            .build_recorder();
        let handle = recorder.handle();
        // Tests build several roles in one process: the first recorder stays.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Consumer stages of this process and whether each has partitions assigned.
fn stages() -> &'static Mutex<BTreeMap<String, bool>> {
    static STAGES: OnceLock<Mutex<BTreeMap<String, bool>>> = OnceLock::new();
    STAGES.get_or_init(Default::default)
}

/// Records whether a consumer stage has partitions (the runtime calls it as assignments change).
pub fn set_assigned(stage: &str, assigned: bool) {
    stages()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(stage.to_string(), assigned);
}

fn holding() -> &'static Mutex<BTreeMap<String, String>> {
    static HOLDING: OnceLock<Mutex<BTreeMap<String, String>>> = OnceLock::new();
    HOLDING.get_or_init(Default::default)
}

/// Records that a stage holds a batch its destination will not take now (`Some(reason)`), or
/// that it writes again (`None`). `/readyz` answers 503 while any stage holds.
pub fn set_holding(stage: &str, reason: Option<&str>) {
    let mut holding = holding().lock().unwrap_or_else(|p| p.into_inner());
    match reason {
        Some(r) => {
            holding.insert(stage.to_string(), r.to_string());
        }
        None => {
            holding.remove(stage);
        }
    }
}

/// Milliseconds since the process's first liveness registration.
fn clock_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

fn loops() -> &'static Mutex<BTreeMap<String, Arc<AtomicU64>>> {
    static LOOPS: OnceLock<Mutex<BTreeMap<String, Arc<AtomicU64>>>> = OnceLock::new();
    LOOPS.get_or_init(Default::default)
}

/// A consume loop's proof of life: the loop calls [`Liveness::beat`] every time it goes round.
/// Dropping it (the loop ended) removes the loop from `/healthz`.
pub struct Liveness {
    stage: String,
    last: Arc<AtomicU64>,
}

/// Registers the consume loop of `stage`.
pub fn liveness(stage: &str) -> Liveness {
    let last = Arc::new(AtomicU64::new(clock_ms()));
    loops()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(stage.to_string(), last.clone());
    Liveness {
        stage: stage.to_string(),
        last,
    }
}

impl Liveness {
    pub fn beat(&self) {
        self.last.store(clock_ms(), Ordering::Relaxed);
    }
}

impl Drop for Liveness {
    fn drop(&mut self) {
        let mut loops = loops().lock().unwrap_or_else(|p| p.into_inner());
        if loops
            .get(&self.stage)
            .is_some_and(|l| Arc::ptr_eq(l, &self.last))
        {
            loops.remove(&self.stage);
        }
    }
}

/// Liveness: the consume loops that made no progress for `timeout`.
pub fn stuck_loops(timeout: Duration) -> Vec<String> {
    stuck_at(clock_ms(), timeout)
}

fn stuck_at(now: u64, timeout: Duration) -> Vec<String> {
    if timeout.is_zero() {
        return Vec::new();
    }
    loops()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter_map(|(stage, last)| {
            let idle = now.saturating_sub(last.load(Ordering::Relaxed));
            (idle > timeout.as_millis() as u64)
                .then(|| format!("{stage}: no progress for {} s", idle / 1000))
        })
        .collect()
}

/// Readiness: every consumer stage has partitions, the broker answers, ClickHouse answers.
pub async fn readiness(settings: &Settings) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    for (stage, assigned) in stages().lock().unwrap_or_else(|p| p.into_inner()).iter() {
        if !assigned {
            problems.push(format!("{stage}: no partitions assigned yet"));
        }
    }
    for (stage, reason) in holding().lock().unwrap_or_else(|p| p.into_inner()).iter() {
        problems.push(format!(
            "{stage}: destination unavailable, batch held: {reason}"
        ));
    }
    let kafka = settings.kafka.clone();
    let broker = tokio::task::spawn_blocking(move || -> Result<(), String> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        // One client for every probe: a probe every few seconds must not build a new one.
        static CLIENT: OnceLock<Result<BaseConsumer, String>> = OnceLock::new();
        let c = CLIENT
            .get_or_init(|| {
                kafka
                    .client_config("readyz")
                    .create()
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(Clone::clone)?;
        c.fetch_metadata(None, Duration::from_secs(2))
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    if let Err(e) = broker {
        problems.push(format!("broker {}: {e}", settings.kafka.brokers));
    }
    let ch = settings.clickhouse.server_client();
    let ping = tokio::time::timeout(
        Duration::from_secs(2),
        ch.query("SELECT 1").fetch_one::<u8>(),
    )
    .await;
    match ping {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => problems.push(format!("ClickHouse {}: {e}", settings.clickhouse.url)),
        Err(_) => problems.push(format!(
            "ClickHouse {}: no answer within 2 s",
            settings.clickhouse.url
        )),
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// The ops routes.
pub fn router(settings: Settings) -> Router {
    let handle = metrics().clone();
    let liveness_timeout = settings.ops.liveness_timeout_secs;
    Router::new()
        .route("/metrics", get(move || std::future::ready(handle.render())))
        .route(
            "/healthz",
            get(move || async move {
                let stuck = stuck_loops(Duration::from_secs(liveness_timeout));
                if stuck.is_empty() {
                    (StatusCode::OK, "ok\n".to_string())
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, stuck.join("\n") + "\n")
                }
            }),
        )
        .route(
            "/readyz",
            get(move || {
                let settings = settings.clone();
                async move {
                    match readiness(&settings).await {
                        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
                        Err(problems) => {
                            (StatusCode::SERVICE_UNAVAILABLE, problems.join("\n") + "\n")
                        }
                    }
                }
            }),
        )
}

/// Serves the ops endpoints until shutdown.
pub async fn serve(settings: Settings, mut shutdown: Shutdown) -> anyhow::Result<()> {
    if !settings.ops.enabled {
        return Ok(());
    }
    let listener = tokio::net::TcpListener::bind(settings.ops.listen)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "ops endpoints cannot listen on {}: {e}",
                settings.ops.listen
            )
        })?;
    tracing::info!(listen = %settings.ops.listen, "ops endpoints: /metrics /healthz /readyz");
    axum::serve(listener, router(settings))
        .with_graceful_shutdown(async move { shutdown.wait().await })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(now: u64, stage: &str) -> bool {
        stuck_at(now, Duration::from_secs(60))
            .iter()
            .any(|l| l.starts_with(&format!("{stage}:")))
    }

    #[test]
    fn a_loop_that_stops_beating_is_reported_stuck_and_a_finished_one_is_forgotten() {
        let live = liveness("test.loop");
        live.beat();
        let now = clock_ms();
        assert!(
            !listed(now, "test.loop"),
            "a loop that just went round is alive"
        );
        assert!(!listed(now + 59_000, "test.loop"));
        assert!(listed(now + 61_000, "test.loop"), "no progress for 61 s");
        assert!(
            stuck_at(now + 61_000, Duration::ZERO).is_empty(),
            "0 disables the check"
        );
        drop(live);
        assert!(
            !listed(now + 61_000, "test.loop"),
            "a loop that ended is not stuck"
        );
    }
}
