//! A consumer-group member, the one way every stage reads Kafka. It makes three things explicit
//! that a bare `StreamConsumer` hides:
//! - **ownership**: rebalance callbacks become [`Ownership`] events the stage's loop handles
//!   (restore state on assign, drop it on revoke), and commits only ever name owned partitions;
//! - **backpressure**: a stage that cannot take more records pauses its partitions and keeps
//!   polling, so the group never sees it as dead (`max.poll.interval.ms`);
//! - **blocking calls** (commits, watermarks, committed offsets) run on the blocking pool, never
//!   on the async workers that other roles of `secpipe run` share.
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use rdkafka::{
    client::ClientContext,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer},
    message::BorrowedMessage,
    Offset, TopicPartitionList,
};
use secpipe_producers::KafkaConfig;

/// A change of the partitions this member owns, in the order the group made them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// These partitions are now ours: any state held for them is stale and must be restored.
    Assigned(Vec<i32>),
    /// These partitions are no longer ours: drop their state, write nothing more for them.
    Revoked(Vec<i32>),
}

/// Receives librdkafka's rebalance callbacks (they run inside `recv`, on the stage's task).
pub struct OwnershipContext {
    stage: String,
    topic: String,
    events: Mutex<Vec<Ownership>>,
    /// Whether `events` holds anything: the stage checks it after every record, and this keeps
    /// that check free of a lock.
    pending: std::sync::atomic::AtomicBool,
    owned: Mutex<BTreeSet<i32>>,
    changed: tokio::sync::Notify,
}

impl OwnershipContext {
    fn partitions(&self, tpl: &TopicPartitionList) -> Vec<i32> {
        tpl.elements_for_topic(&self.topic)
            .iter()
            .map(|e| e.partition())
            .collect()
    }

    fn push(&self, event: Ownership) {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(event);
        self.pending
            .store(true, std::sync::atomic::Ordering::Release);
        self.changed.notify_one();
    }
}

impl ClientContext for OwnershipContext {}

impl ConsumerContext for OwnershipContext {
    /// The result of a background commit (synchronous commits report their own).
    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        _offsets: &TopicPartitionList,
    ) {
        if let Err(e) = result {
            tracing::warn!(stage = %self.stage, topic = %self.topic, error = %e,
                "offset commit failed; records may be re-read");
        }
    }

    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let gone = self.partitions(tpl);
                {
                    let mut owned = self.owned.lock().unwrap_or_else(|p| p.into_inner());
                    for p in &gone {
                        owned.remove(p);
                    }
                }
                tracing::info!(stage = %self.stage, topic = %self.topic, partitions = ?gone, "partitions revoked");
                metrics::counter!("secpipe_partitions_revoked_total", "stage" => self.stage.clone())
                    .increment(gone.len() as u64);
                self.push(Ownership::Revoked(gone));
            }
            Rebalance::Error(e) => {
                tracing::warn!(topic = %self.topic, error = %e, "rebalance error")
            }
            Rebalance::Assign(_) => {}
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let new = self.partitions(tpl);
            if new.is_empty() {
                return;
            }
            self.owned
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(new.iter().copied());
            tracing::info!(stage = %self.stage, topic = %self.topic, partitions = ?new, "partitions assigned");
            metrics::counter!("secpipe_partitions_assigned_total", "stage" => self.stage.clone())
                .increment(new.len() as u64);
            self.push(Ownership::Assigned(new));
        }
    }
}

/// One member of a consumer group reading one topic.
pub struct Member {
    consumer: Arc<StreamConsumer<OwnershipContext>>,
    stage: String,
    topic: String,
    paused: std::sync::atomic::AtomicBool,
    /// A lag observation is running.
    observing: Arc<std::sync::atomic::AtomicBool>,
}

/// Runs its closure when dropped.
struct Finally<F: FnMut()>(F);

impl<F: FnMut()> Drop for Finally<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

