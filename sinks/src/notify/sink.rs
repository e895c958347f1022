//! `secpipe sink notify`: alerts from the alerts topic to the configured integrations. Each
//! alert becomes a [`Notification`]; the throttle decides, every delivery (alert, integration,
//! endpoint) is written to the outbox and handed to its endpoint's lane, and the batch is
//! acknowledged: a hung endpoint never holds the consumer or another endpoint. Lanes record each
//! attempt as it happens; a delivery that dies comes back through
//! [`Sink::late_rejections`] for the dead-letter topic. See [`super::journal`] for what a restart
//! resumes.
use std::collections::BTreeSet;
use std::sync::Arc;

use secpipe_schemas::alert::Alert as AlertRecord;
use secpipe_schemas::Codec;

use super::journal::{Journal, QueuedDelivery};
use super::lanes::Lanes;
use super::text::now_ms;
use super::{
    message::{Alert, CheckStatus, Event, Notification, Severity},
    ConfigError, Notifier, NotifyConfig,
};
use crate::{clickhouse::ClickHouseConfig, LateRejected, Rejected, Sink, SinkError};

/// The notification sink.
pub struct NotifySink {
    notifier: Notifier,
    journal: Journal,
    lanes: Lanes,
    codec: Codec<AlertRecord>,
    /// Whether the unfinished deliveries and the throttle of the process before were loaded.
    resumed: bool,
    resume_within_ms: u64,
    reminder_interval_ms: u64,
}

impl NotifySink {
    /// `clickhouse`: where the outbox, the attempts and the throttle are kept (`None`: in
    /// memory only, nothing survives a restart). Starts the lanes: call within a Tokio runtime.
    pub fn new(
        cfg: &NotifyConfig,
        clickhouse: Option<&ClickHouseConfig>,
    ) -> Result<Self, ConfigError> {
        let notifier = Notifier::new(cfg)?;
        let journal = Journal::new(clickhouse.map(ClickHouseConfig::client));
        let lanes = Lanes::start(
            notifier.core(),
            journal.clone(),
            &notifier.all_targets(),
            cfg.concurrency_per_endpoint,
        );
        Ok(Self {
            notifier,
            journal,
            lanes,
            codec: Codec::new().map_err(|e| ConfigError::HttpClient(e.to_string()))?,
            resumed: false,
            resume_within_ms: cfg.resume_within_hours.saturating_mul(3_600_000),
            reminder_interval_ms: cfg.throttle.reminder_interval_ms,
        })
    }

    /// Deliveries queued or being attempted in the lanes.
    pub fn in_flight(&self) -> usize {
        self.lanes.in_flight()
    }

    /// Once per process: loads the throttle and hands the unfinished deliveries of the process
    /// before back to their lanes.
    async fn resume(&mut self) -> Result<(), SinkError> {
        if self.resumed {
            return Ok(());
        }
        let now = now_ms();
        let throttle = self
            .journal
            .load_throttle(now.saturating_sub(self.reminder_interval_ms))
            .await?;
        let unfinished = self
            .journal
            .unfinished(now.saturating_sub(self.resume_within_ms))
            .await?;
        if !throttle.is_empty() || !unfinished.is_empty() {
            tracing::info!(
                throttle_keys = throttle.len(),
                unfinished = unfinished.len(),
                "notifier state restored"
            );
        }
        self.notifier.restore_throttle(throttle);
        for q in unfinished {
            match serde_json::from_str::<Notification>(&q.notification) {
                Ok(n) => self.lanes.push(q, Arc::new(n)),
                Err(e) => tracing::error!(id = %q.notification_id, error = %e,
                    "an unfinished delivery in the outbox is unreadable; skipped"),
            }
        }
        self.resumed = true;
        Ok(())
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
        self.resume().await?;
        let ids: Vec<String> = batch.iter().map(|a| a.alert_id.clone()).collect();
        // A batch read again after a crash: what was queued then is finished or resumed.
        let queued = self.journal.queued(&ids).await?;
        let now = now_ms();
        let mut deliveries: Vec<(QueuedDelivery, Arc<Notification>)> = Vec::new();
        let mut touched = BTreeSet::new();
        let mut before = Vec::new();
        for alert in batch {
            let n = notification(alert);
            let targets = self.notifier.targets(&n);
            if targets.is_empty()
                || targets.iter().any(|t| {
                    queued.contains(&(
                        alert.alert_id.clone(),
                        t.integration.clone(),
                        t.endpoint as u32,
                    ))
                })
            {
                continue;
            }
            if let Some(key) = n.dedup_key() {
                if touched.insert(key.to_string()) {
                    before.push(self.notifier.throttle_entry(key));
                }
            }
            let Some(message) = self.notifier.admit(&n, now) else {
                tracing::debug!(
                    id = n.id(),
                    key = n.dedup_key(),
                    "notification held back by the throttle"
                );
                continue;
            };
            let message = Arc::new(message.into_owned());
            let json =
                serde_json::to_string(&*message).map_err(|e| SinkError::Rejected(e.to_string()))?;
            let record =
                serde_json::to_string(alert).map_err(|e| SinkError::Rejected(e.to_string()))?;
            for t in targets {
                deliveries.push((
                    QueuedDelivery {
                        notification_id: alert.alert_id.clone(),
                        integration: t.integration,
                        endpoint_index: t.endpoint as u32,
                        notification: json.clone(),
                        record: record.clone(),
                        queued_at: now,
                    },
                    message.clone(),
                ));
            }
        }
        let throttle: Vec<_> = touched
            .iter()
            .map(|k| self.notifier.throttle_entry(k))
            .collect();
        let rows: Vec<QueuedDelivery> = deliveries.iter().map(|(q, _)| q.clone()).collect();
        let saved = async {
            self.journal.save_throttle(&throttle, now).await?;
            self.journal.queue(&rows).await
        }
        .await;
        if let Err(e) = saved {
            // Nothing was handed out: the batch comes again, decided afresh.
            self.notifier.throttle_rewind(before);
            return Err(e);
        }
        for (q, n) in deliveries {
            self.lanes.push(q, n);
        }
        Ok(Vec::new())
    }

    async fn late_rejections(&mut self) -> Result<Vec<LateRejected>, SinkError> {
        self.resume().await?;
        let mut out = Vec::new();
        for d in self.lanes.take_dead() {
            let payload = serde_json::from_str::<AlertRecord>(&d.queued.record)
                .ok()
                .and_then(|a| self.codec.encode(&a).ok())
                .unwrap_or_else(|| d.queued.record.clone().into_bytes());
            out.push(LateRejected {
                key: d.queued.notification_id.clone().into_bytes(),
                payload,
                reason: d.reason,
            });
        }
        Ok(out)
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
