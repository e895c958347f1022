//! One codec for the whole telemetry family: a telemetry topic carries every event type, so a
//! reader learns the type of each record from the schema fingerprint in its header and hands
//! the bytes to that type's [`Codec`].
use crate::{catalog, Codec, DecodeError, EncodeError, SchemaError};

use super::{
    Api, AuthTokenSighting, ComponentExit, ComponentStart, DependencyInfo, File, Heartbeat,
    HostEnvironment, IdentityChange, MemoryWarning, Network, PackageInfo, Process, TelemetryEvent,
    TelemetryKind, WebappRegistration, WebappUriDiscovery,
};

/// What [`DecodeError::WrongSchema`] names as expected when a record is not telemetry.
const ANY_TELEMETRY_RECORD: &str = "io.secpipe.telemetry.*";

/// Encoder and decoder of every [`TelemetryEvent`] type, single-object framed. Build it once and
/// share it (it is `Sync`).
pub struct TelemetryCodec {
    component_start: Codec<ComponentStart>,
    component_exit: Codec<ComponentExit>,
    host_environment: Codec<HostEnvironment>,
    package_info: Codec<PackageInfo>,
    api: Codec<Api>,
    heartbeat: Codec<Heartbeat>,
    network: Codec<Network>,
    dependency_info: Codec<DependencyInfo>,
    memory_warning: Codec<MemoryWarning>,
    file: Codec<File>,
    identity_change: Codec<IdentityChange>,
    process: Codec<Process>,
    webapp_registration: Codec<WebappRegistration>,
    webapp_uri_discovery: Codec<WebappUriDiscovery>,
    auth_token_sighting: Codec<AuthTokenSighting>,
}

impl TelemetryCodec {
    /// Builds the codec of every telemetry record.
    pub fn new() -> Result<Self, SchemaError> {
        Ok(Self {
            component_start: Codec::new()?,
            component_exit: Codec::new()?,
            host_environment: Codec::new()?,
            package_info: Codec::new()?,
            api: Codec::new()?,
            heartbeat: Codec::new()?,
            network: Codec::new()?,
            dependency_info: Codec::new()?,
            memory_warning: Codec::new()?,
            file: Codec::new()?,
            identity_change: Codec::new()?,
            process: Codec::new()?,
            webapp_registration: Codec::new()?,
            webapp_uri_discovery: Codec::new()?,
            auth_token_sighting: Codec::new()?,
        })
    }

    /// Appends one framed event to `out`.
    pub fn encode_into(
        &self,
        event: &TelemetryEvent,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        match event {
            TelemetryEvent::ComponentStart(e) => self.component_start.encode_into(e, out),
            TelemetryEvent::ComponentExit(e) => self.component_exit.encode_into(e, out),
            TelemetryEvent::HostEnvironment(e) => self.host_environment.encode_into(e, out),
            TelemetryEvent::PackageInfo(e) => self.package_info.encode_into(e, out),
            TelemetryEvent::Api(e) => self.api.encode_into(e, out),
            TelemetryEvent::Heartbeat(e) => self.heartbeat.encode_into(e, out),
            TelemetryEvent::Network(e) => self.network.encode_into(e, out),
            TelemetryEvent::DependencyInfo(e) => self.dependency_info.encode_into(e, out),
            TelemetryEvent::MemoryWarning(e) => self.memory_warning.encode_into(e, out),
            TelemetryEvent::File(e) => self.file.encode_into(e, out),
            TelemetryEvent::IdentityChange(e) => self.identity_change.encode_into(e, out),
            TelemetryEvent::Process(e) => self.process.encode_into(e, out),
            TelemetryEvent::WebappRegistration(e) => self.webapp_registration.encode_into(e, out),
            TelemetryEvent::WebappUriDiscovery(e) => self.webapp_uri_discovery.encode_into(e, out),
            TelemetryEvent::AuthTokenSighting(e) => self.auth_token_sighting.encode_into(e, out),
        }
    }

