//! The codec: typed records to framed Avro bytes and back.
//!
//! Two framings, told apart by their first byte when decoding:
//! - Avro single-object encoding, `C3 01` + 8-byte little-endian Rabin fingerprint + body
//!   (the default; needs no registry because every schema version is compiled in);
//! - the Confluent wire format, `00` + 4-byte big-endian schema id + body, for sites that run a
//!   Schema Registry.
//!
//! Writers and readers are built once per schema in [`Codec::new`]; the per-record path is a
//! header copy plus apache-avro's serde-direct (de)serializer. Records written with an older
//! schema version take the slower `Value` path through Avro schema resolution.
use std::{collections::HashMap, marker::PhantomData};

use apache_avro::{reader::datum::GenericDatumReader, writer::datum::GenericDatumWriter, Schema};
use serde::{de::DeserializeOwned, Serialize};

use crate::{
    catalog::{catalog, SchemaVersion},
    error::{DecodeError, EncodeError, SchemaError},
    registry::RegistryIds,
};

/// Largest single allocation a decoded length field may ask for. Records are at most a few
/// hundred kilobytes; a garbage length must be an error, not an out-of-memory abort.
const MAX_ALLOCATION_BYTES: usize = 16 * 1024 * 1024;

const SINGLE_OBJECT_MAGIC: [u8; 2] = [0xC3, 0x01];
const SINGLE_OBJECT_HEADER: usize = 10;
const CONFLUENT_MAGIC: u8 = 0x00;
const CONFLUENT_HEADER: usize = 5;

/// A Rust type that is one Avro record of `schemas/avro`.
pub trait AvroRecord: Serialize + DeserializeOwned {
    /// Avro full name of the record, e.g. `io.secpipe.scan.ScanReport`.
    const FULL_NAME: &'static str;
}

/// Turns framed bytes into a `T`: a [`Codec`] for one record type, or a codec that dispatches
/// over several (telemetry).
pub trait Decode<T>: Send + Sync {
    fn decode(&self, bytes: &[u8]) -> Result<T, DecodeError>;
}

impl<T: AvroRecord> Decode<T> for Codec<T> {
    fn decode(&self, bytes: &[u8]) -> Result<T, DecodeError> {
        Codec::decode(self, bytes)
    }
}

/// How [`Codec::encode`] frames a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `C3 01` + fingerprint.
    SingleObject,
    /// `00` + the schema id a Schema Registry gave the current version.
    Confluent { schema_id: u32 },
}

struct OlderVersion {
    reader: GenericDatumReader<'static>,
    version: u32,
}

/// Encoder and decoder for one record type. Build it once and share it (it is `Sync`).
pub struct Codec<T> {
    current: &'static SchemaVersion,
    writer: GenericDatumWriter<'static>,
    reader: GenericDatumReader<'static>,
    older: HashMap<u64, OlderVersion>,
    registry_ids: RegistryIds,
    framing: Framing,
    _record: PhantomData<fn() -> T>,
}

fn schema_err(v: &SchemaVersion, e: apache_avro::Error) -> SchemaError {
    SchemaError::File {
        path: v.path.to_string(),
        reason: e.to_string(),
    }
}

impl<T: AvroRecord> Codec<T> {
    /// A codec that writes the current version of `T`'s schema in single-object framing and reads
    /// every version in `schemas/avro`.
    pub fn new() -> Result<Self, SchemaError> {
        apache_avro::util::max_allocation_bytes(MAX_ALLOCATION_BYTES);
        let catalog = catalog().map_err(|e| SchemaError::File {
            path: "schemas/avro".into(),
            reason: e.to_string(),
        })?;
        let current = catalog.current(T::FULL_NAME)?;
        let writer = GenericDatumWriter::builder(&current.schema)
            .validate(false)
            .human_readable(false)
            .build()
            .map_err(|e| schema_err(current, e))?;
        let reader = GenericDatumReader::builder(&current.schema)
            .human_readable(false)
            .build()
            .map_err(|e| schema_err(current, e))?;
        let mut older = HashMap::new();
        for v in catalog.history(T::FULL_NAME) {
            if v.fingerprint == current.fingerprint {
                continue;
            }
            let reader = GenericDatumReader::builder(&v.schema)
                .reader_schema(&current.schema)
                .human_readable(false)
                .build()
                .map_err(|e| schema_err(v, e))?;
            older.insert(
                v.fingerprint,
                OlderVersion {
                    reader,
                    version: v.version,
                },
            );
        }
        let codec = Self {
            current,
            writer,
            reader,
            older,
            registry_ids: RegistryIds::default(),
            framing: Framing::SingleObject,
            _record: PhantomData,
        };
        match crate::registry::installed() {
            Some(ids) => codec.with_registry(ids),
            None => Ok(codec),
        }
    }

