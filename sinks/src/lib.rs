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

/// A destination that takes batches of records.
pub trait Sink: Send {
    /// The decoded record type this sink writes.
    type Record: Send + Sync;

    /// Writes `batch` durably; `Ok` means every record is stored and its offset may be committed.
    /// Writing the same batch twice must leave one copy of each record (stable ids).
    fn write(
        &mut self,
        batch: &[Self::Record],
    ) -> impl Future<Output = Result<(), SinkError>> + Send;
}
