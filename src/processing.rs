//! The processor runtime: runs any [`Processor`] as a member of a Kafka consumer group, with the
//! state of each owned partition kept in a changelog topic (see [`crate::changelog`]).
//!
//! Ownership is explicit. When the group assigns a partition, its state is restored (a claim,
//! then replay from the last snapshot); when it revokes one, the batch in hand is flushed and
//! the partition's state dropped. Nothing is ever written for a partition this instance does
//! not own, and a stale owner's late writes are fenced by the claim.
//!
//! Per batch, in this order:
//! 1. process the records (skipping any at or below the partition's applied offset);
//! 2. produce the outputs and wait for the broker's acknowledgement;
//! 3. write the state changes of each partition, an `__applied__` marker holding the last
//!    applied offset and, when due, a snapshot, to the same partition of the changelog, and wait;
//! 4. commit the input offsets (and the offset of each new snapshot).
//!
//! A crash before (3) replays the batch from the old state: processors are deterministic, so the
//! replay emits the same records with the same ids (which the tables collapse). A crash after
//! (3) restores a state that already holds the batch, and the marker makes the replay skip it.
//! That is effectively-once output without Kafka transactions, which tansu does not offer.
use std::{collections::BTreeMap, time::Duration};

use anyhow::Context;
use rdkafka::Message;

use secpipe_processors::{Change, InRecord, Outputs, PartitionState, ProcessError, Processor};
use secpipe_producers::{EventProducer, KafkaConfig, OutRecord};
use serde::{Deserialize, Serialize};

use crate::{
    changelog::{self, APPLIED, CLAIM_HEADER, SNAPSHOT},
    member::{Member, Ownership},
    runtime::{origin_of, BatchTimer, DeadLetters, Shutdown},
};

/// The processor runtime's settings (section `[processors]`, with one sub-section per processor).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessorsConfig {
    /// A batch is flushed (outputs, changelog, commit) after this many input records. Default 5000.
    pub batch_max_records: usize,
    /// ... or when its first record waited this long, in milliseconds. Default 100.
    pub batch_max_wait_ms: u64,
    /// ... or, once the consumer has caught up (every fetched record read, none waiting), as
    /// soon as its first record waited this long, in milliseconds. Capped at
    /// `batch_max_wait_ms`. Default 10.
    pub batch_min_wait_ms: u64,
    /// How often `tick` runs (window flushes, state expiry), in milliseconds. Default 5000.
    pub tick_interval_ms: u64,
    /// Changelog topics are `<prefix><processor name>`. Default `secpipe.changelog.`.
    pub changelog_prefix: String,
    /// Consumer groups are `<prefix><processor name>`. Default `secpipe-`.
    pub group_prefix: String,
    /// A partition's whole state is written to the changelog again (a snapshot restore starts
    /// from) once this many changelog records, or twice its live keys if more, were written
    /// since the last snapshot. Default 10000.
    pub snapshot_min_records: u64,
    /// Admin events from scan failures.
    pub admin_events: secpipe_processors::admin_events::AdminEventsConfig,
    /// Scan-result dedupe and rollups.
    pub scan_results: secpipe_processors::scan_results::ScanResultsConfig,
    /// Runtime telemetry.
    pub telemetry: secpipe_processors::telemetry::TelemetryConfig,
    /// Alert rules (`[[processors.alert_rules]]`, each with `rule = "..."`). Default: every rule.
    pub alert_rules: Vec<secpipe_processors::alerts::AlertRule>,
}

impl Default for ProcessorsConfig {
    fn default() -> Self {
        Self {
            batch_max_records: 5_000,
            batch_max_wait_ms: 100,
            batch_min_wait_ms: 10,
            tick_interval_ms: 5_000,
            changelog_prefix: "secpipe.changelog.".into(),
            group_prefix: "secpipe-".into(),
            snapshot_min_records: 10_000,
            admin_events: Default::default(),
            scan_results: Default::default(),
            telemetry: Default::default(),
            alert_rules: secpipe_processors::alerts::default_rules(),
        }
    }
}