impl Member {
    /// Joins `group` and subscribes to `topic`. Offsets are committed only explicitly.
    pub fn join(
        kafka: &KafkaConfig,
        stage: &str,
        group: &str,
        topic: &str,
    ) -> anyhow::Result<Self> {
        let context = OwnershipContext {
            stage: stage.to_string(),
            topic: topic.to_string(),
            events: Mutex::new(Vec::new()),
            pending: std::sync::atomic::AtomicBool::new(false),
            owned: Mutex::new(BTreeSet::new()),
            changed: tokio::sync::Notify::new(),
        };
        let mut config = kafka.client_config(stage);
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("session.timeout.ms", kafka.session_timeout_ms.to_string())
            .set(
                "max.poll.interval.ms",
                kafka.max_poll_interval_ms.to_string(),
            )
            // Do not let the broker hold a fetch for the default 500 ms when data is already
            // there (tansu answers at the deadline): this bounds the consume side of latency.
            .set("fetch.wait.max.ms", kafka.fetch_wait_max_ms.to_string());
        let consumer: StreamConsumer<OwnershipContext> =
            kafka.finish(&mut config).create_with_context(context)?;
        consumer.subscribe(&[topic])?;
        crate::ops::set_assigned(stage, false);
        Ok(Self {
            consumer: Arc::new(consumer),
            stage: stage.to_string(),
            topic: topic.to_string(),
            paused: std::sync::atomic::AtomicBool::new(false),
            observing: Arc::default(),
        })
    }

