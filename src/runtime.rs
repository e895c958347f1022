//! The stage runtime: the one consume → decode → batch → write → commit loop that every sink
//! shares. Stages never talk to Kafka themselves.
//!
//! Guarantees: an offset is committed only after the sink acknowledged every record before it
//! (or the record went to the dead-letter topic, acknowledged by the broker). After a crash the
//! uncommitted tail is read again; sinks collapse the repeats by stable record ids.
use std::{collections::BTreeMap, time::Duration};

use rdkafka::{
    consumer::{CommitMode, Consumer, StreamConsumer},
    message::{BorrowedMessage, Message},
    Offset, TopicPartitionList,
};
use secpipe_producers::{EventProducer, KafkaConfig, OutRecord};
use secpipe_schemas::{now_micros, ops::DeadLetter, Codec, Decode};
use secpipe_sinks::{Sink, SinkError};
use tokio::sync::watch;

use crate::config::LoaderConfig;

/// Resolves when the process is asked to stop. Clone it into every role.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// Triggers a [`Shutdown`].
pub struct ShutdownTrigger(watch::Sender<bool>);

impl Shutdown {
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger(tx), Shutdown(rx))
    }

    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    /// Waits until shutdown is triggered (or its trigger is dropped).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
}

/// Where a consumed record came from, kept until its batch is written (the original bytes go
/// to the dead-letter topic if the destination rejects the record).
pub(crate) struct Origin {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
}

pub(crate) fn origin_of(msg: &BorrowedMessage<'_>) -> Origin {
    Origin {
        partition: msg.partition(),
        offset: msg.offset(),
        key: msg.key().map(<[u8]>::to_vec),
        payload: msg.payload().unwrap_or_default().to_vec(),
    }
}

/// Publishes a consumer's assignment (for `/readyz`) and lag per partition (high watermark minus
/// position) as `secpipe_consumer_lag`.
pub(crate) fn observe(consumer: &StreamConsumer, stage: &str, topic: &str) {
    let Ok(assignment) = consumer.assignment() else {
        return;
    };
    crate::ops::set_assigned(stage, assignment.count() > 0);
    let Ok(position) = consumer.position() else {
        return;
    };
    for e in position.elements_for_topic(topic) {
        let Ok((_, high)) =
            consumer.fetch_watermarks(topic, e.partition(), Duration::from_millis(500))
        else {
            continue;
        };
        let lag = match e.offset() {
            Offset::Offset(pos) => (high - pos).max(0),
            _ => continue,
        };
        metrics::gauge!("secpipe_consumer_lag", "stage" => stage.to_string(), "topic" => topic.to_string(),
            "partition" => e.partition().to_string())
        .set(lag as f64);
    }
}

/// Builds a consumer in `group` subscribed to `topics`, committing only explicitly.
pub fn consumer(
    cfg: &KafkaConfig,
    role: &str,
    group: &str,
    topics: &[&str],
) -> anyhow::Result<StreamConsumer> {
    let consumer: StreamConsumer = cfg
        .client_config(role)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("session.timeout.ms", cfg.session_timeout_ms.to_string())
        // Do not let the broker hold a fetch for the default 500 ms when data is already there
        // (tansu answers at the deadline): this bounds the consume side of end-to-end latency.
        .set("fetch.wait.max.ms", cfg.fetch_wait_max_ms.to_string())
        .create()?;
    consumer.subscribe(topics)?;
    Ok(consumer)
}

/// The records read since the last commit: decoded records with their origins, and the highest
/// offset read per partition (dead-lettered records included).
struct Batch<R> {
    records: Vec<R>,
    origins: Vec<Origin>,
    next_offsets: BTreeMap<i32, i64>,
}

impl<R> Batch<R> {
    fn new(capacity: usize) -> Self {
        Self {
            records: Vec::with_capacity(capacity),
            origins: Vec::with_capacity(capacity),
            next_offsets: BTreeMap::new(),
        }
    }

    fn saw(&mut self, partition: i32, offset: i64) {
        let next = self.next_offsets.entry(partition).or_insert(offset + 1);
        *next = (*next).max(offset + 1);
    }

    fn is_empty(&self) -> bool {
        self.next_offsets.is_empty()
    }

    fn clear(&mut self) {
        self.records.clear();
        self.origins.clear();
        self.next_offsets.clear();
    }
}

