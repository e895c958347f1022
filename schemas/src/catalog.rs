//! The schema catalog: every `.avsc` under `schemas/avro`, compiled in. A file is named
//! `<Record>.v<N>.avsc`; the highest N of a record is its current version, the others stay so
//! that records written with them can still be read.
use std::{collections::HashMap, sync::OnceLock};

use apache_avro::Schema;
use serde_json::Value;

use crate::error::SchemaError;

include!(concat!(env!("OUT_DIR"), "/schema_files.rs"));

/// One version of one record schema.
#[derive(Debug)]
pub struct SchemaVersion {
    /// Path of the file, relative to `schemas/avro`.
    pub path: &'static str,
    /// Avro full name, e.g. `io.secpipe.scan.ScanReport`.
    pub full_name: String,
    /// N of `<Record>.v<N>.avsc`.
    pub version: u32,
    /// The parsed schema.
    pub schema: Schema,
    /// CRC-64-AVRO (Rabin) fingerprint of the parsing canonical form, as used by single-object
    /// encoding.
    pub fingerprint: u64,
    /// The file's text, as a standard Avro implementation would read it.
    pub source: &'static str,
}

/// All schema versions, indexed by fingerprint and by record name.
#[derive(Debug)]
pub struct Catalog {
    versions: Vec<SchemaVersion>,
    by_fingerprint: HashMap<u64, usize>,
    by_name: HashMap<String, Vec<usize>>,
}

impl Catalog {
    fn load() -> Result<Self, SchemaError> {
        let mut versions = Vec::with_capacity(SCHEMA_FILES.len());
        for (path, source) in SCHEMA_FILES {
            versions.push(parse_file(path, source)?);
        }
        let mut by_fingerprint = HashMap::new();
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, v) in versions.iter().enumerate() {
            if let Some(other) = by_fingerprint.insert(v.fingerprint, i) {
                return Err(SchemaError::File {
                    path: v.path.to_string(),
                    reason: format!("same canonical form as {}", versions[other].path),
                });
            }
            by_name.entry(v.full_name.clone()).or_default().push(i);
        }
        for idx in by_name.values_mut() {
            idx.sort_by_key(|&i| versions[i].version);
            for pair in idx.windows(2) {
                if versions[pair[0]].version == versions[pair[1]].version {
                    return Err(SchemaError::File {
                        path: versions[pair[1]].path.to_string(),
                        reason: format!("version clashes with {}", versions[pair[0]].path),
                    });
                }
            }
        }
        Ok(Self {
            versions,
            by_fingerprint,
            by_name,
        })
    }

    /// Every version of every record.
    pub fn versions(&self) -> &[SchemaVersion] {
        &self.versions
    }

    /// The version whose fingerprint this is.
    pub fn by_fingerprint(&self, fingerprint: u64) -> Option<&SchemaVersion> {
        self.by_fingerprint
            .get(&fingerprint)
            .map(|&i| &self.versions[i])
    }

    /// All versions of a record, oldest first.
    pub fn history(&self, full_name: &str) -> impl Iterator<Item = &SchemaVersion> {
        self.by_name
            .get(full_name)
            .into_iter()
            .flatten()
            .map(|&i| &self.versions[i])
    }

    /// The current (highest) version of a record.
    pub fn current(&self, full_name: &str) -> Result<&SchemaVersion, SchemaError> {
        self.history(full_name)
            .last()
            .ok_or_else(|| SchemaError::UnknownRecord(full_name.to_string()))
    }

    /// Names of all records, sorted.
    pub fn record_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

fn parse_file(path: &'static str, source: &'static str) -> Result<SchemaVersion, SchemaError> {
    let err = |reason: String| SchemaError::File {
        path: path.to_string(),
        reason,
    };
    let schema = Schema::parse_str(source).map_err(|e| err(e.to_string()))?;
    let Schema::Record(record) = &schema else {
        return Err(err("top level is not a record".into()));
    };
    let full_name = record.name.fullname(None);
    let file_name = path.rsplit('/').next().unwrap_or(path);
    let (stem, version) = file_name
        .strip_suffix(".avsc")
        .and_then(|s| s.rsplit_once(".v"))
        .and_then(|(stem, v)| v.parse::<u32>().ok().map(|v| (stem, v)))
        .ok_or_else(|| err("file name must be <Record>.v<N>.avsc".into()))?;
    if stem != record.name.name() {
        return Err(err(format!(
            "file is named {stem} but defines record {}",
            record.name.name()
        )));
    }
    let fingerprint = fingerprint(&schema);
    Ok(SchemaVersion {
        path,
        full_name,
        version,
        schema,
        fingerprint,
        source,
    })
}

