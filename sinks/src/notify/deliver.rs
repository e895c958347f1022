//! The delivery engine: routes a notification to integrations and endpoints, lets the throttle
//! hold back storms, retries each endpoint with backoff, and reports every attempt and each
//! endpoint's outcome. A dead outcome is the caller's to dead-letter; nothing is dropped
//! silently.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::future::join_all;
use serde::{Deserialize, Serialize};

use super::config::{parse_target, ConfigError, NotifyConfig, RetryConfig};
use super::message::{Kind, Notification, Severity};
use super::text::now_ms;
use super::throttle::{Admission, Throttle, ThrottleEntry};
use super::{Integration, SendError};

/// One attempt to deliver one notification to one endpoint: a row for the deliveries table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clickhouse::Row)]
pub struct DeliveryAttempt {
    pub notification_id: String,
    pub integration: String,
    /// The endpoint with its secrets redacted.
    pub endpoint: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// HTTP status or SMTP reply code, when the destination answered.
    pub status: Option<u16>,
    /// Why the attempt failed; `None` when it succeeded.
    pub error: Option<String>,
    pub latency_ms: u64,
    /// When the attempt started, milliseconds since the Unix epoch.
    pub at: u64,
}

/// One endpoint of one integration.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Target {
    pub integration: String,
    pub endpoint: usize,
}

/// How delivery to one endpoint ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The destination accepted it.
    Delivered { attempts: u32, status: u16 },
    /// Held back: a message with the same dedup key went out within the reminder interval.
    Throttled,
    /// Every attempt failed, or one failed for good: dead-letter it.
    Dead { attempts: u32, last_error: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointOutcome {
    pub target: Target,
    /// The endpoint with its secrets redacted.
    pub endpoint: String,
    pub outcome: Outcome,
}

/// What became of one notification.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeliveryReport {
    pub notification_id: String,
    /// Every attempt, in order per endpoint.
    pub attempts: Vec<DeliveryAttempt>,
    /// One per endpoint the notification was routed to; empty when no route matched.
    pub outcomes: Vec<EndpointOutcome>,
}

impl DeliveryReport {
    pub fn delivered(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| matches!(o.outcome, Outcome::Delivered { .. }))
            .count()
    }

    pub fn is_throttled(&self) -> bool {
        !self.outcomes.is_empty()
            && self
                .outcomes
                .iter()
                .all(|o| o.outcome == Outcome::Throttled)
    }

    /// The endpoints to dead-letter, with their last error.
    pub fn dead(&self) -> impl Iterator<Item = &EndpointOutcome> {
        self.outcomes
            .iter()
            .filter(|o| matches!(o.outcome, Outcome::Dead { .. }))
    }
}

struct Route {
    kinds: Vec<Kind>,
    min_severity: Severity,
    tags: Vec<String>,
    targets: Vec<Target>,
}

impl Route {
    fn matches(&self, n: &Notification) -> bool {
        self.kinds.contains(&n.kind())
            && n.severity() >= self.min_severity
            && (self.tags.is_empty() || n.tags().iter().any(|t| self.tags.contains(t)))
    }
}

/// Delivers notifications: built once from the config, then `deliver` per notification.
pub struct Notifier {
    integrations: HashMap<String, Box<dyn Integration>>,
    routes: Vec<Route>,
    retry: RetryConfig,
    throttle: Throttle,
}

impl Notifier {
    /// Builds every integration and checks every route; a bad key is a [`ConfigError`].
    pub fn new(config: &NotifyConfig) -> Result<Self, ConfigError> {
        config.retry.validate()?;
        let client = reqwest::Client::builder()
            .user_agent(concat!("secpipe/", env!("CARGO_PKG_VERSION")))
            // A webhook that redirects could send a signed body elsewhere; treat 3xx as an answer.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_millis(config.retry.timeout_ms))
            .build()
            .map_err(|e| ConfigError::HttpClient(e.to_string()))?;
        let mut integrations = HashMap::new();
        for (name, integration) in &config.integrations {
            integrations.insert(name.clone(), integration.build(name, &client)?);
        }
        let mut routes = Vec::new();
        for (i, r) in config.routes.iter().enumerate() {
            let invalid = |reason: String| ConfigError::Route { route: i, reason };
            if r.kinds.is_empty() || r.kinds.contains(&Kind::Raw) {
                return Err(invalid(
                    "kinds must name result, alert or event (raw messages name their endpoint)"
                        .into(),
                ));
            }
            if r.to.is_empty() {
                return Err(invalid("to is empty".into()));
            }
            let mut targets = Vec::new();
            for t in &r.to {
                let (name, index) = parse_target(t)
                    .ok_or_else(|| invalid(format!("{t:?} is not \"name\" or \"name[i]\"")))?;
                let integration = integrations
                    .get(name)
                    .ok_or_else(|| invalid(format!("no integration named {name:?}")))?;
                let count = integration.endpoints().len();
                match index {
                    Some(i) if i >= count => {
                        return Err(invalid(format!("{name} has {count} endpoints, not {t}")))
                    }
                    Some(i) => targets.push(Target {
                        integration: name.to_string(),
                        endpoint: i,
                    }),
                    None => targets.extend((0..count).map(|i| Target {
                        integration: name.to_string(),
                        endpoint: i,
                    })),
                }
            }
            routes.push(Route {
                kinds: r.kinds.clone(),
                min_severity: r.min_severity,
                tags: r.tags.clone(),
                targets,
            });
        }
        Ok(Notifier {
            integrations,
            routes,
            retry: config.retry.clone(),
            throttle: Throttle::new(config.throttle.clone()),
        })
    }