/// Runs a sink until `shutdown`: reads `topic` in consumer group `cfg.group_id`, decodes each
/// record with `decoder`, writes batches by size and time, and commits after each written
/// batch. One batch is written while the next is read and decoded (two in hand at most), so
/// decoding and the destination's work overlap; offsets are still committed strictly in order.
/// Undecodable records and rows the destination rejects go to the dead-letter topic; while the
/// destination is unavailable the batch is retried with backoff, consumption pauses once the
/// next batch is full, and nothing is committed.
pub async fn run_sink<S>(
    kafka: &KafkaConfig,
    cfg: &LoaderConfig,
    stage: &str,
    topic: &str,
    decoder: impl Decode<S::Record>,
    sink: S,
    mut shutdown: Shutdown,
) -> anyhow::Result<()>
where
    S: Sink,
{
    type Written<'a, S, R> = std::pin::Pin<
        Box<dyn std::future::Future<Output = (S, Batch<R>, anyhow::Result<bool>)> + Send + 'a>,
    >;
    let consumer = consumer(kafka, stage, &cfg.group_id, &[topic])?;
    let dlq = DeadLetters::new(kafka, stage)?;
    let max_wait = Duration::from_millis(cfg.batch_max_wait_ms);
    let mut batch = Batch::new(cfg.batch_max_rows);
    let mut spare: Option<Batch<S::Record>> = None;
    let mut idle_sink = Some(sink);
    let mut in_flight: Option<Written<'_, S, S::Record>> = None;
    let mut deadline = tokio::time::Instant::now() + max_wait;
    let consumed = metrics::counter!("secpipe_records_consumed_total", "stage" => stage.to_string(), "topic" => topic.to_string());
    let batch_rows = metrics::histogram!("secpipe_batch_rows", "stage" => stage.to_string());
    let write_seconds =
        metrics::histogram!("secpipe_sink_write_seconds", "stage" => stage.to_string());
    let launch =
        |mut sink: S, b: Batch<S::Record>, mut sd: Shutdown| -> Written<'_, S, S::Record> {
            let dlq = &dlq;
            let write_seconds = write_seconds.clone();
            batch_rows.record(b.records.len() as f64);
            Box::pin(async move {
                let started = std::time::Instant::now();
                let r = write_batch(&mut sink, cfg, stage, topic, dlq, &b, &mut sd).await;
                write_seconds.record(started.elapsed().as_secs_f64());
                (sink, b, r)
            })
        };
    crate::ops::set_assigned(stage, false);
    let mut observe_tick = tokio::time::interval(Duration::from_secs(5));
    tracing::info!(stage, topic, group = %cfg.group_id, "sink started");
    let stopped_in_outage = loop {
        let full = batch.records.len() >= cfg.batch_max_rows;
        let due = !batch.is_empty() && (full || tokio::time::Instant::now() >= deadline);
        if due && in_flight.is_none() {
            let next = spare
                .take()
                .unwrap_or_else(|| Batch::new(cfg.batch_max_rows));
            let b = std::mem::replace(&mut batch, next);
            let sink = idle_sink
                .take()
                .expect("the sink is idle when nothing is in flight");
            in_flight = Some(launch(sink, b, shutdown.clone()));
        }
        tokio::select! {
            biased;
            _ = shutdown.wait() => break false,
            (sink, mut b, result) = async { in_flight.as_mut().expect("guarded").await }, if in_flight.is_some() => {
                in_flight = None;
                idle_sink = Some(sink);
                if !result? {
                    break true; // stopped during an outage: nothing committed, read again later
                }
                commit(&consumer, topic, &b.next_offsets)?;
                b.clear();
                spare = Some(b);
            }
            _ = tokio::time::sleep_until(deadline), if !batch.is_empty() && in_flight.is_none() => {}
            _ = observe_tick.tick() => observe(&consumer, stage, topic),
            msg = consumer.recv(), if !full => {
                let msg = match msg {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(stage, error = %e, "consume error");
                        continue;
                    }
                };
                if batch.is_empty() {
                    deadline = tokio::time::Instant::now() + max_wait;
                }
                consumed.increment(1);
                let origin = origin_of(&msg);
                batch.saw(origin.partition, origin.offset);
                match decoder.decode(&origin.payload) {
                    Ok(record) => {
                        batch.records.push(record);
                        batch.origins.push(origin);
                    }
                    Err(e) => {
                        tracing::warn!(stage, topic, partition = origin.partition,
                            offset = origin.offset, error = %e,
                            "undecodable record sent to the dead-letter topic");
                        dlq.send(topic, &origin, "undecodable", &e.to_string()).await?;
                    }
                }
            }
        }
    };
    // Finish the work in hand, in order: the batch in flight, then the one being read (one
    // attempt each: the shutdown is already triggered), each committed only if it landed.
    if let Some(fut) = in_flight.take() {
        let (sink, b, result) = fut.await;
        idle_sink = Some(sink);
        if result? && !stopped_in_outage {
            commit(&consumer, topic, &b.next_offsets)?;
            if !batch.is_empty() {
                if let Some(mut sink) = idle_sink.take() {
                    if write_batch(&mut sink, cfg, stage, topic, &dlq, &batch, &mut shutdown)
                        .await?
                    {
                        commit(&consumer, topic, &batch.next_offsets)?;
                    }
                }
            }
        }
    } else if !stopped_in_outage && !batch.is_empty() {
        if let Some(mut sink) = idle_sink.take() {
            if write_batch(&mut sink, cfg, stage, topic, &dlq, &batch, &mut shutdown).await? {
                commit(&consumer, topic, &batch.next_offsets)?;
            }
        }
    }
    consumer.unsubscribe();
    tracing::info!(stage, "sink stopped");
    Ok(())
}

