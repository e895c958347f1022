//! The notification sinks' configuration (section `[notify]`): integrations by name, routes
//! from notifications to integrations and endpoints, the retry policy and the throttle.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::{
    EmailConfig, Integration, Kind, LinkConfig, OpsgenieConfig, PagerDutyConfig, Severity,
    SlackConfig, SnsConfig, SplunkConfig, TeamsConfig, ThrottleConfig, WebhookConfig,
};

/// Everything the [`Notifier`](super::Notifier) needs (section `[notify]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    /// Deliveries in progress at once per endpoint (each endpoint has its own lane, so a hung
    /// one only holds itself). One incident's messages keep their order. Default 4.
    pub concurrency_per_endpoint: usize,
    /// Deliveries waiting or in progress per endpoint, at most; past it a new one is dead at
    /// once (dead-lettered), so a hung endpoint under a storm cannot grow memory without
    /// bound. Default 10000.
    pub max_queue_per_endpoint: usize,
    /// A restart resumes deliveries queued within this many hours and not finished. Default 24.
    pub resume_within_hours: u64,
    /// Links back to the source, per kind of source (`[notify.links]`).
    pub links: LinkConfig,
    /// Retries of failed attempts.
    pub retry: RetryConfig,
    /// Throttling of repeated alerts and events.
    pub throttle: ThrottleConfig,
    /// Destinations by name (`[notify.integrations.<name>]`, with `type = "slack"`, ...).
    /// Default none.
    pub integrations: BTreeMap<String, IntegrationConfig>,
    /// Which notifications go where (`[[notify.routes]]`); a notification goes to every
    /// endpoint of every route it matches, once. Default none.
    pub routes: Vec<RouteConfig>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            concurrency_per_endpoint: 4,
            max_queue_per_endpoint: 10_000,
            resume_within_hours: 24,
            links: LinkConfig::default(),
            retry: RetryConfig::default(),
            throttle: ThrottleConfig::default(),
            integrations: BTreeMap::new(),
            routes: Vec::new(),
        }
    }
}

/// Retries (section `[notify.retry]`). Attempt n waits `initial_backoff_ms * 2^(n-1)`, capped
/// at `max_backoff_ms`, with jitter over its upper half; a `Retry-After` answer waits at least
/// that long.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts per endpoint before the delivery is dead (dead-lettered). Default 5.
    pub max_attempts: u32,
    /// Delay before the second attempt. Default 500.
    pub initial_backoff_ms: u64,
    /// Longest delay between attempts. Default 30000.
    pub max_backoff_ms: u64,
    /// Longest `Retry-After` honoured; a destination asking for more makes the delivery dead
    /// at once rather than hold the pipeline. Default 60000.
    pub max_retry_after_ms: u64,
    /// Time allowed for one attempt (connect, send, answer). Default 10000.
    pub timeout_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff_ms: 500,
            max_backoff_ms: 30_000,
            max_retry_after_ms: 60_000,
            timeout_ms: 10_000,
        }
    }
}

impl RetryConfig {
    /// How long to wait after failed attempt number `attempt` (1-based); `None` when the
    /// destination asked for a longer pause than `max_retry_after_ms`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Option<Duration> {
        let exp = 1u64
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u64::MAX);
        let base = self
            .initial_backoff_ms
            .saturating_mul(exp)
            .min(self.max_backoff_ms);
        let jittered = base / 2 + fastrand::u64(0..=base - base / 2);
        let backoff = Duration::from_millis(jittered);
        match retry_after {
            Some(asked) if asked > Duration::from_millis(self.max_retry_after_ms) => None,
            Some(asked) => Some(asked.max(backoff)),
            None => Some(backoff),
        }
    }
}

/// A route (`[[notify.routes]]`): notifications of these kinds, at least this severe, with
/// one of these tags, go to these integrations and endpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouteConfig {
    /// A name for logs. Default empty.
    pub name: String,
    /// `result` (a summary per scan: pass, warn, fail, unknown, new risks), `alert`, `event`.
    /// Default `["alert", "event"]`: scan summaries are only sent where asked for.
    pub kinds: Vec<Kind>,
    /// The least severity that matches: `info`, `low`, `medium`, `high`, `critical`. Default
    /// `info`.
    pub min_severity: Severity,
    /// The notification must carry one of these tags; empty matches any. Default empty.
    pub tags: Vec<String>,
    /// Destinations: `"name"` for every endpoint of integration `name`, `"name[i]"` for its
    /// endpoint `i` (from 0). Required.
    pub to: Vec<String>,
}

