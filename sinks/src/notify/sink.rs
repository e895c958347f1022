//! `secpipe sink notify`: alerts from the alerts topic to the configured integrations. Each
//! alert becomes a [`Notification`]; every delivery attempt is recorded in ClickHouse's
//! `notification_deliveries`; an alert that stays undeliverable to some endpoint is returned as
//! rejected, so the runtime dead-letters it with the last error.
use secpipe_schemas::alert::Alert as AlertRecord;

use super::{
    message::{Alert, CheckStatus, Event, Notification, Severity},
    ConfigError, DeliveryAttempt, Notifier, NotifyConfig,
};
use crate::{clickhouse::ClickHouseConfig, Rejected, Sink, SinkError};

/// Attempts kept for the next batch when ClickHouse is down, at most.
const MAX_PENDING_ATTEMPTS: usize = 100_000;

/// The notification sink.
pub struct NotifySink {
    notifier: Notifier,
    clickhouse: Option<clickhouse::Client>,
    pending: Vec<DeliveryAttempt>,
}

impl NotifySink {
    /// `clickhouse`: where attempts are recorded (`None`: not recorded).
    pub fn new(
        cfg: &NotifyConfig,
        clickhouse: Option<&ClickHouseConfig>,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            notifier: Notifier::new(cfg)?,
            clickhouse: clickhouse.map(ClickHouseConfig::client),
            pending: Vec::new(),
        })
    }

    async fn record_attempts(&mut self) {
        let Some(client) = &self.clickhouse else {
            self.pending.clear();
            return;
        };
        if self.pending.is_empty() {
            return;
        }
        let result = async {
            let mut insert = client
                .insert::<DeliveryAttempt>("notification_deliveries")
                .await?;
            for a in &self.pending {
                insert.write(a).await?;
            }
            insert.end().await
        }
        .await;
        match result {
            Ok(()) => self.pending.clear(),
            Err(e) => {
                // Deliveries already happened: never redo them because their log failed.
                tracing::warn!(error = %e, pending = self.pending.len(), "delivery attempts not recorded yet; kept for the next batch");
                if self.pending.len() > MAX_PENDING_ATTEMPTS {
                    let excess = self.pending.len() - MAX_PENDING_ATTEMPTS;
                    self.pending.drain(..excess);
                    tracing::error!(dropped = excess, "delivery attempt log overflowed");
                }
            }
        }
    }
}

fn severity(s: &str) -> Severity {
    match s {
        "critical" => Severity::Critical,
        "high" => Severity::High,
        "medium" => Severity::Medium,
        "low" => Severity::Low,
        _ => Severity::Info,
    }
}

/// The notification for an alert record: runtime events as events, the rest as alerts (a FAIL
/// from high severity up, a WARN below).
pub fn notification(a: &AlertRecord) -> Notification {
    let sev = severity(&a.severity);
    let status = if sev >= Severity::High {
        CheckStatus::Fail
    } else {
        CheckStatus::Warn
    };
    let account = a
        .tags
        .iter()
        .find_map(|t| {
            t.strip_prefix("team:")
                .or_else(|| t.strip_prefix("namespace:"))
        })
        .or_else(|| a.resources.first().map(String::as_str))
        .unwrap_or("secpipe")
        .to_string();
    let raised_at_ms = u64::try_from(a.raised_at / 1000).ok();
    let tags: Vec<String> = a
        .tags
        .iter()
        .cloned()
        .chain(std::iter::once(format!("rule:{}", a.rule)))
        .collect();
    if a.kind == "event" {
        Notification::Event(Event {
            id: a.alert_id.clone(),
            account,
            action: a.rule.clone(),
            region: a.attributes.get("cluster").cloned().unwrap_or_default(),
            caller: a.attributes.get("host").cloned().unwrap_or_default(),
            ip_address: a.attributes.get("ip").cloned().unwrap_or_default(),
            message: format!("{}\n{}", a.title, a.description),
            status,
            severity: sev,
            dedup_key: a.dedup_key.clone(),
            tags,
            occurrences: 1,
            raised_at_ms,
            original: serde_json::to_value(a).unwrap_or_default(),
        })
    } else {
        Notification::Alert(Alert {
            id: a.alert_id.clone(),
            account,
            title: a.title.clone(),
            description: a.description.clone(),
            scan_id: a
                .attributes
                .get("scan_id")
                .cloned()
                .unwrap_or_else(|| a.source_id.clone()),
            status,
            severity: sev,
            resources: a.resources.clone(),
            dedup_key: a.dedup_key.clone(),
            resolved: a.status == "resolved",
            url: None,
            tags,
            occurrences: 1,
            raised_at_ms,
        })
    }
}

impl Sink for NotifySink {
    type Record = AlertRecord;

    async fn write(&mut self, batch: &[AlertRecord]) -> Result<Vec<Rejected>, SinkError> {
        let mut rejected = Vec::new();
        for (index, alert) in batch.iter().enumerate() {
            let report = self.notifier.deliver(&notification(alert)).await;
            let dead: Vec<String> = report
                .dead()
                .map(|o| match &o.outcome {
                    super::Outcome::Dead {
                        attempts,
                        last_error,
                    } => format!(
                        "{} {} dead after {attempts} attempts: {last_error}",
                        o.target.integration, o.endpoint
                    ),
                    _ => String::new(),
                })
                .collect();
            for a in &report.attempts {
                let outcome = if a.error.is_none() {
                    "delivered"
                } else {
                    "failed"
                };
                metrics::counter!("secpipe_notify_attempts_total", "integration" => a.integration.clone(), "outcome" => outcome)
                    .increment(1);
                metrics::histogram!("secpipe_notify_attempt_seconds", "integration" => a.integration.clone())
                    .record(a.latency_ms as f64 / 1000.0);
            }
            self.pending.extend(report.attempts);
            if !dead.is_empty() {
                rejected.push(Rejected {
                    index,
                    reason: dead.join("; "),
                });
            }
        }
        self.record_attempts().await;
        Ok(rejected)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn record(kind: &str, severity: &str) -> AlertRecord {
        AlertRecord {
            alert_id: "a1".into(),
            rule: "scan_failed".into(),
            severity: severity.into(),
            kind: kind.into(),
            title: "Scan of web failed".into(),
            description: "details".into(),
            dedup_key: "scan_failed/web/main".into(),
            status: "open".into(),
            source_topic: "t".into(),
            source_id: "s1".into(),
            resources: vec!["web".into()],
            tags: vec!["team:shop".into()],
            attributes: BTreeMap::from([("scan_id".into(), "scan-9".into())]),
            raised_at: 1_700_000_000_000_000,
        }
    }

    #[test]
    fn alerts_map_to_the_notification_interface() {
        let Notification::Alert(a) = notification(&record("result", "critical")) else {
            panic!()
        };
        assert_eq!(
            (a.status, a.severity),
            (CheckStatus::Fail, Severity::Critical)
        );
        assert_eq!((a.scan_id.as_str(), a.account.as_str()), ("scan-9", "shop"));
        assert_eq!(a.dedup_key, "scan_failed/web/main");
        assert_eq!(a.raised_at_ms, Some(1_700_000_000_000));
        let Notification::Event(e) = notification(&record("event", "low")) else {
            panic!()
        };
        assert_eq!(
            (e.status, e.action.as_str()),
            (CheckStatus::Warn, "scan_failed")
        );
        assert_eq!(e.original["alert_id"], "a1");
    }
}
