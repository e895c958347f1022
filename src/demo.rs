//! `secpipe demo`: the whole pipeline fed end to end on the local stack. Runs every role in this
//! process, posts the sample scan reports of `deploy/samples` to the gateway exactly as a scan
//! tool would, waits until ClickHouse has them, and prints what landed.
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Deserialize;

use secpipe_producers::gateway::{hash_token, Role, TokenConfig};

use crate::{roles, runtime::Shutdown, Settings};

/// The sample end-of-scan messages, one JSON object per line.
pub const SAMPLE_SCAN_REPORTS: &str = include_str!("../deploy/samples/scan-reports.ndjson");

#[derive(Debug, clickhouse::Row, Deserialize)]
struct RepoLine {
    repository_name: String,
    scans: u64,
    critical: u64,
    high: u64,
    failing_scanners: u64,
    invoked_by: Vec<String>,
}

/// Runs the demo and prints its report to stdout.
pub async fn run(settings: &Settings) -> anyhow::Result<()> {
    println!(
        "secpipe demo: gateway {} -> Kafka {} -> ClickHouse {}",
        settings.gateway.listen, settings.kafka.brokers, settings.clickhouse.url
    );
    let started_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        .saturating_sub(1);
    secpipe_sinks::clickhouse::migrate(&settings.clickhouse).await?;
    crate::topics::create_all(settings).await?;

    // The demo is its own producer: a fresh token, known to this run's gateway only.
    let token = uuid::Uuid::new_v4().simple().to_string();
    let mut settings = settings.clone();
    settings.gateway.tokens.push(TokenConfig {
        name: "demo".into(),
        sha256: hash_token(&token),
        role: Role::Producer,
        kinds: Vec::new(),
        rate_per_sec: 0,
    });
    let settings = &settings;
    let (trigger, shutdown) = Shutdown::new();
    let pipeline = tokio::spawn(roles::run_all(settings.clone(), shutdown));

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let base = format!("http://{}", settings.gateway.listen);
    wait_for_gateway(&http, &base).await?;

    let lines: Vec<&str> = SAMPLE_SCAN_REPORTS
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    println!("[1/3] posting {} scan reports to {base}/track", lines.len());
    for line in &lines {
        let resp = http
            .post(format!("{base}/track"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(line.to_string())
            .send()
            .await?;
        let status = resp.status();
        let body = resp.text().await?;
        anyhow::ensure!(status.is_success(), "gateway answered {status}: {body}");
    }
    println!("[2/3] every report acknowledged by the broker; waiting for ClickHouse");
    let client = settings.clickhouse.client();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let landed: u64 = client
            .query("SELECT count() FROM scan_results FINAL WHERE received_at >= ?")
            .bind(started_at)
            .fetch_one()
            .await?;
        if landed >= lines.len() as u64 {
            println!(
                "[3/3] {landed} scan reports landed in ClickHouse table {}.scan_results",
                settings.clickhouse.database
            );
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {landed} of {} reports reached ClickHouse within 60 s",
            lines.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rows: Vec<RepoLine> = client
        .query(
            "SELECT repository_name, count() AS scans, \
               sum(arraySum(summary.critical)) AS critical, sum(arraySum(summary.high)) AS high, \
               sum(arrayCount(s -> s = '❌', summary.status)) AS failing_scanners, \
               groupUniqArray(invoked_by) AS invoked_by \
             FROM scan_results FINAL GROUP BY repository_name ORDER BY repository_name",
        )
        .fetch_all()
        .await?;
    println!();
    println!(
        "{:<16} {:>6} {:>9} {:>6} {:>17}  invoked by",
        "repository", "scans", "critical", "high", "failing scanners"
    );
    for r in rows {
        let mut who = r.invoked_by;
        who.sort();
        println!(
            "{:<16} {:>6} {:>9} {:>6} {:>17}  {}",
            r.repository_name,
            r.scans,
            r.critical,
            r.high,
            r.failing_scanners,
            who.join(", ")
        );
    }
    trigger.trigger();
    pipeline.await.context("pipeline task")??;
    Ok(())
}

async fn wait_for_gateway(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "gateway did not answer on {base} within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