impl Default for RouteConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            kinds: vec![Kind::Alert, Kind::Event],
            min_severity: Severity::Info,
            tags: Vec::new(),
            to: Vec::new(),
        }
    }
}

/// One integration, by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum IntegrationConfig {
    Webhook(WebhookConfig),
    Slack(SlackConfig),
    Teams(TeamsConfig),
    Pagerduty(PagerDutyConfig),
    Opsgenie(OpsgenieConfig),
    Splunk(SplunkConfig),
    Email(EmailConfig),
    Sns(SnsConfig),
}

impl IntegrationConfig {
    fn endpoint_count(&self) -> usize {
        match self {
            IntegrationConfig::Webhook(c) => c.endpoints.len(),
            IntegrationConfig::Slack(c) => c.endpoints.len(),
            IntegrationConfig::Teams(c) => c.endpoints.len(),
            IntegrationConfig::Pagerduty(c) => c.endpoints.len(),
            IntegrationConfig::Opsgenie(c) => c.endpoints.len(),
            IntegrationConfig::Splunk(c) => c.endpoints.len(),
            IntegrationConfig::Email(c) => c.endpoints.len(),
            IntegrationConfig::Sns(c) => c.endpoints.len(),
        }
    }

    /// Replaces the endpoints (`secpipe notify raw --endpoint`).
    pub fn set_endpoints(&mut self, endpoints: Vec<String>) {
        let secrets = || {
            endpoints
                .iter()
                .map(|e| super::Secret::new(e.as_str()))
                .collect()
        };
        match self {
            IntegrationConfig::Webhook(c) => c.endpoints = endpoints,
            IntegrationConfig::Slack(c) => c.endpoints = endpoints,
            IntegrationConfig::Teams(c) => c.endpoints = endpoints,
            IntegrationConfig::Pagerduty(c) => c.endpoints = secrets(),
            IntegrationConfig::Opsgenie(c) => c.endpoints = secrets(),
            IntegrationConfig::Splunk(c) => c.endpoints = endpoints,
            IntegrationConfig::Email(c) => c.endpoints = endpoints,
            IntegrationConfig::Sns(c) => c.endpoints = endpoints,
        }
    }

    /// The running integration, sharing `client` (one connection pool for all).
    pub fn build(
        &self,
        name: &str,
        client: &reqwest::Client,
    ) -> Result<Box<dyn Integration>, ConfigError> {
        let invalid = |reason: String| ConfigError::Integration {
            integration: name.to_string(),
            reason,
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(invalid(
                "names are letters, digits, '-', '_' and '.'".into(),
            ));
        }
        if self.endpoint_count() == 0 {
            return Err(invalid("endpoints is empty".into()));
        }
        let built: Box<dyn Integration> = match self {
            IntegrationConfig::Webhook(c) => Box::new(c.build(name, client).map_err(invalid)?),
            IntegrationConfig::Slack(c) => Box::new(c.build(name, client).map_err(invalid)?),
            IntegrationConfig::Teams(c) => Box::new(c.build(name, client).map_err(invalid)?),
            IntegrationConfig::Pagerduty(c) => Box::new(c.build(name, client).map_err(invalid)?),
            IntegrationConfig::Opsgenie(c) => Box::new(c.build(name, client).map_err(invalid)?),
            IntegrationConfig::Splunk(c) => Box::new(c.build(name, client).map_err(invalid)?),
            IntegrationConfig::Email(c) => Box::new(c.build(name).map_err(invalid)?),
            IntegrationConfig::Sns(c) => Box::new(c.build(name, client).map_err(invalid)?),
        };
        Ok(built)
    }
}

/// A configuration the notifier cannot run with; the message names the key.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    #[error("notify.integrations.{integration}: {reason}")]
    Integration { integration: String, reason: String },
    #[error("notify.routes[{route}]: {reason}")]
    Route { route: usize, reason: String },
    #[error("notify.retry: {0}")]
    Retry(String),
    #[error("notify: cannot build the HTTP client: {0}")]
    HttpClient(String),
}