    /// Where `n` goes: a raw message to the endpoint it names, anything else to the endpoints
    /// of every matching route, each once.
    pub fn targets(&self, n: &Notification) -> Vec<Target> {
        if let Notification::Raw(r) = n {
            return vec![Target {
                integration: r.integration.clone(),
                endpoint: r.endpoint,
            }];
        }
        let mut targets: Vec<Target> = Vec::new();
        for route in self.routes.iter().filter(|r| r.matches(n)) {
            for t in &route.targets {
                if !targets.contains(t) {
                    targets.push(t.clone());
                }
            }
        }
        targets
    }

    /// Routes, throttles and delivers `n`; returns once every endpoint is delivered, throttled
    /// or dead.
    pub async fn deliver(&mut self, n: &Notification) -> DeliveryReport {
        let targets = self.targets(n);
        let now = now_ms();
        let mut message = Cow::Borrowed(n);
        let key = n.dedup_key().filter(|_| !targets.is_empty());
        if let Some(key) = key {
            if n.is_resolved() {
                self.throttle.resolved(key);
            } else {
                match self.throttle.admit(key, n.occurrences(), now) {
                    Admission::HoldBack => {
                        return self.throttled(n, &targets);
                    }
                    Admission::Send { occurrences } if occurrences != n.occurrences() => {
                        message.to_mut().set_occurrences(occurrences);
                    }
                    Admission::Send { .. } => {}
                }
            }
        }
        let report = self.deliver_to(&message, &targets).await;
        if let Some(key) = key {
            if !n.is_resolved() && report.delivered() > 0 {
                self.throttle.delivered(key, now);
            }
        }
        report
    }

    fn throttled(&self, n: &Notification, targets: &[Target]) -> DeliveryReport {
        tracing::debug!(id = n.id(), key = n.dedup_key(), "notification held back by the throttle");
        DeliveryReport {
            notification_id: n.id().to_string(),
            attempts: Vec::new(),
            outcomes: targets
                .iter()
                .map(|t| EndpointOutcome {
                    endpoint: self.shown(t),
                    target: t.clone(),
                    outcome: Outcome::Throttled,
                })
                .collect(),
        }
    }

    fn shown(&self, t: &Target) -> String {
        self.integrations
            .get(&t.integration)
            .and_then(|i| i.endpoints().get(t.endpoint))
            .cloned()
            .unwrap_or_default()
    }

    /// Delivers `n` to exactly `targets`, without routing or throttling (a replay from the
    /// dead-letter topic, a raw message). Endpoints are served concurrently.
    pub async fn deliver_to(&self, n: &Notification, targets: &[Target]) -> DeliveryReport {
        let runs = targets.iter().map(|t| self.deliver_one(n, t));
        let mut report = DeliveryReport {
            notification_id: n.id().to_string(),
            ..Default::default()
        };
        for (target, (outcome, attempts)) in targets.iter().zip(join_all(runs).await) {
            report.attempts.extend(attempts);
            report.outcomes.push(EndpointOutcome {
                endpoint: self.shown(target),
                target: target.clone(),
                outcome,
            });
        }
        report
    }

