//! Delivery lanes: one per endpoint of every integration, each with its own queues and retry
//! state, so a dead or hung endpoint only ever delays itself. A lane runs
//! `concurrency_per_endpoint` workers; a notification goes to the worker its incident key hashes
//! to, so the trigger and the resolution of one incident reach an endpoint in order.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::deliver::{DeliveryCore, Outcome};
use super::journal::{Journal, QueuedDelivery};
use super::message::Notification;
use super::route::Target;

/// A delivery a lane gave up on after the batch it came from was acknowledged.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadDelivery {
    pub queued: QueuedDelivery,
    pub reason: String,
}

struct Job {
    queued: QueuedDelivery,
    notification: Arc<Notification>,
}

/// Every lane, running until dropped.
pub struct Lanes {
    queues: HashMap<Target, Vec<mpsc::UnboundedSender<Job>>>,
    dead: Arc<Mutex<Vec<DeadDelivery>>>,
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
    _workers: JoinSet<()>,
}

impl Lanes {
    /// Starts `concurrency` workers for each of `targets`.
    pub fn start(
        core: Arc<DeliveryCore>,
        journal: Journal,
        targets: &[Target],
        concurrency: usize,
    ) -> Self {
        let mut workers = JoinSet::new();
        let dead = Arc::new(Mutex::new(Vec::new()));
        let in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut queues = HashMap::new();
        for target in targets {
            let mut senders = Vec::new();
            for _ in 0..concurrency.max(1) {
                let (tx, rx) = mpsc::unbounded_channel();
                senders.push(tx);
                workers.spawn(worker(
                    core.clone(),
                    journal.clone(),
                    target.clone(),
                    rx,
                    dead.clone(),
                    in_flight.clone(),
                ));
            }
            queues.insert(target.clone(), senders);
        }
        Self {
            queues,
            dead,
            in_flight,
            _workers: workers,
        }
    }

    /// Hands a queued delivery to its lane. A target without a lane is dead at once.
    pub fn push(&self, queued: QueuedDelivery, notification: Arc<Notification>) {
        let target = queued.target();
        let Some(senders) = self.queues.get(&target) else {
            self.dead.lock().expect("dead list").push(DeadDelivery {
                reason: format!(
                    "{} has no endpoint {}",
                    queued.integration, queued.endpoint_index
                ),
                queued,
            });
            return;
        };
        let mut h = DefaultHasher::new();
        notification.incident_key().hash(&mut h);
        let worker = (h.finish() % senders.len() as u64) as usize;
        self.in_flight
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if senders[worker]
            .send(Job {
                queued,
                notification,
            })
            .is_err()
        {
            // Only when the runtime is shutting down; the outbox resumes it after the restart.
            self.in_flight
                .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Deliveries that died since the last call.
    pub fn take_dead(&self) -> Vec<DeadDelivery> {
        std::mem::take(&mut *self.dead.lock().expect("dead list"))
    }

    /// Deliveries queued or being attempted.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(std::sync::atomic::Ordering::SeqCst)
    }
}

async fn worker(
    core: Arc<DeliveryCore>,
    journal: Journal,
    target: Target,
    mut rx: mpsc::UnboundedReceiver<Job>,
    dead: Arc<Mutex<Vec<DeadDelivery>>>,
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
) {
    while let Some(job) = rx.recv().await {
        let outcome = core
            .deliver_one(&job.notification, &target, |a| {
                let journal = journal.clone();
                let a = a.clone();
                async move {
                    let outcome = if a.error.is_none() {
                        "delivered"
                    } else {
                        "failed"
                    };
                    metrics::counter!("secpipe_notify_attempts_total", "integration" => a.integration.clone(), "outcome" => outcome)
                        .increment(1);
                    metrics::histogram!("secpipe_notify_attempt_seconds", "integration" => a.integration.clone())
                        .record(a.latency_ms as f64 / 1000.0);
                    record(&journal, &a).await;
                }
            })
            .await;
        if let Outcome::Dead {
            attempts,
            last_error,
        } = outcome
        {
            dead.lock().expect("dead list").push(DeadDelivery {
                reason: format!(
                    "{} {} dead after {attempts} attempts: {last_error}",
                    target.integration,
                    core.shown(&target)
                ),
                queued: job.queued,
            });
        }
        in_flight.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Writes an attempt down before the lane goes on. While ClickHouse refuses, the lane waits
/// (with backoff, up to a minute): the delivery happened, and an unrecorded final attempt would
/// be repeated after a restart.
async fn record(journal: &Journal, a: &super::DeliveryAttempt) {
    let mut backoff = std::time::Duration::from_millis(100);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match journal.attempt(a).await {
            Ok(()) => return,
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = %e, id = %a.notification_id, integration = %a.integration,
                    "delivery attempt not recorded yet; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
            }
            Err(e) => {
                tracing::error!(error = %e, id = %a.notification_id, integration = %a.integration,
                    outcome = %a.outcome, "delivery attempt could not be recorded; a restart may repeat it");
                return;
            }
        }
    }
}
