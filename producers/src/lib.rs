//! secpipe's producers: how events enter the pipeline.
//!
//! [`kafka::EventProducer`] is the one Kafka producer client (idempotent, acks=all) that the
//! ingest gateway, the `secpipe produce` CLI and Rust agents share. [`scan_report`] turns the JSON
//! a scan tool sends into a typed record; the HTTP front door is the `secpipe-gateway` crate.

pub mod access;
pub mod gateway_config;
pub mod ingest;
pub mod kafka;
pub mod plausible;
pub mod sarif;
pub mod scan_failure;
pub mod scan_report;
pub mod scan_settings;
pub mod telemetry;

pub use ingest::{IngestError, Ingestor, Prepared};
pub use kafka::{Ack, EventProducer, KafkaConfig, OutRecord, ProduceError, Topics};
