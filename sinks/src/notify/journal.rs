//! The notifier's durable state, in ClickHouse: what was queued for which endpoint
//! (`notification_outbox`), every attempt with its outcome as it happens
//! (`notification_deliveries`), and the throttle (`notification_throttle`). A restart resumes
//! what was queued and not finished, never queues a notification twice for one endpoint, and
//! throttles as the process before it did.
//!
//! ClickHouse rather than a changelog topic because the attempts already live there for
//! operators, the sinks never talk to Kafka themselves, and the questions asked at restart
//! ("which of these ids were queued", "which queued deliveries have no final attempt") are
//! queries, not a replay.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::deliver::DeliveryAttempt;
use super::route::Target;
use super::throttle::ThrottleEntry;
use crate::clickhouse::classify;
use crate::SinkError;

/// One delivery handed to a lane: written before the lane starts, so a crash cannot lose it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clickhouse::Row)]
pub struct QueuedDelivery {
    pub notification_id: String,
    pub integration: String,
    pub endpoint_index: u32,
    /// The [`Notification`](super::Notification) as JSON, as the lane sends it.
    pub notification: String,
    /// The alert record it came from, as JSON (for the dead-letter topic if it dies).
    pub record: String,
    /// Milliseconds since the Unix epoch.
    pub queued_at: u64,
}

impl QueuedDelivery {
    pub fn target(&self) -> Target {
        Target {
            integration: self.integration.clone(),
            endpoint: self.endpoint_index as usize,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, clickhouse::Row)]
struct ThrottleRow {
    dedup_key: String,
    last_delivered_ms: u64,
    held_back: u64,
    updated_at: u64,
}

/// (notification id, integration, endpoint index).
pub type DeliveryKey = (String, String, u32);

/// An attempt waiting to be written, and who to tell when it is.
type PendingAttempt = (DeliveryAttempt, oneshot::Sender<Result<(), SinkError>>);

/// Most attempts written in one insert.
const MAX_ATTEMPTS_PER_INSERT: usize = 1_000;

/// The ClickHouse tables behind the notifier, or nothing (`None`: state in memory only).
#[derive(Clone)]
pub struct Journal {
    client: Option<clickhouse::Client>,
    /// Attempts go through one writer task: the attempts of every lane that finish while an
    /// insert is running share the next insert (group commit), and each lane still waits
    /// until its own attempt is written.
    attempts: Option<mpsc::UnboundedSender<PendingAttempt>>,
}

impl Journal {
    /// Starts the attempt writer when there is a client: call within a Tokio runtime.
    pub fn new(client: Option<clickhouse::Client>) -> Self {
        let attempts = client.clone().map(|client| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(write_attempts(client, rx));
            tx
        });
        Self { client, attempts }
    }

    /// Which of `ids` were already queued (by this process or one before it).
    pub async fn queued(&self, ids: &[String]) -> Result<HashSet<DeliveryKey>, SinkError> {
        let Some(client) = &self.client else {
            return Ok(HashSet::new());
        };
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        let rows: Vec<DeliveryKey> = client
            .query(
                "SELECT notification_id, integration, endpoint_index FROM notification_outbox \
                 WHERE has(?, notification_id)",
            )
            .bind(ids)
            .fetch_all()
            .await
            .map_err(classify)?;
        Ok(rows.into_iter().collect())
    }

    /// Writes down deliveries about to be handed to their lanes; returns once ClickHouse has
    /// them.
    pub async fn queue(&self, deliveries: &[QueuedDelivery]) -> Result<(), SinkError> {
        let Some(client) = &self.client else {
            return Ok(());
        };
        if deliveries.is_empty() {
            return Ok(());
        }
        let mut insert = client
            .insert::<QueuedDelivery>("notification_outbox")
            .await
            .map_err(classify)?;
        for d in deliveries {
            insert.write(d).await.map_err(classify)?;
        }
        insert.end().await.map_err(classify)
    }

    /// Writes down one attempt and returns once ClickHouse has it; a `delivered` or `dead`
    /// outcome ends its delivery for good.
    pub async fn attempt(&self, a: &DeliveryAttempt) -> Result<(), SinkError> {
        let Some(writer) = &self.attempts else {
            return Ok(());
        };
        let (done, written) = oneshot::channel();
        writer
            .send((a.clone(), done))
            .map_err(|_| SinkError::Unavailable("the attempt writer stopped".into()))?;
        written
            .await
            .map_err(|_| SinkError::Unavailable("the attempt writer stopped".into()))?
    }

