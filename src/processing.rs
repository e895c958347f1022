//! The processor runtime: runs any [`Processor`] as a member of a Kafka consumer group, with its
//! per-partition state kept in a changelog topic.
//!
//! Per batch, in this order:
//! 1. process the records (skipping any at or below the partition's applied offset);
//! 2. produce the outputs and wait for the broker's acknowledgement;
//! 3. write the state changes of each partition, plus an `__applied__` marker holding the last
//!    applied offset, to the same partition of the changelog topic, and wait;
//! 4. commit the input offsets.
//!
//! A crash before (3) replays the batch from the old state: processors are deterministic, so the
//! replay emits the same records with the same ids (which the tables collapse). A crash after
//! (3) restores a state that already holds the batch, and the marker makes the replay skip it.
//! That is effectively-once output without Kafka transactions, which tansu does not offer.
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::{Duration, Instant},
};

use anyhow::Context;
use rdkafka::{
    consumer::{BaseConsumer, Consumer, StreamConsumer},
    message::Message,
    Offset, TopicPartitionList,
};
use secpipe_processors::{Change, InRecord, Outputs, PartitionState, ProcessError, Processor};
use secpipe_producers::{EventProducer, KafkaConfig, OutRecord};
use serde::{Deserialize, Serialize};

use crate::runtime::{commit, consumer, origin_of, DeadLetters, Shutdown};

const APPLIED: &str = "__applied__";

/// The processor runtime's settings (section `[processors]`, with one sub-section per processor).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessorsConfig {
    /// A batch is flushed (outputs, changelog, commit) after this many input records. Default 5000.
    pub batch_max_records: usize,
    /// ... or when its first record waited this long, in milliseconds. Default 100.
    pub batch_max_wait_ms: u64,
    /// How often `tick` runs (window flushes, state expiry), in milliseconds. Default 5000.
    pub tick_interval_ms: u64,
    /// Changelog topics are `<prefix><processor name>`. Default `secpipe.changelog.`.
    pub changelog_prefix: String,
    /// Consumer groups are `<prefix><processor name>`. Default `secpipe-`.
    pub group_prefix: String,
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
            tick_interval_ms: 5_000,
            changelog_prefix: "secpipe.changelog.".into(),
            group_prefix: "secpipe-".into(),
            admin_events: Default::default(),
            scan_results: Default::default(),
            telemetry: Default::default(),
            alert_rules: secpipe_processors::alerts::default_rules(),
        }
    }
}

/// One input partition's state and progress.
struct Part<S> {
    state: S,
    /// Offsets at or below this are already reflected in `state`.
    applied: i64,
    /// The last offset processed in the current batch.
    pending: Option<i64>,
}

/// Reads partition `partition` of `changelog` from its beginning into a fresh state.
fn restore<S: PartitionState>(
    kafka: &KafkaConfig,
    changelog: &str,
    partition: i32,
) -> anyhow::Result<Part<S>> {
    let started = Instant::now();
    let reader: BaseConsumer = kafka
        .client_config("changelog-restore")
        .set("group.id", "secpipe-changelog-restore")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()?;
    let (low, high) = reader
        .fetch_watermarks(changelog, partition, Duration::from_secs(10))
        .with_context(|| format!("watermarks of {changelog}/{partition}"))?;
    let mut part = Part {
        state: S::default(),
        applied: -1,
        pending: None,
    };
    if high > low {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(changelog, partition, Offset::Offset(low))?;
        reader.assign(&tpl)?;
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut next = low;
        while next < high {
            anyhow::ensure!(
                Instant::now() < deadline,
                "restoring {changelog}/{partition} timed out at {next} of {high}"
            );
            let Some(msg) = reader.poll(Duration::from_millis(500)) else {
                continue;
            };
            let msg = msg?;
            next = msg.offset() + 1;
            let key = String::from_utf8_lossy(msg.key().unwrap_or_default()).into_owned();
            if key == APPLIED {
                if let Some(v) = msg.payload() {
                    part.applied = String::from_utf8_lossy(v).parse().unwrap_or(part.applied);
                }
                continue;
            }
            let change = Change {
                key,
                value: msg.payload().map(<[u8]>::to_vec),
            };
            part.state
                .apply(&change)
                .map_err(|e| anyhow::anyhow!("{changelog}/{partition}@{}: {e}", msg.offset()))?;
        }
    }
    tracing::info!(
        changelog,
        partition,
        records = high - low,
        applied = part.applied,
        ms = started.elapsed().as_millis() as u64,
        "state restored"
    );
    Ok(part)
}