    /// The next record, or an error to log. Also runs rebalance callbacks: check
    /// [`Member::ownership_changes`] after it returns.
    pub async fn recv(&self) -> rdkafka::error::KafkaResult<BorrowedMessage<'_>> {
        self.consumer.recv().await
    }

    /// Resolves when the ownership changed (a rebalance ran inside `recv`).
    pub async fn changed(&self) {
        self.consumer.context().changed.notified().await
    }

    /// The ownership changes since the last call, oldest first. Newly assigned partitions are
    /// paused at once while this member is paused.
    pub fn ownership_changes(&self) -> Vec<Ownership> {
        let context = self.consumer.context();
        if !context
            .pending
            .swap(false, std::sync::atomic::Ordering::Acquire)
        {
            return Vec::new();
        }
        let events = std::mem::take(
            &mut *self
                .consumer
                .context()
                .events
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        if !events.is_empty() {
            let owned = !self.owned().is_empty();
            crate::ops::set_assigned(&self.stage, owned);
            if self.is_paused() {
                for e in &events {
                    if let Ownership::Assigned(ps) = e {
                        self.apply_pause(ps, true);
                    }
                }
            }
        }
        events
    }

    /// The partitions this member owns now.
    pub fn owned(&self) -> BTreeSet<i32> {
        self.consumer
            .context()
            .owned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Pauses (or resumes) fetching from every owned partition. Polling goes on either way.
    pub fn set_paused(&self, paused: bool) {
        if self
            .paused
            .swap(paused, std::sync::atomic::Ordering::Relaxed)
            == paused
        {
            return;
        }
        let owned: Vec<i32> = self.owned().into_iter().collect();
        self.apply_pause(&owned, paused);
        metrics::gauge!("secpipe_consumer_paused", "stage" => self.stage.clone()).set(if paused {
            1.0
        } else {
            0.0
        });
        if paused {
            metrics::counter!("secpipe_consumer_pauses_total", "stage" => self.stage.clone())
                .increment(1);
        }
        tracing::debug!(stage = %self.stage, paused, "consumption paused or resumed");
    }

    /// Resumes fetching and seeks every owned partition to `positions` (the offset after the
    /// last record this member read), or to its committed offset when nothing was read from it:
    /// librdkafka drops what it had fetched when a partition is paused, and must fetch it again.
    pub async fn resume_at(&self, positions: &BTreeMap<i32, i64>) -> anyhow::Result<()> {
        self.set_paused(false);
        for p in self.owned() {
            let offset = positions
                .get(&p)
                .map_or(Offset::Stored, |&o| Offset::Offset(o));
            let consumer = self.consumer.clone();
            let topic = self.topic.clone();
            let sought = tokio::task::spawn_blocking(move || {
                consumer.seek(&topic, p, offset, Duration::from_secs(10))
            })
            .await?;
            if let Err(e) = sought {
                // The partition may have moved meanwhile; its next owner reads from the commit.
                tracing::warn!(stage = %self.stage, partition = p, error = %e, "seek after resume failed");
            }
        }
        Ok(())
    }

    fn apply_pause(&self, partitions: &[i32], paused: bool) {
        if partitions.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for &p in partitions {
            tpl.add_partition(&self.topic, p);
        }
        let r = if paused {
            self.consumer.pause(&tpl)
        } else {
            self.consumer.resume(&tpl)
        };
        if let Err(e) = r {
            tracing::warn!(stage = %self.stage, error = %e, paused, "pause/resume failed");
        }
    }

    /// Commits `offsets` (topic, partition) → next offset to read, for the partitions this
    /// member still owns (the partition number is the ownership key for every topic: a
    /// changelog partition belongs to the owner of the same input partition). A synchronous
    /// commit on the blocking pool. A failed commit is logged: the records are read again by
    /// whoever owns the partition, and every stage collapses repeats.
    pub async fn commit(&self, offsets: &BTreeMap<(String, i32), i64>) -> anyhow::Result<()> {
        let Some(tpl) = self.owned_offsets(offsets)? else {
            return Ok(());
        };
        let consumer = self.consumer.clone();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
                tracing::warn!(%topic, error = %e, "offset commit failed; records may be re-read");
            }
        })
        .await?;
        Ok(())
    }

    /// Commits `offsets` like [`Member::commit`], without waiting for the broker: the request
    /// is queued behind earlier commits and a failure is logged by the commit callback. For
    /// the steady-state commit after each batch, where a lost commit only means the batch is
    /// read again (and collapsed): the next batch need not wait a round trip for it.
    pub fn commit_in_background(
        &self,
        offsets: &BTreeMap<(String, i32), i64>,
    ) -> anyhow::Result<()> {
        if let Some(tpl) = self.owned_offsets(offsets)? {
            if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
                tracing::warn!(topic = %self.topic, error = %e, "offset commit failed; records may be re-read");
            }
        }
        Ok(())
    }

    /// The offsets of `offsets` for partitions this member owns, if any.
    fn owned_offsets(
        &self,
        offsets: &BTreeMap<(String, i32), i64>,
    ) -> anyhow::Result<Option<TopicPartitionList>> {
        let owned = self.owned();
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), &next) in offsets {
            if owned.contains(partition) {
                tpl.add_partition_offset(topic, *partition, Offset::Offset(next))?;
            }
        }
        Ok((tpl.count() > 0).then_some(tpl))
    }

    /// Moves the read position of owned partition `partition` to `offset`: records fetched
    /// before are dropped by librdkafka and fetched again from there (blocking pool).
    pub async fn seek(&self, partition: i32, offset: i64) -> anyhow::Result<()> {
        let consumer = self.consumer.clone();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            consumer.seek(
                &topic,
                partition,
                Offset::Offset(offset),
                Duration::from_secs(10),
            )
        })
        .await??;
        Ok(())
    }

    /// The group's committed offset of `topic`/`partition`, if any (blocking pool).
    pub async fn committed(&self, topic: &str, partition: i32) -> anyhow::Result<Option<i64>> {
        let consumer = self.consumer.clone();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, partition);
        let got = tokio::task::spawn_blocking(move || {
            consumer.committed_offsets(tpl, Duration::from_secs(10))
        })
        .await??;
        Ok(got.elements().first().and_then(|e| match e.offset() {
            Offset::Offset(o) if o >= 0 => Some(o),
            _ => None,
        }))
    }

    /// Publishes the lag of every owned partition (high watermark minus position) as
    /// `secpipe_consumer_lag`, in the background: asking the broker takes a round trip per
    /// partition (tens of ms on tansu), which the caller's loop must not wait for. A call while
    /// the previous one is still asking does nothing.
    pub fn observe(&self) {
        use std::sync::atomic::Ordering;
        if self.observing.swap(true, Ordering::AcqRel) {
            return;
        }
        let observing = self.observing.clone();
        let consumer = self.consumer.clone();
        let stage = self.stage.clone();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            let _done = Finally(move || observing.store(false, Ordering::Release));
            let Ok(position) = consumer.position() else {
                return;
            };
            for e in position.elements_for_topic(&topic) {
                let Ok((_, high)) =
                    consumer.fetch_watermarks(&topic, e.partition(), Duration::from_millis(500))
                else {
                    continue;
                };
                let lag = match e.offset() {
                    Offset::Offset(pos) => (high - pos).max(0),
                    _ => continue,
                };
                metrics::gauge!("secpipe_consumer_lag", "stage" => stage.clone(), "topic" => topic.clone(),
                    "partition" => e.partition().to_string())
                .set(lag as f64);
            }
        });
    }

    /// Leaves the group (after the last commit).
    pub fn leave(&self) {
        self.consumer.unsubscribe();
        crate::ops::set_assigned(&self.stage, false);
    }
}