/// One owned input partition's state and progress.
struct Part<S> {
    state: S,
    /// Offsets at or below this are already reflected in `state`.
    applied: i64,
    /// The last offset processed in the current batch.
    pending: Option<i64>,
    /// This owner's claim on the changelog partition, as written in every record's header.
    claim: Vec<u8>,
    /// Changelog records written since the last snapshot (or read by the restore).
    since_snapshot: u64,
}

/// Everything a processor instance holds besides its Kafka member.
struct Runner<'a, P: Processor> {
    processor: P,
    kafka: &'a KafkaConfig,
    cfg: &'a ProcessorsConfig,
    input: String,
    changelog: String,
    producer: EventProducer,
    dlq: DeadLetters,
    parts: BTreeMap<i32, Part<P::State>>,
    outputs: Outputs,
    /// Next offset to commit per partition for the batch in hand.
    next_offsets: BTreeMap<i32, i64>,
    in_batch: usize,
}

/// Runs `processor` until shutdown.
pub async fn run_processor<P: Processor>(
    kafka: &KafkaConfig,
    cfg: &ProcessorsConfig,
    processor: P,
    mut shutdown: Shutdown,
) -> anyhow::Result<()>
where
    P::State: 'static,
{
    let name = processor.name();
    let stage = format!("process.{name}");
    let input = processor.input_topic().to_string();
    let changelog = format!("{}{name}", cfg.changelog_prefix);
    let group = format!("{}{name}", cfg.group_prefix);
    // Input partition p keeps its state in changelog partition p: refuse to start on a
    // topology where some input partition has no changelog partition.
    tokio::task::spawn_blocking({
        let (kafka, input, changelog) = (kafka.clone(), input.clone(), changelog.clone());
        move || -> anyhow::Result<()> {
            let client: rdkafka::consumer::BaseConsumer =
                kafka.client_config("topology").create()?;
            crate::operate::check_changelog_partitions(&client, &input, &changelog)
        }
    })
    .await??;
    let member = Member::join(kafka, &stage, &group, &input)?;
    let mut run = Runner {
        processor,
        kafka,
        cfg,
        producer: EventProducer::new(kafka, &stage)?,
        dlq: DeadLetters::new(kafka, &stage)?,
        input,
        changelog,
        parts: BTreeMap::new(),
        outputs: Outputs::default(),
        next_offsets: BTreeMap::new(),
        in_batch: 0,
    };
    let live = crate::ops::liveness(&stage);
    let mut timer = BatchTimer::new(cfg.batch_min_wait_ms, cfg.batch_max_wait_ms);
    let consumed = metrics::counter!("secpipe_records_consumed_total", "stage" => stage.clone(), "topic" => run.input.clone());
    let mut observe_tick = tokio::time::interval(Duration::from_secs(5));
    let mut ticker = tokio::time::interval(Duration::from_millis(cfg.tick_interval_ms));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(processor = name, input = %run.input, group, changelog = %run.changelog, "processor started");
    loop {
        live.beat();
        let lingering = run.in_batch > 0;
        let lingered = lingering && tokio::time::Instant::now() >= timer.early();
        let flush_now = tokio::select! {
            biased;
            _ = shutdown.wait() => break,
            _ = member.changed() => {
                run.on_ownership(&member, &mut shutdown).await?;
                false
            }
            _ = tokio::time::sleep_until(timer.deadline()), if run.has_pending() => true,
            _ = observe_tick.tick() => {
                member.observe();
                false
            }
            _ = ticker.tick() => {
                let now = secpipe_schemas::now_micros();
                for part in run.parts.values_mut() {
                    run.processor.tick(&mut part.state, now, &mut run.outputs);
                }
                !run.outputs.records.is_empty()
            }
            msg = member.recv() => {
                // A rebalance runs inside recv: apply it before the record it preceded.
                let restored = run.on_ownership(&member, &mut shutdown).await?;
                let msg = match msg {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(processor = name, error = %e, "consume error");
                        continue;
                    }
                };
                consumed.increment(1);
                let partition = msg.partition();
                if restored.contains(&partition) {
                    continue; // fetched before the seek to the restored state: read again
                }
                if !run.parts.contains_key(&partition) {
                    if member.owned().contains(&partition) {
                        run.restore(&member, partition).await?;
                    }
                    continue; // not ours, or read again after the seek
                }
                if run.in_batch == 0 {
                    timer.open();
                }
                run.process(&msg).await?;
                run.in_batch >= cfg.batch_max_records
            }
            _ = tokio::time::sleep_until(timer.early()), if lingering && !lingered => false,
            // Reached only when no record was ready: the consumer has read all it fetched.
            _ = std::future::ready(()), if lingered => true,
        };
        if flush_now {
            run.flush(&member, &mut shutdown, Commit::InBackground)
                .await?;
        }
    }
    // Finish the batch in hand before leaving the group.
    if run.has_pending() {
        run.flush(&member, &mut shutdown, Commit::Wait).await?;
    }
    member.leave();
    tracing::info!(processor = name, "processor stopped");
    Ok(())
}

