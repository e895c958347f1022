//! The sink runtime: the one consume → decode → batch → write → commit loop that every sink
//! shares, on a [`Member`] of the sink's consumer group. Sinks never talk to Kafka themselves.
//!
//! Guarantees: an offset is committed only after the sink acknowledged every record before it
//! (or the record went to the dead-letter topic, acknowledged by the broker), and only for a
//! partition this instance still owns. After a crash or a partition move the uncommitted tail is
//! read again; sinks collapse the repeats by stable record ids. While the destination is down
//! the partitions are paused and polling goes on, so the group keeps this member.
use std::{collections::BTreeMap, time::Duration};

use rdkafka::message::{BorrowedMessage, Message};
use secpipe_producers::{EventProducer, KafkaConfig, OutRecord};
use secpipe_schemas::{now_micros, ops::DeadLetter, Codec, Decode};
use secpipe_sinks::{Sink, SinkError};
use tokio::sync::watch;

use crate::{config::LoaderConfig, member::Member};

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

/// Where a record came from and its original bytes (they go to the dead-letter topic if the
/// record cannot be decoded or the destination rejects it).
pub(crate) struct Origin<'a> {
    partition: i32,
    offset: i64,
    key: Option<&'a [u8]>,
    payload: &'a [u8],
}

pub(crate) fn origin_of<'a>(msg: &'a BorrowedMessage<'_>) -> Origin<'a> {
    Origin {
        partition: msg.partition(),
        offset: msg.offset(),
        key: msg.key(),
        payload: msg.payload().unwrap_or_default(),
    }
}

/// Arena capacity kept for the next batch; a larger arena is freed.
const ARENA_KEPT: usize = 64 << 20;

/// A batch record's origin: its key and payload are ranges of the batch's byte arena.
struct Held {
    partition: i32,
    offset: i64,
    key: Option<std::ops::Range<usize>>,
    payload: std::ops::Range<usize>,
}

/// The records read since the last commit: decoded records with their origins, and the highest
/// offset read per partition (dead-lettered records included). The origins' bytes share one
/// arena, reused from batch to batch, so holding them costs no allocation per record.
struct Batch<R> {
    records: Vec<R>,
    origins: Vec<Held>,
    bytes: Vec<u8>,
    next_offsets: BTreeMap<i32, i64>,
}

impl<R> Batch<R> {
    fn new(capacity: usize) -> Self {
        Self {
            records: Vec::with_capacity(capacity),
            origins: Vec::with_capacity(capacity),
            bytes: Vec::new(),
            next_offsets: BTreeMap::new(),
        }
    }

    fn saw(&mut self, partition: i32, offset: i64) {
        let next = self.next_offsets.entry(partition).or_insert(offset + 1);
        *next = (*next).max(offset + 1);
    }

    /// Adds a decoded record and keeps a copy of its origin.
    fn push(&mut self, record: R, origin: &Origin<'_>) {
        let mut copy = |b: &[u8]| {
            let start = self.bytes.len();
            self.bytes.extend_from_slice(b);
            start..self.bytes.len()
        };
        let key = origin.key.map(&mut copy);
        let payload = copy(origin.payload);
        self.records.push(record);
        self.origins.push(Held {
            partition: origin.partition,
            offset: origin.offset,
            key,
            payload,
        });
    }

    /// The origin of record `i`.
    fn origin(&self, i: usize) -> Origin<'_> {
        let h = &self.origins[i];
        Origin {
            partition: h.partition,
            offset: h.offset,
            key: h.key.clone().map(|r| &self.bytes[r]),
            payload: &self.bytes[h.payload.clone()],
        }
    }

    fn is_empty(&self) -> bool {
        self.next_offsets.is_empty()
    }

    fn clear(&mut self) {
        self.records.clear();
        self.origins.clear();
        if self.bytes.capacity() > ARENA_KEPT {
            self.bytes = Vec::new(); // a batch of unusually large records: give the memory back
        }
        self.bytes.clear();
        self.next_offsets.clear();
    }
}

/// The time side of batching, shared by sinks and processors. A batch is due
/// `batch_max_wait_ms` after its first record arrived, or already `batch_min_wait_ms` after it
/// once the stage has caught up: it has read every record it fetched and none is ready (group
/// commit: under a backlog records are always ready, and a batch grows while the previous one
/// is written).
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchTimer {
    opened: tokio::time::Instant,
    min_wait: Duration,
    max_wait: Duration,
}

impl BatchTimer {
    /// The minimum wait is capped at the maximum.
    pub(crate) fn new(min_wait_ms: u64, max_wait_ms: u64) -> Self {
        Self {
            opened: tokio::time::Instant::now(),
            min_wait: Duration::from_millis(min_wait_ms.min(max_wait_ms)),
            max_wait: Duration::from_millis(max_wait_ms),
        }
    }

    /// The batch got its first record now.
    pub(crate) fn open(&mut self) {
        self.opened = tokio::time::Instant::now();
    }

    /// When the batch is due, caught up or not.
    pub(crate) fn deadline(&self) -> tokio::time::Instant {
        self.opened + self.max_wait
    }

