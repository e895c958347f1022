//! The ingest gateway against the real broker: every endpoint, auth, limits, redaction, the
//! broker-down answer, and exactly-once of every acknowledged event.
mod common;

use std::{collections::BTreeMap, time::Duration};

use common::*;
use reqwest::StatusCode;
use secpipe_schemas::{
    failures::ScanFailure,
    scan::{Finding, ScanReport},
    telemetry::{sample, TelemetryCodec, TelemetryEvent},
    Codec,
};
use serde_json::{json, Value};

fn ndjson(events: &[TelemetryEvent]) -> String {
    events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

async fn post(
    url: String,
    token: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new().post(url).body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

const SARIF: &str = r#"{"version":"2.1.0","runs":[
 {"tool":{"driver":{"name":"bandit","fullName":"Security audit for python"}},
  "automationDetails":{"guid":"GUID-A"},
  "versionControlProvenance":[{"repositoryUri":"https://git.example.com/pay/payments-api","branch":"main"}],
  "results":[
   {"ruleId":"B105","level":"error","message":{"text":"hardcoded password"},
    "locations":[{"physicalLocation":{"artifactLocation":{"uri":"app/settings.py"},"region":{"startLine":12}}}]},
   {"ruleId":"B311","level":"warning","message":{"text":"weak random"},
    "locations":[{"physicalLocation":{"artifactLocation":{"uri":"app/util.py"},"region":{"startLine":3}}}]}]},
 {"tool":{"driver":{"name":"gitleaks"}},"automationDetails":{"guid":"GUID-B"},"results":[]}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sarif_report_gives_one_summary_per_run_and_one_finding_per_result() {
    let s = settings("sarif");
    require_stack(&s).await;
    let gw = Pipeline::gateway_only(&s).await;
    let sarif = SARIF.replace("GUID-A", &uuid::Uuid::new_v4().to_string());
    let (status, body) = post(gw.url("/v1/sarif"), Some(PRODUCER_TOKEN), sarif).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["findings"], 2);
    let reports: Vec<ScanReport> = read_all(&s, &s.kafka.topics.scan_results)
        .iter()
        .map(|(_, p)| Codec::<ScanReport>::new().unwrap().decode(p).unwrap())
        .collect();
    assert_eq!(reports.len(), 2);
    let a = reports
        .iter()
        .find(|r| r.tool.as_deref() == Some("bandit"))
        .unwrap();
    assert_eq!(a.report_summary[0].high, 1);
    assert_eq!(a.report_summary[0].medium, 1);
    let findings: Vec<(Option<Vec<u8>>, Finding)> = read_all(&s, &s.kafka.topics.findings)
        .into_iter()
        .map(|(k, p)| (k, Codec::<Finding>::new().unwrap().decode(&p).unwrap()))
        .collect();
    assert_eq!(findings.len(), 2);
    for (key, f) in &findings {
        assert_eq!(f.scan_id, a.id);
        assert_eq!(
            key.as_deref(),
            Some(&b"git.example.com/pay/payments-api"[..]),
            "keyed by the repository's normalised URI"
        );
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_scans_are_produced_keyed_by_image_and_successful_ones_are_not() {
    let s = settings("failures");
    require_stack(&s).await;
    let gw = Pipeline::gateway_only(&s).await;
    let failed = json!({"command": "image check", "image": "quay.io/acme/api:1.4",
        "reason": "policy evaluation timed out", "source": "cli", "cluster": "prod"});
    let (status, body) = post(
        gw.url("/v1/scan-failures"),
        Some(PRODUCER_TOKEN),
        failed.to_string(),
    )
    .await;
    assert_eq!(
        (status, body["produced"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{body}"
    );
    let ok = json!({"status": "succeeded", "command": "image scan", "image": "nginx"});
    let (status, body) = post(
        gw.url("/v1/scan-failures"),
        Some(PRODUCER_TOKEN),
        ok.to_string(),
    )
    .await;
    assert_eq!(
        (status, body["produced"].as_u64()),
        (StatusCode::OK, Some(0))
    );
    let records = read_all(&s, &s.kafka.topics.scan_failures);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].0.as_deref(), Some(&b"quay.io/acme/api:1.4"[..]));
    let f = Codec::<ScanFailure>::new()
        .unwrap()
        .decode(&records[0].1)
        .unwrap();
    assert_eq!(
        (f.command.as_str(), f.image.repository.as_str()),
        ("image check", "acme/api")
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_batches_are_accepted_per_line_with_bad_lines_reported() {
    let s = settings("telemetry");
    require_stack(&s).await;
    let gw = Pipeline::gateway_only(&s).await;
    let events: Vec<TelemetryEvent> = sample::full_mix(11, 2, 3).take(60).collect();
    let mut body = ndjson(&events[..30]);
    body.push_str("\n{\"type\":\"heartbeat\"}\nnot json at all\n");
    body.push_str(&ndjson(&events[30..]));
    let (status, resp) = post(gw.url("/v1/telemetry"), Some(PRODUCER_TOKEN), body).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["accepted"], 60);
    let lines: Vec<u64> = resp["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, vec![31, 32]);
    assert!(
        resp["rejected"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("envelope"),
        "{resp}"
    );

    // A batch with no valid line: 400, nothing produced.
    let (status, resp) = post(gw.url("/v1/telemetry"), Some(PRODUCER_TOKEN), "nope\n{}\n").await;
    assert_eq!(status, 400, "{resp}");
    assert_eq!(resp["rejected"].as_array().unwrap().len(), 2);

    let codec = TelemetryCodec::new().unwrap();
    let on_topic = read_all(&s, &s.kafka.topics.telemetry);
    assert_eq!(on_topic.len(), 60);
    for (key, payload) in on_topic {
        let ev = codec.decode(&payload).unwrap();
        assert_eq!(
            key.unwrap(),
            ev.partition_key().into_bytes(),
            "keyed by host/pid"
        );
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_redacted_before_anything_reaches_kafka() {
    let s = settings("redaction");
    require_stack(&s).await;
    let gw = Pipeline::gateway_only(&s).await;
    let mut events = sample::one_of_each(5);
    let secrets = [
        "AKIAEXAMPLESECRET123",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.sig-value",
        "hunter2-password",
    ];
    for ev in &mut events {
        match ev {
            TelemetryEvent::ComponentStart(e) => {
                e.environment[0].value = secrets[0].into();
            }
            TelemetryEvent::AuthTokenSighting(e) => e.token_fingerprint = secrets[1].into(),
            TelemetryEvent::Process(e) => e.arguments.push(format!("--password={}", secrets[2])),
            TelemetryEvent::WebappUriDiscovery(e) => {
                e.uri = format!("/login?user=a&access_token={}", secrets[0])
            }
            _ => {}
        }
    }
    let (status, resp) = post(
        gw.url("/v1/telemetry"),
        Some(PRODUCER_TOKEN),
        ndjson(&events),
    )
    .await;
    assert_eq!(status, 200, "{resp}");
    assert!(resp["redacted"].as_u64().unwrap() >= 4, "{resp}");
    let on_topic = read_all(&s, &s.kafka.topics.telemetry);
    assert_eq!(on_topic.len(), events.len());
    for (_, payload) in &on_topic {
        for secret in secrets {
            assert!(
                !payload
                    .windows(secret.len())
                    .any(|w| w == secret.as_bytes()),
                "secret {secret} reached Kafka"
            );
        }
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_without_a_valid_token_or_right_are_refused_with_reasons() {
    let s = settings("auth");
    require_stack(&s).await;
    let gw = Pipeline::gateway_only(&s).await;
    let report = json!({"repo_context": {"repositoryName": "x"}}).to_string();
    let telemetry = ndjson(&sample::one_of_each(1)[..1]);
    let cases = [
        ("/track", None, report.clone(), 401, "unauthorized"),
        (
            "/track",
            Some("wrong-token"),
            report.clone(),
            401,
            "unauthorized",
        ),
        (
            "/track",
            Some(ANALYST_TOKEN),
            report.clone(),
            403,
            "forbidden",
        ),
        (
            "/v1/telemetry",
            Some(SCAN_ONLY_TOKEN),
            telemetry.clone(),
            403,
            "forbidden",
        ),
    ];
    for (path, token, body, status, error) in cases {
        let (got, resp) = post(gw.url(path), token, body).await;
        assert_eq!(got.as_u16(), status, "{path} {token:?}: {resp}");
        assert_eq!(resp["error"], error);
        assert!(!resp["reason"].as_str().unwrap().is_empty());
    }
    let (ok, _) = post(gw.url("/track"), Some(SCAN_ONLY_TOKEN), report).await;
    assert_eq!(ok, 200);
    assert_eq!(records_in(&s, &s.kafka.topics.scan_results), 1);
    assert_eq!(records_in(&s, &s.kafka.topics.telemetry), 0);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_get_413_and_a_host_environment_event_fits() {
    let mut s = settings("size");
    s.gateway.max_body_bytes = 256 * 1024;
    require_stack(&s).await;
    let gw = Pipeline::gateway_only(&s).await;
    let host_env: Vec<TelemetryEvent> = sample::reference_mix(3, 1, 1)
        .filter(|e| matches!(e, TelemetryEvent::HostEnvironment(_)))
        .take(1)
        .collect();
    let body = ndjson(&host_env);
    assert!(
        body.len() > 30_000,
        "host environment event is {} bytes",
        body.len()
    );
    let (status, resp) = post(gw.url("/v1/telemetry"), Some(PRODUCER_TOKEN), body).await;
    assert_eq!(status, 200, "{resp}");
    let huge = "x".repeat(300 * 1024);
    let (status, resp) = post(gw.url("/v1/telemetry"), Some(PRODUCER_TOKEN), huge).await;
    assert_eq!(status, 413);
    assert_eq!(resp["error"], "payload_too_large");
    assert_eq!(records_in(&s, &s.kafka.topics.telemetry), 1);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_over_its_rate_gets_429_with_retry_after() {
    let mut s = settings("ratelimit");
    // 30 events/s with one second of burst: of two batches of 30 sent at once, one must wait
    // about a second. (Sent one after the other, a slow broker acknowledgement of the first
    // could give the bucket its second back.)
    s.gateway.tokens[0].rate_per_sec = 30;
    require_stack(&s).await;
    let gw = Pipeline::gateway_only(&s).await;
    // Warm the gateway's producer (connection, idempotence set-up) with another token first.
    let warm = json!({"repo_context": {"repositoryName": "x"}}).to_string();
    assert_eq!(
        post(gw.url("/track"), Some(SCAN_ONLY_TOKEN), warm).await.0,
        200
    );
    let events: Vec<TelemetryEvent> = sample::full_mix(2, 1, 1).take(30).collect();
    let http = reqwest::Client::new();
    let send = || {
        http.post(gw.url("/v1/telemetry"))
            .bearer_auth(PRODUCER_TOKEN)
            .body(ndjson(&events))
            .send()
    };
    let (a, b) = tokio::join!(send(), send());
    let (a, b) = (a.unwrap(), b.unwrap());
    let (accepted, resp) = if a.status() == 200 { (a, b) } else { (b, a) };
    assert_eq!(accepted.status(), 200);
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().get("retry-after").is_some());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");
    assert_eq!(records_in(&s, &s.kafka.topics.telemetry), 30);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_gets_503_with_retry_after_without_hanging() {
    let mut s = settings("brokerdown");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    s.kafka.brokers = closed.local_addr().unwrap().to_string();
    drop(closed);
    s.kafka.message_timeout_ms = 1_500;
    let gw = Pipeline::gateway_only(&s).await;
    let started = std::time::Instant::now();
    let resp = reqwest::Client::new()
        .post(gw.url("/track"))
        .bearer_auth(PRODUCER_TOKEN)
        .body(json!({"repo_context": {"repositoryName": "x"}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(resp.headers()["retry-after"], "5");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "broker_unavailable");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_event_is_in_kafka_exactly_once() {
    let s = settings("exactlyonce");
    require_stack(&s).await;
    let gw = Pipeline::gateway_only(&s).await;
    let events: Vec<TelemetryEvent> = sample::reference_mix(21, 3, 4).take(2_000).collect();
    let mut tasks = Vec::new();
    for chunk in events.chunks(100) {
        let url = gw.url("/v1/telemetry");
        let body = ndjson(chunk);
        let ids: Vec<String> = chunk
            .iter()
            .map(|e| e.envelope().event_id.clone())
            .collect();
        tasks.push(tokio::spawn(async move {
            let (status, resp) = post(url, Some(PRODUCER_TOKEN), body).await;
            (status, resp, ids)
        }));
    }
    let mut acknowledged = BTreeMap::new();
    for t in tasks {
        let (status, resp, ids) = t.await.unwrap();
        assert_eq!(status, 200, "{resp}");
        for id in ids {
            *acknowledged.entry(id).or_insert(0) += 1;
        }
    }
    let codec = TelemetryCodec::new().unwrap();
    let mut on_topic = BTreeMap::new();
    for (_, payload) in read_all(&s, &s.kafka.topics.telemetry) {
        let id = codec.decode(&payload).unwrap().envelope().event_id.clone();
        *on_topic.entry(id).or_insert(0) += 1;
    }
    assert_eq!(on_topic.len(), 2_000);
    assert_eq!(on_topic, acknowledged);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_speaks_tls13_only_when_configured() {
    let mut s = settings("tls");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let dir = std::env::temp_dir().join(format!("secpipe-tls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), cert.key_pair.serialize_pem()).unwrap();
    s.gateway.tls_cert = Some(dir.join("cert.pem"));
    s.gateway.tls_key = Some(dir.join("key.pem"));
    let gw = Pipeline::gateway_only(&s).await;
    let root = reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap();
    let url = format!("https://localhost:{}/healthz", gw.gateway.port());
    let tls13 = reqwest::Client::builder()
        .add_root_certificate(root.clone())
        .min_tls_version(reqwest::tls::Version::TLS_1_3)
        .build()
        .unwrap();
    assert_eq!(tls13.get(&url).send().await.unwrap().status(), 200);
    let tls12 = reqwest::Client::builder()
        .add_root_certificate(root)
        .max_tls_version(reqwest::tls::Version::TLS_1_2)
        .build()
        .unwrap();
    assert!(
        tls12.get(&url).send().await.is_err(),
        "TLS 1.2 must be refused"
    );
    let plain = reqwest::get(format!("http://localhost:{}/healthz", gw.gateway.port())).await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_produce_cli_sends_files_straight_to_kafka_and_reports_bad_lines() {
    use secpipe::produce::{self, Kind};
    let s = settings("producecli");
    require_stack(&s).await;
    let dir =
        std::env::temp_dir().join(format!("secpipe-produce-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let events: Vec<TelemetryEvent> = sample::full_mix(8, 2, 2).take(1_200).collect();
    let mut body = ndjson(&events[..700]);
    body.push_str("\nthis line is not an event\n");
    body.push_str(&ndjson(&events[700..]));
    let telemetry = dir.join("telemetry.ndjson");
    std::fs::write(&telemetry, body).unwrap();
    let summary = produce::run(&s, Kind::Telemetry, telemetry.to_str().unwrap())
        .await
        .unwrap();
    assert_eq!((summary.records, summary.rejected), (1_200, 1));
    assert_eq!(records_in(&s, &s.kafka.topics.telemetry), 1_200);

    let reports = dir.join("reports.ndjson");
    std::fs::write(
        &reports,
        "{\"repo_context\":{\"repositoryName\":\"a\"}}\n{\"repo_context\":{\"repositoryName\":\"b\"}}\n",
    )
    .unwrap();
    let summary = produce::run(&s, Kind::ScanReport, reports.to_str().unwrap())
        .await
        .unwrap();
    assert_eq!((summary.records, summary.rejected), (2, 0));
    let sarif = dir.join("report.sarif");
    std::fs::write(&sarif, SARIF).unwrap();
    let summary = produce::run(&s, Kind::Sarif, sarif.to_str().unwrap())
        .await
        .unwrap();
    assert_eq!(summary.records, 2 + 2, "two run summaries and two findings");
    assert_eq!(records_in(&s, &s.kafka.topics.scan_results), 4);
    assert_eq!(records_in(&s, &s.kafka.topics.findings), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every rejection is a JSON body that says why: the router's own (unknown path, wrong method)
/// and an admin-event id that does not decode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_routers_own_rejections_are_json_too() {
    let mut s = settings("jsonrejections");
    require_stack(&s).await;
    s.gateway.tokens.push(secpipe_gateway::TokenConfig {
        name: "admin".into(),
        sha256: secpipe_gateway::hash_token("admin-token"),
        role: secpipe_gateway::Role::Admin,
        kinds: vec![],
        rate_per_sec: 0,
    });
    let gw = Pipeline::gateway_only(&s).await;
    let http = reqwest::Client::new();
    for (req, status, error) in [
        (http.get(gw.url("/track")), 405, "method_not_allowed"),
        (
            http.delete(gw.url("/v1/admin-events")),
            405,
            "method_not_allowed",
        ),
        (http.get(gw.url("/v2/nothing")), 404, "not_found"),
        (
            http.get(gw.url("/v1/admin-events/%FF"))
                .bearer_auth("admin-token"),
            400,
            "invalid_message",
        ),
    ] {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status);
        let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("application/json"), "{ct}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], error, "{body}");
        assert!(
            body["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{body}"
        );
    }
    gw.stop().await;
}