/// The Avro spec's Parsing Canonical Form of `schema`.
///
/// apache-avro 0.22's `canonical_form` leaves a primitive that carried a logical type as
/// `{"type":"long"}`; the spec ([PRIMITIVES]) and other implementations (Java, fastavro) write
/// `"long"`. Fingerprints must agree across implementations, so that is corrected here.
pub fn canonical_form(schema: &Schema) -> String {
    fn primitives(v: &mut Value) {
        match v {
            Value::Object(map) => {
                if map.len() == 1 {
                    if let Some(Value::String(t)) = map.get("type") {
                        const PRIMITIVE: [&str; 8] = [
                            "null", "boolean", "int", "long", "float", "double", "bytes", "string",
                        ];
                        if PRIMITIVE.contains(&t.as_str()) {
                            *v = Value::String(t.clone());
                            return;
                        }
                    }
                }
                map.values_mut().for_each(primitives);
            }
            Value::Array(items) => items.iter_mut().for_each(primitives),
            _ => {}
        }
    }
    let form = schema.canonical_form();
    match serde_json::from_str::<Value>(&form) {
        Ok(mut v) => {
            primitives(&mut v);
            v.to_string()
        }
        Err(_) => form,
    }
}

/// CRC-64-AVRO (Rabin) fingerprint of `schema`'s Parsing Canonical Form, as used by Avro
/// single-object encoding (written little-endian after `C3 01`).
pub fn fingerprint(schema: &Schema) -> u64 {
    rabin(canonical_form(schema).as_bytes())
}

/// The 64-bit Rabin fingerprint of the Avro specification.
fn rabin(bytes: &[u8]) -> u64 {
    const EMPTY: u64 = 0xc15d_213a_a4d7_a795;
    static TABLE: OnceLock<[u64; 256]> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u64; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut fp = i as u64;
            for _ in 0..8 {
                fp = (fp >> 1) ^ (EMPTY & (fp & 1).wrapping_neg());
            }
            *slot = fp;
        }
        t
    });
    bytes.iter().fold(EMPTY, |fp, &b| {
        (fp >> 8) ^ table[((fp ^ u64::from(b)) & 0xff) as usize]
    })
}

/// The catalog of every schema compiled into this build.
pub fn catalog() -> Result<&'static Catalog, &'static SchemaError> {
    static CATALOG: OnceLock<Result<Catalog, SchemaError>> = OnceLock::new();
    CATALOG.get_or_init(Catalog::load).as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_file_parses_and_has_a_unique_fingerprint() {
        let catalog = catalog().expect("catalog loads");
        assert!(!catalog.versions().is_empty());
        assert!(catalog.current("io.secpipe.scan.ScanReport").is_ok());
    }

    #[test]
    fn fingerprints_match_the_avro_specification() {
        // Values from the Avro specification's test data (little-endian byte order).
        let int = Schema::parse_str("\"int\"").unwrap();
        assert_eq!(
            fingerprint(&int).to_le_bytes(),
            [0x8f, 0x5c, 0x39, 0x3f, 0x1a, 0xd5, 0x75, 0x72]
        );
        let micros =
            Schema::parse_str(r#"{"type":"long","logicalType":"timestamp-micros"}"#).unwrap();
        assert_eq!(canonical_form(&micros), "\"long\"");
        let rec = Schema::parse_str(
            r#"{"type":"record","name":"R","namespace":"n","doc":"d","fields":[{"name":"t","type":{"type":"long","logicalType":"timestamp-micros"},"doc":"x"}]}"#,
        )
        .unwrap();
        assert_eq!(
            canonical_form(&rec),
            r#"{"name":"n.R","type":"record","fields":[{"name":"t","type":"long"}]}"#
        );
    }

    #[test]
    fn unknown_record_is_a_typed_error() {
        let catalog = catalog().unwrap();
        assert!(matches!(
            catalog.current("io.secpipe.Nope"),
            Err(SchemaError::UnknownRecord(_))
        ));
    }
}