    /// From when the batch is due if the stage has caught up.
    pub(crate) fn early(&self) -> tokio::time::Instant {
        self.opened + self.min_wait
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
    let member = Member::join(kafka, stage, &cfg.group_id, topic)?;
    let live = crate::ops::liveness(stage);
    let dlq = DeadLetters::new(kafka, stage)?;
    let mut batch = Batch::new(cfg.batch_max_rows);
    let mut spare: Option<Batch<S::Record>> = None;
    let mut idle_sink = Some(sink);
    let mut in_flight: Option<Written<'_, S, S::Record>> = None;
    let mut timer = BatchTimer::new(cfg.batch_min_wait_ms, cfg.batch_max_wait_ms);
    // Whether the stage has read all it fetched (nothing more was ready) since the batch
    // lingered `batch_min_wait_ms`: the batch is then due.
    let mut drained = false;
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
    let mut observe_tick = tokio::time::interval(Duration::from_secs(5));
    let mut late_tick = tokio::time::interval(Duration::from_secs(1));
    // Backpressure: a full batch waits for the one in flight without reading more. Once that
    // lasts PAUSE_AFTER (the destination is slow or down), the partitions are paused and polling
    // resumes, so the group keeps this member however long it lasts. On resume every partition
    // is sought to the record after the last one read, so nothing librdkafka had fetched and
    // dropped at the pause is skipped.
    let mut full_since: Option<tokio::time::Instant> = None;
    let mut positions: BTreeMap<i32, i64> = BTreeMap::new();
    tracing::info!(stage, topic, group = %cfg.group_id, "sink started");
    let stopped_in_outage = loop {
        live.beat();
        // Ownership changes need no action here: commits only name owned partitions, and a
        // revoked partition's rows in hand are written (the tables collapse repeats).
        member.ownership_changes();
        let full = batch.records.len() >= cfg.batch_max_rows;
        let now = tokio::time::Instant::now();
        let due = !batch.is_empty() && (full || drained || now >= timer.deadline());
        if due && in_flight.is_none() {
            drained = false;
            let next = spare
                .take()
                .unwrap_or_else(|| Batch::new(cfg.batch_max_rows));
            let b = std::mem::replace(&mut batch, next);
            let sink = idle_sink
                .take()
                .expect("the sink is idle when nothing is in flight");
            in_flight = Some(launch(sink, b, shutdown.clone()));
        }
        let lingering = !batch.is_empty() && in_flight.is_none();
        let lingered = lingering && now >= timer.early();
        tokio::select! {
            biased;
            _ = shutdown.wait() => break false,
            (sink, mut b, result) = async { in_flight.as_mut().expect("guarded").await }, if in_flight.is_some() => {
                in_flight = None;
                idle_sink = Some(sink);
                if !result? {
                    break true; // stopped during an outage: nothing committed, read again later
                }
                member.commit_in_background(&offsets_of(topic, &b.next_offsets))?;
                b.clear();
                spare = Some(b);
            }
            _ = tokio::time::sleep_until(timer.deadline()), if !batch.is_empty() && in_flight.is_none() => {}
            _ = observe_tick.tick() => member.observe(),
            _ = late_tick.tick(), if idle_sink.is_some() => {
                let sink = idle_sink.as_mut().expect("guarded");
                dead_letter_late(sink, stage, topic, &dlq).await?;
            }
            _ = member.changed() => {}
            _ = tokio::time::sleep_until(full_since.map_or(timer.deadline(), |t| t + PAUSE_AFTER)),
                if full_since.is_some() && !member.is_paused() => {}
            _ = tokio::time::sleep_until(timer.early()), if lingering && !lingered => {}
            // While paused, polling goes on; a record that arrives anyway joins the batch.
            msg = member.recv(), if !full || member.is_paused() => {
                let msg = match msg {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(stage, error = %e, "consume error");
                        continue;
                    }
                };
                if batch.is_empty() {
                    timer.open();
                }
                consumed.increment(1);
                let origin = origin_of(&msg);
                batch.saw(origin.partition, origin.offset);
                positions.insert(origin.partition, origin.offset + 1);
                match decoder.decode(origin.payload) {
                    Ok(record) => batch.push(record, &origin),
                    Err(e) => {
                        tracing::warn!(stage, topic, partition = origin.partition,
                            offset = origin.offset, error = %e,
                            "undecodable record sent to the dead-letter topic");
                        dlq.send(topic, &origin, "undecodable", &e.to_string()).await?;
                    }
                }
            }
            // Reached only when no record was ready: the consumer has read all it fetched.
            _ = std::future::ready(()), if lingered => drained = true,
        }
        if batch.records.len() >= cfg.batch_max_rows && in_flight.is_some() {
            let since = *full_since.get_or_insert_with(tokio::time::Instant::now);
            if since.elapsed() >= PAUSE_AFTER && !member.is_paused() {
                member.set_paused(true);
            }
        } else {
            full_since = None;
            if member.is_paused() {
                member.resume_at(&positions).await?;
            }
        }
    };
    // Finish the work in hand, in order: the batch in flight, then the one being read (one
    // attempt each: the shutdown is already triggered), each committed only if it landed.
    if let Some(fut) = in_flight.take() {
        let (sink, b, result) = fut.await;
        idle_sink = Some(sink);
        if result? && !stopped_in_outage {
            member.commit(&offsets_of(topic, &b.next_offsets)).await?;
            if !batch.is_empty() {
                if let Some(sink) = idle_sink.as_mut() {
                    if write_batch(sink, cfg, stage, topic, &dlq, &batch, &mut shutdown).await? {
                        member
                            .commit(&offsets_of(topic, &batch.next_offsets))
                            .await?;
                    }
                }
            }
        }
    } else if !stopped_in_outage && !batch.is_empty() {
        if let Some(sink) = idle_sink.as_mut() {
            if write_batch(sink, cfg, stage, topic, &dlq, &batch, &mut shutdown).await? {
                member
                    .commit(&offsets_of(topic, &batch.next_offsets))
                    .await?;
            }
        }
    }
    if let Some(sink) = idle_sink.as_mut() {
        sink.close().await;
        dead_letter_late(sink, stage, topic, &dlq).await?;
    }
    member.leave();
    tracing::info!(stage, "sink stopped");
    Ok(())
}

