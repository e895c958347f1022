//! The Kafka producer client shared by every producer and by the stage runtime's outputs.
//!
//! A send resolves only when the broker has acknowledged the record with acks=all; the producer
//! is idempotent, so librdkafka's own retries never duplicate a record inside a partition.
use std::time::Duration;

use rdkafka::{
    config::ClientConfig,
    error::{KafkaError, RDKafkaErrorCode},
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord, Producer},
};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Topic names. Every topic must exist before secpipe starts (`secpipe topics create`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Topics {
    /// End-of-scan summaries from `/track`, SARIF runs and `secpipe produce scan-report`.
    pub scan_results: String,
    /// Individual SARIF results.
    pub findings: String,
    /// Failed ad-hoc image scans.
    pub scan_failures: String,
    /// Raw runtime telemetry from agents (redacted at the gateway).
    pub telemetry: String,
    /// Admin events: deduplicated failed scans (processor output).
    pub admin_events: String,
    /// Findings per repository, branch, day and scanner (processor output).
    pub scan_rollups: String,
    /// Latest scan status per repository (processor output).
    pub repo_status: String,
    /// Telemetry after dedupe, rate limits and redaction, without heartbeats (processor output).
    pub telemetry_clean: String,
    /// Per-process, per-minute heartbeat rollups (processor output).
    pub heartbeat_rollups: String,
    /// Alerts raised by the processors' rules.
    pub alerts: String,
    /// Records no stage could process, with their cause.
    pub dead_letter: String,
}

impl Default for Topics {
    fn default() -> Self {
        Self {
            scan_results: "secpipe.scan-results".into(),
            findings: "secpipe.findings".into(),
            scan_failures: "secpipe.scan-failures".into(),
            telemetry: "secpipe.telemetry".into(),
            admin_events: "secpipe.admin-events".into(),
            scan_rollups: "secpipe.scan-rollups".into(),
            repo_status: "secpipe.repo-status".into(),
            telemetry_clean: "secpipe.telemetry.clean".into(),
            heartbeat_rollups: "secpipe.heartbeat-rollups".into(),
            alerts: "secpipe.alerts".into(),
            dead_letter: "secpipe.dead-letter".into(),
        }
    }
}

impl Topics {
    /// Every topic secpipe reads or writes.
    pub fn all(&self) -> Vec<&str> {
        vec![
            self.scan_results.as_str(),
            self.findings.as_str(),
            self.scan_failures.as_str(),
            self.telemetry.as_str(),
            self.admin_events.as_str(),
            self.scan_rollups.as_str(),
            self.repo_status.as_str(),
            self.telemetry_clean.as_str(),
            self.heartbeat_rollups.as_str(),
            self.alerts.as_str(),
            self.dead_letter.as_str(),
        ]
    }
}

/// How secpipe talks to Kafka (section `[kafka]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma-separated `host:port`. Default `127.0.0.1:9092`.
    pub brokers: String,
    /// Client id prefix; each role appends its name. Default `secpipe`.
    pub client_id: String,
    /// How long a produced record may wait for the broker's acknowledgement before the send
    /// fails (and the gateway answers 503). Default 10000 ms.
    pub message_timeout_ms: u64,
    /// How long librdkafka waits to fill a batch before sending it. Default 5 ms.
    pub linger_ms: u64,
    /// Longest time a consumer's fetch waits at the broker for data. Default 20 ms.
    pub fetch_wait_max_ms: u64,
    /// Consumer group session timeout: how soon a dead instance's partitions move to another.
    /// Default 6000 ms.
    pub session_timeout_ms: u64,
    /// Longest time a consumer may go without polling before the group considers it stuck.
    /// secpipe's stages keep polling (paused) while a destination is down, so this only
    /// catches a hung stage. Default 300000 ms.
    pub max_poll_interval_ms: u64,
    /// Largest record (key, value and headers) secpipe writes, in bytes: producers are built
    /// for it, `secpipe topics create` gives topics this `max.message.bytes`, and a record over
    /// it is refused before it is sent (413 at the gateway, a truncated dead letter in a stage).
    /// Default 1000000, librdkafka's and Kafka's usual limit.
    pub max_message_bytes: usize,
    /// Partitions of each topic that `secpipe topics create` makes. Default 3.
    pub partitions: i32,
    /// Replication factor of created topics. Default 1 (the local single broker).
    pub replication_factor: i32,
    /// `plaintext` (default), `ssl`, `sasl_plaintext` or `sasl_ssl`.
    pub security_protocol: String,
    /// SASL mechanism when the protocol is `sasl_*`: `PLAIN`, `SCRAM-SHA-256` or
    /// `SCRAM-SHA-512`. Default `SCRAM-SHA-512`.
    pub sasl_mechanism: String,
    /// SASL user name. Default empty.
    pub sasl_username: String,
    /// SASL password (never printed; `SECPIPE__KAFKA__SASL_PASSWORD` keeps it out of files).
    /// Default empty.
    pub sasl_password: secpipe_schemas::Secret,
    /// PEM file of the CA that signed the brokers' certificates (`ssl`, `sasl_ssl`). Default
    /// empty: the system's trust store.
    pub ssl_ca_location: String,
    /// PEM client certificate and key for mutual TLS. Default empty: none.
    pub ssl_certificate_location: String,
    pub ssl_key_location: String,
    /// Any other librdkafka property, passed as given to every client (`[kafka.librdkafka]`,
    /// e.g. `"compression.type" = "zstd"`); it overrides what secpipe sets. Default empty.
    pub librdkafka: std::collections::BTreeMap<String, String>,
    /// Topic names.
    pub topics: Topics,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            client_id: "secpipe".into(),
            message_timeout_ms: 10_000,
            linger_ms: 5,
            session_timeout_ms: 6_000,
            max_poll_interval_ms: 300_000,
            max_message_bytes: 1_000_000,
            fetch_wait_max_ms: 20,
            partitions: 3,
            replication_factor: 1,
            security_protocol: "plaintext".into(),
            sasl_mechanism: "SCRAM-SHA-512".into(),
            sasl_username: String::new(),
            sasl_password: Default::default(),
            ssl_ca_location: String::new(),
            ssl_certificate_location: String::new(),
            ssl_key_location: String::new(),
            librdkafka: Default::default(),
            topics: Topics::default(),
        }
    }
}

