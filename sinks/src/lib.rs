//! secpipe's sinks: where processed records leave the pipeline.
//!
//! A sink implements [`Sink`]: it takes a batch of decoded records and returns once they are
//! durably written. The stage runtime (in the `secpipe` crate) consumes from Kafka, batches,
//! calls the sink, and commits offsets only after `write` succeeded.

pub mod clickhouse;
pub mod notify;

use std::future::Future;

use thiserror::Error;

/// Why a batch was not written.
#[derive(Debug, Error)]
pub enum SinkError {
    /// The destination is down or slow; the same batch should be retried later.
    #[error("destination unavailable: {0}")]
    Unavailable(String),
    /// The destination refused the batch; retrying the same rows will not help.
    #[error("destination rejected the batch: {0}")]
    Rejected(String),
}

/// A record of a batch the destination refused for good: it goes to the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Index of the record in the batch.
    pub index: usize,
    /// Why, in the destination's words.
    pub reason: String,
}

/// A record given up on after its batch was acknowledged (a notification whose delivery went on
/// in the background and died): it goes to the dead-letter topic without its origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LateRejected {
    /// The record's key.
    pub key: Vec<u8>,
    /// The record, encoded as on its topic.
    pub payload: Vec<u8>,
    /// Why, in the destination's words.
    pub reason: String,
}

/// A destination that takes batches of records.
pub trait Sink: Send {
    /// The decoded record type this sink writes.
    type Record: Send + Sync;

    /// Writes `batch`; `Ok` means every record is stored or listed as rejected, and the batch's
    /// offsets may be committed once the rejected ones are dead-lettered. Writing the same batch
    /// twice must leave one copy of each record (stable ids).
    fn write(
        &mut self,
        batch: &[Self::Record],
    ) -> impl Future<Output = Result<Vec<Rejected>, SinkError>> + Send;

    /// Records given up on since the last call, after their batch was acknowledged. The runtime
    /// asks about once a second while the sink is idle. Sinks that finish each record within
    /// `write` have none.
    fn late_rejections(
        &mut self,
    ) -> impl Future<Output = Result<Vec<LateRejected>, SinkError>> + Send {
        async { Ok(Vec::new()) }
    }

    /// The runtime is stopping (the last batch is committed): finish what can be finished
    /// quickly. Sinks that finish each record within `write` have nothing to do.
    fn close(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }
}
