//! What the notification sinks deliver: the four kinds of message of the integration interface
//! (raw, result, alert, event), with a stable id, and a dedup key for alerts and events.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How serious a notification is, least severe first (the words of the `Alert` schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// The lowercase word, as in config and payloads.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a check or an event rule ended: the reference's `result` 1 (WARN) or 2 (FAIL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Warn,
    Fail,
}

impl CheckStatus {
    /// `WARN` or `FAIL`, as reports print it.
    pub fn label(self) -> &'static str {
        match self {
            CheckStatus::Warn => "WARN",
            CheckStatus::Fail => "FAIL",
        }
    }
}

/// The kind of a notification, as routes name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Raw,
    Result,
    Alert,
    Event,
}

impl Kind {
    /// The lowercase word, as in config and payloads.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Raw => "raw",
            Kind::Result => "result",
            Kind::Alert => "alert",
            Kind::Event => "event",
        }
    }
}

/// One message for the notification sinks. Every kind has a stable `id` (a redelivery after a
/// restart carries the same one); alerts and events also carry the `dedup_key` that groups
/// repeats of one condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notification {
    /// A payload already in the destination's format, for one endpoint of one integration.
    Raw(RawMessage),
    /// The counts of a finished scan report.
    Result(ScanResult),
    /// One check that ended in WARN or FAIL (or its resolution).
    Alert(Alert),
    /// A real-time event a rule marked as a risk.
    Event(Event),
}

/// A payload sent as it is (after the integration's framing: signature, token, envelope).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawMessage {
    pub id: String,
    /// Name of the integration in the config.
    pub integration: String,
    /// Index of the endpoint in that integration's list. Default 0.
    #[serde(default)]
    pub endpoint: usize,
    /// The destination's own JSON.
    pub payload: serde_json::Value,
}

/// A scan report's result counts for an account or repository.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ScanResult {
    pub id: String,
    /// The account or repository the scan covered.
    pub account: String,
    pub scan_id: String,
    #[serde(default)]
    pub pass: u64,
    #[serde(default)]
    pub warn: u64,
    #[serde(default)]
    pub fail: u64,
    #[serde(default)]
    pub unknown: u64,
    #[serde(default)]
    pub new_risks: u64,
    /// Link to the full report, when there is one.
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// When the scan finished, milliseconds since the Unix epoch.
    #[serde(default)]
    pub raised_at_ms: Option<u64>,
}

/// One check's WARN or FAIL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub id: String,
    pub account: String,
    /// The check's name, e.g. "CloudFront HTTPS Only".
    pub title: String,
    #[serde(default)]
    pub description: String,
    pub scan_id: String,
    pub status: CheckStatus,
    pub severity: Severity,
    /// Affected resources, when the check names them.
    #[serde(default)]
    pub resources: Vec<String>,
    /// Groups repeats of this condition; a resolution carries the same key.
    pub dedup_key: String,
    /// The condition is over: integrations that track incidents close them.
    #[serde(default)]
    pub resolved: bool,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// How many occurrences this message stands for; the throttle raises it on a reminder.
    #[serde(default = "one")]
    pub occurrences: u64,
    #[serde(default)]
    pub raised_at_ms: Option<u64>,
    /// Who or what else is worth naming, as (label, value): the person who invoked the scan,
    /// the cluster, the namespace.
    #[serde(default)]
    pub context: Vec<(String, String)>,
}

/// A real-time event (an API call, a login) that a rule rated WARN or FAIL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    pub account: String,
    /// The API call or action, e.g. "ConsoleLogin".
    pub action: String,
    #[serde(default)]
    pub region: String,
    /// Who did it.
    #[serde(default)]
    pub caller: String,
    #[serde(default)]
    pub ip_address: String,
    /// Why the rule rated it so.
    #[serde(default)]
    pub message: String,
    pub status: CheckStatus,
    pub severity: Severity,
    pub dedup_key: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default = "one")]
    pub occurrences: u64,
    #[serde(default)]
    pub raised_at_ms: Option<u64>,
    /// The whole original event.
    #[serde(default)]
    pub original: serde_json::Value,
    /// Where to look further (an admin page, a dashboard).
    #[serde(default)]
    pub url: Option<String>,
    /// As [`Alert::context`].
    #[serde(default)]
    pub context: Vec<(String, String)>,
}

fn one() -> u64 {
    1
}

impl Notification {
    pub fn id(&self) -> &str {
        match self {
            Notification::Raw(r) => &r.id,
            Notification::Result(r) => &r.id,
            Notification::Alert(a) => &a.id,
            Notification::Event(e) => &e.id,
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Notification::Raw(_) => Kind::Raw,
            Notification::Result(_) => Kind::Result,
            Notification::Alert(_) => Kind::Alert,
            Notification::Event(_) => Kind::Event,
        }
    }

