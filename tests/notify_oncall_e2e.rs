//! The notifier as an on-call engineer depends on it, end to end with real local HTTP
//! receivers, the real broker and the real ClickHouse: a hung endpoint delays no other
//! integration; a kill -9 mid-batch resends nothing that was delivered; `secpipe run` delivers,
//! and a clean scan after a failing one resolves the PagerDuty incident and closes the Opsgenie
//! alert.
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::{extract::State, http::StatusCode, Router};
use common::*;
use secpipe::{roles, runtime::Shutdown};
use secpipe_schemas::{alert::Alert, Codec};
use serde_json::json;

/// One request a receiver got.
#[derive(Debug, Clone)]
struct Request {
    path: String,
    webhook_id: Option<String>,
    body: String,
    at: Instant,
    /// Answered 2xx (false: held until the sender went away).
    acked: bool,
}

/// A local HTTP server standing in for one integration's API. It answers 200, or holds
/// requests without answering (a hung endpoint; or, once `hold_after` requests were answered,
/// every later one).
#[derive(Clone)]
struct Receiver {
    url: String,
    log: Arc<Mutex<Vec<Request>>>,
    hold_after: Arc<AtomicUsize>,
}

impl Receiver {
    async fn start() -> Self {
        let r = Receiver {
            url: String::new(),
            log: Arc::default(),
            hold_after: Arc::new(AtomicUsize::new(usize::MAX)),
        };
        async fn handle(
            State(r): State<Receiver>,
            uri: axum::http::Uri,
            headers: axum::http::HeaderMap,
            body: String,
        ) -> StatusCode {
            // Whether to answer is decided and marked under one lock: concurrent requests
            // never both take the last answer before `hold_after`.
            let answer = {
                let mut log = r.log.lock().unwrap();
                let acked = log.iter().filter(|q| q.acked).count();
                let answer = acked < r.hold_after.load(Ordering::SeqCst);
                log.push(Request {
                    path: uri.to_string(),
                    webhook_id: headers
                        .get("webhook-id")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string),
                    body,
                    at: Instant::now(),
                    acked: answer,
                });
                answer
            };
            if !answer {
                // Hung: never answers; dropped when the sender goes away.
                std::future::pending::<()>().await;
                unreachable!()
            }
            StatusCode::OK
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let r = Receiver { url, ..r };
        let app = Router::new().fallback(handle).with_state(r.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        r
    }

    fn hang(&self) {
        self.hold_after.store(0, Ordering::SeqCst);
    }

    fn requests(&self) -> Vec<Request> {
        self.log.lock().unwrap().clone()
    }

    fn acked(&self) -> Vec<Request> {
        self.requests().into_iter().filter(|r| r.acked).collect()
    }
}

/// The alert id `run-NNN` a request is about (every payload names it).
fn alert_id_in(run: &str, body: &str) -> Option<String> {
    let at = body.find(run)?;
    body.get(at..at + run.len() + 4).map(str::to_string)
}

fn alert(id: &str, tags: &[&str]) -> Alert {
    Alert {
        alert_id: id.into(),
        rule: "scan_failed".into(),
        severity: "high".into(),
        kind: "result".into(),
        title: format!("alert {id}"),
        description: "a scanner reported a cross".into(),
        dedup_key: format!("dedup/{id}"),
        status: "open".into(),
        source_topic: "t".into(),
        source_id: format!("src-{id}"),
        resources: vec!["shop-web".into()],
        tags: tags.iter().map(|t| t.to_string()).collect(),
        attributes: Default::default(),
        raised_at: secpipe_schemas::now_micros(),
    }
}

fn encoded(alerts: &[Alert]) -> Vec<(String, Vec<u8>)> {
    let codec = Codec::<Alert>::new().unwrap();
    alerts
        .iter()
        .map(|a| (a.dedup_key.clone(), codec.encode(a).unwrap()))
        .collect()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Alerts to a fast webhook, one at a time: first alone (the baseline), then each also routed to
/// a webhook that never answers. The fast one's latency (produce acknowledged -> request at the
/// receiver, median of 7) may grow by 200 ms at most.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_endpoint_delays_another_integration_by_at_most_200_ms() {
    let fast = Receiver::start().await;
    let hung = Receiver::start().await;
    hung.hang();
    let mut s = settings("notifyhung");
    fresh_database(&mut s).await;
    s.notifier.group_id = format!("{}.notify", s.loader.group_id);
    s.notifier.batch_max_wait_ms = 10;
    s.notify = serde_json::from_value(json!({
        // The attempt timeout outlasts the test: a timed-out attempt would be sent again and
        // count as another held request.
        "retry": {"max_attempts": 3, "initial_backoff_ms": 100, "max_backoff_ms": 200, "timeout_ms": 60000},
        "integrations": {
            "fast": {"type": "webhook", "endpoints": [format!("{}/fast", fast.url)]},
            "hung": {"type": "webhook", "endpoints": [format!("{}/hung", hung.url)]}
        },
        "routes": [
            {"name": "all", "to": ["fast"]},
            {"name": "page", "tags": ["page"], "to": ["hung"]}
        ]
    }))
    .unwrap();
    require_stack(&s).await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let (trigger, shutdown) = Shutdown::new();
    let task = tokio::spawn(roles::notifier(s.clone(), shutdown));

    let latency = |n: usize| {
        let s = s.clone();
        let fast = fast.clone();
        let run = run.clone();
        async move {
            let before = fast.acked().len();
            let sent = Instant::now();
            produce_many(
                &s,
                &s.kafka.topics.alerts,
                &encoded(&[alert(
                    &format!("{run}-{n:03}"),
                    if n >= 100 { &["page"] } else { &[] },
                )]),
            )
            .await;
            let got = eventually(90, "the fast webhook's delivery", || {
                let fast = fast.clone();
                async move {
                    let acked = fast.acked();
                    (acked.len() > before).then(|| acked[before].at)
                }
            })
            .await;
            got.duration_since(sent)
        }
    };
    // The first delivery waits for the consumer group: not part of the baseline.
    latency(0).await;
    let mut baseline = Vec::new();
    for n in 1..=7 {
        baseline.push(latency(n).await);
    }
    let mut with_hung = Vec::new();
    for n in 100..107 {
        with_hung.push(latency(n).await);
    }
    let base = median(baseline.clone());
    let typical = median(with_hung.clone());
    let worst = *with_hung.iter().max().unwrap();
    eprintln!("fast webhook latency: alone {baseline:?} (median {base:?}); with a hung endpoint on every alert {with_hung:?}");
    // The hung endpoint really held those alerts while the fast one delivered: each of its
    // lane's workers took one and hangs; the rest queue behind them in incident order.
    let held = hung.requests();
    assert!(
        !held.is_empty() && held.len() <= 5,
        "the paging alerts reached the hung endpoint: {}",
        held.len()
    );
    assert!(held.iter().all(|r| !r.acked));
    // The median compares like with like (the broker's own jitter shows in single samples);
    // head-of-line blocking would add the 60 s attempt timeout to every one of them.
    assert!(
        typical <= base + Duration::from_millis(200),
        "a hung endpoint delayed another integration by {:?} (median {typical:?}, baseline {base:?})",
        typical.saturating_sub(base)
    );
    assert!(
        worst < Duration::from_secs(5),
        "no delivery waited for the hung endpoint's timeout: worst {worst:?}"
    );
    trigger.trigger();
    task.await.unwrap().unwrap();
}

/// Four integrations (webhook, Slack, PagerDuty, Opsgenie), 100 alerts in one batch, kill -9 of
/// `secpipe sink notify` while about a quarter of the deliveries were answered and the rest are
/// queued or waiting on an answer, then a restart.
///
/// What it measures: the receivers hold every request after their 25th answered one, and the
/// kill comes once ClickHouse has the attempts of every answered request, i.e. outside the window
/// no process can close (a 2xx received but not yet written down; a crash there resends, which
/// the idempotency keys make harmless at PagerDuty, Opsgenie and webhook receivers that dedupe on
/// `webhook-id`). Held requests were never answered: the sender cannot know they arrived, so
/// they are sent again after the restart, and they count as unanswered, not as duplicates.
/// Expected: every alert answered exactly once per endpoint, `notification_deliveries` holding
/// exactly one `delivered` row per answered request, and nothing queued twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_batch_then_restart_delivers_every_alert_once_per_endpoint() {
    let receivers = [
        ("hook", Receiver::start().await),
        ("slack", Receiver::start().await),
        ("pd", Receiver::start().await),
        ("og", Receiver::start().await),
    ];
    for (_, r) in &receivers {
        r.hold_after.store(25, Ordering::SeqCst);
    }
    let url = |name: &str| {
        receivers
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap()
            .1
            .url
            .clone()
    };
    let mut s = settings("notifykill");
    fresh_database(&mut s).await;
    require_stack(&s).await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let config = std::env::temp_dir().join(format!("secpipe-notifykill-{run}.toml"));
    std::fs::write(
        &config,
        format!(
            r#"
[notify.retry]
max_attempts = 5
initial_backoff_ms = 100
max_backoff_ms = 1000
timeout_ms = 60000

[notify.integrations.hook]
type = "webhook"
endpoints = ["{hook}/hook"]

[notify.integrations.slack]
type = "slack"
endpoints = ["{slack}/services/T0/B0/X"]

[notify.integrations.pd]
type = "pagerduty"
endpoints = ["R0UT1NGKEY0123456789abcdef012345"]
api_url = "{pd}"

[notify.integrations.og]
type = "opsgenie"
endpoints = ["00000000-0000-0000-0000-000000000000"]
api_url = "{og}"

[[notify.routes]]
name = "everything"
to = ["hook", "slack", "pd", "og"]
"#,
            hook = url("hook"),
            slack = url("slack"),
            pd = url("pd"),
            og = url("og"),
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap().to_string();
    let mut env = child_env(&s);
    env.push((
        "SECPIPE__NOTIFIER__GROUP_ID".into(),
        format!("{}.notify", s.loader.group_id),
    ));
    env.push(("SECPIPE__NOTIFIER__BATCH_MAX_ROWS".into(), "100".into()));
    env.push(("SECPIPE__NOTIFIER__BATCH_MAX_WAIT_MS".into(), "500".into()));
    let alerts: Vec<Alert> = (0..100)
        .map(|i| alert(&format!("{run}-{i:03}"), &[]))
        .collect();
    produce_many(&s, &s.kafka.topics.alerts, &encoded(&alerts)).await;
    let mut notifier = Role::start(&["--config", &cfg, "sink", "notify"], &env);

    // Mid-batch: every receiver answered 25 and holds the rest; every answer is written down.
    eventually(90, "25 answered deliveries at every receiver", || async {
        receivers
            .iter()
            .all(|(_, r)| r.acked().len() >= 25)
            .then_some(())
    })
    .await;
    let client = s.clickhouse.client();
    let delivered_rows = || {
        let client = client.clone();
        let run = run.clone();
        async move {
            client
                .query("SELECT integration, notification_id FROM notification_deliveries WHERE startsWith(notification_id, ?) AND outcome = 'delivered'")
                .bind(run)
                .fetch_all::<(String, String)>()
                .await
                .unwrap()
        }
    };
    eventually(30, "the answered deliveries written down", || async {
        (delivered_rows().await.len() == 100).then_some(())
    })
    .await;
    notifier.kill_9();
    let acked_before: usize = receivers.iter().map(|(_, r)| r.acked().len()).sum();
    let held_at_kill: usize = receivers
        .iter()
        .map(|(_, r)| r.requests().iter().filter(|q| !q.acked).count())
        .sum();
    assert_eq!(
        acked_before, 100,
        "25 per receiver answered before the kill"
    );
    assert!(held_at_kill >= 4, "requests were in flight at the kill");
    for (_, r) in &receivers {
        r.hold_after.store(usize::MAX, Ordering::SeqCst);
    }

    // The restart resumes from the outbox; a consumer-group rebalance after a kill -9 can take
    // tansu 40 s or more, hence the deadlines.
    notifier.restart();
    eventually(120, "every alert answered at every receiver", || async {
        receivers
            .iter()
            .all(|(_, r)| r.acked().len() >= 100)
            .then_some(())
    })
    .await;
    let rows = eventually(60, "every delivery written down", || async {
        let rows = delivered_rows().await;
        (rows.len() >= 400).then_some(rows)
    })
    .await;
    notifier.kill_9();

    let mut raw_total = 0;
    let mut unanswered = 0;
    for (name, r) in &receivers {
        let requests = r.requests();
        raw_total += requests.len();
        unanswered += requests.iter().filter(|q| !q.acked).count();
        let mut answered: Vec<String> = requests
            .iter()
            .filter(|q| q.acked)
            .map(|q| alert_id_in(&run, &q.body).unwrap_or_else(|| panic!("{name}: {}", q.body)))
            .collect();
        answered.sort();
        let count = answered.len();
        answered.dedup();
        assert_eq!(
            count - answered.len(),
            0,
            "{name}: duplicates among the answered requests"
        );
        assert_eq!(answered.len(), 100, "{name}: every alert answered");
        let mut recorded: Vec<String> = rows
            .iter()
            .filter(|(i, _)| i == name)
            .map(|(_, id)| id.clone())
            .collect();
        recorded.sort();
        assert_eq!(
            recorded, answered,
            "{name}: notification_deliveries says delivered exactly what the receiver answered"
        );
        if *name == "hook" {
            assert!(requests
                .iter()
                .filter(|q| q.acked)
                .all(|q| q.webhook_id.as_deref() == alert_id_in(&run, &q.body).as_deref()));
        }
        if *name == "og" {
            assert!(requests.iter().all(|q| q.path == "/v2/alerts"));
        }
    }
    assert_eq!(rows.len(), 400);
    assert_eq!(
        unanswered, held_at_kill,
        "the only unanswered requests are those in flight at the kill"
    );
    assert_eq!(raw_total, 400 + held_at_kill);
    let queued: u64 = client
        .query("SELECT count() FROM notification_outbox WHERE startsWith(notification_id, ?)")
        .bind(&run)
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(queued, 400, "each delivery queued once, across the restart");
    eprintln!("kill -9 mid-batch: 100 answered before the kill, {held_at_kill} in flight at the kill (resent after the restart), 400 answered in all, 0 duplicates");
}

/// `secpipe run` as one process, fed through its gateway: a failing scan reaches a webhook,
/// triggers a PagerDuty incident and creates an Opsgenie alert; a clean scan of the same
/// repository and branch then resolves the incident and closes the alert, under the same key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secpipe_run_delivers_and_a_clean_scan_resolves_pagerduty_and_closes_opsgenie() {
    let hook = Receiver::start().await;
    let pd = Receiver::start().await;
    let og = Receiver::start().await;
    let mut s = settings("notifyrun");
    fresh_database(&mut s).await;
    require_stack(&s).await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let config = std::env::temp_dir().join(format!("secpipe-notifyrun-{run}.toml"));
    std::fs::write(
        &config,
        format!(
            r#"
[[gateway.tokens]]
name = "producer"
sha256 = "{token}"

[notify.retry]
initial_backoff_ms = 100
max_backoff_ms = 1000

[notify.integrations.hook]
type = "webhook"
endpoints = ["{hook}/hook"]

[notify.integrations.pd]
type = "pagerduty"
endpoints = ["R0UT1NGKEY0123456789abcdef012345"]
api_url = "{pd}"

[notify.integrations.og]
type = "opsgenie"
endpoints = ["00000000-0000-0000-0000-000000000000"]
api_url = "{og}"

[[notify.routes]]
name = "everything"
to = ["hook", "pd", "og"]
"#,
            token = secpipe_gateway::hash_token(PRODUCER_TOKEN),
            hook = hook.url,
            pd = pd.url,
            og = og.url,
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap().to_string();
    let gateway = format!("127.0.0.1:{}", free_port());
    let mut env = child_env(&s);
    env.push(("SECPIPE__GATEWAY__LISTEN".into(), gateway.clone()));
    env.push((
        "SECPIPE__NOTIFIER__GROUP_ID".into(),
        format!("{}.notify", s.loader.group_id),
    ));
    let mut secpipe = Role::start(&["--config", &cfg, "run"], &env);
    let repo = format!("repo-{run}");
    let scan = |status: &str| {
        json!({
            "tool": "@ShiftLeft/scan",
            "id": uuid::Uuid::new_v4().to_string(),
            "repo_context": {"branch": "main", "repositoryName": repo,
                "repositoryUri": format!("https://git.example.com/team/{repo}"), "invokedBy": "alice"},
            "repo_type": ["nodejs"],
            "report_summary": {
                "Source code analyzer for JavaScript": {"critical": 0, "high": 2, "medium": 0,
                    "low": 0, "status": status, "tool": "njsscan"}
            }
        })
    };
    let http = reqwest::Client::new();
    let post = |body: serde_json::Value| {
        let http = http.clone();
        let url = format!("http://{gateway}/track");
        async move {
            eventually(60, "the gateway accepts the scan", || {
                let (http, url, body) = (http.clone(), url.clone(), body.clone());
                async move {
                    let resp = http
                        .post(url)
                        .bearer_auth(PRODUCER_TOKEN)
                        .json(&body)
                        .send()
                        .await
                        .ok()?;
                    (resp.status() == 200).then_some(())
                }
            })
            .await
        }
    };
    post(scan("❌")).await;
    // Repositories are keyed by their normalised URI.
    let key = format!("scan_failed/git.example.com/team/{repo}/main");
    eventually(
        120,
        "the failing scan at the webhook, PagerDuty and Opsgenie",
        || async {
            (!hook.acked().is_empty() && !pd.acked().is_empty() && !og.acked().is_empty())
                .then_some(())
        },
    )
    .await;
    let alert: serde_json::Value = serde_json::from_str(&hook.acked()[0].body).unwrap();
    assert!(
        alert.to_string().contains(&key),
        "the webhook got the scan alert: {alert}"
    );
    let trigger: serde_json::Value = serde_json::from_str(&pd.acked()[0].body).unwrap();
    assert_eq!(
        (
            trigger["event_action"].as_str(),
            trigger["dedup_key"].as_str()
        ),
        (Some("trigger"), Some(key.as_str()))
    );
    let created: serde_json::Value = serde_json::from_str(&og.acked()[0].body).unwrap();
    assert_eq!(created["alias"], key);

    post(scan("✅")).await;
    eventually(120, "the resolution at PagerDuty and Opsgenie", || async {
        (pd.acked().len() >= 2 && og.acked().len() >= 2).then_some(())
    })
    .await;
    let resolve: serde_json::Value = serde_json::from_str(&pd.acked()[1].body).unwrap();
    assert_eq!(
        (
            resolve["event_action"].as_str(),
            resolve["dedup_key"].as_str()
        ),
        (Some("resolve"), Some(key.as_str()))
    );
    let close = &og.acked()[1];
    assert_eq!(
        close.path,
        format!("/v2/alerts/scan_failed%2Fgit.example.com%2Fteam%2F{repo}%2Fmain/close?identifierType=alias")
    );
    eventually(30, "the resolved message at the webhook", || async {
        hook.acked()
            .iter()
            .any(|r| r.body.contains("resolved") && r.body.contains(&key))
            .then_some(())
    })
    .await;
    let status = secpipe.sigterm(30);
    assert!(status.success(), "secpipe run exits cleanly: {status}");
}

/// A `secpipe` command that runs to its end, with a config file holding `notify`.
fn secpipe_command(config: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_secpipe"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .unwrap()
}

/// The reference's `raw` and a test notification, by hand: `secpipe notify raw` sends a payload
/// as it is to the endpoint named on the command line, `secpipe notify test` a test alert to
/// every endpoint of an integration; a dead endpoint makes either exit non-zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_raw_and_notify_test_reach_their_receivers() {
    let configured = Receiver::start().await;
    let elsewhere = Receiver::start().await;
    let pd = Receiver::start().await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let config = std::env::temp_dir().join(format!("secpipe-notifycli-{run}.toml"));
    std::fs::write(
        &config,
        format!(
            r#"
[notify.retry]
max_attempts = 2
initial_backoff_ms = 10
max_backoff_ms = 20
timeout_ms = 2000

[notify.integrations.hook]
type = "webhook"
endpoints = ["{configured}/hook"]

[notify.integrations.pd]
type = "pagerduty"
endpoints = ["R0UT1NGKEY0123456789abcdef012345"]
api_url = "{pd}"

[notify.integrations.down]
type = "webhook"
endpoints = ["http://127.0.0.1:{closed}/nobody-listens"]
"#,
            configured = configured.url,
            pd = pd.url,
            closed = free_port(),
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let payload = std::env::temp_dir().join(format!("secpipe-notifycli-{run}.json"));
    std::fs::write(
        &payload,
        format!(r#"{{"text": "raw {run}", "custom": [1, 2]}}"#),
    )
    .unwrap();
    let payload = payload.to_str().unwrap();
    let cli = |args: Vec<String>| {
        let cfg = cfg.to_string();
        async move {
            tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                secpipe_command(&cfg, &args)
            })
            .await
            .unwrap()
        }
    };

    // raw, to an endpoint given on the command line rather than the configured one.
    let out = cli(vec![
        "notify".into(),
        "raw".into(),
        "hook".into(),
        "--endpoint".into(),
        format!("{}/given", elsewhere.url),
        payload.into(),
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = elsewhere.acked();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, "/given");
    let body: serde_json::Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(
        body,
        json!({"text": format!("raw {run}"), "custom": [1, 2]})
    );
    assert!(configured.requests().is_empty(), "only the endpoint given");
    // raw to PagerDuty's configured endpoint: the payload as it is, with its routing key.
    let out = cli(vec![
        "notify".into(),
        "raw".into(),
        "pd".into(),
        payload.into(),
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let event: serde_json::Value = serde_json::from_str(&pd.acked()[0].body).unwrap();
    assert_eq!(event["text"], format!("raw {run}"));
    assert_eq!(event["routing_key"], "R0UT1NGKEY0123456789abcdef012345");

    // test, to every configured endpoint of the integration.
    let out = cli(vec!["notify".into(), "test".into(), "hook".into()]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("delivered"));
    let got = configured.acked();
    assert_eq!(got.len(), 1);
    let body: serde_json::Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(body["type"], "secpipe.alert");
    assert_eq!(body["data"]["title"], "secpipe test notification");

    // Failures say so and exit non-zero.
    let out = cli(vec!["notify".into(), "test".into(), "down".into()]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAILED after 2 attempt(s)"));
    let out = cli(vec!["notify".into(), "test".into(), "nosuch".into()]).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("notify.integrations.nosuch: not configured"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(vec![
        "notify".into(),
        "raw".into(),
        "hook".into(),
        cfg.into(),
    ])
    .await;
    assert!(
        !out.status.success(),
        "a payload that is not JSON is refused"
    );
}

/// The reference's `result`: a route with `kinds = ["result"]` gets one summary per scan report
/// (pass, warn, fail, unknown, new risks, per repository), with the repository as its link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_route_gets_a_summary_per_scan() {
    use secpipe_schemas::scan::{RepoContext, ScanReport, ScannerSummary};
    let hook = Receiver::start().await;
    let alerts_only = Receiver::start().await;
    let mut s = settings("notifyresult");
    fresh_database(&mut s).await;
    s.notifier.group_id = format!("{}.notify", s.loader.group_id);
    s.notify = serde_json::from_value(json!({
        "integrations": {
            "summaries": {"type": "webhook", "endpoints": [format!("{}/results", hook.url)]},
            "pager": {"type": "webhook", "endpoints": [format!("{}/alerts", alerts_only.url)]}
        },
        "routes": [
            {"name": "scan summaries", "kinds": ["result"], "to": ["summaries"]},
            {"name": "alerts", "to": ["pager"]}
        ]
    }))
    .unwrap();
    require_stack(&s).await;
    let (trigger, shutdown) = Shutdown::new();
    let task = tokio::spawn(roles::notifier(s.clone(), shutdown));
    let scan_id = uuid::Uuid::new_v4().to_string();
    let summary = |scanner: &str, status: &str, critical, high| ScannerSummary {
        scanner: scanner.into(),
        tool: None,
        critical,
        high,
        medium: 1,
        low: 1,
        status: status.into(),
    };
    let report = ScanReport {
        id: scan_id.clone(),
        scan_mode: Some("ci".into()),
        tool: None,
        repo_context: RepoContext {
            branch: Some("main".into()),
            repository_name: Some("shop-web".into()),
            repository_uri: Some("https://git.example.com/shop/web".into()),
            invoked_by: Some("alice".into()),
            ..Default::default()
        },
        repo_type: vec!["nodejs".into()],
        team: Some("shop".into()),
        report_summary: vec![
            summary("njsscan", "❌", 2, 1),
            summary("gitleaks", "✅", 0, 0),
            summary("depscan", "✅", 0, 3),
        ],
        origin: "track".into(),
        received_at: secpipe_schemas::now_micros(),
    };
    let codec = Codec::<ScanReport>::new().unwrap();
    produce_many(
        &s,
        &s.kafka.topics.scan_results,
        &[("shop-web".into(), codec.encode(&report).unwrap())],
    )
    .await;
    let got = eventually(90, "the scan summary at the webhook", || async {
        hook.acked().first().cloned()
    })
    .await;
    let body: serde_json::Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(body["type"], "secpipe.result");
    let r = &body["data"];
    assert_eq!(
        (
            r["pass"].as_u64(),
            r["warn"].as_u64(),
            r["fail"].as_u64(),
            r["unknown"].as_u64(),
            r["new_risks"].as_u64()
        ),
        (Some(2), Some(0), Some(1), Some(0), Some(6))
    );
    assert_eq!(r["account"], "shop-web");
    assert_eq!(r["scan_id"], scan_id.as_str());
    assert_eq!(r["url"], "https://git.example.com/shop/web");
    assert_eq!(
        got.webhook_id.as_deref(),
        Some(format!("result/{scan_id}").as_str())
    );
    trigger.trigger();
    task.await.unwrap().unwrap();
    assert!(
        alerts_only.requests().is_empty(),
        "a route without kind result gets no scan summaries"
    );
}

/// The admin-only HTTP equivalents: `POST /v1/admin/notify/{integration}/test` and `.../raw`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_send_test_and_raw_notifications_through_the_gateway() {
    use secpipe_gateway::{hash_token, Role as TokenRole, TokenConfig};
    let hook = Receiver::start().await;
    let mut s = settings("notifyadmin");
    s.gateway.tokens.push(TokenConfig {
        name: "admin".into(),
        sha256: hash_token("test-admin-token"),
        role: TokenRole::Admin,
        kinds: vec![],
        rate_per_sec: 0,
    });
    s.notify = serde_json::from_value(json!({
        "retry": {"max_attempts": 1, "timeout_ms": 2000},
        "integrations": {"hook": {"type": "webhook", "endpoints": [format!("{}/hook", hook.url)]}}
    }))
    .unwrap();
    require_stack(&s).await;
    let pipeline = Pipeline::gateway_only(&s).await;
    let http = reqwest::Client::new();
    let refused = http
        .post(pipeline.url("/v1/admin/notify/hook/test"))
        .bearer_auth(ANALYST_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert!(hook.requests().is_empty());

    let resp = http
        .post(pipeline.url("/v1/admin/notify/hook/test"))
        .bearer_auth("test-admin-token")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let answer: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(answer["outcomes"][0]["outcome"], "delivered");
    let body: serde_json::Value = serde_json::from_str(&hook.acked()[0].body).unwrap();
    assert_eq!(body["data"]["title"], "secpipe test notification");

    let resp = http
        .post(pipeline.url("/v1/admin/notify/hook/raw"))
        .bearer_auth("test-admin-token")
        .json(&json!({"hello": "raw"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(hook.acked()[1].body, r#"{"hello":"raw"}"#);

    let unknown = http
        .post(pipeline.url("/v1/admin/notify/nosuch/test"))
        .bearer_auth("test-admin-token")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let not_json = http
        .post(pipeline.url("/v1/admin/notify/hook/raw"))
        .bearer_auth("test-admin-token")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);
    pipeline.stop().await;
}

/// The throttle survives a restart: a repeat of a delivered alert inside the reminder interval
/// is held back by the next notifier process too (it loads `notification_throttle`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_throttle_survives_a_restart() {
    let hook = Receiver::start().await;
    let mut s = settings("notifythrottle");
    fresh_database(&mut s).await;
    s.notifier.group_id = format!("{}.notify", s.loader.group_id);
    s.notifier.batch_max_wait_ms = 10;
    s.notify = serde_json::from_value(json!({
        "throttle": {"reminder_interval_ms": 3_600_000},
        "integrations": {"hook": {"type": "webhook", "endpoints": [format!("{}/hook", hook.url)]}},
        "routes": [{"to": ["hook"]}]
    }))
    .unwrap();
    require_stack(&s).await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let first = alert(&format!("{run}-001"), &[]);
    let mut repeat = alert(&format!("{run}-002"), &[]);
    repeat.dedup_key = first.dedup_key.clone();
    let other = alert(&format!("{run}-003"), &[]);

    let (trigger, shutdown) = Shutdown::new();
    let task = tokio::spawn(roles::notifier(s.clone(), shutdown));
    produce_many(
        &s,
        &s.kafka.topics.alerts,
        &encoded(std::slice::from_ref(&first)),
    )
    .await;
    eventually(90, "the first alert delivered", || async {
        (!hook.acked().is_empty()).then_some(())
    })
    .await;
    trigger.trigger();
    task.await.unwrap().unwrap();

    // A new process: the repeat (same dedup key) is held back, another key goes out.
    let (trigger, shutdown) = Shutdown::new();
    let task = tokio::spawn(roles::notifier(s.clone(), shutdown));
    produce_many(
        &s,
        &s.kafka.topics.alerts,
        &encoded(&[repeat, other.clone()]),
    )
    .await;
    let total = records_in(&s, &s.kafka.topics.alerts);
    let group = s.notifier.group_id.clone();
    eventually(90, "both new alerts consumed and committed", || {
        let (s, group) = (s.clone(), group.clone());
        async move {
            tokio::task::spawn_blocking(move || committed(&s, &group, &s.kafka.topics.alerts))
                .await
                .unwrap()
                .eq(&total)
                .then_some(())
        }
    })
    .await;
    eventually(30, "the other alert delivered", || async {
        (hook.acked().len() >= 2).then_some(())
    })
    .await;
    trigger.trigger();
    task.await.unwrap().unwrap();
    let ids: Vec<Option<String>> = hook.acked().into_iter().map(|r| r.webhook_id).collect();
    assert_eq!(
        ids,
        [Some(first.alert_id.clone()), Some(other.alert_id.clone())],
        "the repeat was held back across the restart"
    );
}
