//! A processor's per-partition state lives in partition `p` of its changelog topic, written
//! only by the owner of input partition `p`. This module restores it and fences stale owners.
//!
//! - **Claims fence stale owners.** A new owner first appends a `__claim__` record; its offset
//!   is the owner's claim id, and every record it writes afterwards carries that id in the
//!   `secpipe-claim` header. Replay follows the latest claim: a record stamped with any other
//!   claim was written by an owner that had already lost the partition, and is ignored.
//! - **Snapshots bound restore.** An owner periodically appends a `__snapshot__` marker and its
//!   whole live state, then commits the marker's offset in its consumer group (next to the input
//!   offsets). Restore starts at that offset, so its cost follows the live state, not history,
//!   on a broker that never compacts (tansu).
//! - **`__applied__`** holds the last input offset the state reflects; replayed input at or
//!   below it is skipped.
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    message::{Headers, Message},
    Offset, TopicPartitionList,
};
use secpipe_processors::{Change, PartitionState};
use secpipe_producers::{EventProducer, KafkaConfig, OutRecord};

pub const APPLIED: &str = "__applied__";
pub const CLAIM: &str = "__claim__";
pub const SNAPSHOT: &str = "__snapshot__";
pub const CLAIM_HEADER: &str = "secpipe-claim";

/// Folds changelog records into a state, following claims. Pure: tested without a broker.
#[derive(Debug)]
pub struct Replay<S> {
    pub state: S,
    /// The last input offset the state reflects (-1: none).
    pub applied: i64,
    /// The claim in force: the offset of the latest `__claim__` (or, when replay starts at a
    /// snapshot, the claim its records carry).
    pub claim: Option<i64>,
    /// Records applied and records ignored as a stale owner's.
    pub applied_records: u64,
    pub stale_records: u64,
}

impl<S: PartitionState> Default for Replay<S> {
    fn default() -> Self {
        Self {
            state: S::default(),
            applied: -1,
            claim: None,
            applied_records: 0,
            stale_records: 0,
        }
    }
}

impl<S: PartitionState> Replay<S> {
    /// Applies the record at `offset`. `claim` is its `secpipe-claim` header, if it has one.
    pub fn record(
        &mut self,
        offset: i64,
        key: &str,
        value: Option<&[u8]>,
        claim: Option<i64>,
    ) -> Result<(), String> {
        if key == CLAIM {
            self.claim = Some(offset);
            return Ok(());
        }
        match (self.claim, claim) {
            // Replay started at a snapshot: its claim is the one in force.
            (None, Some(c)) => self.claim = Some(c),
            (Some(current), Some(c)) if c != current => {
                self.stale_records += 1;
                return Ok(());
            }
            // Written by a version without claims, after a claim: not ours to trust.
            (Some(_), None) => {
                self.stale_records += 1;
                return Ok(());
            }
            _ => {}
        }
        self.applied_records += 1;
        match key {
            // A snapshot repeats live values over a state that already holds them.
            SNAPSHOT => Ok(()),
            APPLIED => {
                if let Some(v) = value.and_then(|v| std::str::from_utf8(v).ok()) {
                    self.applied = v.parse().unwrap_or(self.applied);
                }
                Ok(())
            }
            // A deletion is written as an empty value (state values are JSON, never empty);
            // depending on the broker it reads back as no value or as an empty one.
            _ => self.state.apply(&Change {
                key: key.to_string(),
                value: value.filter(|v| !v.is_empty()).map(<[u8]>::to_vec),
            }),
        }
    }
}

/// A restored partition: its state and the claim this owner now writes under.
pub struct Restored<S> {
    pub replay: Replay<S>,
    /// Offset of this owner's `__claim__` record.
    pub claim: i64,
    /// Where replay started (a snapshot, or the log's start) and how many records it read.
    pub from: i64,
    pub read: u64,
    pub elapsed: Duration,
}

/// Claims partition `partition` of `changelog` and restores its state: appends a claim, then
/// replays from `snapshot` (the committed snapshot offset, if any) up to the claim.
pub async fn restore<S: PartitionState + Send + 'static>(
    kafka: &KafkaConfig,
    producer: &EventProducer,
    changelog: &str,
    partition: i32,
    snapshot: Option<i64>,
) -> anyhow::Result<Restored<S>> {
    let started = Instant::now();
    let ack = producer
        .send(OutRecord {
            topic: changelog,
            key: CLAIM.as_bytes(),
            payload: b"",
            headers: &[],
            partition: Some(partition),
        })
        .await
        .with_context(|| format!("claiming {changelog}/{partition}"))?;
    let claim = ack.offset;
    let kafka = kafka.clone();
    let topic = changelog.to_string();
    let (replay, from, read) = tokio::task::spawn_blocking(move || {
        replay_until::<S>(&kafka, &topic, partition, snapshot, claim)
    })
    .await??;
    let restored = Restored {
        replay,
        claim,
        from,
        read,
        elapsed: started.elapsed(),
    };
    tracing::info!(
        changelog,
        partition,
        from,
        read,
        stale = restored.replay.stale_records,
        applied = restored.replay.applied,
        claim,
        ms = restored.elapsed.as_millis() as u64,
        "state restored"
    );
    metrics::histogram!("secpipe_state_restore_seconds", "changelog" => changelog.to_string())
        .record(restored.elapsed.as_secs_f64());
    metrics::counter!("secpipe_state_restore_records_total", "changelog" => changelog.to_string())
        .increment(read);
    Ok(restored)
}

