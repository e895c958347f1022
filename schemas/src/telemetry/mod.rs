//! Runtime telemetry (`io.secpipe.telemetry.*`): what agents observe inside running processes,
//! one record type per event type. Every record starts with the same [`Envelope`], so routing,
//! partitioning and storage treat all of them alike; [`TelemetryEvent`] is the closed set of
//! them, in Avro through [`TelemetryCodec`] and in JSON (the NDJSON ingest endpoint) as
//! `{"type":"heartbeat","envelope":{...},...}`.
use std::fmt;

use serde::{Deserialize, Serialize};

mod api;
mod codec;
mod heartbeat;
mod libraries;
mod lifecycle;
pub mod sample;
mod webapp;

pub use api::{Api, File, IdentityChange, MemoryWarning, Network, Process};
pub use codec::TelemetryCodec;
pub use heartbeat::{Heartbeat, OpenDescriptor};
pub use libraries::{DependencyInfo, PackageInfo};
pub use lifecycle::{
    ComponentExit, ComponentStart, EnvironmentVariable, HostEnvironment, MemoryMap, OsPackage,
};
pub use webapp::{AuthTokenSighting, WebappRegistration, WebappUriDiscovery};

/// Identity, time and origin of a telemetry event: the first field of every telemetry record.
/// Field docs live in any `schemas/avro/telemetry/*.avsc` (the definition is the same in all).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Envelope {
    pub event_id: String,
    /// Microseconds since the Unix epoch.
    pub event_time: i64,
    pub host: String,
    pub container_id: Option<String>,
    pub pod: Option<String>,
    pub namespace: Option<String>,
    pub pid: i64,
    pub app: Option<String>,
}

/// One frame of the call stack at an observed call, innermost first.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StackFrame {
    /// A 64-bit address; addresses at or above 2^63 are stored as their two's complement.
    pub address: i64,
    pub module: Option<String>,
    pub symbol: Option<String>,
    pub offset: Option<i64>,
}

/// The telemetry event types, without their data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TelemetryKind {
    ComponentStart,
    ComponentExit,
    HostEnvironment,
    PackageInfo,
    Api,
    Heartbeat,
    Network,
    DependencyInfo,
    MemoryWarning,
    File,
    IdentityChange,
    Process,
    WebappRegistration,
    WebappUriDiscovery,
    AuthTokenSighting,
}

impl TelemetryKind {
    /// Every kind, in declaration order.
    pub const ALL: [TelemetryKind; 15] = [
        Self::ComponentStart,
        Self::ComponentExit,
        Self::HostEnvironment,
        Self::PackageInfo,
        Self::Api,
        Self::Heartbeat,
        Self::Network,
        Self::DependencyInfo,
        Self::MemoryWarning,
        Self::File,
        Self::IdentityChange,
        Self::Process,
        Self::WebappRegistration,
        Self::WebappUriDiscovery,
        Self::AuthTokenSighting,
    ];

    /// The `type` tag of the event's JSON form, e.g. `"heartbeat"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ComponentStart => "component_start",
            Self::ComponentExit => "component_exit",
            Self::HostEnvironment => "host_environment",
            Self::PackageInfo => "package_info",
            Self::Api => "api",
            Self::Heartbeat => "heartbeat",
            Self::Network => "network",
            Self::DependencyInfo => "dependency_info",
            Self::MemoryWarning => "memory_warning",
            Self::File => "file",
            Self::IdentityChange => "identity_change",
            Self::Process => "process",
            Self::WebappRegistration => "webapp_registration",
            Self::WebappUriDiscovery => "webapp_uri_discovery",
            Self::AuthTokenSighting => "auth_token_sighting",
        }
    }

    /// The kind whose JSON `type` tag is `tag` (see [`as_str`](Self::as_str)); `None` for any
    /// other text.
    pub fn from_tag(tag: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == tag)
    }

    /// Avro full name of the kind's record, e.g. `io.secpipe.telemetry.Heartbeat`.
    pub const fn full_name(self) -> &'static str {
        use crate::AvroRecord;
        match self {
            Self::ComponentStart => ComponentStart::FULL_NAME,
            Self::ComponentExit => ComponentExit::FULL_NAME,
            Self::HostEnvironment => HostEnvironment::FULL_NAME,
            Self::PackageInfo => PackageInfo::FULL_NAME,
            Self::Api => Api::FULL_NAME,
            Self::Heartbeat => Heartbeat::FULL_NAME,
            Self::Network => Network::FULL_NAME,
            Self::DependencyInfo => DependencyInfo::FULL_NAME,
            Self::MemoryWarning => MemoryWarning::FULL_NAME,
            Self::File => File::FULL_NAME,
            Self::IdentityChange => IdentityChange::FULL_NAME,
            Self::Process => Process::FULL_NAME,
            Self::WebappRegistration => WebappRegistration::FULL_NAME,
            Self::WebappUriDiscovery => WebappUriDiscovery::FULL_NAME,
            Self::AuthTokenSighting => AuthTokenSighting::FULL_NAME,
        }
    }

    /// The kind whose record has this Avro full name; `None` for any other record.
    pub fn from_full_name(full_name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.full_name() == full_name)
    }
}