    /// The key under which repeats are throttled and destinations deduplicate: an alert's or an
    /// event's `dedup_key`; a result or a raw message is its own condition (`None`).
    pub fn dedup_key(&self) -> Option<&str> {
        match self {
            Notification::Alert(a) => Some(&a.dedup_key),
            Notification::Event(e) => Some(&e.dedup_key),
            _ => None,
        }
    }

    /// The key an integration with incident dedup uses: the dedup key, else one derived from
    /// the id (stable across redeliveries of this message).
    pub fn incident_key(&self) -> String {
        match self.dedup_key() {
            Some(k) => k.to_string(),
            None => format!("secpipe/{}/{}", self.kind().as_str(), self.id()),
        }
    }

    /// Severity for routing. A result is `high` when something failed or a new risk appeared,
    /// `medium` with warnings only, else `info`; a raw message is `info`.
    pub fn severity(&self) -> Severity {
        match self {
            Notification::Raw(_) => Severity::Info,
            Notification::Result(r) if r.fail > 0 || r.new_risks > 0 => Severity::High,
            Notification::Result(r) if r.warn > 0 => Severity::Medium,
            Notification::Result(_) => Severity::Info,
            Notification::Alert(a) => a.severity,
            Notification::Event(e) => e.severity,
        }
    }

    pub fn tags(&self) -> &[String] {
        match self {
            Notification::Raw(_) => &[],
            Notification::Result(r) => &r.tags,
            Notification::Alert(a) => &a.tags,
            Notification::Event(e) => &e.tags,
        }
    }

    /// An alert that closes its condition.
    pub fn is_resolved(&self) -> bool {
        matches!(self, Notification::Alert(a) if a.resolved)
    }

    pub fn account(&self) -> &str {
        match self {
            Notification::Raw(_) => "",
            Notification::Result(r) => &r.account,
            Notification::Alert(a) => &a.account,
            Notification::Event(e) => &e.account,
        }
    }

    pub fn url(&self) -> Option<&str> {
        match self {
            Notification::Result(r) => r.url.as_deref(),
            Notification::Alert(a) => a.url.as_deref(),
            Notification::Event(e) => e.url.as_deref(),
            _ => None,
        }
    }

    /// The context worth naming, as (label, value).
    pub fn context(&self) -> &[(String, String)] {
        match self {
            Notification::Alert(a) => &a.context,
            Notification::Event(e) => &e.context,
            _ => &[],
        }
    }

    pub fn raised_at_ms(&self) -> Option<u64> {
        match self {
            Notification::Raw(_) => None,
            Notification::Result(r) => r.raised_at_ms,
            Notification::Alert(a) => a.raised_at_ms,
            Notification::Event(e) => e.raised_at_ms,
        }
    }

    pub fn occurrences(&self) -> u64 {
        match self {
            Notification::Alert(a) => a.occurrences,
            Notification::Event(e) => e.occurrences,
            _ => 1,
        }
    }

    /// Sets the occurrence count of an alert or event (a reminder after throttling).
    pub(crate) fn set_occurrences(&mut self, n: u64) {
        match self {
            Notification::Alert(a) => a.occurrences = n,
            Notification::Event(e) => e.occurrences = n,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_are_tagged_by_kind_and_default_optional_fields() {
        let n: Notification = serde_json::from_value(serde_json::json!({
            "kind": "alert", "id": "a", "account": "acc", "title": "t", "scan_id": "s",
            "status": "warn", "severity": "medium", "dedup_key": "k"
        }))
        .unwrap();
        assert_eq!(n.kind(), Kind::Alert);
        assert_eq!(n.occurrences(), 1);
        assert_eq!(n.dedup_key(), Some("k"));
        assert_eq!(n.title(), "[WARN] t on acc");
        let back = serde_json::to_value(&n).unwrap();
        assert_eq!(back["kind"], "alert");
    }

    #[test]
    fn result_severity_follows_its_counts() {
        let mut r = ScanResult {
            id: "r".into(),
            ..Default::default()
        };
        assert_eq!(Notification::Result(r.clone()).severity(), Severity::Info);
        r.warn = 1;
        assert_eq!(Notification::Result(r.clone()).severity(), Severity::Medium);
        r.new_risks = 1;
        assert_eq!(Notification::Result(r.clone()).severity(), Severity::High);
        assert_eq!(
            Notification::Result(r).incident_key(),
            "secpipe/result/r".to_string()
        );
    }
}