impl<P: Processor> Runner<'_, P>
where
    P::State: 'static,
{
    fn has_pending(&self) -> bool {
        self.in_batch > 0 || !self.outputs.records.is_empty()
    }

    /// Restores state for newly assigned partitions (and seeks them to what it holds); flushes
    /// and drops revoked ones. Returns the partitions it restored.
    async fn on_ownership(
        &mut self,
        member: &Member,
        shutdown: &mut Shutdown,
    ) -> anyhow::Result<Vec<i32>> {
        let mut restored = Vec::new();
        for change in member.ownership_changes() {
            match change {
                Ownership::Revoked(gone) => {
                    if self.has_pending() {
                        // What is durable gets committed while the commit can still land; the
                        // rest is fenced by the claim and read again by the new owner.
                        self.flush(member, shutdown, Commit::Wait).await?;
                    }
                    for p in gone {
                        self.parts.remove(&p);
                    }
                }
                Ownership::Assigned(new) => {
                    for p in new {
                        self.restore(member, p).await?;
                        restored.push(p);
                    }
                }
            }
        }
        Ok(restored)
    }

    async fn restore(&mut self, member: &Member, partition: i32) -> anyhow::Result<()> {
        self.parts.remove(&partition);
        let snapshot = match member.committed(&self.changelog, partition).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(changelog = %self.changelog, partition, error = %e,
                    "committed snapshot offset unknown; replaying the whole changelog partition");
                None
            }
        };
        let r = changelog::restore::<P::State>(
            self.kafka,
            &self.producer,
            &self.changelog,
            partition,
            snapshot,
        )
        .await?;
        // The changelog, not the committed offset, says what the state holds: an owner that lost
        // the partition without noticing may have committed input whose state changes the claim
        // fenced off. Read on from what the restored state has applied.
        if r.replay.applied >= 0 {
            member
                .seek(partition, r.replay.applied + 1)
                .await
                .with_context(|| {
                    format!(
                        "seeking {}/{partition} to {}",
                        self.input,
                        r.replay.applied + 1
                    )
                })?;
        }
        self.parts.insert(
            partition,
            Part {
                applied: r.replay.applied,
                state: r.replay.state,
                pending: None,
                claim: r.claim.to_string().into_bytes(),
                // A long replay makes the next flush write a snapshot.
                since_snapshot: r.read,
            },
        );
        Ok(())
    }

    async fn process(&mut self, msg: &rdkafka::message::BorrowedMessage<'_>) -> anyhow::Result<()> {
        let partition = msg.partition();
        let offset = msg.offset();
        let part = self
            .parts
            .get_mut(&partition)
            .expect("restored before processing");
        self.in_batch += 1;
        let next = self.next_offsets.entry(partition).or_insert(offset + 1);
        *next = (*next).max(offset + 1);
        if offset <= part.applied {
            return Ok(());
        }
        let record = InRecord {
            topic: &self.input,
            partition,
            offset,
            timestamp_ms: msg.timestamp().to_millis().unwrap_or(0),
            key: msg.key(),
            payload: msg.payload().unwrap_or_default(),
        };
        let before = self.outputs.records.len();
        // A panic is a bug, but it must not stop the partition for good: the record that caused
        // it is dead-lettered with the panic's message, like any record that cannot be
        // processed. (What the processor changed before panicking stays in its state.)
        let processor = &mut self.processor;
        let outputs = &mut self.outputs;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            processor.process(&mut part.state, &record, outputs)
        }))
        .unwrap_or_else(|panic| {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into());
            outputs.records.truncate(before);
            Err(ProcessError::Panicked(why))
        });
        part.pending = Some(offset);
        // Outputs the topics cannot hold are not forwarded: the input goes to the dead-letter
        // topic (truncated if need be) and the stage moves on.
        let limit = self.producer.max_record_size();
        let mut too_large = Vec::new();
        let mut i = before;
        while i < self.outputs.records.len() {
            let r = &self.outputs.records[i];
            let size = r.key.len() + r.payload.len();
            if size > limit {
                too_large.push(format!(
                    "output to {} of {size} bytes exceeds kafka.max_message_bytes",
                    r.topic
                ));
                self.outputs.records.remove(i);
            } else {
                i += 1;
            }
        }
        if !too_large.is_empty() {
            tracing::warn!(processor = self.processor.name(), topic = %self.input, partition, offset,
                reason = %too_large.join("; "), "output too large; input sent to the dead-letter topic");
            self.dlq
                .send(
                    &self.input,
                    &origin_of(msg),
                    "too_large",
                    &too_large.join("; "),
                )
                .await?;
        }
        if let Err(e) = result {
            let name = self.processor.name();
            tracing::warn!(processor = name, topic = %self.input, partition, offset, error = %e,
                "record sent to the dead-letter topic");
            if let ProcessError::Encode(_) | ProcessError::Panicked(_) = e {
                tracing::error!(
                    processor = name,
                    "an output did not encode or the processor panicked: a bug, not bad input"
                );
            }
            self.dlq
                .send(
                    &self.input,
                    &origin_of(msg),
                    "unprocessable",
                    &e.to_string(),
                )
                .await?;
        }
        Ok(())
    }

    /// Outputs, then changelog (with snapshots when due), then offsets.
    async fn flush(
        &mut self,
        member: &Member,
        shutdown: &mut Shutdown,
        commit: Commit,
    ) -> anyhow::Result<()> {
        let started = std::time::Instant::now();
        let input = self.input.clone();
        count_outcomes(&input, std::mem::take(&mut self.outputs.counters));
        let mut per_topic: BTreeMap<&str, u64> = BTreeMap::new();
        for r in &self.outputs.records {
            *per_topic.entry(&r.topic).or_default() += 1;
        }
        for (topic, n) in per_topic {
            metrics::counter!("secpipe_records_produced_total", "topic" => topic.to_string())
                .increment(n);
        }
        let records: Vec<OutRecord<'_>> = self
            .outputs
            .records
            .iter()
            .map(|r| OutRecord {
                topic: &r.topic,
                key: r.key.as_bytes(),
                payload: &r.payload,
                headers: &[],
                partition: None,
            })
            .collect();
        send_retrying(&self.producer, &records, shutdown).await?;
        self.outputs.records.clear();

        // Changelog: per partition its changes, its applied marker, and a snapshot when due.
        let limit = self.producer.max_record_size().saturating_sub(64);
        let mut changes: Vec<(i32, Change)> = Vec::new();
        let mut snapshots: Vec<(i32, usize)> = Vec::new();
        for (&p, part) in self.parts.iter_mut() {
            let before = changes.len();
            for c in part.state.drain_changes() {
                if fits_changelog(&c, limit) {
                    changes.push((p, c));
                }
            }
            if let Some(offset) = part.pending.take() {
                part.applied = offset;
                changes.push((p, applied_marker(offset)));
            }
            part.since_snapshot += (changes.len() - before) as u64;
            let live = part.state.live_keys() as u64;
            if part.since_snapshot >= self.cfg.snapshot_min_records.max(2 * live) {
                snapshots.push((p, changes.len()));
                changes.push((
                    p,
                    Change {
                        key: SNAPSHOT.into(),
                        value: Some(Vec::new()),
                    },
                ));
                changes.extend(
                    part.state
                        .snapshot()
                        .into_iter()
                        .filter(|c| fits_changelog(c, limit))
                        .map(|c| (p, c)),
                );
                changes.push((p, applied_marker(part.applied)));
                part.since_snapshot = 0;
            }
        }
        let headers: BTreeMap<i32, [(&str, &[u8]); 1]> = self
            .parts
            .iter()
            .map(|(&p, part)| (p, [(CLAIM_HEADER, part.claim.as_slice())]))
            .collect();
        let log: Vec<OutRecord<'_>> = changes
            .iter()
            .map(|(p, c)| OutRecord {
                topic: &self.changelog,
                key: c.key.as_bytes(),
                payload: c.value.as_deref().unwrap_or_default(),
                headers: &headers[p],
                partition: Some(*p),
            })
            .collect();
        let acks = send_retrying(&self.producer, &log, shutdown).await?;

        let mut offsets: BTreeMap<(String, i32), i64> = self
            .next_offsets
            .iter()
            .map(|(&p, &next)| ((input.clone(), p), next))
            .collect();
        for (p, index) in snapshots {
            if let Some(ack) = acks.get(index) {
                offsets.insert((self.changelog.clone(), p), ack.offset);
            }
        }
        match commit {
            Commit::Wait => member.commit(&offsets).await?,
            Commit::InBackground => member.commit_in_background(&offsets)?,
        }
        self.next_offsets.clear();
        self.in_batch = 0;
        metrics::histogram!("secpipe_processor_flush_seconds", "input" => input)
            .record(started.elapsed().as_secs_f64());
        Ok(())
    }
}

