//! Bad input at the gateway against the real broker: every case is answered with its status and
//! a JSON body that names the field and says why, and nothing of it reaches any topic.
mod common;

use common::*;
use secpipe::Settings;
use secpipe_gateway::{hash_token, Role, TokenConfig};
use secpipe_schemas::{
    now_micros,
    telemetry::{sample, TelemetryEvent, TelemetryKind},
};
use serde_json::{json, Value};

const ADMIN_TOKEN: &str = "test-admin-token";

/// Test settings with an admin token and a gateway clock skew of 5 minutes.
fn bad_input_settings(test: &str) -> Settings {
    let mut s = settings(test);
    s.gateway.max_clock_skew_secs = 300;
    s.gateway.tokens.push(TokenConfig {
        name: "admin".into(),
        sha256: hash_token(ADMIN_TOKEN),
        role: Role::Admin,
        kinds: vec![],
        rate_per_sec: 0,
    });
    s
}

/// The answer to `req`: status, content type and JSON body.
async fn answer(req: reqwest::RequestBuilder) -> (u16, String, Value) {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, ct, body)
}

/// Records in every topic of the test.
fn produced(s: &Settings) -> i64 {
    secpipe::topics::all(s)
        .iter()
        .map(|t| records_in(s, t))
        .sum()
}

