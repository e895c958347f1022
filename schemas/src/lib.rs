//! secpipe's event model: the Avro schemas under `schemas/avro`, the Rust types they map to, and
//! the codec that frames every record on a Kafka topic. Every producer, processor and sink goes
//! through [`Codec`]; nothing else in secpipe reads or writes Avro bytes.

mod catalog;
mod codec;
pub mod compat;
mod error;
pub mod registry;
pub mod ops;
pub mod scan;

pub use catalog::{catalog, Catalog, SchemaVersion};
pub use codec::{AvroRecord, Codec, Framing};
pub use error::{DecodeError, EncodeError, SchemaError};

/// Microseconds since the Unix epoch, UTC: the unit of every `timestamp-micros` field.
pub fn now_micros() -> i64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}
