//! Client of a Confluent-compatible Schema Registry, for sites that frame records with the
//! Confluent wire format (`00` + 4-byte schema id) instead of single-object encoding.
//!
//! On start-up every schema version secpipe knows is registered under its record's full name
//! (the registry's RecordNameStrategy, because one topic can carry several record types) and the
//! ids are cached in [`RegistryIds`]; codecs then map ids to fingerprints without further calls.
use std::{collections::HashMap, time::Duration};

use serde::Deserialize;
use serde_json::json;
use thiserror::Error;

use crate::catalog::Catalog;

/// The ids every codec of this process uses, once a registry is in use (see [`install`]).
static INSTALLED: std::sync::OnceLock<RegistryIds> = std::sync::OnceLock::new();

/// Makes every [`crate::Codec`] built afterwards write the Confluent wire format with these
/// ids (and read it). Call once at start-up, after [`SchemaRegistryClient::register_catalog`].
/// Returns false if ids were installed already.
pub fn install(ids: RegistryIds) -> bool {
    INSTALLED.set(ids).is_ok()
}

/// The installed ids, if a registry is in use.
pub fn installed() -> Option<&'static RegistryIds> {
    INSTALLED.get()
}

/// A failed registry call.
#[derive(Debug, Error)]
pub enum RegistryError {
    #[error("schema registry {url} unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("schema registry refused {what}: HTTP {status}: {body}")]
    Refused {
        what: String,
        status: u16,
        body: String,
    },
    #[error("schema registry answered {what} with an unexpected body: {reason}")]
    BadAnswer { what: String, reason: String },
    #[error("schema id {id} is not one of secpipe's schemas ({reason})")]
    ForeignSchema { id: u32, reason: String },
}

/// The ids a registry gave secpipe's schemas, both ways.
#[derive(Debug, Clone, Default)]
pub struct RegistryIds {
    by_id: HashMap<u32, u64>,
    by_fingerprint: HashMap<u64, u32>,
}

impl RegistryIds {
    /// Records that `id` names the schema with `fingerprint`.
    pub fn insert(&mut self, id: u32, fingerprint: u64) {
        self.by_id.insert(id, fingerprint);
        self.by_fingerprint.insert(fingerprint, id);
    }

    /// The fingerprint of the schema with this id.
    pub fn fingerprint(&self, id: u32) -> Option<u64> {
        self.by_id.get(&id).copied()
    }

    /// The id of the schema with this fingerprint.
    pub fn id(&self, fingerprint: u64) -> Option<u32> {
        self.by_fingerprint.get(&fingerprint).copied()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[derive(Deserialize)]
struct IdAnswer {
    id: u32,
}

#[derive(Deserialize)]
struct SchemaAnswer {
    schema: String,
}

/// Schema Registry REST client.
#[derive(Clone)]
pub struct SchemaRegistryClient {
    base: String,
    http: reqwest::Client,
}

impl SchemaRegistryClient {
    /// A client of the registry at `url` (e.g. `http://127.0.0.1:8081`).
    pub fn new(url: &str) -> Result<Self, RegistryError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| RegistryError::Unreachable {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            base: url.trim_end_matches('/').to_string(),
            http,
        })
    }

    async fn call<T: for<'de> Deserialize<'de>>(
        &self,
        what: String,
        req: reqwest::RequestBuilder,
    ) -> Result<T, RegistryError> {
        let resp = req
            .header("accept", "application/vnd.schemaregistry.v1+json")
            .send()
            .await
            .map_err(|e| RegistryError::Unreachable {
                url: self.base.clone(),
                reason: e.to_string(),
            })?;
        let status = resp.status();
        let body = resp.text().await.map_err(|e| RegistryError::Unreachable {
            url: self.base.clone(),
            reason: e.to_string(),
        })?;
        if !status.is_success() {
            return Err(RegistryError::Refused {
                what,
                status: status.as_u16(),
                body,
            });
        }
        serde_json::from_str(&body).map_err(|e| RegistryError::BadAnswer {
            what,
            reason: e.to_string(),
        })
    }

    /// Registers `schema` (Avro JSON) under `subject`; returns its id. Registering a schema
    /// the subject already has returns the existing id.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let url = format!("{}/subjects/{subject}/versions", self.base);
        let req = self
            .http
            .post(url)
            .header("content-type", "application/vnd.schemaregistry.v1+json")
            .body(json!({"schema": schema, "schemaType": "AVRO"}).to_string());
        let answer: IdAnswer = self.call(format!("registering {subject}"), req).await?;
        Ok(answer.id)
    }

    /// The schema text with this id.
    pub async fn schema(&self, id: u32) -> Result<String, RegistryError> {
        let req = self.http.get(format!("{}/schemas/ids/{id}", self.base));
        let answer: SchemaAnswer = self.call(format!("schema id {id}"), req).await?;
        Ok(answer.schema)
    }

    /// Registers every version of every record in `catalog`, oldest first, and returns the ids.
    pub async fn register_catalog(&self, catalog: &Catalog) -> Result<RegistryIds, RegistryError> {
        let mut ids = RegistryIds::default();
        for name in catalog.record_names() {
            for version in catalog.history(name) {
                let id = self
                    .register(name, &crate::catalog::canonical_form(&version.schema))
                    .await?;
                ids.insert(id, version.fingerprint);
            }
        }
        Ok(ids)
    }

    /// Learns an id another producer registered: fetches its schema and accepts it only if it is
    /// one of the versions compiled into secpipe.
    pub async fn learn(
        &self,
        id: u32,
        catalog: &Catalog,
        ids: &mut RegistryIds,
    ) -> Result<u64, RegistryError> {
        let text = self.schema(id).await?;
        let schema =
            apache_avro::Schema::parse_str(&text).map_err(|e| RegistryError::ForeignSchema {
                id,
                reason: e.to_string(),
            })?;
        let fp = crate::catalog::fingerprint(&schema);
        if catalog.by_fingerprint(fp).is_none() {
            return Err(RegistryError::ForeignSchema {
                id,
                reason: format!("fingerprint {fp:016x} is not in schemas/avro"),
            });
        }
        ids.insert(id, fp);
        Ok(fp)
    }
}
