//! The delivery engine: routes a notification to integrations and endpoints, lets the throttle
//! hold back storms, retries each endpoint with backoff, and reports every attempt and each
//! endpoint's outcome. A dead outcome is the caller's to dead-letter; nothing is dropped
//! silently.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use serde::{Deserialize, Serialize};

use super::config::{ConfigError, NotifyConfig, RetryConfig};
use super::message::Notification;
use super::route::{compile, route, Route, Target};
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
    /// The endpoint's index in the integration's list: with `notification_id` and
    /// `integration`, the key of "already delivered".
    pub endpoint_index: u32,
    /// `retry` (another attempt follows), `delivered` or `dead`: the last two end the delivery.
    pub outcome: String,
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

/// Delivers notifications: built once from the config, then `deliver` per notification.
pub struct Notifier {
    core: Arc<DeliveryCore>,
    routes: Vec<Route>,
    throttle: Throttle,
}

/// What one delivery to one endpoint needs (the integrations and the retry policy), shared by
/// the [`Notifier`] and the delivery lanes.
pub(crate) struct DeliveryCore {
    pub(crate) integrations: HashMap<String, Box<dyn Integration>>,
    pub(crate) retry: RetryConfig,
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
        let routes = compile(&config.routes, &integrations)?;
        Ok(Notifier {
            core: Arc::new(DeliveryCore {
                integrations,
                retry: config.retry.clone(),
            }),
            routes,
            throttle: Throttle::new(config.throttle.clone()),
        })
    }

    pub(crate) fn core(&self) -> Arc<DeliveryCore> {
        self.core.clone()
    }

    /// Every endpoint of every integration, in name then endpoint order.
    pub fn all_targets(&self) -> Vec<Target> {
        let mut names: Vec<&String> = self.core.integrations.keys().collect();
        names.sort();
        names
            .into_iter()
            .flat_map(|name| {
                (0..self.core.integrations[name].endpoints().len()).map(move |i| Target {
                    integration: name.clone(),
                    endpoint: i,
                })
            })
            .collect()
    }

    /// Lets the throttle decide about `n`: `None` when it is held back, else the message to
    /// send (its occurrence count raised by those held back). A delivery is assumed: the key
    /// is silenced for the reminder interval from `now`; a resolution forgets the key.
    pub(crate) fn admit<'a>(
        &mut self,
        n: &'a Notification,
        now: u64,
    ) -> Option<Cow<'a, Notification>> {
        let mut message = Cow::Borrowed(n);
        let Some(key) = n.dedup_key() else {
            return Some(message);
        };
        if n.is_resolved() {
            self.throttle.resolved(key);
            return Some(message);
        }
        match self.throttle.admit(key, n.occurrences(), now) {
            Admission::HoldBack => return None,
            Admission::Send { occurrences } if occurrences != n.occurrences() => {
                message.to_mut().set_occurrences(occurrences);
            }
            Admission::Send { .. } => {}
        }
        self.throttle.delivered(key, now);
        Some(message)
    }

    /// The throttle's entry for `key` (zeros when it remembers nothing), to persist.
    pub(crate) fn throttle_entry(&self, key: &str) -> ThrottleEntry {
        self.throttle.entry(key)
    }

    /// Puts the throttle's entries for some keys back as they were (a batch that could not be
    /// queued).
    pub(crate) fn throttle_rewind(&mut self, before: Vec<ThrottleEntry>) {
        for e in before {
            if e.last_delivered_ms == 0 && e.held_back == 0 {
                self.throttle.resolved(&e.dedup_key);
            } else {
                self.throttle.restore([e]);
            }
        }
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
        route(&self.routes, n)
    }

    /// Routes, throttles and delivers `n`; returns once every endpoint is delivered, throttled
    /// or dead. A report without outcomes means no route matched: there is nothing to
    /// dead-letter.
    pub async fn deliver(&mut self, n: &Notification) -> DeliveryReport {
        let targets = self.targets(n);
        if targets.is_empty() {
            return self.deliver_to(n, &targets).await;
        }
        let key = n.dedup_key().map(str::to_string);
        let before = key.as_deref().map(|k| self.throttle.entry(k));
        let now = now_ms();
        let Some(message) = self.admit(n, now) else {
            return self.throttled(n, &targets);
        };
        let message = message.into_owned();
        let report = self.deliver_to(&message, &targets).await;
        if report.delivered() == 0 && !n.is_resolved() {
            // Nothing went out: the next occurrence must not be silenced by this one.
            self.throttle_rewind(before.into_iter().collect());
        }
        report
    }

    fn throttled(&self, n: &Notification, targets: &[Target]) -> DeliveryReport {
        tracing::debug!(
            id = n.id(),
            key = n.dedup_key(),
            "notification held back by the throttle"
        );
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
        self.core.shown(t)
    }

    /// Delivers `n` to exactly `targets`, without routing or throttling (a replay from the
    /// dead-letter topic, a raw message). Endpoints are served concurrently.
    pub async fn deliver_to(&self, n: &Notification, targets: &[Target]) -> DeliveryReport {
        let runs = targets.iter().map(|t| async {
            let mut attempts = Vec::new();
            let outcome = self
                .core
                .deliver_one(n, t, |a| {
                    attempts.push(a.clone());
                    std::future::ready(())
                })
                .await;
            (outcome, attempts)
        });
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

    /// The throttle's state, to persist across a restart.
    pub fn throttle_snapshot(&self) -> Vec<ThrottleEntry> {
        self.throttle.snapshot()
    }

    /// Loads a state saved by [`Self::throttle_snapshot`].
    pub fn restore_throttle(&mut self, entries: impl IntoIterator<Item = ThrottleEntry>) {
        self.throttle.restore(entries);
    }
}