    /// One framed event in a new buffer.
    pub fn encode(&self, event: &TelemetryEvent) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(512);
        self.encode_into(event, &mut out)?;
        Ok(out)
    }

    /// The type of a framed telemetry record, from its header alone.
    pub fn kind_of(&self, bytes: &[u8]) -> Result<TelemetryKind, DecodeError> {
        let fingerprint = single_object_fingerprint(bytes)?;
        let version = catalog()
            .ok()
            .and_then(|c| c.by_fingerprint(fingerprint))
            .ok_or(DecodeError::UnknownFingerprint(fingerprint))?;
        TelemetryKind::from_full_name(&version.full_name).ok_or_else(|| DecodeError::WrongSchema {
            expected: ANY_TELEMETRY_RECORD,
            found: format!("{} v{}", version.full_name, version.version),
        })
    }

    /// Decodes one framed telemetry record of any type and any known schema version.
    pub fn decode(&self, bytes: &[u8]) -> Result<TelemetryEvent, DecodeError> {
        Ok(match self.kind_of(bytes)? {
            TelemetryKind::ComponentStart => {
                TelemetryEvent::ComponentStart(self.component_start.decode(bytes)?)
            }
            TelemetryKind::ComponentExit => {
                TelemetryEvent::ComponentExit(self.component_exit.decode(bytes)?)
            }
            TelemetryKind::HostEnvironment => {
                TelemetryEvent::HostEnvironment(self.host_environment.decode(bytes)?)
            }
            TelemetryKind::PackageInfo => {
                TelemetryEvent::PackageInfo(self.package_info.decode(bytes)?)
            }
            TelemetryKind::Api => TelemetryEvent::Api(self.api.decode(bytes)?),
            TelemetryKind::Heartbeat => TelemetryEvent::Heartbeat(self.heartbeat.decode(bytes)?),
            TelemetryKind::Network => TelemetryEvent::Network(self.network.decode(bytes)?),
            TelemetryKind::DependencyInfo => {
                TelemetryEvent::DependencyInfo(self.dependency_info.decode(bytes)?)
            }
            TelemetryKind::MemoryWarning => {
                TelemetryEvent::MemoryWarning(self.memory_warning.decode(bytes)?)
            }
            TelemetryKind::File => TelemetryEvent::File(self.file.decode(bytes)?),
            TelemetryKind::IdentityChange => {
                TelemetryEvent::IdentityChange(self.identity_change.decode(bytes)?)
            }
            TelemetryKind::Process => TelemetryEvent::Process(self.process.decode(bytes)?),
            TelemetryKind::WebappRegistration => {
                TelemetryEvent::WebappRegistration(self.webapp_registration.decode(bytes)?)
            }
            TelemetryKind::WebappUriDiscovery => {
                TelemetryEvent::WebappUriDiscovery(self.webapp_uri_discovery.decode(bytes)?)
            }
            TelemetryKind::AuthTokenSighting => {
                TelemetryEvent::AuthTokenSighting(self.auth_token_sighting.decode(bytes)?)
            }
        })
    }
}

/// The schema fingerprint in a single-object header (`C3 01`, then 8 bytes little endian), with
/// the same errors [`Codec::decode`] gives for a bad header. Confluent-framed bytes (`00` + id)
/// cannot be mapped to a record without registry ids, which this codec does not hold.
fn single_object_fingerprint(bytes: &[u8]) -> Result<u64, DecodeError> {
    const HEADER: usize = 10;
    match bytes {
        [] => Err(DecodeError::Empty),
        [0xC3, 0x01, ..] | [0xC3] if bytes.len() < HEADER => Err(DecodeError::TruncatedHeader {
            framing: "single-object",
            needed: HEADER,
            got: bytes.len(),
        }),
        [0xC3, 0x01, ..] => Ok(u64::from_le_bytes(
            bytes[2..HEADER].try_into().expect("8 bytes"),
        )),
        [0x00, a, b, c, d, ..] => Err(DecodeError::UnknownSchemaId(u32::from_be_bytes([
            *a, *b, *c, *d,
        ]))),
        [0x00, ..] => Err(DecodeError::TruncatedHeader {
            framing: "Confluent",
            needed: 5,
            got: bytes.len(),
        }),
        _ => Err(DecodeError::UnknownFraming(
            bytes[..bytes.len().min(2)].to_vec(),
        )),
    }
}

