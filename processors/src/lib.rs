//! secpipe's stream processors: they read the raw topics and write clean, small, queryable
//! streams (dedupe, aggregate, rate-limit, redact, expire, alert).
//!
//! A processor implements [`Processor`]: it takes one input record and its partition's state and
//! pushes output records. It never talks to Kafka: the stage runtime (in the `secpipe` crate)
//! consumes, restores and persists state through a changelog topic, produces outputs and commits.
//!
//! Processors are deterministic functions of (state, input): times come from the records (event
//! time, or the broker's append time), never from the wall clock, except in [`Processor::tick`].
//! That is what lets a restarted processor reproduce exactly the outputs it may have produced
//! before a crash, with the same stable ids, which the ClickHouse tables collapse.

pub mod admin_events;
pub mod alerts;
pub mod redact;
pub mod scan_results;
pub mod state;
pub mod telemetry;

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use state::{Change, PartitionState, StateStore};

/// Seconds from the config as microseconds, saturating instead of wrapping for absurd values.
pub(crate) fn secs_to_micros(secs: u64) -> i64 {
    i64::try_from(secs)
        .unwrap_or(i64::MAX)
        .saturating_mul(1_000_000)
}

/// One input record as consumed.
#[derive(Debug, Clone, Copy)]
pub struct InRecord<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// The broker's timestamp (append or create time), milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    pub key: Option<&'a [u8]>,
    pub payload: &'a [u8],
}

/// One output record.
#[derive(Debug, Clone, PartialEq)]
pub struct OutRecord {
    pub topic: String,
    pub key: String,
    pub payload: Vec<u8>,
}

/// What processing counted besides its outputs (for metrics and notes).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Records that were duplicates of something already seen.
    pub dedupe_hits: u64,
    /// Records dropped by a rate limit.
    pub rate_limited: u64,
    /// Records dropped because they were older than the horizon.
    pub expired: u64,
    /// Secrets replaced by fingerprints.
    pub redacted: u64,
    /// Alerts raised.
    pub alerts: u64,
}

impl std::ops::AddAssign for Counters {
    /// Saturating: the runtime keeps adding batch counters for as long as it runs, and a
    /// metric that sticks at `u64::MAX` is better than a stage that panics.
    fn add_assign(&mut self, o: Self) {
        self.dedupe_hits = self.dedupe_hits.saturating_add(o.dedupe_hits);
        self.rate_limited = self.rate_limited.saturating_add(o.rate_limited);
        self.expired = self.expired.saturating_add(o.expired);
        self.redacted = self.redacted.saturating_add(o.redacted);
        self.alerts = self.alerts.saturating_add(o.alerts);
    }
}

/// Outputs and counters of a batch.
#[derive(Debug, Default)]
pub struct Outputs {
    pub records: Vec<OutRecord>,
    pub counters: Counters,
}

impl Outputs {
    /// Encodes and pushes an alert, keyed by its dedup key, and counts it.
    pub fn push_alert(
        &mut self,
        topic: &str,
        codec: &secpipe_schemas::Codec<secpipe_schemas::alert::Alert>,
        alert: &secpipe_schemas::alert::Alert,
    ) -> Result<(), secpipe_schemas::EncodeError> {
        let payload = codec.encode(alert)?;
        self.push(topic, alert.dedup_key.clone(), payload);
        self.counters.alerts += 1;
        Ok(())
    }

    pub fn push(&mut self, topic: &str, key: impl Into<String>, payload: Vec<u8>) {
        self.records.push(OutRecord {
            topic: topic.to_string(),
            key: key.into(),
            payload,
        });
    }
}

/// Why a record could not be processed (it goes to the dead-letter topic).
#[derive(Debug, Error)]
pub enum ProcessError {
    #[error("undecodable record: {0}")]
    Decode(#[from] secpipe_schemas::DecodeError),
    #[error("cannot encode output: {0}")]
    Encode(#[from] secpipe_schemas::EncodeError),
    /// The processor panicked on the record (a bug); the runtime caught it.
    #[error("processor panicked: {0}")]
    Panicked(String),
}

/// A stream processor.
pub trait Processor: Send {
    /// Per-partition state, persisted through the changelog.
    type State: PartitionState + Send;

    /// Name of the processor: its consumer group is `secpipe-<name>`, its changelog topic
    /// `<changelog prefix><name>`.
    fn name(&self) -> &'static str;

    /// The topic it reads.
    fn input_topic(&self) -> &str;

    /// Every topic it writes (to create them).
    fn output_topics(&self) -> Vec<&str>;

    /// Processes one record.
    fn process(
        &mut self,
        state: &mut Self::State,
        record: &InRecord<'_>,
        out: &mut Outputs,
    ) -> Result<(), ProcessError>;

    /// Called periodically with the wall clock (microseconds): flushes windows that will not
    /// receive more input and forgets expired state. Outputs must keep their stable ids.
    fn tick(&mut self, state: &mut Self::State, now_micros: i64, out: &mut Outputs) {
        let _ = (state, now_micros, out);
    }
}