    async fn deliver_one(
        &self,
        n: &Notification,
        target: &Target,
    ) -> (Outcome, Vec<DeliveryAttempt>) {
        let Some(integration) = self.integrations.get(&target.integration) else {
            let last_error = format!("no integration named {:?}", target.integration);
            return (Outcome::Dead { attempts: 0, last_error }, Vec::new());
        };
        let Some(endpoint) = integration.endpoints().get(target.endpoint) else {
            let last_error = format!("{} has no endpoint {}", target.integration, target.endpoint);
            return (Outcome::Dead { attempts: 0, last_error }, Vec::new());
        };
        let timeout = Duration::from_millis(self.retry.timeout_ms);
        let mut attempts = Vec::new();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let at = now_ms();
            let started = Instant::now();
            let result = tokio::time::timeout(timeout, integration.send(target.endpoint, n))
                .await
                .unwrap_or(Err(SendError::Timeout(self.retry.timeout_ms)));
            attempts.push(DeliveryAttempt {
                notification_id: n.id().to_string(),
                integration: target.integration.clone(),
                endpoint: endpoint.clone(),
                attempt,
                status: match &result {
                    Ok(sent) => Some(sent.status),
                    Err(e) => e.status(),
                },
                error: result.as_ref().err().map(ToString::to_string),
                latency_ms: started.elapsed().as_millis() as u64,
                at,
            });
            let error = match result {
                Ok(sent) => {
                    let status = sent.status;
                    return (Outcome::Delivered { attempts: attempt, status }, attempts);
                }
                Err(e) => e,
            };
            let delay = (error.is_retryable() && attempt < self.retry.max_attempts)
                .then(|| self.retry.delay(attempt, error.retry_after()))
                .flatten();
            let Some(delay) = delay else {
                let mut last_error = error.to_string();
                if error.is_retryable() && attempt < self.retry.max_attempts {
                    last_error.push_str("; Retry-After exceeds max_retry_after_ms");
                }
                tracing::error!(id = n.id(), integration = %target.integration, endpoint = %endpoint,
                    attempts = attempt, error = %last_error, "notification delivery is dead");
                return (Outcome::Dead { attempts: attempt, last_error }, attempts);
            };
            tracing::warn!(id = n.id(), integration = %target.integration, endpoint = %endpoint,
                attempt, error = %error, retry_in_ms = delay.as_millis() as u64,
                "notification attempt failed");
            tokio::time::sleep(delay).await;
        }
    }

    /// The throttle's state, to persist across a restart.
    pub fn throttle_snapshot(&self) -> Vec<ThrottleEntry> {
        self.throttle.snapshot()
    }

    /// Loads a state saved by [`Self::throttle_snapshot`].
    pub fn restore_throttle(&mut self, entries: impl IntoIterator<Item = ThrottleEntry>) {
        self.throttle.restore(entries);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::config::RouteConfig;
    use crate::notify::fixtures::alert;
    use crate::notify::{IntegrationConfig, SlackConfig};

    fn config(routes: Vec<RouteConfig>) -> NotifyConfig {
        let slack = |n: usize| {
            IntegrationConfig::Slack(SlackConfig {
                endpoints: (0..n)
                    .map(|i| format!("https://hooks.slack.com/services/T/B/{i}"))
                    .collect(),
            })
        };
        NotifyConfig {
            integrations: [("team".to_string(), slack(2)), ("ops".to_string(), slack(1))]
                .into_iter()
                .collect(),
            routes,
            ..Default::default()
        }
    }

    #[test]
    fn routes_match_kind_severity_and_tags_and_each_endpoint_appears_once() {
        let notifier = Notifier::new(&config(vec![
            RouteConfig {
                to: vec!["team".into()],
                ..Default::default()
            },
            RouteConfig {
                min_severity: Severity::Critical,
                to: vec!["ops".into(), "team[1]".into()],
                ..Default::default()
            },
            RouteConfig {
                kinds: vec![Kind::Event],
                tags: vec!["prod".into()],
                to: vec!["ops".into()],
                ..Default::default()
            },
        ]))
        .unwrap();
        let mut a = alert();
        let t = |i: &str, e| Target {
            integration: i.into(),
            endpoint: e,
        };
        assert_eq!(
            notifier.targets(&Notification::Alert(a.clone())),
            [t("team", 0), t("team", 1)]
        );
        a.severity = Severity::Critical;
        assert_eq!(
            notifier.targets(&Notification::Alert(a)),
            [t("team", 0), t("team", 1), t("ops", 0)]
        );
        let mut e = crate::notify::fixtures::event();
        e.severity = Severity::Low;
        assert_eq!(notifier.targets(&Notification::Event(e.clone())).len(), 2);
        e.tags = vec!["prod".into()];
        assert_eq!(notifier.targets(&Notification::Event(e)).len(), 3);
    }

    #[test]
    fn bad_routes_are_config_errors() {
        for (to, expected) in [
            ("nobody", "no integration named"),
            ("team[5]", "has 2 endpoints"),
            ("team[", "is not"),
        ] {
            let err = Notifier::new(&config(vec![RouteConfig {
                to: vec![to.into()],
                ..Default::default()
            }]))
            .err()
            .unwrap();
            assert!(err.to_string().contains(expected), "{err}");
            assert!(err.to_string().starts_with("notify.routes[0]"), "{err}");
        }
        let raw = Notifier::new(&config(vec![RouteConfig {
            kinds: vec![Kind::Raw],
            to: vec!["team".into()],
            ..Default::default()
        }]));
        assert!(matches!(raw, Err(ConfigError::Route { .. })));
    }
}
