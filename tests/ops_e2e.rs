//! What operators rely on: /metrics with the pipeline's figures, /healthz, /readyz that tells a
//! ClickHouse outage, and SIGTERM finishing the work in hand within 30 s.
mod common;

use std::time::{Duration, Instant};

use common::*;
use secpipe_schemas::telemetry::sample;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn metric(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_pipeline_serves_metrics_health_and_readiness_and_stops_on_sigterm() {
    let mut s = settings("ops");
    fresh_database(&mut s).await;
    require_stack(&s).await;
    // ClickHouse through a proxy we can cut, to see /readyz tell the outage.
    let proxy = Proxy::start(s.clickhouse.url.trim_start_matches("http://").to_string()).await;
    s.clickhouse.url = format!("http://{}", proxy.addr);
    let ops_port = free_port();
    let gw_port = free_port();
    s.ops.listen = format!("127.0.0.1:{ops_port}").parse().unwrap();
    let mut env = child_env(&s);
    env.push((
        "SECPIPE__GATEWAY__LISTEN".into(),
        format!("127.0.0.1:{gw_port}"),
    ));
    env.push(("SECPIPE__GATEWAY__REDACTION_KEY".into(), "k".into()));
    env.push(("SECPIPE__KAFKA__SESSION_TIMEOUT_MS".into(), "6000".into()));
    // The child's token comes from a config file: tokens are a list.
    let dir = std::env::temp_dir().join(format!("secpipe-ops-{ops_port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("secpipe.toml");
    std::fs::write(
        &config,
        format!(
            "[[gateway.tokens]]\nname = \"ops\"\nsha256 = \"{}\"\n",
            secpipe_gateway::hash_token(PRODUCER_TOKEN)
        ),
    )
    .unwrap();
    let mut guard = ChildGuard(
        std::process::Command::new(env!("CARGO_BIN_EXE_secpipe"))
            .args(["--config", config.to_str().unwrap(), "run"])
            .envs(env)
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap(),
    );
    let child = &mut guard.0;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let ops = |path: &str| format!("http://127.0.0.1:{ops_port}{path}");

    eventually(60, "/healthz", || async {
        http.get(ops("/healthz"))
            .send()
            .await
            .ok()
            .filter(|r| r.status() == 200)
            .map(|_| ())
    })
    .await;
    eventually(90, "/readyz once every consumer has partitions", || async {
        http.get(ops("/readyz"))
            .send()
            .await
            .ok()
            .filter(|r| r.status() == 200)
            .map(|_| ())
    })
    .await;

    let mut events: Vec<_> = sample::reference_mix(4, 1, 2).take(300).collect();
    let shift = secpipe_schemas::now_micros() - events.last().unwrap().envelope().event_time;
    for e in &mut events {
        e.envelope_mut().event_time += shift;
    }
    let body = events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    let resp = http
        .post(format!("http://127.0.0.1:{gw_port}/v1/telemetry"))
        .bearer_auth(PRODUCER_TOKEN)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = eventually(60, "metrics of the whole flow", || async {
        let text = http
            .get(ops("/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let consumed = metric(&text, "secpipe_records_consumed_total", "process.telemetry");
        // Lag is published every 5 s.
        (consumed >= 300.0 && text.contains("secpipe_consumer_lag{")).then_some(text)
    })
    .await;
    assert_eq!(
        metric(&text, "secpipe_events_in_total", "kind=\"telemetry\""),
        300.0
    );
    assert!(
        text.contains("secpipe_gateway_request_seconds_bucket"),
        "latency histogram"
    );
    assert!(text.contains("secpipe_consumer_lag{"), "lag per partition");
    assert!(
        metric(
            &text,
            "secpipe_processor_events_total",
            "outcome=\"dedupe_hit\""
        ) > 0.0,
        "dedupe hits counted"
    );
    assert!(text.contains("secpipe_batch_rows"), "batch sizes");

    proxy.cut();
    // Another stage can be briefly unready (a rebalance under load): wait for the 503 that
    // names ClickHouse.
    eventually(30, "/readyz to answer 503 naming ClickHouse", || async {
        let r = http.get(ops("/readyz")).send().await.ok()?;
        if r.status() != 503 {
            return None;
        }
        r.text().await.ok()?.contains("ClickHouse").then_some(())
    })
    .await;
    proxy.restore();

    // SIGTERM: finish, commit, leave the group, exit, well within 30 s.
    let started = Instant::now();
    std::process::Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "still running 30 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "clean exit after SIGTERM: {status:?}");
    let group = format!("{}telemetry", s.processors.group_prefix);
    assert_eq!(
        committed(&s, &group, &s.kafka.topics.telemetry),
        300,
        "offsets committed on the way out"
    );
}
