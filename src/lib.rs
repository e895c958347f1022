//! The `secpipe` binary's library: configuration, the stage runtime that connects Kafka to the
//! processors and sinks, topic administration, and the demo. The stage crates (`producers/`,
//! `processors/`, `sinks/`, `schemas/`) never talk to Kafka consumers themselves; this crate does.

pub mod bench;
pub mod changelog;
pub mod config;
pub mod demo;
pub mod logging;
pub mod member;
pub mod operate;
pub mod ops;
pub mod processing;
pub mod produce;
pub mod roles;
pub mod runtime;
pub mod topics;

pub use config::Settings;