/// How a flush commits its offsets. In the steady state the next batch does not wait for the
/// commit's round trip: the changelog's applied marker, written and acknowledged before, is what
/// makes a replay skip the batch if the commit is lost. Before partitions move or the process
/// stops, the commit is waited for, so the next owner starts where this one ended.
#[derive(Debug, Clone, Copy)]
enum Commit {
    Wait,
    InBackground,
}

/// A state entry too large for the changelog cannot be persisted: it is kept in memory only
/// (lost at the next restore) rather than failing every flush of the partition for good.
fn fits_changelog(c: &Change, limit: usize) -> bool {
    let size = c.key.len() + c.value.as_ref().map_or(0, Vec::len);
    if size > limit {
        tracing::error!(key = %c.key.chars().take(80).collect::<String>(), size,
            "state entry too large for the changelog; kept in memory only");
        metrics::counter!("secpipe_changelog_oversized_total").increment(1);
        return false;
    }
    true
}

fn applied_marker(offset: i64) -> Change {
    Change {
        key: APPLIED.into(),
        value: Some(offset.to_string().into_bytes()),
    }
}

fn count_outcomes(input: &str, c: secpipe_processors::Counters) {
    for (outcome, n) in [
        ("dedupe_hit", c.dedupe_hits),
        ("rate_limited", c.rate_limited),
        ("expired", c.expired),
        ("redacted", c.redacted),
        ("alert", c.alerts),
    ] {
        if n > 0 {
            metrics::counter!("secpipe_processor_events_total", "input" => input.to_string(), "outcome" => outcome)
                .increment(n);
        }
    }
}

async fn send_retrying(
    producer: &EventProducer,
    records: &[OutRecord<'_>],
    shutdown: &mut Shutdown,
) -> anyhow::Result<Vec<secpipe_producers::Ack>> {
    if records.is_empty() {
        return Ok(Vec::new());
    }
    let mut backoff = Duration::from_millis(100);
    loop {
        match producer.send_all(records).await {
            Ok(acks) => return Ok(acks),
            Err(secpipe_producers::ProduceError::Unavailable(reason)) => {
                anyhow::ensure!(
                    !shutdown.is_triggered(),
                    "stopping while the broker is unavailable: {reason}"
                );
                tracing::warn!(%reason, retry_in_ms = backoff.as_millis() as u64, "broker unavailable; retrying outputs");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e.into()),
        }
    }
}
