//! Admin events as RHACS clients and administrators read them, against the real broker and
//! ClickHouse: RHACS's administration-events API returns the same events as the native API;
//! a retention change applies to existing events without a restart; an event's failures and
//! history; both dedupe modes from gateway to API.
mod common;

use common::*;
use reqwest::StatusCode;
use secpipe::{roles, runtime::Shutdown, Settings};
use secpipe_processors::admin_events::DedupeMode;
use secpipe_schemas::{
    failures::{AdminEvent, Image, ScanFailure},
    now_micros,
};
use secpipe_sinks::{
    clickhouse::tables::{AdminEventRow, ScanFailureRow, TableSink},
    Sink,
};
use serde_json::{json, Value};

const ADMIN_TOKEN: &str = "test-admin-token";
const MIN: i64 = 60_000_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

fn with_admin(mut s: Settings) -> Settings {
    use secpipe_gateway::{hash_token, Role, TokenConfig};
    s.gateway.tokens.push(TokenConfig {
        name: "admin".into(),
        sha256: hash_token(ADMIN_TOKEN),
        role: Role::Admin,
        kinds: vec![],
        rate_per_sec: 0,
    });
    s
}

struct Ev<'a> {
    id: &'a str,
    image: &'a str,
    original: &'a str,
    digest: Option<&'a str>,
    reason: &'a str,
    cluster: &'a str,
    occurrences: i64,
    first_seen: i64,
    last_seen: i64,
}

fn event(e: &Ev) -> AdminEvent {
    AdminEvent {
        id: e.id.into(),
        command: "image scan".into(),
        image: Image {
            full_name: e.image.into(),
            registry: e.image.split('/').next().map(Into::into),
            repository: e.image.into(),
            tag: None,
            digest: e.digest.map(Into::into),
            original: Some(e.original.into()),
        },
        reason: e.reason.into(),
        cluster: Some(e.cluster.into()),
        source: "cli".into(),
        first_seen: e.first_seen,
        last_seen: e.last_seen,
        occurrences: e.occurrences,
        version: e.occurrences,
        // As emitted under the default 4-day retention; readers do not use it.
        expires_at: e.last_seen + 4 * DAY,
        sources: vec!["api".into(), "cli".into()],
    }
}

async fn write_events(s: &Settings, events: &[AdminEvent]) {
    TableSink::<AdminEvent, AdminEventRow>::new(&s.clickhouse, "admin_events")
        .write(events)
        .await
        .unwrap();
}

struct Client {
    http: reqwest::Client,
    gw: Pipeline,
}