/// Writes a batch, retrying while the destination is unavailable. Rows it rejects are isolated
/// by splitting the batch and go to the dead-letter topic with the destination's message; the
/// rest lands. Returns false if shutdown came before the batch could be written.
#[allow(clippy::too_many_arguments)]
async fn write_batch<S: Sink>(
    sink: &mut S,
    cfg: &LoaderConfig,
    stage: &str,
    topic: &str,
    dlq: &DeadLetters,
    batch: &Batch<S::Record>,
    shutdown: &mut Shutdown,
) -> anyhow::Result<bool> {
    let mut ranges = vec![(0, batch.records.len())];
    while let Some((lo, hi)) = ranges.pop() {
        if lo == hi {
            continue;
        }
        let mut backoff = Duration::from_millis(cfg.retry_initial_backoff_ms);
        loop {
            match sink.write(&batch.records[lo..hi]).await {
                Ok(rejected) => {
                    for r in rejected {
                        let origin = &batch.origins[lo + r.index];
                        tracing::warn!(stage, topic, partition = origin.partition,
                            offset = origin.offset, reason = %r.reason, "record refused; sent to the dead-letter topic");
                        dlq.send(topic, origin, "refused", &r.reason).await?;
                    }
                    break;
                }
                Err(SinkError::Unavailable(reason)) => {
                    tracing::warn!(stage, %reason, retry_in_ms = backoff.as_millis() as u64,
                        "destination unavailable; holding the batch, nothing committed");
                    if shutdown.is_triggered() {
                        return Ok(false);
                    }
                    tokio::select! {
                        _ = shutdown.wait() => return Ok(false),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_millis(cfg.retry_max_backoff_ms));
                }
                Err(SinkError::Rejected(reason)) if hi - lo == 1 => {
                    let origin = &batch.origins[lo];
                    tracing::warn!(stage, topic, partition = origin.partition,
                        offset = origin.offset, %reason, "row rejected; sent to the dead-letter topic");
                    dlq.send(topic, origin, "rejected", &reason).await?;
                    break;
                }
                Err(SinkError::Rejected(_)) => {
                    let mid = lo + (hi - lo) / 2;
                    ranges.push((mid, hi));
                    ranges.push((lo, mid));
                    break;
                }
            }
        }
    }
    Ok(true)
}

pub(crate) fn commit(
    consumer: &StreamConsumer,
    topic: &str,
    next_offsets: &BTreeMap<i32, i64>,
) -> anyhow::Result<()> {
    if next_offsets.is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for (&partition, &next) in next_offsets {
        tpl.add_partition_offset(topic, partition, Offset::Offset(next))?;
    }
    if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
        // Typically a partition moved to another instance during a rebalance: that instance
        // re-reads from the last commit, and the sink collapses the repeats.
        tracing::warn!(topic, error = %e, "offset commit failed; records may be re-read");
    }
    Ok(())
}

/// Producer of dead-letter records for one stage.
pub struct DeadLetters {
    producer: EventProducer,
    codec: Codec<DeadLetter>,
    topic: String,
    stage: String,
}

impl DeadLetters {
    pub fn new(kafka: &KafkaConfig, stage: &str) -> anyhow::Result<Self> {
        Ok(Self {
            producer: EventProducer::new(kafka, &format!("{stage}-dlq"))?,
            codec: Codec::new()?,
            topic: kafka.topics.dead_letter.clone(),
            stage: stage.to_string(),
        })
    }

    /// Writes one dead letter and waits for the broker's acknowledgement. `cause` is a short
    /// label for the `secpipe_dead_letters_total` metric (undecodable, rejected, refused).
    pub(crate) async fn send(
        &self,
        topic: &str,
        origin: &Origin,
        cause: &'static str,
        error: &str,
    ) -> anyhow::Result<()> {
        metrics::counter!("secpipe_dead_letters_total", "stage" => self.stage.clone(), "cause" => cause)
            .increment(1);
        let letter = DeadLetter {
            stage: self.stage.clone(),
            topic: topic.to_string(),
            partition: origin.partition,
            offset: origin.offset,
            key: origin.key.clone(),
            payload: origin.payload.clone(),
            error: error.to_string(),
            failed_at: now_micros(),
        };
        let payload = self.codec.encode(&letter)?;
        self.producer
            .send(OutRecord {
                topic: &self.topic,
                key: origin.key.as_deref().unwrap_or_default(),
                payload: &payload,
                headers: &[("secpipe-stage", self.stage.as_bytes())],
                partition: None,
            })
            .await?;
        Ok(())
    }
}