    /// Write with the Confluent wire format, under the id the registry gave the current version,
    /// and read Confluent-framed records whose ids are in `ids`.
    pub fn with_registry(mut self, ids: &RegistryIds) -> Result<Self, SchemaError> {
        let schema_id = ids
            .id(self.current.fingerprint)
            .ok_or_else(|| SchemaError::File {
                path: self.current.path.to_string(),
                reason: "not registered in the schema registry".into(),
            })?;
        self.framing = Framing::Confluent { schema_id };
        self.registry_ids = ids.clone();
        Ok(self)
    }

    /// How this codec frames what it writes.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// The schema version this codec writes.
    pub fn current(&self) -> &'static SchemaVersion {
        self.current
    }

    /// The current schema.
    pub fn schema(&self) -> &'static Schema {
        &self.current.schema
    }

    /// Appends one framed record to `out`.
    pub fn encode_into(&self, record: &T, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match self.framing {
            Framing::SingleObject => {
                out.extend_from_slice(&SINGLE_OBJECT_MAGIC);
                out.extend_from_slice(&self.current.fingerprint.to_le_bytes());
            }
            Framing::Confluent { schema_id } => {
                out.push(CONFLUENT_MAGIC);
                out.extend_from_slice(&schema_id.to_be_bytes());
            }
        }
        self.writer
            .write_ser(out, record)
            .map(|_| ())
            .map_err(|e| EncodeError::Avro {
                schema: T::FULL_NAME,
                source: Box::new(e),
            })
    }

    /// One framed record in a new buffer.
    pub fn encode(&self, record: &T) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(256);
        self.encode_into(record, &mut out)?;
        Ok(out)
    }

    /// Decodes one framed record, whichever framing and schema version wrote it.
    pub fn decode(&self, bytes: &[u8]) -> Result<T, DecodeError> {
        let (fingerprint, body) = self.split_header(bytes)?;
        if fingerprint == self.current.fingerprint {
            let mut cursor = body;
            let record = self
                .reader
                .read_deser::<T>(&mut cursor)
                .map_err(|e| self.body_error(self.current.version, e))?;
            return finish(record, cursor, T::FULL_NAME);
        }
        if let Some(older) = self.older.get(&fingerprint) {
            let mut cursor = body;
            let value = older
                .reader
                .read_value(&mut cursor)
                .map_err(|e| self.body_error(older.version, e))?;
            let record = apache_avro::from_value::<T>(&value)
                .map_err(|e| self.body_error(older.version, e))?;
            return finish(record, cursor, T::FULL_NAME);
        }
        match catalog().ok().and_then(|c| c.by_fingerprint(fingerprint)) {
            Some(other) => Err(DecodeError::WrongSchema {
                expected: T::FULL_NAME,
                found: format!("{} v{}", other.full_name, other.version),
            }),
            None => Err(DecodeError::UnknownFingerprint(fingerprint)),
        }
    }

    fn split_header<'b>(&self, bytes: &'b [u8]) -> Result<(u64, &'b [u8]), DecodeError> {
        match bytes {
            [] => Err(DecodeError::Empty),
            [0xC3, 0x01, ..] | [0xC3] => {
                if bytes.len() < SINGLE_OBJECT_HEADER {
                    return Err(DecodeError::TruncatedHeader {
                        framing: "single-object",
                        needed: SINGLE_OBJECT_HEADER,
                        got: bytes.len(),
                    });
                }
                let fp = u64::from_le_bytes(bytes[2..10].try_into().expect("8 bytes"));
                Ok((fp, &bytes[SINGLE_OBJECT_HEADER..]))
            }
            [CONFLUENT_MAGIC, ..] => {
                if bytes.len() < CONFLUENT_HEADER {
                    return Err(DecodeError::TruncatedHeader {
                        framing: "Confluent",
                        needed: CONFLUENT_HEADER,
                        got: bytes.len(),
                    });
                }
                let id = u32::from_be_bytes(bytes[1..5].try_into().expect("4 bytes"));
                let fp = self
                    .registry_ids
                    .fingerprint(id)
                    .ok_or(DecodeError::UnknownSchemaId(id))?;
                Ok((fp, &bytes[CONFLUENT_HEADER..]))
            }
            _ => Err(DecodeError::UnknownFraming(
                bytes[..bytes.len().min(2)].to_vec(),
            )),
        }
    }

    fn body_error(&self, version: u32, e: apache_avro::Error) -> DecodeError {
        DecodeError::Body {
            schema: format!("{} v{version}", T::FULL_NAME),
            reason: e.to_string(),
        }
    }
}

fn finish<T>(record: T, rest: &[u8], schema: &str) -> Result<T, DecodeError> {
    if rest.is_empty() {
        Ok(record)
    } else {
        Err(DecodeError::TrailingBytes {
            schema: schema.to_string(),
            extra: rest.len(),
        })
    }
}
