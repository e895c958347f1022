//! Typed errors of the schema catalog and the codec. A decode error says what was wrong with the
//! bytes, so a dead-letter record can carry a cause a person can act on.
use thiserror::Error;

/// A schema file under `schemas/avro` that cannot be used.
#[derive(Debug, Error)]
pub enum SchemaError {
    #[error("schema file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("no schema named {0} in schemas/avro")]
    UnknownRecord(String),
}

/// Why a record could not be encoded.
#[derive(Debug, Error)]
pub enum EncodeError {
    #[error("record does not fit schema {schema}: {source}")]
    Avro {
        schema: &'static str,
        #[source]
        source: Box<apache_avro::Error>,
    },
}

/// Why bytes could not be decoded into a record.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum DecodeError {
    #[error("empty payload")]
    Empty,
    #[error("truncated header: {framing} framing needs {needed} bytes, got {got}")]
    TruncatedHeader {
        framing: &'static str,
        needed: usize,
        got: usize,
    },
    #[error("unknown framing: first bytes {0:02x?} are neither Avro single-object (c3 01) nor Confluent (00)")]
    UnknownFraming(Vec<u8>),
    #[error("unknown schema fingerprint {0:016x}: written with a schema secpipe does not know")]
    UnknownFingerprint(u64),
    #[error("unknown schema registry id {0}")]
    UnknownSchemaId(u32),
    #[error("wrong schema: expected a {expected} record, got {found}")]
    WrongSchema {
        expected: &'static str,
        found: String,
    },
    #[error("body does not decode as {schema}: {reason}")]
    Body { schema: String, reason: String },
    #[error("{extra} trailing bytes after a complete {schema} record")]
    TrailingBytes { schema: String, extra: usize },
}