impl KafkaConfig {
    /// librdkafka settings common to producers, consumers and admin clients: the brokers, the
    /// security settings, then the `[kafka.librdkafka]` passthrough. Callers set their own
    /// properties after this; the passthrough is applied again by [`KafkaConfig::finish`].
    pub fn client_config(&self, role: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", format!("{}-{role}", self.client_id))
            .set("broker.address.family", "v4")
            .set("security.protocol", &self.security_protocol);
        if self.security_protocol.starts_with("sasl") {
            c.set("sasl.mechanism", &self.sasl_mechanism)
                .set("sasl.username", &self.sasl_username)
                .set("sasl.password", self.sasl_password.expose());
        }
        for (key, value) in [
            ("ssl.ca.location", &self.ssl_ca_location),
            ("ssl.certificate.location", &self.ssl_certificate_location),
            ("ssl.key.location", &self.ssl_key_location),
        ] {
            if !value.is_empty() {
                c.set(key, value);
            }
        }
        self.finish(&mut c);
        c
    }

    /// Applies the `[kafka.librdkafka]` passthrough (last, so that it wins).
    pub fn finish<'a>(&self, c: &'a mut ClientConfig) -> &'a mut ClientConfig {
        for (key, value) in &self.librdkafka {
            c.set(key, value);
        }
        c
    }

    /// Checks the security settings; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        match self.security_protocol.as_str() {
            "plaintext" | "ssl" | "sasl_plaintext" | "sasl_ssl" => {}
            other => {
                return Err(format!(
                    "kafka.security_protocol: {other:?} is not plaintext, ssl, sasl_plaintext or sasl_ssl"
                ))
            }
        }
        if self.security_protocol.starts_with("sasl") {
            match self.sasl_mechanism.as_str() {
                "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512" => {}
                other => {
                    return Err(format!(
                    "kafka.sasl_mechanism: {other:?} is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
                ))
                }
            }
            if self.sasl_username.is_empty() {
                return Err("kafka.sasl_username: required with a sasl_* protocol".into());
            }
        }
        if self.ssl_certificate_location.is_empty() != self.ssl_key_location.is_empty() {
            return Err(
                "kafka.ssl_certificate_location and kafka.ssl_key_location: give both or neither"
                    .into(),
            );
        }
        if self.max_message_bytes < 4096 {
            return Err("kafka.max_message_bytes: at least 4096".into());
        }
        Ok(())
    }
}