fn component_exit(event_time: Value) -> Value {
    let mut e = serde_json::to_value(
        sample::one_of_each(1)
            .into_iter()
            .find(|e| e.kind() == TelemetryKind::ComponentExit)
            .unwrap(),
    )
    .unwrap();
    e["envelope"]["event_time"] = event_time;
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implausible_telemetry_times_and_wrong_types_are_refused_naming_the_field() {
    let s = bad_input_settings("badtelemetry");
    require_stack(&s).await;
    let gw = Pipeline::gateway_only(&s).await;
    let http = reqwest::Client::new();
    let now = now_micros();
    let mut wrong_type = component_exit(now.into());
    wrong_type["exit_code"] = "one".into();
    let mut wrong_pid = component_exit(now.into());
    wrong_pid["envelope"]["pid"] = "one".into();
    for (line, field, reason) in [
        (
            component_exit((now * 1_000).into()),
            "envelope.event_time",
            "(this looks like nanoseconds)",
        ),
        (
            component_exit((now / 1_000).into()),
            "envelope.event_time",
            "(this looks like milliseconds)",
        ),
        (
            component_exit((now / 1_000_000).into()),
            "envelope.event_time",
            "(this looks like seconds)",
        ),
        (
            component_exit((now + 600_000_000).into()),
            "envelope.event_time",
            "more than 300 s after the receiver's clock",
        ),
        (
            component_exit(946_684_799_999_999i64.into()),
            "envelope.event_time",
            "before 2000-01-01",
        ),
        (
            component_exit(i64::MAX.into()),
            "envelope.event_time",
            "expected microseconds",
        ),
        (
            component_exit("yesterday".into()),
            "envelope.event_time",
            "invalid type: string \"yesterday\"",
        ),
        (
            wrong_type,
            "exit_code",
            "invalid type: string \"one\", expected i32",
        ),
        (
            wrong_pid,
            "envelope.pid",
            "invalid type: string \"one\", expected i64",
        ),
    ] {
        let (status, ct, body) = answer(
            http.post(gw.url("/v1/telemetry"))
                .bearer_auth(PRODUCER_TOKEN)
                .body(line.to_string()),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert!(ct.starts_with("application/json"), "{ct}");
        assert_eq!(body["error"], "invalid_message", "{body}");
        assert_eq!(body["accepted"], 0, "{body}");
        let rejected = &body["rejected"][0];
        assert_eq!(
            (rejected["line"].as_u64(), rejected["field"].as_str()),
            (Some(1), Some(field)),
            "{body}"
        );
        let why = rejected["reason"].as_str().unwrap();
        assert!(
            why.starts_with(&format!("{field}: ")) && why.contains(reason),
            "{why}"
        );
    }
    assert_eq!(produced(&s), 0, "a refused event reached a topic");

    // In a batch, the bad line is reported and only the good one produced.
    let good = component_exit(now.into());
    let bad = component_exit((now * 1_000).into());
    let (status, _, body) = answer(
        http.post(gw.url("/v1/telemetry"))
            .bearer_auth(PRODUCER_TOKEN)
            .body(format!("{good}\n{bad}")),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            body["accepted"].as_u64(),
            body["rejected"][0]["line"].as_u64()
        ),
        (Some(1), Some(2)),
        "{body}"
    );
    assert_eq!(records_in(&s, &s.kafka.topics.telemetry), 1);
    let stored: TelemetryEvent = secpipe_schemas::telemetry::TelemetryCodec::new()
        .unwrap()
        .decode(&read_all(&s, &s.kafka.topics.telemetry)[0].1)
        .unwrap();
    assert_eq!(stored.envelope().event_time, now);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_reports_and_failures_with_bad_fields_are_refused_naming_the_field() {
    let s = bad_input_settings("badscans");
    require_stack(&s).await;
    let gw = Pipeline::gateway_only(&s).await;
    let http = reqwest::Client::new();
    let failure = |time: Value| {
        json!({"command": "image check", "image": "quay.io/acme/api:1.4",
            "reason": "registry unreachable", "source": "cli", "time": time})
    };
    let mut wrong_reason = failure("2026-11-30T00:00:00Z".into());
    wrong_reason["reason"] = 5.into();
    for (path, body, field, reason) in [
        (
            "/v1/scan-failures",
            failure("2099-01-01T00:00:00Z".into()),
            "time",
            "after the receiver's clock",
        ),
        (
            "/v1/scan-failures",
            failure(4_070_908_800i64.into()),
            "time",
            "after the receiver's clock",
        ),
        (
            "/v1/scan-failures",
            failure("1999-12-31T23:59:59Z".into()),
            "time",
            "before 2000-01-01",
        ),
        (
            "/v1/scan-failures",
            failure("one".into()),
            "time",
            "not an RFC 3339 time",
        ),
        (
            "/v1/scan-failures",
            wrong_reason,
            "reason",
            "expected a string",
        ),
        (
            "/track",
            json!({"id": 5}),
            "id",
            "expected a non-empty string",
        ),
        (
            "/track",
            json!({"repo_type": {"a": 1}}),
            "repo_type",
            "expected a list of strings",
        ),
    ] {
        let (status, ct, answer) = answer(
            http.post(gw.url(path))
                .bearer_auth(PRODUCER_TOKEN)
                .body(body.to_string()),
        )
        .await;
        assert_eq!(status, 400, "{path} {body}: {answer}");
        assert!(ct.starts_with("application/json"), "{ct}");
        assert_eq!(
            (answer["error"].as_str(), answer["field"].as_str()),
            (Some("invalid_message"), Some(field)),
            "{answer}"
        );
        assert!(
            answer["reason"].as_str().unwrap().contains(reason),
            "{answer}"
        );
    }
    assert_eq!(produced(&s), 0, "a refused report reached a topic");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_rejects_in_json_with_a_reason_and_produces_nothing() {
    let s = bad_input_settings("badroutes");
    require_stack(&s).await;
    let gw = Pipeline::gateway_only(&s).await;
    let http = reqwest::Client::new();
    let body = component_exit(now_micros().into()).to_string();
    for (req, status, error) in [
        (
            http.post(gw.url("/v1/nothing"))
                .bearer_auth(PRODUCER_TOKEN)
                .body(body.clone()),
            404,
            "not_found",
        ),
        (
            http.post(gw.url("/v1/telemetry/extra"))
                .bearer_auth(PRODUCER_TOKEN)
                .body(body.clone()),
            404,
            "not_found",
        ),
        (
            http.put(gw.url("/v1/telemetry"))
                .bearer_auth(PRODUCER_TOKEN)
                .body(body.clone()),
            405,
            "method_not_allowed",
        ),
        (
            http.get(gw.url("/v1/telemetry"))
                .bearer_auth(PRODUCER_TOKEN),
            405,
            "method_not_allowed",
        ),
        (
            http.patch(gw.url("/track"))
                .bearer_auth(PRODUCER_TOKEN)
                .body("{}"),
            405,
            "method_not_allowed",
        ),
        (
            http.post(gw.url("/v1/admin-events"))
                .bearer_auth(ADMIN_TOKEN),
            405,
            "method_not_allowed",
        ),
        (
            http.get(gw.url("/v1/admin-events/%FF"))
                .bearer_auth(ADMIN_TOKEN),
            400,
            "invalid_message",
        ),
        (
            http.get(gw.url("/v1/admin-events?image=%FF"))
                .bearer_auth(ADMIN_TOKEN),
            400,
            "invalid_message",
        ),
        (
            http.get(gw.url("/v1/admin-events?limit=lots"))
                .bearer_auth(ADMIN_TOKEN),
            400,
            "invalid_message",
        ),
        (
            http.post(gw.url("/v1/telemetry")).body(body.clone()),
            401,
            "unauthorized",
        ),
        (
            http.post(gw.url("/v1/telemetry"))
                .bearer_auth(ANALYST_TOKEN)
                .body(body.clone()),
            403,
            "forbidden",
        ),
        (
            http.post(gw.url("/v1/telemetry"))
                .bearer_auth(PRODUCER_TOKEN)
                .body("not json"),
            400,
            "invalid_message",
        ),
        (
            http.post(gw.url("/v1/telemetry"))
                .bearer_auth(PRODUCER_TOKEN)
                .body(""),
            400,
            "invalid_message",
        ),
        (
            http.post(gw.url("/v1/sarif"))
                .bearer_auth(PRODUCER_TOKEN)
                .body("[]"),
            400,
            "invalid_message",
        ),
    ] {
        let (got, ct, answer) = answer(req).await;
        assert_eq!(got, status, "{answer}");
        assert!(ct.starts_with("application/json"), "{status}: {ct}");
        assert_eq!(answer["error"], error, "{answer}");
        assert!(
            answer["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{answer}"
        );
    }
    assert_eq!(produced(&s), 0, "a rejected request reached a topic");
    gw.stop().await;
}