    /// Deliveries queued since `since_ms` with no final attempt: the work a restart resumes.
    pub async fn unfinished(&self, since_ms: u64) -> Result<Vec<QueuedDelivery>, SinkError> {
        let Some(client) = &self.client else {
            return Ok(Vec::new());
        };
        let queued: Vec<QueuedDelivery> = client
            .query("SELECT ?fields FROM notification_outbox WHERE queued_at >= ?")
            .bind(since_ms)
            .fetch_all()
            .await
            .map_err(classify)?;
        if queued.is_empty() {
            return Ok(queued);
        }
        let ids: Vec<&str> = queued.iter().map(|q| q.notification_id.as_str()).collect();
        let done: HashSet<DeliveryKey> = client
            .query(
                "SELECT notification_id, integration, endpoint_index FROM notification_deliveries \
                 WHERE at >= ? AND outcome IN ('delivered', 'dead') AND has(?, notification_id)",
            )
            .bind(since_ms)
            .bind(ids)
            .fetch_all::<DeliveryKey>()
            .await
            .map_err(classify)?
            .into_iter()
            .collect();
        let mut seen = HashSet::new();
        Ok(queued
            .into_iter()
            .filter(|q| {
                let key = (
                    q.notification_id.clone(),
                    q.integration.clone(),
                    q.endpoint_index,
                );
                !done.contains(&key) && seen.insert(key)
            })
            .collect())
    }

    /// Saves throttle entries (a resolution is saved as zeros: forgotten).
    pub async fn save_throttle(
        &self,
        entries: &[ThrottleEntry],
        now: u64,
    ) -> Result<(), SinkError> {
        let Some(client) = &self.client else {
            return Ok(());
        };
        if entries.is_empty() {
            return Ok(());
        }
        let mut insert = client
            .insert::<ThrottleRow>("notification_throttle")
            .await
            .map_err(classify)?;
        for e in entries {
            insert
                .write(&ThrottleRow {
                    dedup_key: e.dedup_key.clone(),
                    last_delivered_ms: e.last_delivered_ms,
                    held_back: e.held_back,
                    updated_at: now,
                })
                .await
                .map_err(classify)?;
        }
        insert.end().await.map_err(classify)
    }

    /// The throttle's entries saved since `since_ms`, the latest per key, forgotten ones left out.
    pub async fn load_throttle(&self, since_ms: u64) -> Result<Vec<ThrottleEntry>, SinkError> {
        let Some(client) = &self.client else {
            return Ok(Vec::new());
        };
        let rows: Vec<(String, u64, u64)> = client
            .query(
                "SELECT dedup_key, argMax(last_delivered_ms, updated_at) AS last, \
                 argMax(held_back, updated_at) AS held FROM notification_throttle \
                 WHERE updated_at >= ? GROUP BY dedup_key HAVING last > 0 OR held > 0",
            )
            .bind(since_ms)
            .fetch_all()
            .await
            .map_err(classify)?;
        Ok(rows
            .into_iter()
            .map(|(dedup_key, last_delivered_ms, held_back)| ThrottleEntry {
                dedup_key,
                last_delivered_ms,
                held_back,
            })
            .collect())
    }
}

/// The attempt writer: takes every attempt waiting, writes them in one insert, tells each lane.
async fn write_attempts(
    client: clickhouse::Client,
    mut rx: mpsc::UnboundedReceiver<PendingAttempt>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_ATTEMPTS_PER_INSERT {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let result = async {
            let mut insert = client
                .insert::<DeliveryAttempt>("notification_deliveries")
                .await
                .map_err(classify)?;
            for (a, _) in &batch {
                insert.write(a).await.map_err(classify)?;
            }
            insert.end().await.map_err(classify)
        }
        .await;
        for (_, done) in batch {
            let each = match &result {
                Ok(()) => Ok(()),
                Err(SinkError::Unavailable(e)) => Err(SinkError::Unavailable(e.clone())),
                Err(SinkError::Rejected(e)) => Err(SinkError::Rejected(e.clone())),
            };
            // A lane that went away (shutdown) no longer waits.
            let _ = done.send(each);
        }
    }
}