/// A failed send.
#[derive(Debug, Error)]
pub enum ProduceError {
    /// The broker did not acknowledge in time or cannot be reached; the caller may retry.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The broker refused the record for a reason a retry will not fix.
    #[error("broker rejected the record: {0}")]
    Rejected(String),
    /// The producer could not be created from its configuration.
    #[error("producer configuration: {0}")]
    Config(String),
    /// The record is larger than `kafka.max_message_bytes`; nothing was sent.
    #[error("a record of {size} bytes for {topic} exceeds kafka.max_message_bytes ({limit})")]
    TooLarge {
        topic: String,
        size: usize,
        limit: usize,
    },
}

/// Room left in `kafka.max_message_bytes` for the record batch framing around one record.
pub const RECORD_OVERHEAD: usize = 1024;

impl OutRecord<'_> {
    /// Bytes the record occupies, framing aside.
    pub fn size(&self) -> usize {
        self.key.len()
            + self.payload.len()
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    }
}

impl ProduceError {
    fn from_kafka(e: KafkaError) -> Self {
        let code = e.rdkafka_error_code();
        match code {
            Some(
                RDKafkaErrorCode::MessageTimedOut
                | RDKafkaErrorCode::QueueFull
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::RequestTimedOut
                | RDKafkaErrorCode::NotEnoughReplicas
                | RDKafkaErrorCode::NotEnoughReplicasAfterAppend
                | RDKafkaErrorCode::LeaderNotAvailable
                | RDKafkaErrorCode::NotLeaderForPartition,
            ) => Self::Unavailable(e.to_string()),
            _ => Self::Rejected(e.to_string()),
        }
    }
}

/// One record to produce.
#[derive(Debug, Clone)]
pub struct OutRecord<'a> {
    pub topic: &'a str,
    pub key: &'a [u8],
    pub payload: &'a [u8],
    /// Headers as (name, value).
    pub headers: &'a [(&'a str, &'a [u8])],
    /// A partition to write to; `None` lets the key choose (the default partitioner).
    pub partition: Option<i32>,
}

/// Where an acknowledged record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub partition: i32,
    pub offset: i64,
}

/// Idempotent, acks=all producer. Cheap to clone; clones share one librdkafka client.
#[derive(Clone)]
pub struct EventProducer {
    inner: FutureProducer,
    timeout: Duration,
    max_message_bytes: usize,
}

impl EventProducer {
    /// A producer for `role` (used in the client id).
    pub fn new(cfg: &KafkaConfig, role: &str) -> Result<Self, ProduceError> {
        let mut config = cfg.client_config(role);
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", cfg.linger_ms.to_string())
            .set("message.timeout.ms", cfg.message_timeout_ms.to_string())
            .set("queue.buffering.max.messages", "1000000")
            .set("message.max.bytes", cfg.max_message_bytes.to_string());
        let inner: FutureProducer = cfg
            .finish(&mut config)
            .create()
            .map_err(|e| ProduceError::Config(e.to_string()))?;
        Ok(Self {
            inner,
            timeout: Duration::from_millis(cfg.message_timeout_ms),
            max_message_bytes: cfg.max_message_bytes,
        })
    }

    /// Largest `OutRecord::size` this producer sends.
    pub fn max_record_size(&self) -> usize {
        self.max_message_bytes.saturating_sub(RECORD_OVERHEAD)
    }

    /// Refuses a record the topics cannot hold, before anything is sent.
    pub fn check_size(&self, r: &OutRecord<'_>) -> Result<(), ProduceError> {
        let size = r.size();
        if size > self.max_record_size() {
            return Err(ProduceError::TooLarge {
                topic: r.topic.to_string(),
                size,
                limit: self.max_record_size(),
            });
        }
        Ok(())
    }

