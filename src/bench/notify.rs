//! `secpipe bench notify`: the notifier as its own process (`secpipe sink notify`) delivering a
//! backlog of alerts from a fresh alerts topic to four local integrations (webhook, Slack,
//! PagerDuty, Opsgenie), the Opsgenie one hung (it takes the connection and never answers).
//! Figures: deliveries per second to the three healthy ones, from the first answered request to
//! the last, per run; the median, minimum and maximum over the runs.
use std::sync::atomic::{AtomicU64, Ordering};

use axum::{http::StatusCode, Router};

use super::*;

/// Figures of the notify bench.
#[derive(Debug)]
pub struct NotifyFigures {
    pub alerts: usize,
    /// Healthy deliveries per second, one per run.
    pub runs: Vec<f64>,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// Requests the hung endpoint took (and never answered) over all runs.
    pub hung_requests: u64,
}

/// A local receiver: answers 200 at once, or (hung) never.
struct Receiver {
    url: String,
    got: Arc<AtomicU64>,
    first: Arc<Mutex<Option<Instant>>>,
    last: Arc<Mutex<Option<Instant>>>,
}

async fn receiver(hung: bool) -> anyhow::Result<Receiver> {
    let got = Arc::new(AtomicU64::new(0));
    let first: Arc<Mutex<Option<Instant>>> = Arc::default();
    let last: Arc<Mutex<Option<Instant>>> = Arc::default();
    let (g, f, l) = (got.clone(), first.clone(), last.clone());
    let app = Router::new().fallback(move || {
        let (g, f, l) = (g.clone(), f.clone(), l.clone());
        async move {
            g.fetch_add(1, Ordering::SeqCst);
            if hung {
                std::future::pending::<()>().await;
            }
            let now = Instant::now();
            f.lock().await.get_or_insert(now);
            *l.lock().await = Some(now);
            StatusCode::OK
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(Receiver {
        url,
        got,
        first,
        last,
    })
}

/// One run: fresh topics and database, `alerts` alerts produced first, then the notifier
/// started; returns healthy deliveries per second and the hung endpoint's request count.
async fn run_once(settings: &Settings, alerts: usize, hung: bool) -> anyhow::Result<(f64, u64)> {
    use secpipe_producers::{EventProducer, OutRecord};
    use secpipe_schemas::{alert::Alert, Codec};
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let mut s = settings.clone();
    s.kafka.topics.alerts = format!("bench.{tag}.alerts");
    s.kafka.topics.dead_letter = format!("bench.{tag}.dead-letter");
    s.clickhouse.database = format!("bench_notify_{tag}");
    crate::topics::create_all(&s).await?;
    secpipe_sinks::clickhouse::migrate(&s.clickhouse).await?;

    let healthy = [
        receiver(false).await?,
        receiver(false).await?,
        receiver(false).await?,
    ];
    let hung = receiver(hung).await?;
    let config = std::env::temp_dir().join(format!("secpipe-bench-notify-{tag}.toml"));
    std::fs::write(
        &config,
        format!(
            r#"
[notify.retry]
max_attempts = 2
initial_backoff_ms = 200
max_backoff_ms = 400
timeout_ms = 2000

[notify.throttle]
reminder_interval_ms = 0

[notify.integrations.hook]
type = "webhook"
endpoints = ["{}/hook"]

[notify.integrations.slack]
type = "slack"
endpoints = ["{}/services/T0/B0/X"]

[notify.integrations.pd]
type = "pagerduty"
endpoints = ["R0UT1NGKEY0123456789abcdef012345"]
api_url = "{}"

[notify.integrations.og]
type = "opsgenie"
endpoints = ["00000000-0000-0000-0000-000000000000"]
api_url = "{}"

[[notify.routes]]
to = ["hook", "slack", "pd", "og"]
"#,
            healthy[0].url, healthy[1].url, healthy[2].url, hung.url
        ),
    )?;

    let codec = Codec::<Alert>::new()?;
    let producer = EventProducer::new(&s.kafka, "bench")?;
    let encoded: Vec<(String, Vec<u8>)> = (0..alerts)
        .map(|i| {
            let a = Alert {
                alert_id: format!("{tag}-{i}"),
                rule: "scan_failed".into(),
                severity: "high".into(),
                kind: "result".into(),
                title: format!("Scan of repo-{i} (main) failed: njsscan"),
                description: "❌ njsscan: critical 1, high 2, medium 0, low 0".into(),
                dedup_key: format!("scan_failed/repo-{i}/main"),
                status: "open".into(),
                source_topic: "bench".into(),
                source_id: format!("scan-{i}"),
                resources: vec![format!("repo-{i}")],
                tags: vec!["team:bench".into()],
                attributes: Default::default(),
                raised_at: secpipe_schemas::now_micros(),
            };
            Ok((a.dedup_key.clone(), codec.encode(&a)?))
        })
        .collect::<anyhow::Result<_>>()?;
    for chunk in encoded.chunks(5_000) {
        let out: Vec<OutRecord<'_>> = chunk
            .iter()
            .map(|(k, p)| OutRecord {
                topic: &s.kafka.topics.alerts,
                key: k.as_bytes(),
                payload: p,
                headers: &[],
                partition: None,
            })
            .collect();
        producer.send_all(&out).await?;
    }

    let env: Vec<(String, String)> = vec![
        ("KAFKA__BROKERS".into(), s.kafka.brokers.clone()),
        (
            "KAFKA__TOPICS__ALERTS".into(),
            s.kafka.topics.alerts.clone(),
        ),
        (
            "KAFKA__TOPICS__DEAD_LETTER".into(),
            s.kafka.topics.dead_letter.clone(),
        ),
        ("CLICKHOUSE__URL".into(), s.clickhouse.url.clone()),
        ("CLICKHOUSE__DATABASE".into(), s.clickhouse.database.clone()),
        ("NOTIFIER__GROUP_ID".into(), format!("bench.{tag}.notify")),
        ("OPS__LISTEN".into(), "127.0.0.1:0".into()),
    ];
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args([
            "--config",
            config.to_str().unwrap_or_default(),
            "sink",
            "notify",
        ])
        .envs(env.iter().map(|(k, v)| (format!("SECPIPE__{k}"), v)))
        .env("RUST_LOG", "error")
        .spawn()
        .context("starting secpipe sink notify")?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let want = alerts as u64;
    let result = loop {
        if healthy.iter().all(|r| r.got.load(Ordering::SeqCst) >= want) {
            break Ok(());
        }
        if let Some(status) = child.try_wait()? {
            break Err(anyhow::anyhow!("secpipe sink notify exited: {status}"));
        }
        if Instant::now() > deadline {
            break Err(anyhow::anyhow!("not every alert delivered within 600 s"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    result?;
    let mut first = None;
    let mut last = None;
    for r in &healthy {
        let f = r.first.lock().await.context("no delivery")?;
        let l = r.last.lock().await.context("no delivery")?;
        first = Some(first.map_or(f, |x: Instant| x.min(f)));
        last = Some(last.map_or(l, |x: Instant| x.max(l)));
    }
    let secs = last
        .zip(first)
        .map_or(0.0, |(l, f)| l.duration_since(f).as_secs_f64())
        .max(1e-3);
    Ok((3.0 * alerts as f64 / secs, hung.got.load(Ordering::SeqCst)))
}

/// `runs` runs of `alerts` alerts each; `hung` false answers on the fourth integration too (the
/// comparison: the figure is still counted on the other three).
pub async fn notify(
    settings: &Settings,
    alerts: usize,
    runs: usize,
    hung: bool,
) -> anyhow::Result<NotifyFigures> {
    anyhow::ensure!(
        alerts > 0 && runs > 0,
        "--alerts and --runs must be at least 1"
    );
    let mut rates = Vec::new();
    let mut hung_requests = 0;
    for i in 0..runs {
        let (rate, held) = run_once(settings, alerts, hung).await?;
        eprintln!("run {}: {rate:.0} deliveries/s to webhook, Slack and PagerDuty; Opsgenie took {held} requests", i + 1);
        rates.push(rate);
        hung_requests += held;
    }
    let mut sorted = rates.clone();
    sorted.sort_by(f64::total_cmp);
    Ok(NotifyFigures {
        alerts,
        median: sorted[sorted.len() / 2],
        min: sorted[0],
        max: sorted[sorted.len() - 1],
        runs: rates,
        hung_requests,
    })
}
