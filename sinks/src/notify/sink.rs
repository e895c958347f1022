//! `secpipe sink notify`: alerts from the alerts topic to the configured integrations. Each
//! alert becomes a [`Notification`]; the throttle decides, every delivery (alert, integration,
//! endpoint) is written to the outbox and handed to its endpoint's lane, and the batch is
//! acknowledged: a hung endpoint never holds the consumer or another endpoint. Lanes record each
//! attempt as it happens; a delivery that dies comes back through
//! [`Sink::late_rejections`] for the dead-letter topic. See [`super::journal`] for what a restart
//! resumes.
use std::collections::BTreeSet;
use std::sync::Arc;

use secpipe_schemas::Codec;

use super::journal::{Journal, QueuedDelivery};
use super::lanes::Lanes;
use super::message::Notification;
use super::source::{from_json, to_json, LinkConfig, Notifiable};
use super::text::now_ms;
use super::{ConfigError, Notifier, NotifyConfig};
use crate::{clickhouse::ClickHouseConfig, LateRejected, Rejected, Sink, SinkError};

/// How long a stopping notifier waits for its lanes.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// The notification sink for records of type `R`: alert records (alerts and events) or scan
/// reports (scan results).
pub struct NotifySink<R> {
    notifier: Notifier,
    journal: Journal,
    lanes: Lanes,
    codec: Codec<R>,
    links: LinkConfig,
    /// Whether the unfinished deliveries and the throttle of the process before were loaded.
    resumed: bool,
    resume_within_ms: u64,
    reminder_interval_ms: u64,
}

impl<R: Notifiable> NotifySink<R> {
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
            cfg.max_queue_per_endpoint,
        );
        Ok(Self {
            notifier,
            journal,
            lanes,
            codec: Codec::new().map_err(|e| ConfigError::HttpClient(e.to_string()))?,
            links: cfg.links.clone(),
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
                // The other consumer of this notifier resumes its own.
                Ok(n) if !R::KINDS.contains(&n.kind()) => {}
                Ok(n) => self.lanes.push(q, Arc::new(n)),
                Err(e) => tracing::error!(id = %q.notification_id, error = %e,
                    "an unfinished delivery in the outbox is unreadable; skipped"),
            }
        }
        self.resumed = true;
        Ok(())
    }
}

impl<R: Notifiable> Sink for NotifySink<R> {
    type Record = R;

    async fn write(&mut self, batch: &[R]) -> Result<Vec<Rejected>, SinkError> {
        self.resume().await?;
        let notifications: Vec<Option<Notification>> =
            batch.iter().map(|r| r.notification(&self.links)).collect();
        let ids: Vec<String> = notifications
            .iter()
            .flatten()
            .map(|n| n.id().to_string())
            .collect();
        // A batch read again after a crash: what was queued then is finished or resumed.
        let queued = self.journal.queued(&ids).await?;
        let now = now_ms();
        let mut deliveries: Vec<(QueuedDelivery, Arc<Notification>)> = Vec::new();
        let mut touched = BTreeSet::new();
        let mut before = Vec::new();
        for (alert, n) in batch.iter().zip(notifications) {
            let Some(n) = n else { continue };
            let targets = self.notifier.targets(&n);
            if targets.is_empty()
                || targets.iter().any(|t| {
                    queued.contains(&(n.id().to_string(), t.integration.clone(), t.endpoint as u32))
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
            let record = to_json(alert).map_err(|e| SinkError::Rejected(e.to_string()))?;
            for t in targets {
                deliveries.push((
                    QueuedDelivery {
                        notification_id: n.id().to_string(),
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

    /// Gives the lanes up to [`CLOSE_GRACE`] to finish what they hold, so that a rolling restart
    /// resends little; what is left (a hung endpoint) is resumed from the outbox by the next
    /// process. Deliveries that die meanwhile are dead-lettered by the runtime right after.
    async fn close(&mut self) {
        let deadline = tokio::time::Instant::now() + CLOSE_GRACE;
        while self.lanes.in_flight() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        if self.lanes.in_flight() > 0 {
            tracing::info!(
                unfinished = self.lanes.in_flight(),
                "notifier stopping with deliveries in progress; the next start resumes them"
            );
        }
    }

    async fn late_rejections(&mut self) -> Result<Vec<LateRejected>, SinkError> {
        self.resume().await?;
        let mut out = Vec::new();
        for d in self.lanes.take_dead() {
            let payload = from_json::<R>(&d.queued.record)
                .and_then(|r| self.codec.encode(&r).ok())
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
