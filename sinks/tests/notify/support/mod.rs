//! Real local destinations for the notification tests: an HTTP receiver (axum on
//! 127.0.0.1:0) that records every request and answers from a script, and an SMTP server with
//! STARTTLS (tokio + rustls, a self-signed certificate from rcgen).

pub mod smtp;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use secpipe_sinks::notify::{
    Alert, CheckStatus, Event, IntegrationConfig, Kind, NotifyConfig, RetryConfig, RouteConfig,
    ScanResult, Severity, ThrottleConfig,
};
use tokio::task::JoinHandle;

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// The path as sent, percent-encoding kept.
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Recorded {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }
}

/// An answer of the receiver.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    /// Waited before answering (a slow destination).
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: String::new(),
            delay: Duration::ZERO,
        }
    }

    pub fn body(mut self, body: &str) -> Self {
        self.body = body.to_string();
        self
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_string()));
        self
    }

    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

#[derive(Clone)]
struct Shared {
    requests: Arc<Mutex<Vec<Recorded>>>,
    script: Arc<Mutex<VecDeque<Reply>>>,
    default: Reply,
}

/// An HTTP destination on 127.0.0.1: answers from `script` in order, then `default` forever.
pub struct Receiver {
    pub addr: SocketAddr,
    shared: Shared,
    task: JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn record(State(shared): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, 16 << 20).await.unwrap_or_default();
    shared.requests.lock().unwrap().push(Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: parts.headers,
        body: body.to_vec(),
        at: Instant::now(),
    });
    let reply = shared
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| shared.default.clone());
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut response = (
        StatusCode::from_u16(reply.status).unwrap(),
        Body::from(reply.body),
    )
        .into_response();
    for (name, value) in reply.headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

impl Receiver {
    /// A receiver answering `default` to everything.
    pub async fn start(default: Reply) -> Self {
        Self::scripted(Vec::new(), default).await
    }

    /// A receiver answering 200 to everything.
    pub async fn ok() -> Self {
        Self::start(Reply::status(200).body("ok")).await
    }

    pub async fn scripted(script: Vec<Reply>, default: Reply) -> Self {
        let shared = Shared {
            requests: Arc::default(),
            script: Arc::new(Mutex::new(script.into())),
            default,
        };
        let app = Router::new().fallback(record).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver { addr, shared, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }
}

/// Retries in milliseconds, so that a test of five attempts takes a few.
pub fn fast_retry() -> RetryConfig {
    RetryConfig {
        max_attempts: 3,
        initial_backoff_ms: 1,
        max_backoff_ms: 5,
        max_retry_after_ms: 5_000,
        timeout_ms: 2_000,
    }
}

/// A config with these integrations and one route taking everything to all of them.
pub fn config(integrations: Vec<(&str, IntegrationConfig)>) -> NotifyConfig {
    let names: Vec<String> = integrations.iter().map(|(n, _)| n.to_string()).collect();
    NotifyConfig {
        retry: fast_retry(),
        throttle: ThrottleConfig {
            reminder_interval_ms: 0,
            ..Default::default()
        },
        integrations: integrations
            .into_iter()
            .map(|(n, c)| (n.to_string(), c))
            .collect(),
        routes: vec![RouteConfig {
            kinds: vec![Kind::Result, Kind::Alert, Kind::Event],
            to: names,
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub fn alert(id: &str) -> Alert {
    Alert {
        id: id.into(),
        account: "prod-aws".into(),
        title: "CloudFront HTTPS Only".into(),
        description: "Distributions must redirect HTTP to HTTPS.".into(),
        scan_id: "scan-42".into(),
        status: CheckStatus::Fail,
        severity: Severity::High,
        resources: vec![
            "arn:aws:cloudfront::123456789012:distribution/E1".into(),
            "arn:aws:cloudfront::123456789012:distribution/E2".into(),
        ],
        dedup_key: "cloudfront-https/prod-aws".into(),
        resolved: false,
        url: Some("https://secpipe.example.com/scans/scan-42".into()),
        tags: vec!["prod".into()],
        occurrences: 1,
        raised_at_ms: Some(1_700_000_000_000),
        context: vec![],
    }
}

pub fn event(id: &str) -> Event {
    Event {
        id: id.into(),
        account: "prod-aws".into(),
        action: "ConsoleLogin".into(),
        region: "us-east-1".into(),
        caller: "root".into(),
        ip_address: "203.0.113.7".into(),
        message: "The root user signed in to the console.".into(),
        status: CheckStatus::Fail,
        severity: Severity::Critical,
        dedup_key: "root-login/prod-aws".into(),
        tags: vec!["prod".into()],
        occurrences: 1,
        raised_at_ms: Some(1_700_000_000_000),
        original: serde_json::json!({"detail-type": "AWS Console Sign In via CloudTrail",
            "detail": {"eventName": "ConsoleLogin", "sourceIPAddress": "203.0.113.7"}}),
        url: None,
        context: vec![],
    }
}

pub fn result(id: &str) -> ScanResult {
    ScanResult {
        id: id.into(),
        account: "shop-web".into(),
        scan_id: "scan-7".into(),
        pass: 120,
        warn: 4,
        fail: 2,
        unknown: 1,
        new_risks: 1,
        url: None,
        tags: vec![],
        raised_at_ms: Some(1_700_000_000_000),
    }
}