/// Reads `[max(snapshot, low), claim)` of the partition (blocking).
fn replay_until<S: PartitionState>(
    kafka: &KafkaConfig,
    changelog: &str,
    partition: i32,
    snapshot: Option<i64>,
    claim: i64,
) -> anyhow::Result<(Replay<S>, i64, u64)> {
    let reader: BaseConsumer = kafka
        .client_config("changelog-restore")
        .set("group.id", "secpipe-changelog-restore")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()?;
    let (low, _) = reader
        .fetch_watermarks(changelog, partition, Duration::from_secs(10))
        .with_context(|| format!("watermarks of {changelog}/{partition}"))?;
    let from = snapshot.unwrap_or(low).clamp(low, claim);
    let mut replay = Replay::<S>::default();
    let mut read = 0u64;
    if from < claim {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(changelog, partition, Offset::Offset(from))?;
        reader.assign(&tpl)?;
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut next = from;
        while next < claim {
            anyhow::ensure!(
                Instant::now() < deadline,
                "restoring {changelog}/{partition} timed out at {next} of {claim}"
            );
            let Some(msg) = reader.poll(Duration::from_millis(500)) else {
                continue;
            };
            let msg = msg?;
            next = msg.offset() + 1;
            if msg.offset() >= claim {
                break;
            }
            read += 1;
            let key = std::str::from_utf8(msg.key().unwrap_or_default()).unwrap_or_default();
            let stamp = msg.headers().and_then(|h| {
                h.iter()
                    .find(|h| h.key == CLAIM_HEADER)
                    .and_then(|h| std::str::from_utf8(h.value?).ok()?.parse().ok())
            });
            replay
                .record(msg.offset(), key, msg.payload(), stamp)
                .map_err(|e| anyhow::anyhow!("{changelog}/{partition}@{}: {e}", msg.offset()))?;
        }
    }
    Ok((replay, from, read))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A state that remembers every key's value.
    #[derive(Default, Debug, PartialEq)]
    struct Kv(BTreeMap<String, Vec<u8>>);

    impl PartitionState for Kv {
        fn drain_changes(&mut self) -> Vec<Change> {
            Vec::new()
        }
        fn apply(&mut self, c: &Change) -> Result<(), String> {
            match &c.value {
                Some(v) => self.0.insert(c.key.clone(), v.clone()),
                None => self.0.remove(&c.key),
            };
            Ok(())
        }
        fn snapshot(&self) -> Vec<Change> {
            self.0
                .iter()
                .map(|(k, v)| Change {
                    key: k.clone(),
                    value: Some(v.clone()),
                })
                .collect()
        }
    }

    fn replay(log: &[(i64, &str, Option<&str>, Option<i64>)]) -> Replay<Kv> {
        let mut r = Replay::<Kv>::default();
        for (offset, key, value, claim) in log {
            r.record(*offset, key, value.map(str::as_bytes), *claim)
                .unwrap();
        }
        r
    }

    #[test]
    fn writes_of_an_owner_that_lost_the_partition_are_ignored() {
        let r = replay(&[
            (0, CLAIM, None, None),
            (1, "a", Some("1"), Some(0)),
            (2, APPLIED, Some("10"), Some(0)),
            (3, CLAIM, None, None), // the new owner
            (4, "a", Some("stale"), Some(0)),
            (5, APPLIED, Some("12"), Some(0)),
            (6, "b", Some("2"), Some(3)),
        ]);
        assert_eq!(r.state.0.get("a").map(Vec::as_slice), Some(&b"1"[..]));
        assert_eq!(r.state.0.get("b").map(Vec::as_slice), Some(&b"2"[..]));
        assert_eq!(r.applied, 10);
        assert_eq!(r.stale_records, 2);
        assert_eq!(r.claim, Some(3));
    }

    #[test]
    fn writes_before_the_next_claim_stay_valid() {
        let r = replay(&[
            (0, CLAIM, None, None),
            (1, "a", Some("1"), Some(0)),
            (2, APPLIED, Some("7"), Some(0)),
            (3, CLAIM, None, None),
        ]);
        assert_eq!(r.applied, 7);
        assert_eq!(r.stale_records, 0);
    }

    #[test]
    fn replay_from_a_snapshot_adopts_its_claim() {
        let r = replay(&[
            (40, SNAPSHOT, None, Some(30)),
            (41, "a", Some("1"), Some(30)),
            (42, APPLIED, Some("99"), Some(30)),
            (43, "a", None, Some(30)),
            (44, "x", Some("zombie"), Some(12)),
        ]);
        assert!(r.state.0.is_empty());
        assert_eq!(r.applied, 99);
        assert_eq!(r.stale_records, 1);
    }

    #[test]
    fn an_empty_value_deletes_the_key() {
        let r = replay(&[
            (0, CLAIM, None, None),
            (1, "a", Some("1"), Some(0)),
            (2, "b", Some("2"), Some(0)),
            (3, "a", Some(""), Some(0)),
            (4, "b", None, Some(0)),
        ]);
        assert!(r.state.0.is_empty(), "{:?}", r.state);
    }

    #[test]
    fn a_log_without_claims_replays_whole() {
        let r = replay(&[
            (0, "a", Some("1"), None),
            (1, APPLIED, Some("3"), None),
            (2, "a", Some("2"), None),
        ]);
        assert_eq!(r.state.0.get("a").map(Vec::as_slice), Some(&b"2"[..]));
        assert_eq!(r.applied, 3);
    }
}
