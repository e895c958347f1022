//! Alerts (`io.secpipe.alerts.Alert`): what the alert processor raises from scan results, checks
//! and runtime events, and what the notification sinks deliver.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{codec::AvroRecord, scan::stable_id};

/// Alert severities, least severe first.
pub const SEVERITIES: [&str; 5] = ["info", "low", "medium", "high", "critical"];

/// What raised an alert, in the notification interface's terms: a scan report's result, one
/// check that ended in WARN or FAIL, a real-time event.
pub const KINDS: [&str; 3] = ["result", "alert", "event"];

/// The states of an alert.
pub const STATUSES: [&str; 2] = ["open", "resolved"];

/// One alert. Field docs live in `schemas/avro/alerts/Alert.v1.avsc`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// See [`Alert::derive_id`].
    pub alert_id: String,
    pub rule: String,
    /// One of [`SEVERITIES`].
    pub severity: String,
    /// One of [`KINDS`].
    pub kind: String,
    pub title: String,
    pub description: String,
    pub dedup_key: String,
    /// One of [`STATUSES`].
    pub status: String,
    pub source_topic: String,
    pub source_id: String,
    pub resources: Vec<String>,
    pub tags: Vec<String>,
    /// An Avro `map<string>`; sorted so that equal alerts serialize to equal bytes.
    pub attributes: BTreeMap<String, String>,
    /// Microseconds since the Unix epoch.
    pub raised_at: i64,
}

impl AvroRecord for Alert {
    const FULL_NAME: &'static str = "io.secpipe.alerts.Alert";
}

impl Alert {
    /// The id of the alert `rule` raises with `status` from the record `source_id`: replaying
    /// the source record raises the same id again.
    pub fn derive_id(rule: &str, source_id: &str, status: &str) -> String {
        stable_id(Self::FULL_NAME, &[rule, source_id, status])
    }

    /// Kafka partition key: the dedup key, so an alert's openings and resolution stay in order.
    pub fn partition_key(&self) -> &str {
        &self.dedup_key
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Codec;

    fn alert(attributes: &[(&str, &str)]) -> Alert {
        let source_id = "9f1c2a3e-0000-4000-8000-000000000001";
        Alert {
            alert_id: Alert::derive_id("critical-findings", source_id, "open"),
            rule: "critical-findings".into(),
            severity: "critical".into(),
            kind: "result".into(),
            title: "payments-api: 1 critical finding on main".into(),
            description: "njsscan reported a critical finding in revision 3f2a9c1.".into(),
            dedup_key: "critical-findings/payments-api".into(),
            status: "open".into(),
            source_topic: "secpipe.scan-results".into(),
            source_id: source_id.into(),
            resources: vec!["payments-api".into()],
            tags: vec!["scan".into(), "team:payments".into()],
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            raised_at: 1_700_000_000_500_000,
        }
    }

    #[test]
    fn alert_round_trips_with_an_attribute_map() {
        let codec = Codec::<Alert>::new().unwrap();
        for a in [
            alert(&[
                ("repository", "payments-api"),
                ("branch", "main"),
                ("critical", "1"),
            ]),
            alert(&[]),
        ] {
            assert_eq!(codec.decode(&codec.encode(&a).unwrap()).unwrap(), a);
        }
    }

    #[test]
    fn the_attribute_map_is_an_avro_map_on_the_wire() {
        // One block of 1 entry, "k" -> "v", then the end-of-map marker, just before raised_at.
        let codec = Codec::<Alert>::new().unwrap();
        let bytes = codec.encode(&alert(&[("k", "v")])).unwrap();
        let block = [0x02, 0x02, b'k', 0x02, b'v', 0x00];
        assert!(bytes.windows(block.len()).any(|w| w == block));
        let json: serde_json::Value = serde_json::from_slice(codec.current().source.as_bytes())
            .expect("Alert.v1.avsc is JSON");
        let field = json["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == "attributes")
            .unwrap();
        assert_eq!(field["type"]["type"], "map");
    }

    #[test]
    fn alert_ids_are_stable_per_rule_source_and_status() {
        let id = Alert::derive_id("r", "source-1", "open");
        assert_eq!(id, Alert::derive_id("r", "source-1", "open"));
        assert_ne!(id, Alert::derive_id("r", "source-1", "resolved"));
        assert_ne!(id, Alert::derive_id("r", "source-2", "open"));
        assert_ne!(id, Alert::derive_id("q", "source-1", "open"));
        assert_eq!(alert(&[]).partition_key(), "critical-findings/payments-api");
    }
}