    /// Produces every record and waits until the broker acknowledged all of them. On error some
    /// records may have been written: callers rely on stable record ids downstream, never on
    /// "all or none" from Kafka.
    pub async fn send_all(&self, records: &[OutRecord<'_>]) -> Result<Vec<Ack>, ProduceError> {
        for r in records {
            self.check_size(r)?;
        }
        let mut pending = Vec::with_capacity(records.len());
        for r in records {
            let mut record = FutureRecord::to(r.topic).key(r.key).payload(r.payload);
            if let Some(p) = r.partition {
                record = record.partition(p);
            }
            if !r.headers.is_empty() {
                let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
                for (name, value) in r.headers {
                    headers = headers.insert(Header {
                        key: name,
                        value: Some(*value),
                    });
                }
                record = record.headers(headers);
            }
            let deadline = tokio::time::Instant::now() + self.timeout;
            loop {
                match self.inner.send_result(record) {
                    Ok(fut) => {
                        pending.push(fut);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                        if tokio::time::Instant::now() < deadline =>
                    {
                        record = back;
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    Err((e, _)) => return Err(ProduceError::from_kafka(e)),
                }
            }
        }
        let mut acks = Vec::with_capacity(pending.len());
        for fut in pending {
            match fut.await {
                Ok(Ok(d)) => acks.push(Ack {
                    partition: d.partition,
                    offset: d.offset,
                }),
                Ok(Err((e, _))) => return Err(ProduceError::from_kafka(e)),
                Err(_) => return Err(ProduceError::Unavailable("producer shut down".into())),
            }
        }
        Ok(acks)
    }

    /// Produces one record and waits for its acknowledgement.
    pub async fn send(&self, record: OutRecord<'_>) -> Result<Ack, ProduceError> {
        let acks = self.send_all(std::slice::from_ref(&record)).await?;
        Ok(acks[0])
    }

    /// Waits up to `timeout` for every queued record to be acknowledged.
    pub fn flush(&self, timeout: Duration) -> Result<(), ProduceError> {
        self.inner.flush(timeout).map_err(ProduceError::from_kafka)
    }
}

#[cfg(test)]
mod security_tests {
    use super::*;

    #[test]
    fn sasl_tls_and_passthrough_settings_reach_librdkafka_and_the_password_never_prints() {
        let mut cfg = KafkaConfig {
            security_protocol: "sasl_ssl".into(),
            sasl_mechanism: "SCRAM-SHA-256".into(),
            sasl_username: "secpipe".into(),
            sasl_password: "s3cret".into(),
            ssl_ca_location: "/etc/ca.pem".into(),
            ..Default::default()
        };
        cfg.librdkafka
            .insert("broker.address.family".into(), "any".into());
        cfg.librdkafka
            .insert("compression.type".into(), "zstd".into());
        assert_eq!(cfg.validate(), Ok(()));
        let c = cfg.client_config("test");
        assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-256"));
        assert_eq!(c.get("sasl.username"), Some("secpipe"));
        assert_eq!(c.get("sasl.password"), Some("s3cret"));
        assert_eq!(c.get("ssl.ca.location"), Some("/etc/ca.pem"));
        assert_eq!(c.get("ssl.certificate.location"), None);
        assert_eq!(
            c.get("broker.address.family"),
            Some("any"),
            "passthrough wins"
        );
        assert!(!format!("{cfg:?}").contains("s3cret"));
    }

    #[test]
    fn bad_security_settings_name_their_key() {
        let bad = |f: fn(&mut KafkaConfig)| {
            let mut c = KafkaConfig::default();
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert!(bad(|c| c.security_protocol = "tls".into()).starts_with("kafka.security_protocol"));
        assert!(bad(|c| {
            c.security_protocol = "sasl_plaintext".into();
            c.sasl_username = "u".into();
            c.sasl_mechanism = "GSSAPI".into();
        })
        .starts_with("kafka.sasl_mechanism"));
        assert!(bad(|c| c.security_protocol = "sasl_plaintext".into())
            .starts_with("kafka.sasl_username"));
        assert!(bad(|c| c.ssl_key_location = "/k.pem".into()).contains("give both"));
    }
}