impl fmt::Display for TelemetryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One telemetry event of any type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TelemetryEvent {
    ComponentStart(ComponentStart),
    ComponentExit(ComponentExit),
    HostEnvironment(HostEnvironment),
    PackageInfo(PackageInfo),
    Api(Api),
    Heartbeat(Heartbeat),
    Network(Network),
    DependencyInfo(DependencyInfo),
    MemoryWarning(MemoryWarning),
    File(File),
    IdentityChange(IdentityChange),
    Process(Process),
    WebappRegistration(WebappRegistration),
    WebappUriDiscovery(WebappUriDiscovery),
    AuthTokenSighting(AuthTokenSighting),
}

impl TelemetryEvent {
    /// The envelope every event starts with.
    pub fn envelope(&self) -> &Envelope {
        match self {
            Self::ComponentStart(e) => &e.envelope,
            Self::ComponentExit(e) => &e.envelope,
            Self::HostEnvironment(e) => &e.envelope,
            Self::PackageInfo(e) => &e.envelope,
            Self::Api(e) => &e.envelope,
            Self::Heartbeat(e) => &e.envelope,
            Self::Network(e) => &e.envelope,
            Self::DependencyInfo(e) => &e.envelope,
            Self::MemoryWarning(e) => &e.envelope,
            Self::File(e) => &e.envelope,
            Self::IdentityChange(e) => &e.envelope,
            Self::Process(e) => &e.envelope,
            Self::WebappRegistration(e) => &e.envelope,
            Self::WebappUriDiscovery(e) => &e.envelope,
            Self::AuthTokenSighting(e) => &e.envelope,
        }
    }

    /// The envelope, to change (re-stamping, tests, agents filling it in).
    pub fn envelope_mut(&mut self) -> &mut Envelope {
        match self {
            Self::ComponentStart(e) => &mut e.envelope,
            Self::ComponentExit(e) => &mut e.envelope,
            Self::HostEnvironment(e) => &mut e.envelope,
            Self::PackageInfo(e) => &mut e.envelope,
            Self::Api(e) => &mut e.envelope,
            Self::Heartbeat(e) => &mut e.envelope,
            Self::Network(e) => &mut e.envelope,
            Self::DependencyInfo(e) => &mut e.envelope,
            Self::MemoryWarning(e) => &mut e.envelope,
            Self::File(e) => &mut e.envelope,
            Self::IdentityChange(e) => &mut e.envelope,
            Self::Process(e) => &mut e.envelope,
            Self::WebappRegistration(e) => &mut e.envelope,
            Self::WebappUriDiscovery(e) => &mut e.envelope,
            Self::AuthTokenSighting(e) => &mut e.envelope,
        }
    }

    /// The event's type.
    pub fn kind(&self) -> TelemetryKind {
        match self {
            Self::ComponentStart(_) => TelemetryKind::ComponentStart,
            Self::ComponentExit(_) => TelemetryKind::ComponentExit,
            Self::HostEnvironment(_) => TelemetryKind::HostEnvironment,
            Self::PackageInfo(_) => TelemetryKind::PackageInfo,
            Self::Api(_) => TelemetryKind::Api,
            Self::Heartbeat(_) => TelemetryKind::Heartbeat,
            Self::Network(_) => TelemetryKind::Network,
            Self::DependencyInfo(_) => TelemetryKind::DependencyInfo,
            Self::MemoryWarning(_) => TelemetryKind::MemoryWarning,
            Self::File(_) => TelemetryKind::File,
            Self::IdentityChange(_) => TelemetryKind::IdentityChange,
            Self::Process(_) => TelemetryKind::Process,
            Self::WebappRegistration(_) => TelemetryKind::WebappRegistration,
            Self::WebappUriDiscovery(_) => TelemetryKind::WebappUriDiscovery,
            Self::AuthTokenSighting(_) => TelemetryKind::AuthTokenSighting,
        }
    }