/// Dead-letters what the sink gave up on after its batches were acknowledged (without partition
/// and offset: -1). A sink not ready to say is asked again at the next tick.
async fn dead_letter_late<S: Sink>(
    sink: &mut S,
    stage: &str,
    topic: &str,
    dlq: &DeadLetters,
) -> anyhow::Result<()> {
    match sink.late_rejections().await {
        Ok(late) => {
            for r in late {
                tracing::warn!(stage, topic, reason = %r.reason,
                    "record given up on after its batch; sent to the dead-letter topic");
                let origin = Origin {
                    partition: -1,
                    offset: -1,
                    key: Some(&r.key),
                    payload: &r.payload,
                };
                dlq.send(topic, &origin, "refused", &r.reason).await?;
            }
        }
        Err(e) => tracing::warn!(stage, error = %e, "sink not ready; asking again"),
    }
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
                    crate::ops::set_holding(stage, None);
                    for r in rejected {
                        let origin = batch.origin(lo + r.index);
                        tracing::warn!(stage, topic, partition = origin.partition,
                            offset = origin.offset, reason = %r.reason, "record refused; sent to the dead-letter topic");
                        dlq.send(topic, &origin, "refused", &r.reason).await?;
                    }
                    break;
                }
                Err(SinkError::Unavailable(reason)) => {
                    crate::ops::set_holding(stage, Some(&reason));
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
                    crate::ops::set_holding(stage, None);
                    let origin = batch.origin(lo);
                    tracing::warn!(stage, topic, partition = origin.partition,
                        offset = origin.offset, %reason, "row rejected; sent to the dead-letter topic");
                    dlq.send(topic, &origin, "rejected", &reason).await?;
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

/// How long a full batch may wait for the one in flight before the partitions are paused.
const PAUSE_AFTER: Duration = Duration::from_secs(1);

fn offsets_of(topic: &str, next: &BTreeMap<i32, i64>) -> BTreeMap<(String, i32), i64> {
    next.iter()
        .map(|(&p, &o)| ((topic.to_string(), p), o))
        .collect()
}

/// Bytes of a dead letter besides its payload, error, stage, key and topic (Avro framing,
/// numbers, the header), with room to spare.
const DEAD_LETTER_FRAMING: usize = 1024;

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
        origin: &Origin<'_>,
        cause: &'static str,
        error: &str,
    ) -> anyhow::Result<()> {
        metrics::counter!("secpipe_dead_letters_total", "stage" => self.stage.clone(), "cause" => cause)
            .increment(1);
        let mut letter = DeadLetter {
            stage: self.stage.clone(),
            topic: topic.to_string(),
            partition: origin.partition,
            offset: origin.offset,
            key: origin.key.map(<[u8]>::to_vec),
            payload: origin.payload.to_vec(),
            error: error.to_string(),
            failed_at: now_micros(),
        };
        // A record too large for the topics is kept as a truncated copy, so that the letter
        // itself fits and the stage moves on; the error says how much was cut.
        let room = self
            .producer
            .max_record_size()
            .saturating_sub(DEAD_LETTER_FRAMING + letter.error.len() + letter.stage.len())
            .saturating_sub(2 * letter.key.as_ref().map_or(0, Vec::len) + topic.len());
        if letter.payload.len() > room {
            let size = letter.payload.len();
            letter.payload.truncate(room);
            letter.error = format!(
                "{} [record of {size} bytes at {topic}/{}@{}; payload truncated to its first {room} bytes to fit kafka.max_message_bytes]",
                letter.error, origin.partition, origin.offset
            );
            if let Some(key) = &mut letter.key {
                key.truncate(room / 4);
            }
        }
        let payload = self.codec.encode(&letter)?;
        self.producer
            .send(OutRecord {
                topic: &self.topic,
                key: letter.key.as_deref().unwrap_or_default(),
                payload: &payload,
                headers: &[("secpipe-stage", self.stage.as_bytes())],
                partition: None,
            })
            .await?;
        Ok(())
    }
}
