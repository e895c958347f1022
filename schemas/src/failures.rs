//! Failed ad-hoc image scans (`io.secpipe.failures.*`): each failure as reported
//! ([`ScanFailure`]), and the deduplicated administrative event the dedupe processor turns
//! repeated failures into ([`AdminEvent`]), which administrators query and which expires.
use serde::{Deserialize, Serialize};

use crate::{codec::AvroRecord, scan::stable_id};

/// The ad-hoc commands whose failures are recorded.
pub const COMMANDS: [&str; 4] = [
    "image scan",
    "image check",
    "image sbom",
    "deployment check",
];

/// Where an ad-hoc scan can be requested from.
pub const SOURCES: [&str; 2] = ["cli", "api"];

/// One failed ad-hoc scan. Field docs live in `schemas/avro/failures/ScanFailure.v1.avsc`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanFailure {
    pub failure_id: String,
    /// One of [`COMMANDS`].
    pub command: String,
    pub image: Image,
    pub reason: String,
    /// One of [`SOURCES`].
    pub source: String,
    pub cluster: Option<String>,
    /// Microseconds since the Unix epoch.
    pub occurred_at: i64,
    /// Microseconds since the Unix epoch.
    pub received_at: i64,
}

/// The image a scan was about, as both failure records describe it: `full_name` is the
/// reference normalised as registries resolve it ([`crate::image_ref`]), `original` the
/// reference as given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Image {
    pub full_name: String,
    pub registry: Option<String>,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
    /// `None` in records written with v1, whose `full_name` is the reference as given.
    #[serde(default)]
    pub original: Option<String>,
}

impl Image {
    /// The image's identity for dedupe: the normalised reference, also for v1 records whose
    /// `full_name` was stored as given.
    pub fn identity(&self) -> String {
        crate::image_ref::canonical_or_given(&self.full_name)
    }

    /// The reference as the request gave it.
    pub fn as_given(&self) -> &str {
        self.original.as_deref().unwrap_or(&self.full_name)
    }
}

impl AvroRecord for ScanFailure {
    const FULL_NAME: &'static str = "io.secpipe.failures.ScanFailure";
}

impl ScanFailure {
    /// Kafka partition key: the image, so every failure of one image reaches the same dedupe
    /// partition and its state.
    pub fn partition_key(&self) -> &str {
        &self.image.full_name
    }

    /// The id of the [`AdminEvent`] this failure folds into.
    pub fn admin_event_id(&self) -> String {
        AdminEvent::derive_id(
            &self.image.identity(),
            &self.command,
            &self.reason,
            self.cluster.as_deref(),
        )
    }
}

/// The administrative event for repeated failures of one image, command, reason and cluster.
/// Field docs live in `schemas/avro/failures/AdminEvent.v1.avsc`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminEvent {
    /// See [`AdminEvent::derive_id`].
    pub id: String,
    pub command: String,
    pub image: Image,
    pub reason: String,
    pub cluster: Option<String>,
    /// The source of the most recent failure.
    pub source: String,
    /// Microseconds since the Unix epoch.
    pub first_seen: i64,
    /// Microseconds since the Unix epoch.
    pub last_seen: i64,
    pub occurrences: i64,
    /// 1 at the first emission, one more at each re-emission.
    pub version: i64,
    /// Microseconds since the Unix epoch: `last_seen` plus the retention in force at emission.
    /// Readers evaluate expiry from `last_seen` and the current retention instead.
    pub expires_at: i64,
    /// Every source of the folded failures, sorted; empty in records written with v1.
    #[serde(default)]
    pub sources: Vec<String>,
}

impl AvroRecord for AdminEvent {
    const FULL_NAME: &'static str = "io.secpipe.failures.AdminEvent";
}

impl AdminEvent {
    /// Every source of the event: `sources`, or `source` for a v1 record.
    pub fn all_sources(&self) -> Vec<String> {
        if self.sources.is_empty() {
            vec![self.source.clone()]
        } else {
            self.sources.clone()
        }
    }

