//! Delivery lanes: one per endpoint of every integration, each with its own queues and retry
//! state, so a dead or hung endpoint only ever delays itself. A lane runs
//! `concurrency_per_endpoint` workers; a notification goes to the worker its incident key hashes
//! to, so the trigger and the resolution of one incident reach an endpoint in order.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::deliver::{DeliveryAttempt, DeliveryCore, Outcome};
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

/// One endpoint's lane: a queue per worker, and how many deliveries wait in them.
struct Lane {
    queues: Vec<mpsc::UnboundedSender<Job>>,
    backlog: Arc<AtomicUsize>,
}

/// Every lane, running until dropped.
pub struct Lanes {
    lanes: HashMap<Target, Lane>,
    journal: Journal,
    max_backlog: usize,
    dead: Arc<Mutex<Vec<DeadDelivery>>>,
    in_flight: Arc<AtomicUsize>,
    _workers: JoinSet<()>,
}

impl Lanes {
    /// Starts `concurrency` workers for each of `targets`; a lane holds at most `max_backlog`
    /// deliveries waiting or in progress.
    pub fn start(
        core: Arc<DeliveryCore>,
        journal: Journal,
        targets: &[Target],
        concurrency: usize,
        max_backlog: usize,
    ) -> Self {
        let mut workers = JoinSet::new();
        let dead = Arc::new(Mutex::new(Vec::new()));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let mut lanes = HashMap::new();
        for target in targets {
            let backlog = Arc::new(AtomicUsize::new(0));
            let mut queues = Vec::new();
            for _ in 0..concurrency.max(1) {
                let (tx, rx) = mpsc::unbounded_channel();
                queues.push(tx);
                workers.spawn(worker(
                    core.clone(),
                    journal.clone(),
                    target.clone(),
                    rx,
                    dead.clone(),
                    [in_flight.clone(), backlog.clone()],
                ));
            }
            lanes.insert(target.clone(), Lane { queues, backlog });
        }
        Self {
            lanes,
            journal,
            max_backlog,
            dead,
            in_flight,
            _workers: workers,
        }
    }

    /// A delivery that cannot be attempted: dead now, and written down as such so that a
    /// restart does not resume it.
    fn dead_now(&self, queued: QueuedDelivery, reason: String) {
        tracing::error!(id = %queued.notification_id, integration = %queued.integration,
            endpoint = queued.endpoint_index, %reason, "notification delivery is dead");
        let attempt = DeliveryAttempt {
            notification_id: queued.notification_id.clone(),
            integration: queued.integration.clone(),
            endpoint: String::new(),
            endpoint_index: queued.endpoint_index,
            outcome: "dead".into(),
            attempt: 0,
            status: None,
            error: Some(reason.clone()),
            latency_ms: 0,
            at: super::text::now_ms(),
        };
        let journal = self.journal.clone();
        tokio::spawn(async move { record(&journal, &attempt).await });
        self.dead
            .lock()
            .expect("dead list")
            .push(DeadDelivery { queued, reason });
    }

    /// Hands a queued delivery to its lane. A target without a lane (an integration removed
    /// from the config since it was queued), or whose lane is full, is dead at once.
    pub fn push(&self, queued: QueuedDelivery, notification: Arc<Notification>) {
        let target = queued.target();
        let Some(lane) = self.lanes.get(&target) else {
            let reason = format!(
                "{} has no endpoint {} (any more)",
                queued.integration, queued.endpoint_index
            );
            return self.dead_now(queued, reason);
        };
        if lane.backlog.load(Ordering::SeqCst) >= self.max_backlog {
            let reason = format!(
                "{} endpoint {}: {} deliveries already wait (max_queue_per_endpoint); the endpoint is not keeping up",
                queued.integration, queued.endpoint_index, self.max_backlog
            );
            return self.dead_now(queued, reason);
        }
        let senders = &lane.queues;
        let mut h = DefaultHasher::new();
        notification.incident_key().hash(&mut h);
        let worker = (h.finish() % senders.len() as u64) as usize;
        lane.backlog.fetch_add(1, Ordering::SeqCst);
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        if senders[worker]
            .send(Job {
                queued,
                notification,
            })
            .is_err()
        {
            // Only when the runtime is shutting down; the outbox resumes it after the restart.
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            lane.backlog.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Deliveries that died since the last call.
    pub fn take_dead(&self) -> Vec<DeadDelivery> {
        std::mem::take(&mut *self.dead.lock().expect("dead list"))
    }

    /// Deliveries queued or being attempted.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }
}

async fn worker(
    core: Arc<DeliveryCore>,
    journal: Journal,
    target: Target,
    mut rx: mpsc::UnboundedReceiver<Job>,
    dead: Arc<Mutex<Vec<DeadDelivery>>>,
    counters: [Arc<AtomicUsize>; 2],
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
        for c in &counters {
            c.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Writes an attempt down before the lane goes on. While ClickHouse refuses, the lane waits
/// (with backoff, up to a minute): the delivery happened, and an unrecorded final attempt would
/// be repeated after a restart.
async fn record(journal: &Journal, a: &DeliveryAttempt) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::{fixtures, Notifier, NotifyConfig};

    fn queued(i: usize) -> QueuedDelivery {
        QueuedDelivery {
            notification_id: format!("n-{i}"),
            integration: "hook".into(),
            endpoint_index: 0,
            notification: String::new(),
            record: String::new(),
            queued_at: 0,
        }
    }

    #[tokio::test]
    async fn a_full_lane_refuses_new_deliveries_at_once_and_an_unknown_target_is_dead() {
        // Connections are taken by the kernel and never answered: a hung endpoint.
        let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", hung.local_addr().unwrap());
        let cfg: NotifyConfig = serde_json::from_value(serde_json::json!({
            "retry": {"timeout_ms": 60000},
            "integrations": {"hook": {"type": "webhook", "endpoints": [url]}}
        }))
        .unwrap();
        let notifier = Notifier::new(&cfg).unwrap();
        let lanes = Lanes::start(
            notifier.core(),
            Journal::new(None),
            &notifier.all_targets(),
            1,
            2,
        );
        for i in 0..3 {
            let mut a = fixtures::alert();
            a.id = format!("n-{i}");
            lanes.push(queued(i), Arc::new(Notification::Alert(a)));
        }
        let mut gone = queued(9);
        gone.integration = "removed".into();
        lanes.push(gone, Arc::new(Notification::Alert(fixtures::alert())));
        let dead = lanes.take_dead();
        assert_eq!(dead.len(), 2, "{dead:?}");
        assert_eq!(dead[0].queued.notification_id, "n-2");
        assert!(dead[0].reason.contains("max_queue_per_endpoint"));
        assert!(dead[1].reason.contains("removed has no endpoint 0"));
        assert_eq!(
            lanes.in_flight(),
            2,
            "the first two wait on the hung endpoint"
        );
    }
}
