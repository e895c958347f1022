//! secpipe's event model: the Avro schemas under `schemas/avro`, the Rust types they map to, and
//! the codec that frames every record on a Kafka topic. Every producer, processor and sink goes
//! through [`Codec`]; nothing else in secpipe reads or writes Avro bytes.

pub mod alert;
mod catalog;
mod codec;
pub mod compat;
mod error;
pub mod failures;
pub mod image_ref;
pub mod ops;
pub mod registry;
pub mod repository;
pub mod rollups;
pub mod scan;
pub mod secret;
pub mod telemetry;

pub use catalog::{canonical_form, catalog, fingerprint, Catalog, SchemaVersion};
pub use codec::{AvroRecord, Codec, Decode, Framing};
pub use error::{DecodeError, EncodeError, SchemaError};
pub use scan::stable_id;
pub use secret::Secret;

/// Microseconds since the Unix epoch, UTC: the unit of every `timestamp-micros` field. A clock
/// set before 1970 reads 0 and one past the year 294,000 reads `i64::MAX`: saturated, not
/// wrapped to a negative time.
pub fn now_micros() -> i64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
