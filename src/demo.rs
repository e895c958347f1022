//! `secpipe demo`: the whole pipeline fed end to end on the local stack. Runs every role in this
//! process (gateway, processors, ClickHouse loader, notifier), posts the samples of
//! `deploy/samples` and the reference's telemetry mix to the gateway exactly as tools would,
//! waits until ClickHouse has them, and prints what analysts and admins see.
use std::time::{Duration, Instant};

use anyhow::Context;
use secpipe_gateway::{hash_token, Role, TokenConfig};

use crate::{roles, runtime::Shutdown, Settings};

/// The sample end-of-scan messages, one JSON object per line.
pub const SAMPLE_SCAN_REPORTS: &str = include_str!("../deploy/samples/scan-reports.ndjson");
/// A sample SARIF report of the first sample scan.
pub const SAMPLE_SARIF: &str = include_str!("../deploy/samples/report.sarif");
/// Sample ad-hoc scan reports, failed and successful.
pub const SAMPLE_SCAN_FAILURES: &str = include_str!("../deploy/samples/scan-failures.ndjson");

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
    let admin_token = uuid::Uuid::new_v4().simple().to_string();
    let mut settings = settings.clone();
    for (name, secret, role) in [
        ("demo", &token, Role::Producer),
        ("demo-admin", &admin_token, Role::Admin),
    ] {
        settings.gateway.tokens.push(TokenConfig {
            name: name.into(),
            sha256: hash_token(secret),
            role,
            kinds: Vec::new(),
            rate_per_sec: 0,
        });
    }
    if settings.gateway.redaction_key.is_empty() {
        settings.gateway.redaction_key = "secpipe-demo".into();
    }
    let settings = &settings;
    let (trigger, shutdown) = Shutdown::new();
    let pipeline = tokio::spawn(roles::run_all(settings.clone(), shutdown));

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let base = format!("http://{}", settings.gateway.listen);
    wait_for_gateway(&http, &base).await?;
    let post = |path: &str, body: String| {
        http.post(format!("{base}{path}"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    let lines: Vec<&str> = SAMPLE_SCAN_REPORTS
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    println!(
        "[1/5] producing through the gateway (every answer follows the broker's acknowledgement):"
    );
    for line in &lines {
        expect_ok(post("/track", line.to_string()).await?).await?;
    }
    // A retried post of the same scan: counted once downstream.
    expect_ok(post("/track", lines[0].to_string()).await?).await?;
    println!(
        "      {} end-of-scan messages to /track (plus one retried post)",
        lines.len()
    );
    // The ShiftLeft scan client as it really posts: no header (the token in the path), a
    // fragment first, then the summary with emoji short codes and today's scanner names. Its
    // repository shares a name with the samples' shop-web, in another organisation.
    let run_id = uuid::Uuid::new_v4().to_string();
    for body in [
        serde_json::json!({"id": run_id, "depscan_summary": [], "tool": "@ShiftLeft/scan"}),
        serde_json::json!({"id": run_id, "tool": "@ShiftLeft/scan", "scan_mode": "ci",
            "repo_type": ["nodejs"],
            "repo_context": {"repositoryName": "shop-web", "repositoryUri": "git@git.example.com:outlet/shop-web.git",
                "branch": "main", "revisionId": "9e8d7c6", "invokedBy": "erin", "pullRequest": false},
            "report_summary": {"JavaScript Source Analyzer": {"tool": "JavaScript Source Analyzer",
                "critical": 1, "high": 0, "medium": 2, "low": 0, "status": ":cross_mark:"}}}),
    ] {
        let r = http
            .post(format!("{base}/track/{token}"))
            .json(&body)
            .send()
            .await?;
        expect_ok(r).await?;
    }
    println!("      the scan client's two posts to /track/<token> (no header; short codes)");
    let sarif = expect_ok(
        post(
            "/v1/sarif?repository_uri=https://git.example.com/shop/shop-web&commit_sha=a1b2c3d4&ref=refs/heads/main&category=njsscan",
            SAMPLE_SARIF.to_string(),
        )
        .await?,
    )
    .await?;
    println!(
        "      a SARIF report to /v1/sarif with its scan context: {} findings",
        sarif["findings"]
    );
    let mut failures = 0;
    for line in SAMPLE_SCAN_FAILURES
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        let r = expect_ok(post("/v1/scan-failures", line.to_string()).await?).await?;
        failures += r["produced"].as_u64().unwrap_or(0);
    }
    println!("      {failures} failed ad-hoc scans to /v1/scan-failures (a successful one produced nothing)");
    let telemetry = telemetry_batches();
    let (mut accepted, mut redacted) = (0, 0);
    for batch in &telemetry {
        let r = expect_ok(post("/v1/telemetry", batch.clone()).await?).await?;
        accepted += r["accepted"].as_u64().unwrap_or(0);
        redacted += r["redacted"].as_u64().unwrap_or(0);
    }
    println!("      {accepted} runtime telemetry events (the reference's event mix) to /v1/telemetry; {redacted} secrets redacted before Kafka");

    println!("[2/5] processors: dedupe, admin events, rollups, rate limits, redaction, alerts; loader: ClickHouse");
    let client = settings.clickhouse.client();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let scans: u64 = client
            .query("SELECT count() FROM scan_results FINAL WHERE received_at >= ?")
            .bind(started_at)
            .fetch_one()
            .await?;
        let telemetry: u64 = client
            .query("SELECT count() FROM telemetry_events WHERE event_time >= toDateTime(?) - 86400")
            .bind(started_at)
            .fetch_one()
            .await?;
        let admin: u64 = client
            .query("SELECT uniqExact(id) FROM admin_events WHERE last_seen >= ?")
            .bind(started_at)
            .fetch_one()
            .await?;
        if scans >= lines.len() as u64 && telemetry > 0 && admin >= 4 {
            println!(
                "[3/5] landed in ClickHouse database {}",
                settings.clickhouse.database
            );
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {scans} scan reports, {telemetry} telemetry events and {admin} admin events reached ClickHouse within 90 s"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Let the last batches of every loader land.
    tokio::time::sleep(Duration::from_secs(2)).await;
    report(&client, &http, &base, &admin_token).await?;
    trigger.trigger();
    pipeline.await.context("pipeline task")??;
    Ok(())
}

async fn expect_ok(resp: reqwest::Response) -> anyhow::Result<serde_json::Value> {
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    anyhow::ensure!(status.is_success(), "gateway answered {status}: {body}");
    Ok(body)
}

/// The reference's 743-event mix for a few processes, stamped to now, with a bearer token in a
/// process's arguments to show redaction; NDJSON batches of 500.
fn telemetry_batches() -> Vec<String> {
    use secpipe_schemas::telemetry::{sample, TelemetryEvent};
    let mut events: Vec<TelemetryEvent> = sample::reference_mix(7, 2, 3).take(1_500).collect();
    let shift =
        secpipe_schemas::now_micros() - events.last().map_or(0, |e| e.envelope().event_time);
    for e in &mut events {
        e.envelope_mut().event_time += shift;
    }
    if let Some(mut p) = sample::one_of_each(7).into_iter().find_map(|e| match e {
        TelemetryEvent::Process(p) => Some(p),
        _ => None,
    }) {
        p.envelope.event_time = secpipe_schemas::now_micros();
        p.path = "/tmp/.cache/updater".into();
        p.arguments = vec![
            "--header".into(),
            "Authorization: Bearer demo-secret-token-123".into(),
        ];
        events.push(TelemetryEvent::Process(p));
    }
    events
        .chunks(500)
        .map(|c| {
            c.iter()
                .map(|e| serde_json::to_string(e).unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect()
}

async fn print_query(client: &clickhouse::Client, title: &str, sql: &str) -> anyhow::Result<()> {
    let mut cursor = client.query(sql).fetch_bytes("PrettyCompactMonoBlock")?;
    let bytes = cursor.collect().await?;
    println!("\n{title}\n{}", String::from_utf8_lossy(&bytes).trim_end());
    Ok(())
}

async fn report(
    client: &clickhouse::Client,
    http: &reqwest::Client,
    base: &str,
    admin_token: &str,
) -> anyhow::Result<()> {
    println!("[4/5] what analysts see (views in README):");
    print_query(
        client,
        "Findings per team (v_findings_by_team):",
        "SELECT * FROM v_findings_by_team ORDER BY team",
    )
    .await?;
    print_query(
        client,
        "Who to speak to about a repository (v_repository_contacts):",
        "SELECT repository, invokers, scans FROM v_repository_contacts ORDER BY repository",
    )
    .await?;
    print_query(client, "Status of all Node.js applications (v_nodejs_status):", "SELECT repository, branch, status, critical, high FROM v_nodejs_status ORDER BY repository, branch").await?;
    print_query(client, "Failed scans per image and reason (v_failed_scans):", "SELECT image, reason, command, occurrences FROM v_failed_scans ORDER BY occurrences DESC, image").await?;
    print_query(
        client,
        "SARIF findings:",
        "SELECT repository, rule_id, level, severity, file, line, start_column FROM v_findings ORDER BY file, line",
    )
    .await?;
    print_query(client, "Telemetry by event type (heartbeats become per-minute rollups):", "SELECT event_type, count() AS events FROM telemetry_events FINAL GROUP BY event_type ORDER BY events DESC").await?;
    print_query(client, "Heartbeat rollups:", "SELECT count() AS rollups, sum(heartbeats) AS heartbeats, max(rss_bytes_max) AS peak_rss FROM heartbeat_rollups FINAL").await?;
    print_query(client, "Redacted process arguments:", "SELECT visitParamExtractRaw(details, 'arguments') AS arguments FROM telemetry_events WHERE event_type = 'process' AND visitParamExtractString(details, 'path') LIKE '/tmp/%' LIMIT 1").await?;
    print_query(client, "Alerts raised by the rules:", "SELECT rule, severity, count() AS alerts FROM alerts FINAL GROUP BY rule, severity ORDER BY rule").await?;
    let admin = http
        .get(format!(
            "{base}/v1/admin-events?image=quay.io/acme/payments-api:2.3.1"
        ))
        .bearer_auth(admin_token)
        .send()
        .await?
        .json::<serde_json::Value>()
        .await?;
    println!(
        "\n[5/5] admin-events API (admin token), filtered by image:\n{}",
        serde_json::to_string_pretty(&admin["events"])?
    );
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