impl Client {
    async fn get_as(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let mut req = self.http.get(self.gw.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        (status, r.json::<Value>().await.unwrap_or(Value::Null))
    }

    /// A 200 answer of an admin request.
    async fn get(&self, path: &str) -> Value {
        let (status, body) = self.get_as(path, Some(ADMIN_TOKEN)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        body
    }

    async fn put_settings(&self, token: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .http
            .put(self.gw.url("/v1/admin-events/settings"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json::<Value>().await.unwrap())
    }
}

fn ids(v: &Value) -> Vec<String> {
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

fn rfc3339(micros: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(micros / 1_000_000)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn enc(v: &str) -> String {
    v.replace(' ', "%20")
        .replace(':', "%3A")
        .replace('+', "%2B")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rhacs_clients_read_the_same_events_as_the_native_api() {
    let mut s = with_admin(settings("rhacsapi"));
    fresh_database(&mut s).await;
    require_stack(&s).await;
    let now = now_micros();
    let sha = format!("sha256:{}", "ab".repeat(32));
    let e = |id, image, original, digest, reason, cluster, occurrences, last_seen| Ev {
        id,
        image,
        original,
        digest,
        reason,
        cluster,
        occurrences,
        first_seen: last_seen - 3 * HOUR,
        last_seen,
    };
    write_events(
        &s,
        &[
            event(&e(
                "e1",
                "quay.io/acme/api:1",
                "quay.io/acme/api:1",
                None,
                "timeout",
                "prod",
                5,
                now - 30 * MIN,
            )),
            event(&e(
                "e2",
                "quay.io/acme/api:1",
                "quay.io/acme/api:1",
                None,
                "unauthorized",
                "prod",
                2,
                now - 20 * MIN,
            )),
            event(&e(
                "e3",
                "docker.io/library/nginx:1.25",
                "nginx:1.25",
                Some(&sha),
                "manifest unknown",
                "dev",
                9,
                now - 10 * MIN,
            )),
            event(&e(
                "e4",
                "redis:7",
                "redis:7",
                None,
                "timeout",
                "dev",
                1,
                now - 5 * DAY,
            )),
        ],
    )
    .await;
    // Three failures behind e1 (two in one hour), one of another reason, one too old.
    let failure = |id: &str, reason: &str, at: i64, source: &str| ScanFailure {
        failure_id: id.into(),
        command: "image scan".into(),
        image: Image {
            full_name: "quay.io/acme/api:1".into(),
            registry: Some("quay.io".into()),
            repository: "acme/api".into(),
            tag: Some("1".into()),
            digest: None,
            original: Some("Quay.io/acme/api:1".into()),
        },
        reason: reason.into(),
        source: source.into(),
        cluster: Some("prod".into()),
        occurred_at: at,
        received_at: at,
    };
    let e1_first = now - 30 * MIN - 3 * HOUR;
    TableSink::<ScanFailure, ScanFailureRow>::new(&s.clickhouse, "scan_failures")
        .write(&[
            failure("f1", "timeout", e1_first, "cli"),
            failure("f2", "timeout", e1_first + 2 * HOUR, "api"),
            failure("f3", "timeout", e1_first + 2 * HOUR + 5 * MIN, "cli"),
            failure("f4", "unauthorized", e1_first + HOUR, "cli"),
            failure("f5", "timeout", e1_first - DAY, "cli"),
        ])
        .await
        .unwrap();
    let c = Client {
        http: reqwest::Client::new(),
        gw: Pipeline::gateway_only(&s).await,
    };

    // Every event, the same ones in the same (most recent first) order.
    let native = c.get("/v1/admin-events").await;
    let rhacs = c.get("/v1/administration/events").await;
    assert_eq!(ids(&native), vec!["e3", "e2", "e1"], "e4 expired");
    assert_eq!(ids(&rhacs), ids(&native));
    assert_eq!(
        rhacs.as_object().unwrap().keys().collect::<Vec<_>>(),
        vec!["events"],
        "RHACS's envelope"
    );
    for (r, n) in rhacs["events"]
        .as_array()
        .unwrap()
        .iter()
        .zip(native["events"].as_array().unwrap())
    {
        assert_eq!(
            r["numOccurrences"],
            json!(n["occurrences"].as_u64().unwrap().to_string()),
            "int64 as protobuf JSON renders it: a string"
        );
        assert_eq!(r["lastOccurredAt"], n["last_seen"]);
        assert_eq!(r["createdAt"], n["first_seen"]);
        assert_eq!(r["resource"]["name"], n["image"]["full_name"]);
        assert_eq!(r["type"], "ADMINISTRATION_EVENT_TYPE_GENERIC");
        assert_eq!(r["level"], "ADMINISTRATION_EVENT_LEVEL_ERROR");
        assert_eq!(r["domain"], "Image Scanning");
        assert_eq!(r["resource"]["type"], "Image");
        let keys: Vec<&String> = r.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            vec![
                "id",
                "type",
                "level",
                "message",
                "hint",
                "domain",
                "resource",
                "numOccurrences",
                "lastOccurredAt",
                "createdAt"
            ],
            "RHACS's fields, no others (strict protobuf clients reject unknown fields)"
        );
    }
    assert_eq!(
        c.get("/v1/count/administration/events").await,
        json!({"count": 3})
    );

    // One event: RHACS's envelope, the digest as the resource id, a hint by reason.
    let one = c.get("/v1/administration/events/e3").await;
    assert_eq!(one["event"]["id"], "e3");
    assert_eq!(one["event"]["resource"]["id"], json!(sha));
    assert_eq!(one["event"]["numOccurrences"], "9");
    assert!(one["event"]["hint"]
        .as_str()
        .unwrap()
        .contains("does not have this image"));
    assert_eq!(
        c.get_as("/v1/administration/events/e4", Some(ADMIN_TOKEN))
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    // Filters: RHACS's and secpipe's, each with its native counterpart.
    let since = enc(&rfc3339(now - 25 * MIN));
    let until = enc(&rfc3339(now - 15 * MIN));
    for (rhacs_q, native_q, want) in [
        (format!("filter.from={since}"), format!("since={since}"), vec!["e3", "e2"]),
        (format!("filter.until={until}"), format!("until={until}"), vec!["e2", "e1"]),
        ("filter.image=quay.io/acme/api:1".into(), "image=quay.io/acme/api:1".into(), vec!["e2", "e1"]),
        // The image filter is normalised like the events: nginx:1.25 is docker.io's.
        ("filter.image=nginx:1.25".into(), "image=nginx:1.25".into(), vec!["e3"]),
        ("filter.reason=timeout&filter.cluster=prod".into(), "reason=timeout&cluster=prod".into(), vec!["e1"]),
        ("filter.command=image%20scan&filter.cluster=dev".into(), "command=image%20scan&cluster=dev".into(), vec!["e3"]),
        (
            "pagination.limit=2&pagination.offset=1&pagination.sortOption.field=numOccurrences&pagination.sortOption.reversed=false".into(),
            "sort=occurrences&limit=2&offset=1".into(),
            vec!["e1", "e3"],
        ),
        (
            "pagination.sort_option.field=Created%20Time&pagination.sort_option.reversed=true".into(),
            "sort=-first_seen".into(),
            vec!["e3", "e2", "e1"],
        ),
    ] {
        let r = ids(&c.get(&format!("/v1/administration/events?{rhacs_q}")).await);
        let n = ids(&c.get(&format!("/v1/admin-events?{native_q}")).await);
        assert_eq!(r, want, "RHACS: {rhacs_q}");
        assert_eq!(n, want, "native: {native_q}");
    }
    assert_eq!(
        c.get("/v1/count/administration/events?filter.image=quay.io/acme/api:1")
            .await,
        json!({"count": 2})
    );
    // Repeated enum filters as grpc-gateway takes them: names or numbers.
    let levels = "filter.level=ADMINISTRATION_EVENT_LEVEL_WARNING&filter.level=4&filter.type=ADMINISTRATION_EVENT_TYPE_GENERIC&filter.domain=Image%20Scanning&filter.resourceType=Image";
    assert_eq!(
        ids(&c.get(&format!("/v1/administration/events?{levels}")).await).len(),
        3
    );
    for none in [
        "filter.level=ADMINISTRATION_EVENT_LEVEL_INFO",
        "filter.type=ADMINISTRATION_EVENT_TYPE_LOG_MESSAGE",
        "filter.domain=Integrations",
    ] {
        assert_eq!(
            ids(&c.get(&format!("/v1/administration/events?{none}")).await).len(),
            0
        );
        assert_eq!(
            c.get(&format!("/v1/count/administration/events?{none}"))
                .await,
            json!({"count": 0})
        );
    }

    // Bad parameters are 400s naming the parameter, on both APIs.
    for (path, field) in [
        (
            "/v1/administration/events?filter.level=LOUD",
            "filter.level",
        ),
        (
            "/v1/administration/events?pagination.limit=x",
            "pagination.limit",
        ),
        (
            "/v1/administration/events?filter.cluster=",
            "filter.cluster",
        ),
        (
            "/v1/count/administration/events?pagination.limit=1",
            "pagination.limit",
        ),
        ("/v1/admin-events?image=a&image=b", "image"),
        ("/v1/admin-events?cluster=", "cluster"),
    ] {
        let (status, body) = c.get_as(path, Some(ADMIN_TOKEN)).await;
        assert_eq!(
            (status, body["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some(field)),
            "{path}: {body}"
        );
    }
    // The same admin-only rule.
    for path in [
        "/v1/administration/events",
        "/v1/administration/events/e1",
        "/v1/count/administration/events",
    ] {
        assert_eq!(c.get_as(path, None).await.0, StatusCode::UNAUTHORIZED);
        for token in [ANALYST_TOKEN, PRODUCER_TOKEN] {
            let (status, body) = c.get_as(path, Some(token)).await;
            assert_eq!(
                (status, body["error"].as_str()),
                (StatusCode::FORBIDDEN, Some("forbidden"))
            );
        }
    }

    // An event's history: its scan_failures rows, and occurrences per hour.
    let h = c.get("/v1/admin-events/e1/failures").await;
    let rows: Vec<&str> = h["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["failure_id"].as_str().unwrap())
        .collect();
    assert_eq!(rows, vec!["f3", "f2", "f1"], "newest first, only e1's");
    assert_eq!(h["failures"][0]["original"], "Quay.io/acme/api:1");
    let per_hour: Vec<u64> = h["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["occurrences"].as_u64().unwrap())
        .collect();
    assert_eq!(per_hour.iter().sum::<u64>(), 3);
    assert!(per_hour.len() >= 2, "{per_hour:?}");
    c.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retention_change_applies_to_existing_events_without_a_restart() {
    let mut s = with_admin(settings("retention"));
    fresh_database(&mut s).await;
    require_stack(&s).await;
    let now = now_micros();
    let e = |id, last_seen| Ev {
        id,
        image: "quay.io/acme/api:1",
        original: "quay.io/acme/api:1",
        digest: None,
        reason: id,
        cluster: "prod",
        occurrences: 1,
        first_seen: last_seen,
        last_seen,
    };
    write_events(
        &s,
        &[
            event(&e("fresh", now - HOUR)),
            event(&e("mid", now - 2 * DAY)),
            event(&e("old", now - 5 * DAY)),
        ],
    )
    .await;
    let c = Client {
        http: reqwest::Client::new(),
        gw: Pipeline::gateway_only(&s).await,
    };
    let live = || async {
        let mut v = ids(&c.get("/v1/admin-events?sort=image").await);
        v.sort();
        v
    };
    assert_eq!(live().await, vec!["fresh", "mid"], "the configured 4 days");
    assert_eq!(
        c.get("/v1/admin-events/settings").await,
        json!({"retention_secs": 345600, "runtime_retention_secs": null, "configured_retention_secs": 345600})
    );

    // Longer: an event whose stored expiry has passed lives again.
    let (status, body) = c
        .put_settings(ADMIN_TOKEN, json!({"retention_secs": 10 * 86_400}))
        .await;
    assert_eq!(
        (status, body["retention_secs"].as_u64()),
        (StatusCode::OK, Some(864_000))
    );
    assert_eq!(live().await, vec!["fresh", "mid", "old"]);
    assert_eq!(
        c.get("/v1/count/administration/events").await,
        json!({"count": 3})
    );

    // Shorter: events last seen a day or more ago are gone, from both APIs and by id.
    c.put_settings(ADMIN_TOKEN, json!({"retention_secs": 86_400}))
        .await;
    assert_eq!(live().await, vec!["fresh"]);
    assert_eq!(
        c.get("/v1/count/administration/events").await,
        json!({"count": 1})
    );
    assert_eq!(
        c.get_as("/v1/administration/events/mid", Some(ADMIN_TOKEN))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let fresh = c.get("/v1/admin-events/fresh").await;
    assert_eq!(fresh["expires_at"], json!(rfc3339(now - HOUR + DAY)));

    // The pruning job deletes by the same rule.
    let report = secpipe_sinks::clickhouse::retention::run(
        &s.clickhouse,
        &s.retention,
        s.processors.admin_events.retention_secs,
    )
    .await
    .unwrap();
    assert_eq!(report.admin_event_rows_deleted, 2);
    let client = s.clickhouse.client();
    eventually(30, "the expired events deleted", || async {
        let n: u64 = client
            .query("SELECT count() FROM admin_events")
            .fetch_one()
            .await
            .unwrap();
        (n == 1).then_some(())
    })
    .await;

    // Back to the configured retention.
    let (status, body) = c
        .put_settings(ADMIN_TOKEN, json!({"retention_secs": null}))
        .await;
    assert_eq!(
        (
            status,
            body["runtime_retention_secs"].clone(),
            body["retention_secs"].as_u64()
        ),
        (StatusCode::OK, Value::Null, Some(345_600))
    );
    // Refusals.
    for (token, body, want) in [
        (
            ADMIN_TOKEN,
            json!({"retention_secs": 0}),
            StatusCode::BAD_REQUEST,
        ),
        (
            ADMIN_TOKEN,
            json!({"retention_secs": "1d"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            ADMIN_TOKEN,
            json!({"retention_days": 1}),
            StatusCode::BAD_REQUEST,
        ),
        (
            ANALYST_TOKEN,
            json!({"retention_secs": 60}),
            StatusCode::FORBIDDEN,
        ),
    ] {
        assert_eq!(c.put_settings(token, body.clone()).await.0, want, "{body}");
    }
    assert_eq!(
        c.get("/v1/admin-events/settings").await["retention_secs"],
        345_600
    );
    c.gw.stop().await;
}

/// Three failures of one image named three ways, from cli and api, a quarter of an hour apart,
/// through the gateway, the processor and the loader; read with RHACS's API.
async fn three_failures_end_to_end(mode: DedupeMode, test: &str) -> (Vec<Value>, Vec<Value>) {
    let mut s = with_admin(settings(test));
    s.processors.admin_events.dedupe_mode = mode;
    fresh_database(&mut s).await;
    require_stack(&s).await;
    let pipeline = Pipeline::start(&s).await;
    let (trigger, shutdown) = Shutdown::new();
    let processor = tokio::spawn(roles::processor(
        s.clone(),
        roles::Proc::AdminEvents,
        shutdown,
    ));
    let http = reqwest::Client::new();
    let now = now_micros();
    for (i, (image, source)) in [
        ("nginx:1", "cli"),
        ("docker.io/library/nginx:1", "api"),
        ("index.docker.io/library/nginx:1", "cli"),
    ]
    .into_iter()
    .enumerate()
    {
        let at = now - (3 - i as i64) * 15 * MIN;
        let r = http
            .post(pipeline.url("/v1/scan-failures"))
            .bearer_auth(PRODUCER_TOKEN)
            .json(&json!({"command": "image scan", "image": image, "reason": "failed to pull image: unauthorized",
                          "source": source, "cluster": "prod", "time": rfc3339(at)}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }
    let admin = http.clone();
    let url = pipeline.url("/v1/administration/events?filter.image=nginx:1");
    let events = eventually(90, "the three failures counted in ClickHouse", || {
        let req = admin.get(&url).bearer_auth(ADMIN_TOKEN).send();
        async move {
            let v: Value = req.await.ok()?.json().await.ok()?;
            let events = v["events"].as_array()?.clone();
            let counted: u64 = events
                .iter()
                .filter_map(|e| e["numOccurrences"].as_str()?.parse::<u64>().ok())
                .sum();
            (counted == 3).then_some(events)
        }
    })
    .await;
    let native: Value = admin
        .get(pipeline.url("/v1/admin-events?image=nginx:1"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    trigger.trigger();
    processor.await.unwrap().unwrap();
    pipeline.stop().await;
    (events, native["events"].as_array().unwrap().clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_mode_starts_a_new_event_after_a_quiet_window() {
    let (events, native) = three_failures_end_to_end(DedupeMode::Window, "dedupewindow").await;
    assert_eq!(native.len(), 3);
    assert_eq!(events.len(), 3, "15 minutes apart, a 10-minute window");
    assert!(events.iter().all(|e| e["numOccurrences"] == "1"));
    assert!(events
        .iter()
        .all(|e| e["resource"]["name"] == "docker.io/library/nginx:1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_mode_folds_every_repeat_into_one_event_with_every_source() {
    let (events, native) = three_failures_end_to_end(DedupeMode::Merge, "dedupemerge").await;
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e["numOccurrences"], "3");
    assert_eq!(e["resource"]["name"], "docker.io/library/nginx:1");
    assert!(e["message"]
        .as_str()
        .unwrap()
        .contains("failed to pull image: unauthorized"));
    assert!(e["hint"].as_str().unwrap().contains("credentials"));
    // The native view of the same event: every source, and the references as given.
    assert_eq!(native.len(), 1);
    assert_eq!(native[0]["id"], e["id"]);
    assert_eq!(native[0]["sources"], json!(["api", "cli"]));
    assert_eq!(native[0]["occurrences"], 3);
    assert_eq!(native[0]["image"]["original"], "nginx:1");
}