    /// The stable id of the event for failures of `image_full_name` under `command` with
    /// `reason` on `cluster`: every re-emission and every replay computes the same one.
    pub fn derive_id(
        image_full_name: &str,
        command: &str,
        reason: &str,
        cluster: Option<&str>,
    ) -> String {
        stable_id(
            Self::FULL_NAME,
            &[image_full_name, command, reason, cluster.unwrap_or("")],
        )
    }

    /// Kafka partition key: the image, like the failures it comes from.
    pub fn partition_key(&self) -> &str {
        &self.image.full_name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Codec;

    fn image(tag: Option<&str>, digest: Option<&str>) -> Image {
        Image {
            full_name: "quay.io/shop/checkout:1.4.2".into(),
            registry: Some("quay.io".into()),
            repository: "shop/checkout".into(),
            tag: tag.map(Into::into),
            digest: digest.map(Into::into),
            original: Some("quay.io/shop/checkout:1.4.2".into()),
        }
    }

    fn failure(cluster: Option<&str>) -> ScanFailure {
        ScanFailure {
            failure_id: "0b6a4f7e-3c1d-4e2f-9a8b-7c6d5e4f3a21".into(),
            command: "image check".into(),
            image: image(Some("1.4.2"), None),
            reason: "failed to pull image: unauthorized: authentication required".into(),
            source: "cli".into(),
            cluster: cluster.map(Into::into),
            occurred_at: 1_732_431_600_000_000,
            received_at: 1_732_431_600_250_000,
        }
    }

    #[test]
    fn scan_failure_round_trips_with_and_without_optional_fields() {
        let codec = Codec::<ScanFailure>::new().unwrap();
        let mut bare = failure(None);
        bare.image = Image {
            full_name: "alpine".into(),
            registry: None,
            repository: "library/alpine".into(),
            tag: None,
            digest: None,
            original: None,
        };
        for f in [failure(Some("prod-eu-1")), bare] {
            assert_eq!(codec.decode(&codec.encode(&f).unwrap()).unwrap(), f);
        }
        assert_eq!(failure(None).partition_key(), "quay.io/shop/checkout:1.4.2");
    }

    #[test]
    fn admin_event_round_trips() {
        let f = failure(Some("prod-eu-1"));
        let event = AdminEvent {
            id: f.admin_event_id(),
            command: f.command.clone(),
            image: image(Some("1.4.2"), Some(&format!("sha256:{}", "ab".repeat(32)))),
            reason: f.reason.clone(),
            cluster: f.cluster.clone(),
            source: "api".into(),
            first_seen: f.occurred_at,
            last_seen: f.occurred_at + 90_000_000,
            occurrences: 3,
            version: 3,
            expires_at: f.occurred_at + 90_000_000 + 4 * 86_400_000_000,
            sources: vec!["api".into(), "cli".into()],
        };
        let codec = Codec::<AdminEvent>::new().unwrap();
        assert_eq!(codec.decode(&codec.encode(&event).unwrap()).unwrap(), event);
        let no_cluster = AdminEvent {
            cluster: None,
            ..event
        };
        assert_eq!(
            codec.decode(&codec.encode(&no_cluster).unwrap()).unwrap(),
            no_cluster
        );
    }

    #[test]
    fn repeats_of_a_failure_share_an_admin_event_id_and_other_failures_do_not() {
        let first = failure(Some("prod-eu-1"));
        let repeat = ScanFailure {
            failure_id: "another report of the same failure".into(),
            source: "api".into(),
            occurred_at: first.occurred_at + 5_000_000,
            ..first.clone()
        };
        assert_eq!(first.admin_event_id(), repeat.admin_event_id());
        let other_cluster = ScanFailure {
            cluster: Some("prod-us-1".into()),
            ..first.clone()
        };
        let other_command = ScanFailure {
            command: "image scan".into(),
            ..first.clone()
        };
        let other_reason = ScanFailure {
            reason: "scanner timed out".into(),
            ..first.clone()
        };
        for other in [other_cluster, other_command, other_reason, failure(None)] {
            assert_ne!(first.admin_event_id(), other.admin_event_id(), "{other:?}");
        }
    }
}