/// Runs `processor` until shutdown.
pub async fn run_processor<P: Processor>(
    kafka: &KafkaConfig,
    cfg: &ProcessorsConfig,
    mut processor: P,
    mut shutdown: Shutdown,
) -> anyhow::Result<()> {
    let name = processor.name();
    let stage = format!("process.{name}");
    let input = processor.input_topic().to_string();
    let changelog = format!("{}{name}", cfg.changelog_prefix);
    let group = format!("{}{name}", cfg.group_prefix);
    let consumer = consumer(kafka, &stage, &group, &[&input])?;
    let producer = EventProducer::new(kafka, &stage)?;
    let dlq = DeadLetters::new(kafka, &stage)?;
    let mut parts: HashMap<i32, Part<P::State>> = HashMap::new();
    let mut outputs = Outputs::default();
    let mut next_offsets: BTreeMap<i32, i64> = BTreeMap::new();
    let mut in_batch = 0usize;
    let max_wait = Duration::from_millis(cfg.batch_max_wait_ms);
    let mut deadline = tokio::time::Instant::now() + max_wait;
    let consumed = metrics::counter!("secpipe_records_consumed_total", "stage" => stage.clone(), "topic" => input.clone());
    crate::ops::set_assigned(&stage, false);
    let mut observe_tick = tokio::time::interval(Duration::from_secs(5));
    let mut ticker = tokio::time::interval(Duration::from_millis(cfg.tick_interval_ms));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(
        processor = name,
        input,
        group,
        changelog,
        "processor started"
    );
    loop {
        let flush_now = tokio::select! {
            biased;
            _ = shutdown.wait() => break,
            _ = tokio::time::sleep_until(deadline), if in_batch > 0 || !outputs.records.is_empty() => true,
            _ = observe_tick.tick() => {
                crate::runtime::observe(&consumer, &stage, &input);
                false
            }
            _ = ticker.tick() => {
                let now = secpipe_schemas::now_micros();
                for part in parts.values_mut() {
                    processor.tick(&mut part.state, now, &mut outputs);
                }
                !outputs.records.is_empty()
            }
            msg = consumer.recv() => {
                let msg = match msg {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(processor = name, error = %e, "consume error");
                        continue;
                    }
                };
                consumed.increment(1);
                let partition = msg.partition();
                let part = match parts.entry(partition) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(restore::<P::State>(kafka, &changelog, partition)?)
                    }
                };
                if in_batch == 0 {
                    deadline = tokio::time::Instant::now() + max_wait;
                }
                in_batch += 1;
                let offset = msg.offset();
                let next = next_offsets.entry(partition).or_insert(offset + 1);
                *next = (*next).max(offset + 1);
                if offset > part.applied {
                    let record = InRecord {
                        topic: &input,
                        partition,
                        offset,
                        timestamp_ms: msg.timestamp().to_millis().unwrap_or(0),
                        key: msg.key(),
                        payload: msg.payload().unwrap_or_default(),
                    };
                    if let Err(e) = processor.process(&mut part.state, &record, &mut outputs) {
                        let origin = origin_of(&msg);
                        tracing::warn!(processor = name, topic = %input, partition, offset, error = %e,
                            "record sent to the dead-letter topic");
                        if let ProcessError::Encode(_) = e {
                            tracing::error!(processor = name, "an output did not encode: a bug, not bad input");
                        }
                        dlq.send(&input, &origin, "unprocessable", &e.to_string()).await?;
                    }
                    part.pending = Some(offset);
                }
                in_batch >= cfg.batch_max_records
            }
        };
        if flush_now {
            flush(
                &consumer,
                &producer,
                &input,
                &changelog,
                &mut parts,
                &mut outputs,
                &mut next_offsets,
                &mut shutdown,
            )
            .await?;
            in_batch = 0;
        }
    }
    // Finish the batch in hand before leaving the group.
    if in_batch > 0 || !outputs.records.is_empty() {
        flush(
            &consumer,
            &producer,
            &input,
            &changelog,
            &mut parts,
            &mut outputs,
            &mut next_offsets,
            &mut shutdown,
        )
        .await?;
    }
    consumer.unsubscribe();
    tracing::info!(processor = name, "processor stopped");
    Ok(())
}

/// Outputs, then changelog, then offsets.
#[allow(clippy::too_many_arguments)]
async fn flush<S: PartitionState>(
    consumer: &StreamConsumer,
    producer: &EventProducer,
    input: &str,
    changelog: &str,
    parts: &mut HashMap<i32, Part<S>>,
    outputs: &mut Outputs,
    next_offsets: &mut BTreeMap<i32, i64>,
    shutdown: &mut Shutdown,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let c = std::mem::take(&mut outputs.counters);
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
    let mut per_topic: BTreeMap<&str, u64> = BTreeMap::new();
    for r in &outputs.records {
        *per_topic.entry(&r.topic).or_default() += 1;
    }
    for (topic, n) in per_topic {
        metrics::counter!("secpipe_records_produced_total", "topic" => topic.to_string())
            .increment(n);
    }
    let records: Vec<OutRecord<'_>> = outputs
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
    send_retrying(producer, &records, shutdown).await?;
    outputs.records.clear();

    let mut changes: Vec<(i32, Change)> = Vec::new();
    for (&p, part) in parts.iter_mut() {
        for c in part.state.drain_changes() {
            changes.push((p, c));
        }
        if let Some(offset) = part.pending.take() {
            part.applied = offset;
            changes.push((
                p,
                Change {
                    key: APPLIED.into(),
                    value: Some(offset.to_string().into_bytes()),
                },
            ));
        }
    }
    let log: Vec<OutRecord<'_>> = changes
        .iter()
        .map(|(p, c)| OutRecord {
            topic: changelog,
            key: c.key.as_bytes(),
            payload: c.value.as_deref().unwrap_or_default(),
            headers: &[],
            partition: Some(*p),
        })
        .collect();
    send_retrying(producer, &log, shutdown).await?;

    commit(consumer, input, next_offsets)?;
    next_offsets.clear();
    metrics::histogram!("secpipe_processor_flush_seconds", "input" => input.to_string())
        .record(started.elapsed().as_secs_f64());

    // Partitions given to another instance: forget their state (it restores from the changelog).
    if let Ok(assignment) = consumer.assignment() {
        let owned: HashSet<i32> = assignment
            .elements_for_topic(input)
            .iter()
            .map(|e| e.partition())
            .collect();
        parts.retain(|p, _| owned.contains(p));
    }
    Ok(())
}

async fn send_retrying(
    producer: &EventProducer,
    records: &[OutRecord<'_>],
    shutdown: &mut Shutdown,
) -> anyhow::Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    let mut backoff = Duration::from_millis(100);
    loop {
        match producer.send_all(records).await {
            Ok(_) => return Ok(()),
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