impl RetryConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_attempts == 0 {
            return Err(ConfigError::Retry("max_attempts must be at least 1".into()));
        }
        if self.timeout_ms == 0 {
            return Err(ConfigError::Retry("timeout_ms must be more than 0".into()));
        }
        if self.initial_backoff_ms > self.max_backoff_ms {
            return Err(ConfigError::Retry(
                "initial_backoff_ms is larger than max_backoff_ms".into(),
            ));
        }
        Ok(())
    }
}

/// `"name"` or `"name[i]"`.
pub(crate) fn parse_target(s: &str) -> Option<(&str, Option<usize>)> {
    let (name, index) = match s.strip_suffix(']') {
        None => (s, None),
        Some(rest) => {
            let (name, index) = rest.split_once('[')?;
            (name, Some(index.parse().ok()?))
        }
    };
    (!name.is_empty() && !name.contains(['[', ']'])).then_some((name, index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integrations_are_tagged_by_type_and_refuse_unknown_keys() {
        let cfg: NotifyConfig = serde_json::from_value(serde_json::json!({
            "integrations": {
                "secops": {"type": "slack", "endpoints": ["https://hooks.slack.com/services/a/b/c"]},
                "oncall": {"type": "pagerduty", "endpoints": ["R0UT1NGKEY"]}
            },
            "routes": [{"min_severity": "high", "to": ["oncall"]}]
        }))
        .unwrap();
        assert!(matches!(
            cfg.integrations["secops"],
            IntegrationConfig::Slack(_)
        ));
        match &cfg.integrations["oncall"] {
            IntegrationConfig::Pagerduty(p) => {
                assert_eq!(p.api_url, "https://events.pagerduty.com")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(cfg.routes[0].kinds, [Kind::Alert, Kind::Event]);
        let typo = serde_json::from_value::<NotifyConfig>(serde_json::json!({
            "integrations": {"s": {"type": "slack", "endpoint": ["x"]}}
        }));
        assert!(typo.unwrap_err().to_string().contains("endpoint"));
        let unknown_type = serde_json::from_value::<NotifyConfig>(serde_json::json!({
            "integrations": {"s": {"type": "fax", "endpoints": ["x"]}}
        }));
        assert!(unknown_type.is_err());
    }

    #[test]
    fn the_example_config_parses_and_builds() {
        #[derive(Deserialize)]
        struct File {
            notify: NotifyConfig,
        }
        let file: File = toml::from_str(include_str!("example.toml")).unwrap();
        let cfg = file.notify;
        assert_eq!(cfg.integrations.len(), 8);
        assert_eq!(cfg.retry, RetryConfig::default());
        assert_eq!(cfg.throttle, ThrottleConfig::default());
        assert_eq!(cfg.routes[2].to, ["sms[1]"]);
        let notifier = super::super::Notifier::new(&cfg).unwrap();
        let mut critical = crate::notify::fixtures::event();
        critical.tags = vec!["prod".into()];
        // Four channel integrations, three pagers, and the phone.
        assert_eq!(
            notifier
                .targets(&super::super::Notification::Event(critical))
                .len(),
            8
        );
    }

    #[test]
    fn targets_name_an_integration_and_maybe_an_endpoint() {
        assert_eq!(parse_target("slack"), Some(("slack", None)));
        assert_eq!(parse_target("slack[2]"), Some(("slack", Some(2))));
        assert_eq!(parse_target("slack[x]"), None);
        assert_eq!(parse_target("slack]"), None);
        assert_eq!(parse_target("slack["), None);
    }

    #[test]
    fn backoff_doubles_with_jitter_and_honours_retry_after() {
        let r = RetryConfig {
            initial_backoff_ms: 100,
            max_backoff_ms: 1000,
            max_retry_after_ms: 5000,
            ..Default::default()
        };
        for _ in 0..100 {
            let d1 = r.delay(1, None).unwrap().as_millis();
            assert!((50..=100).contains(&d1), "{d1}");
            let d3 = r.delay(3, None).unwrap().as_millis();
            assert!((200..=400).contains(&d3), "{d3}");
            let d30 = r.delay(30, None).unwrap().as_millis();
            assert!((500..=1000).contains(&d30), "{d30}");
            assert!(r.delay(200, None).unwrap().as_millis() <= 1000);
        }
        let asked = Duration::from_secs(2);
        assert_eq!(r.delay(1, Some(asked)), Some(asked));
        assert_eq!(r.delay(1, Some(Duration::from_secs(6))), None);
    }
}