    /// Kafka partition key: the host. Every event of a host reaches the same processor
    /// partition, so per-host state (the ports a host listens on) is global to its key: a
    /// restarted container, with a new pid, finds the state its predecessor left. The events of
    /// each process still stay in order, as a subsequence of their host's.
    pub fn partition_key(&self) -> String {
        self.envelope().host.clone()
    }

    /// The process the event comes from, `"{host}/{container}/{pid}"` (`-` without a
    /// container): what per-process state is keyed by inside a partition. The container is part
    /// of it because the pid-1 processes of many containers on one node are different processes.
    pub fn process_key(&self) -> String {
        let e = self.envelope();
        format!(
            "{}/{}/{}",
            e.host,
            e.container_id.as_deref().unwrap_or("-"),
            e.pid
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog;

    fn telemetry_files() -> Vec<(&'static str, serde_json::Value)> {
        catalog()
            .unwrap()
            .versions()
            .iter()
            .filter(|v| v.path.starts_with("telemetry/"))
            .map(|v| {
                (
                    v.path,
                    serde_json::from_str(v.source).expect("schema is JSON"),
                )
            })
            .collect()
    }

    #[test]
    fn every_telemetry_schema_starts_with_the_same_envelope() {
        let files = telemetry_files();
        assert_eq!(files.len(), TelemetryKind::ALL.len());
        let (first_path, first) = &files[0];
        let reference = &first["fields"][0];
        assert_eq!(reference["name"], "envelope", "{first_path}");
        assert_eq!(reference["type"]["name"], "Envelope", "{first_path}");
        for (path, schema) in &files {
            assert_eq!(&schema["fields"][0], reference, "{path} vs {first_path}");
        }
        // And the parsed Avro schemas agree too, so the bytes of an envelope are the same in all.
        let parsed: Vec<_> = catalog()
            .unwrap()
            .versions()
            .iter()
            .filter(|v| v.path.starts_with("telemetry/"))
            .map(|v| match &v.schema {
                apache_avro::Schema::Record(r) => r.fields[0].schema.clone(),
                other => panic!("{} is not a record: {other:?}", v.path),
            })
            .collect();
        assert!(parsed.windows(2).all(|w| w[0] == w[1]));
    }

    #[test]
    fn every_kind_has_exactly_one_schema_file_and_back() {
        let files = telemetry_files();
        for kind in TelemetryKind::ALL {
            let expected = format!(
                "telemetry/{}.v1.avsc",
                kind.full_name().rsplit('.').next().unwrap()
            );
            assert!(
                files.iter().any(|(p, _)| *p == expected),
                "{kind}: no {expected}"
            );
            assert_eq!(TelemetryKind::from_full_name(kind.full_name()), Some(kind));
            assert_eq!(TelemetryKind::from_tag(kind.as_str()), Some(kind));
        }
        assert_eq!(TelemetryKind::from_tag("keystroke"), None);
        assert_eq!(
            TelemetryKind::from_full_name("io.secpipe.scan.ScanReport"),
            None
        );
    }

    #[test]
    fn json_form_is_tagged_with_the_kind_and_round_trips() {
        let codec_free: Vec<TelemetryEvent> = sample::one_of_each(7);
        assert_eq!(codec_free.len(), TelemetryKind::ALL.len());
        for event in codec_free {
            let json = serde_json::to_value(&event).unwrap();
            assert_eq!(json["type"], event.kind().as_str());
            assert_eq!(json["envelope"]["pid"], event.envelope().pid);
            let text = serde_json::to_string(&event).unwrap();
            assert!(text.starts_with(&format!("{{\"type\":\"{}\",\"envelope\":{{", event.kind())));
            let back: TelemetryEvent = serde_json::from_str(&text).unwrap();
            assert_eq!(back, event);
            // The kind's serde name is the same tag.
            assert_eq!(
                serde_json::to_value(event.kind()).unwrap(),
                serde_json::Value::from(event.kind().as_str())
            );
        }
    }

    #[test]
    fn json_ingest_accepts_absent_optional_fields_and_rejects_unknown_types() {
        let line = r#"{"type":"component_exit","envelope":{"event_id":"e1","event_time":5,"host":"node-1","pid":42},"exit_code":0}"#;
        let event: TelemetryEvent = serde_json::from_str(line).unwrap();
        assert_eq!(event.kind(), TelemetryKind::ComponentExit);
        assert_eq!(event.envelope().container_id, None);
        assert_eq!(event.partition_key(), "node-1");
        assert_eq!(event.process_key(), "node-1/-/42");
        let unknown = r#"{"type":"keystroke","envelope":{"event_id":"e1","event_time":5,"host":"h","pid":1}}"#;
        assert!(serde_json::from_str::<TelemetryEvent>(unknown).is_err());
    }
}
