//! Notification sinks: alerts, scan results and events leave the pipeline for the places people
//! work. Each destination is an [`Integration`] (one file each); the [`Notifier`] routes a
//! [`Notification`] to integrations and endpoints, throttles storms, retries, and reports every
//! attempt so that the caller can load it into ClickHouse and dead-letter what never arrived.

mod config;
mod deliver;
mod email;
mod http;
mod journal;
mod lanes;
pub mod manual;
mod message;
mod opsgenie;
mod pagerduty;
mod route;
mod sigv4;
mod sink;
mod slack;
mod smtp;
mod sns;
mod source;
mod splunk;
mod teams;
mod text;
mod throttle;
mod webhook;
mod wording;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use config::{ConfigError, IntegrationConfig, NotifyConfig, RetryConfig, RouteConfig};
pub use deliver::{DeliveryAttempt, DeliveryReport, EndpointOutcome, Notifier, Outcome};
pub use email::{EmailConfig, SmtpTls};
pub use message::{
    Alert, CheckStatus, Event, Kind, Notification, RawMessage, ScanResult, Severity,
};
pub use opsgenie::OpsgenieConfig;
pub use pagerduty::PagerDutyConfig;
pub use route::Target;
pub use sink::NotifySink;
pub use slack::SlackConfig;
pub use sns::SnsConfig;
pub use source::{notification, render, scan_result, LinkConfig, Notifiable};
pub use splunk::SplunkConfig;
pub use teams::TeamsConfig;
pub use text::rfc3339;
pub use throttle::{ThrottleConfig, ThrottleEntry};
pub use webhook::WebhookConfig;

/// A destination: formats each kind of [`Notification`] its own way and sends it to one of its
/// endpoints (a webhook URL, a routing key, a recipient, a topic). One call is one attempt;
/// retries, throttling and routing belong to the [`Notifier`].
pub trait Integration: Send + Sync {
    /// The integration's name in the config (`[notify.integrations.<name>]`).
    fn name(&self) -> &str;

    /// The endpoints, in config order, as they may be logged and stored: secrets redacted.
    fn endpoints(&self) -> &[String];

    /// Formats `notification` for endpoint `endpoint` (an index into [`Self::endpoints`]) and
    /// makes one delivery attempt.
    fn send<'a>(&'a self, endpoint: usize, notification: &'a Notification) -> SendFuture<'a>;
}

/// What [`Integration::send`] returns.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<Sent, SendError>> + Send + 'a>>;

/// A successful attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// The HTTP status, or the SMTP reply code to the end of DATA.
    pub status: u16,
}

/// Why one attempt failed, and whether another may succeed.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SendError {
    /// The destination answered with a status other than 2xx.
    #[error("HTTP {status}: {body}")]
    Status {
        status: u16,
        /// What the destination asked for in `Retry-After`.
        retry_after: Option<Duration>,
        /// The start of the response body.
        body: String,
        /// 429 and 5xx (and a destination's documented throttling answers) are worth retrying.
        retryable: bool,
    },
    /// No answer within the attempt's timeout.
    #[error("timed out after {0} ms")]
    Timeout(u64),
    /// The connection could not be made or broke.
    #[error("connection failed: {0}")]
    Connect(String),
    /// An SMTP server refused a command; 4xx replies are transient, 5xx permanent.
    #[error("SMTP {code}: {message}")]
    Smtp { code: u16, message: String },
    /// The TLS handshake failed (certificate, name, protocol): fixing it takes a person.
    #[error("TLS: {0}")]
    Tls(String),
    /// The peer broke the protocol (an unreadable reply, a connection closed midway).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The message cannot be sent to this endpoint as it is; retrying will not help.
    #[error("invalid message: {0}")]
    Invalid(String),
}

impl SendError {
    /// Whether another attempt may succeed: 429, 5xx, timeouts, connection and protocol errors,
    /// SMTP 4xx. Other 4xx, TLS failures and invalid messages are final.
    pub fn is_retryable(&self) -> bool {
        match self {
            SendError::Status { retryable, .. } => *retryable,
            SendError::Timeout(_) | SendError::Connect(_) | SendError::Protocol(_) => true,
            SendError::Smtp { code, .. } => (400..500).contains(code),
            SendError::Tls(_) | SendError::Invalid(_) => false,
        }
    }

    /// The HTTP status or SMTP reply code, when there was an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            SendError::Status { status, .. } => Some(*status),
            SendError::Smtp { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The delay the destination asked for.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SendError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// A credential in the config: serialized as the plain string, never shown by `Debug`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself, for signing or a header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("Secret(\"\")")
        } else {
            f.write_str("Secret(***)")
        }
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_string())
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    pub fn alert() -> Alert {
        Alert {
            id: "n-1".into(),
            account: "prod-aws".into(),
            title: "CloudFront HTTPS Only".into(),
            description: "Distributions must redirect HTTP to HTTPS.".into(),
            scan_id: "scan-9".into(),
            status: CheckStatus::Fail,
            severity: Severity::High,
            resources: vec!["arn:aws:cloudfront::1:distribution/E1".into()],
            dedup_key: "cloudfront-https/prod-aws".into(),
            resolved: false,
            url: None,
            tags: vec![],
            occurrences: 1,
            raised_at_ms: None,
            context: vec![],
        }
    }

    pub fn event() -> Event {
        Event {
            id: "e-1".into(),
            account: "prod-aws".into(),
            action: "ConsoleLogin".into(),
            region: "us-east-1".into(),
            caller: "root".into(),
            ip_address: "203.0.113.7".into(),
            message: "The root user signed in.".into(),
            status: CheckStatus::Fail,
            severity: Severity::Critical,
            dedup_key: "root-login/prod-aws".into(),
            tags: vec![],
            occurrences: 1,
            raised_at_ms: Some(1_440_938_160_000),
            original: serde_json::json!({"detail": {"eventName": "ConsoleLogin"}}),
            url: None,
            context: vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug_output() {
        let s = Secret::from("whsec_c2VjcmV0");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(s.expose(), "whsec_c2VjcmV0");
    }

    #[test]
    fn only_transient_failures_are_retryable() {
        let status = |status, retryable| SendError::Status {
            status,
            retry_after: None,
            body: String::new(),
            retryable,
        };
        assert!(status(503, true).is_retryable());
        assert!(!status(400, false).is_retryable());
        assert!(SendError::Timeout(10).is_retryable());
        assert!(SendError::Smtp {
            code: 451,
            message: String::new()
        }
        .is_retryable());
        assert!(!SendError::Smtp {
            code: 550,
            message: String::new()
        }
        .is_retryable());
        assert!(!SendError::Invalid("x".into()).is_retryable());
    }
}