impl DeliveryCore {
    /// The endpoint as it may be shown: secrets redacted.
    pub(crate) fn shown(&self, t: &Target) -> String {
        self.integrations
            .get(&t.integration)
            .and_then(|i| i.endpoints().get(t.endpoint))
            .cloned()
            .unwrap_or_default()
    }

    /// Delivers `n` to one endpoint with retries; `record` is awaited after every attempt,
    /// before the next one starts (the journal writes it down as it happens).
    pub(crate) async fn deliver_one<F, Fut>(
        &self,
        n: &Notification,
        target: &Target,
        mut record: F,
    ) -> Outcome
    where
        F: FnMut(&DeliveryAttempt) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let Some(integration) = self.integrations.get(&target.integration) else {
            let last_error = format!("no integration named {:?}", target.integration);
            return Outcome::Dead {
                attempts: 0,
                last_error,
            };
        };
        let Some(endpoint) = integration.endpoints().get(target.endpoint) else {
            let last_error = format!("{} has no endpoint {}", target.integration, target.endpoint);
            return Outcome::Dead {
                attempts: 0,
                last_error,
            };
        };
        let timeout = Duration::from_millis(self.retry.timeout_ms);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let at = now_ms();
            let started = Instant::now();
            let result = tokio::time::timeout(timeout, integration.send(target.endpoint, n))
                .await
                .unwrap_or(Err(SendError::Timeout(self.retry.timeout_ms)));
            let delay = result.as_ref().err().and_then(|e| {
                (e.is_retryable() && attempt < self.retry.max_attempts)
                    .then(|| self.retry.delay(attempt, e.retry_after()))
                    .flatten()
            });
            let last = match (&result, delay) {
                (Ok(_), _) => "delivered",
                (Err(_), Some(_)) => "retry",
                (Err(_), None) => "dead",
            };
            let row = DeliveryAttempt {
                notification_id: n.id().to_string(),
                integration: target.integration.clone(),
                endpoint: endpoint.clone(),
                endpoint_index: target.endpoint as u32,
                outcome: last.to_string(),
                attempt,
                status: match &result {
                    Ok(sent) => Some(sent.status),
                    Err(e) => e.status(),
                },
                error: result.as_ref().err().map(ToString::to_string),
                latency_ms: started.elapsed().as_millis() as u64,
                at,
            };
            record(&row).await;
            let error = match result {
                Ok(sent) => {
                    let status = sent.status;
                    return Outcome::Delivered {
                        attempts: attempt,
                        status,
                    };
                }
                Err(e) => e,
            };
            let Some(delay) = delay else {
                let mut last_error = error.to_string();
                if error.is_retryable() && attempt < self.retry.max_attempts {
                    last_error.push_str("; Retry-After exceeds max_retry_after_ms");
                }
                tracing::error!(id = n.id(), integration = %target.integration, endpoint = %endpoint,
                    attempts = attempt, error = %last_error, "notification delivery is dead");
                return Outcome::Dead {
                    attempts: attempt,
                    last_error,
                };
            };
            tracing::warn!(id = n.id(), integration = %target.integration, endpoint = %endpoint,
                attempt, error = %error, retry_in_ms = delay.as_millis() as u64,
                "notification attempt failed");
            tokio::time::sleep(delay).await;
        }
    }
}