impl crate::Decode<TelemetryEvent> for TelemetryCodec {
    fn decode(&self, bytes: &[u8]) -> Result<TelemetryEvent, DecodeError> {
        TelemetryCodec::decode(self, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{scan::ScanReport, telemetry::sample, AvroRecord};

    #[test]
    fn every_event_type_round_trips_through_the_telemetry_codec() {
        let codec = TelemetryCodec::new().unwrap();
        for event in sample::one_of_each(11) {
            let bytes = codec.encode(&event).unwrap();
            assert_eq!(codec.kind_of(&bytes).unwrap(), event.kind());
            assert_eq!(codec.decode(&bytes).unwrap(), event, "{}", event.kind());
        }
    }

    #[test]
    fn every_event_type_round_trips_through_its_own_codec() {
        fn check<T: AvroRecord + PartialEq + std::fmt::Debug>(record: &T) {
            let codec = Codec::<T>::new().unwrap();
            assert_eq!(
                &codec.decode(&codec.encode(record).unwrap()).unwrap(),
                record
            );
        }
        for event in sample::one_of_each(12) {
            match &event {
                TelemetryEvent::ComponentStart(e) => check(e),
                TelemetryEvent::ComponentExit(e) => check(e),
                TelemetryEvent::HostEnvironment(e) => check(e),
                TelemetryEvent::PackageInfo(e) => check(e),
                TelemetryEvent::Api(e) => check(e),
                TelemetryEvent::Heartbeat(e) => check(e),
                TelemetryEvent::Network(e) => check(e),
                TelemetryEvent::DependencyInfo(e) => check(e),
                TelemetryEvent::MemoryWarning(e) => check(e),
                TelemetryEvent::File(e) => check(e),
                TelemetryEvent::IdentityChange(e) => check(e),
                TelemetryEvent::Process(e) => check(e),
                TelemetryEvent::WebappRegistration(e) => check(e),
                TelemetryEvent::WebappUriDiscovery(e) => check(e),
                TelemetryEvent::AuthTokenSighting(e) => check(e),
            }
        }
    }

    #[test]
    fn encode_into_appends_and_matches_encode() {
        let codec = TelemetryCodec::new().unwrap();
        let events = sample::one_of_each(13);
        let mut out = Vec::new();
        for e in &events {
            let before = out.len();
            codec.encode_into(e, &mut out).unwrap();
            assert_eq!(&out[before..], codec.encode(e).unwrap().as_slice());
        }
    }

    #[test]
    fn a_scan_report_is_rejected_as_the_wrong_schema() {
        let codec = TelemetryCodec::new().unwrap();
        // Built from JSON so that optional fields added to ScanReport later need no change here.
        let report: ScanReport = serde_json::from_value(serde_json::json!({
            "id": "scan-1",
            "repo_context": {},
            "repo_type": [],
            "report_summary": [],
            "received_at": 1,
        }))
        .unwrap();
        let bytes = Codec::<ScanReport>::new().unwrap().encode(&report).unwrap();
        match codec.decode(&bytes) {
            Err(DecodeError::WrongSchema { expected, found }) => {
                assert_eq!(expected, ANY_TELEMETRY_RECORD);
                assert!(found.starts_with("io.secpipe.scan.ScanReport v"), "{found}");
            }
            other => panic!("expected WrongSchema, got {other:?}"),
        }
    }

    #[test]
    fn bad_headers_are_typed_errors() {
        let codec = TelemetryCodec::new().unwrap();
        let bytes = codec.encode(&sample::one_of_each(14)[0]).unwrap();
        assert_eq!(codec.decode(&[]), Err(DecodeError::Empty));
        assert!(matches!(
            codec.decode(&bytes[..6]),
            Err(DecodeError::TruncatedHeader { got: 6, .. })
        ));
        let mut unknown = bytes.clone();
        unknown[9] ^= 0x5A;
        assert!(matches!(
            codec.decode(&unknown),
            Err(DecodeError::UnknownFingerprint(_))
        ));
        assert_eq!(
            codec.decode(&[0x00, 0, 0, 0, 7, 1]),
            Err(DecodeError::UnknownSchemaId(7))
        );
        assert!(matches!(
            codec.decode(b"{\"type\":\"heartbeat\"}"),
            Err(DecodeError::UnknownFraming(_))
        ));
        assert!(matches!(
            codec.decode(&bytes[..bytes.len() - 1]),
            Err(DecodeError::Body { .. })
        ));
    }
}
