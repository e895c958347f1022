//! Scan results: the end-of-scan summary a scan tool sends (`io.secpipe.scan.ScanReport`).
use serde::{Deserialize, Serialize};

use crate::codec::AvroRecord;

/// One scan invocation's summary. Field docs live in `schemas/avro/scan/ScanReport.v3.avsc`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanReport {
    pub id: String,
    pub scan_mode: Option<String>,
    pub tool: Option<String>,
    pub repo_context: RepoContext,
    pub repo_type: Vec<String>,
    /// Owning team (v2); `None` in records written with v1.
    pub team: Option<String>,
    pub report_summary: Vec<ScannerSummary>,
    /// `track` (the tool's own end-of-scan message) or `sarif` (v3; `track` for older records).
    #[serde(default = "track")]
    pub origin: String,
    /// Microseconds since the Unix epoch.
    pub received_at: i64,
}

/// Where the scanned code came from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RepoContext {
    pub branch: Option<String>,
    pub pull_request: Option<bool>,
    pub repository_name: Option<String>,
    pub repository_uri: Option<String>,
    pub revision_id: Option<String>,
    pub invoked_by: Option<String>,
}

/// Findings of one scanner in one scan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScannerSummary {
    pub scanner: String,
    pub tool: Option<String>,
    pub critical: i64,
    pub high: i64,
    pub medium: i64,
    pub low: i64,
    pub status: String,
}

fn track() -> String {
    "track".into()
}

impl AvroRecord for ScanReport {
    const FULL_NAME: &'static str = "io.secpipe.scan.ScanReport";
}

impl ScanReport {
    /// Kafka partition key: the repository's key ([`crate::repository::key`]), so one
    /// repository's scans stay in order; the scan id when the report names no repository.
    pub fn partition_key(&self) -> String {
        let rc = &self.repo_context;
        crate::repository::key(rc.repository_uri.as_deref(), rc.repository_name.as_deref())
            .unwrap_or_else(|| self.id.clone())
    }

    /// The repository's key, `None` when the report names no repository.
    pub fn repository_key(&self) -> Option<String> {
        let rc = &self.repo_context;
        crate::repository::key(rc.repository_uri.as_deref(), rc.repository_name.as_deref())
    }
}

/// One result of a SARIF 2.1.0 report (`io.secpipe.scan.Finding`). Field docs live in
/// `schemas/avro/scan/Finding.v2.avsc`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// See [`Finding::derive_id`].
    pub finding_id: String,
    /// The SARIF run's `automationDetails.guid`: the id of the scan's [`ScanReport`].
    pub scan_id: String,
    pub tool: String,
    pub rule_id: String,
    /// One of [`Finding::LEVELS`].
    pub level: String,
    /// One of [`Finding::SEVERITIES`] (v2; empty in v1 records).
    #[serde(default)]
    pub severity: String,
    pub message: String,
    pub file: String,
    pub line: Option<i32>,
    #[serde(default)]
    pub start_column: Option<i32>,
    #[serde(default)]
    pub end_line: Option<i32>,
    #[serde(default)]
    pub end_column: Option<i32>,
    pub fingerprint: Option<String>,
    /// The repository's key (see [`crate::repository::key`]).
    pub repository: Option<String>,
    /// The analysis category (v2).
    #[serde(default)]
    pub category: String,
    /// Microseconds since the Unix epoch.
    pub received_at: i64,
}

impl AvroRecord for Finding {
    const FULL_NAME: &'static str = "io.secpipe.scan.Finding";
}

impl Finding {
    /// SARIF's result levels, least severe first.
    pub const LEVELS: [&'static str; 4] = ["none", "note", "warning", "error"];

    /// Finding severities, most severe first.
    pub const SEVERITIES: [&'static str; 5] = ["critical", "high", "medium", "low", "info"];

    /// Kafka partition key: the repository when known, else the scan, so a repository's findings
    /// stay in order on the partition of its scan reports.
    pub fn partition_key(&self) -> &str {
        self.repository.as_deref().unwrap_or(&self.scan_id)
    }

    /// The `finding_id` of a result: the same inputs always give the same id, so a report that is
    /// uploaded or replayed twice produces rows the table collapses, while results that differ in
    /// any part (a column, a fingerprint) or only in their position among identical ones
    /// (`occurrence`, counted from 0) keep ids of their own.
    pub fn derive_id(identity: &FindingIdentity<'_>) -> String {
        let num = |n: Option<i32>| n.map(|n| n.to_string()).unwrap_or_default();
        stable_id(
            Self::FULL_NAME,
            &[
                "v2",
                identity.scan_id,
                identity.tool,
                identity.rule_id,
                identity.file,
                &num(identity.line),
                &num(identity.start_column),
                &num(identity.end_line),
                &num(identity.end_column),
                identity.fingerprint.unwrap_or(""),
                &identity.occurrence.to_string(),
            ],
        )
    }
}

/// What identifies one SARIF result (see [`Finding::derive_id`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FindingIdentity<'a> {
    pub scan_id: &'a str,
    pub tool: &'a str,
    pub rule_id: &'a str,
    pub file: &'a str,
    pub line: Option<i32>,
    pub start_column: Option<i32>,
    pub end_line: Option<i32>,
    pub end_column: Option<i32>,
    pub fingerprint: Option<&'a str>,
    /// Position among the run's results equal in every other part, from 0.
    pub occurrence: u32,
}

/// A UUID v5 over `parts` in a namespace of its own per record type (`full_name`), so ids of
/// different record types never collide. Parts are joined with the ASCII unit separator, which
/// does not occur in names, paths or reasons, so different part lists give different ids; an
/// absent part is passed as "". Shared by every record whose id is derived from its content.
pub fn stable_id(full_name: &str, parts: &[&str]) -> String {
    let namespace = uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_URL,
        format!("urn:secpipe:{full_name}").as_bytes(),
    );
    let joined = parts.join("\u{1f}");
    uuid::Uuid::new_v5(&namespace, joined.as_bytes()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Codec, DecodeError};

    pub(crate) fn sample() -> ScanReport {
        ScanReport {
            id: "9f1c2a3e-0000-4000-8000-000000000001".into(),
            scan_mode: Some("ci".into()),
            tool: Some("@ShiftLeft/scan".into()),
            repo_context: RepoContext {
                branch: Some("main".into()),
                pull_request: Some(false),
                repository_name: Some("payments-api".into()),
                repository_uri: Some("https://git.example.com/team/payments-api".into()),
                revision_id: Some("3f2a9c1".into()),
                invoked_by: Some("alice".into()),
            },
            repo_type: vec!["nodejs".into(), "credscan".into()],
            team: Some("team".into()),
            report_summary: vec![ScannerSummary {
                scanner: "Source code analyzer for JavaScript".into(),
                tool: Some("njsscan".into()),
                critical: 1,
                high: 2,
                medium: 3,
                low: 4,
                status: "❌".into(),
            }],
            origin: "track".into(),
            received_at: 1_700_000_000_123_456,
        }
    }

    #[test]
    fn scan_report_round_trips_through_single_object_framing() {
        let codec = Codec::<ScanReport>::new().unwrap();
        let bytes = codec.encode(&sample()).unwrap();
        assert_eq!(&bytes[..2], &[0xC3, 0x01]);
        assert_eq!(
            &bytes[2..10],
            &codec.current().fingerprint.to_le_bytes()[..]
        );
        assert_eq!(codec.decode(&bytes).unwrap(), sample());
    }

    /// ScanReport as v1 wrote it (no `team`).
    #[derive(Serialize)]
    struct ScanReportV1 {
        id: String,
        scan_mode: Option<String>,
        tool: Option<String>,
        repo_context: RepoContext,
        repo_type: Vec<String>,
        report_summary: Vec<ScannerSummary>,
        received_at: i64,
    }

    #[test]
    fn records_written_with_v1_decode_into_todays_type() {
        let catalog = crate::catalog().unwrap();
        let v1 = catalog
            .history(ScanReport::FULL_NAME)
            .find(|v| v.version == 1)
            .unwrap();
        let s = sample();
        let old = ScanReportV1 {
            id: s.id.clone(),
            scan_mode: s.scan_mode.clone(),
            tool: s.tool.clone(),
            repo_context: s.repo_context.clone(),
            repo_type: s.repo_type.clone(),
            report_summary: s.report_summary.clone(),
            received_at: s.received_at,
        };
        let writer = apache_avro::writer::datum::GenericDatumWriter::builder(&v1.schema)
            .build()
            .unwrap();
        let mut bytes = vec![0xC3, 0x01];
        bytes.extend_from_slice(&v1.fingerprint.to_le_bytes());
        writer.write_ser(&mut bytes, &old).unwrap();

        let codec = Codec::<ScanReport>::new().unwrap();
        assert!(codec.current().version >= 2);
        let decoded = codec.decode(&bytes).unwrap();
        assert_eq!(
            decoded,
            ScanReport {
                team: None,
                origin: "track".into(),
                ..s
            }
        );
    }

    #[test]
    fn truncated_and_garbage_bytes_are_typed_errors() {
        let codec = Codec::<ScanReport>::new().unwrap();
        let bytes = codec.encode(&sample()).unwrap();
        assert_eq!(codec.decode(&[]), Err(DecodeError::Empty));
        assert!(matches!(
            codec.decode(&bytes[..5]),
            Err(DecodeError::TruncatedHeader { .. })
        ));
        assert!(matches!(
            codec.decode(&bytes[..bytes.len() - 3]),
            Err(DecodeError::Body { .. })
        ));
        assert!(matches!(
            codec.decode(b"{\"json\":1}"),
            Err(DecodeError::UnknownFraming(_))
        ));
        let mut unknown = bytes.clone();
        unknown[2] ^= 0xFF;
        assert!(matches!(
            codec.decode(&unknown),
            Err(DecodeError::UnknownFingerprint(_))
        ));
        let mut trailing = bytes;
        trailing.push(0);
        assert!(matches!(
            codec.decode(&trailing),
            Err(DecodeError::TrailingBytes { extra: 1, .. })
        ));
    }
}

#[cfg(test)]
mod finding_tests {
    use super::*;
    use crate::Codec;

    fn finding(line: Option<i32>, fingerprint: Option<&str>, repository: Option<&str>) -> Finding {
        let scan_id = "9f1c2a3e-0000-4000-8000-000000000001";
        Finding {
            finding_id: Finding::derive_id(&FindingIdentity {
                scan_id,
                tool: "njsscan",
                rule_id: "javascript.express.security.audit.xss",
                file: "src/routes/search.js",
                line,
                fingerprint,
                ..Default::default()
            }),
            scan_id: scan_id.into(),
            tool: "njsscan".into(),
            rule_id: "javascript.express.security.audit.xss".into(),
            level: "error".into(),
            severity: "high".into(),
            message: "User input reaches res.send() without escaping.".into(),
            file: "src/routes/search.js".into(),
            line,
            start_column: line.map(|_| 7),
            end_line: line,
            end_column: None,
            fingerprint: fingerprint.map(Into::into),
            repository: repository.map(Into::into),
            category: String::new(),
            received_at: 1_700_000_000_123_456,
        }
    }

    #[test]
    fn finding_round_trips_with_and_without_optional_fields() {
        let codec = Codec::<Finding>::new().unwrap();
        for f in [
            finding(Some(42), Some("a1b2c3d4e5f60718:1"), Some("payments-api")),
            finding(None, None, None),
        ] {
            assert_eq!(codec.decode(&codec.encode(&f).unwrap()).unwrap(), f);
        }
    }

    #[test]
    fn finding_partition_key_is_the_repository_else_the_scan() {
        assert_eq!(
            finding(None, None, Some("payments-api")).partition_key(),
            "payments-api"
        );
        assert_eq!(
            finding(None, None, None).partition_key(),
            "9f1c2a3e-0000-4000-8000-000000000001"
        );
    }

    #[test]
    fn finding_ids_are_stable_and_depend_on_every_input() {
        let base = FindingIdentity {
            scan_id: "scan",
            tool: "bandit",
            rule_id: "rule",
            file: "a.js",
            line: Some(1),
            fingerprint: Some("x"),
            ..Default::default()
        };
        let id = Finding::derive_id;
        assert_eq!(id(&base), id(&base.clone()));
        for other in [
            FindingIdentity {
                line: Some(2),
                ..base
            },
            FindingIdentity {
                start_column: Some(5),
                ..base
            },
            FindingIdentity {
                end_line: Some(3),
                ..base
            },
            FindingIdentity {
                end_column: Some(9),
                ..base
            },
            FindingIdentity {
                fingerprint: None,
                ..base
            },
            FindingIdentity {
                tool: "ruff",
                ..base
            },
            FindingIdentity {
                occurrence: 1,
                ..base
            },
        ] {
            assert_ne!(id(&base), id(&other), "{other:?}");
        }
        // Parts are separated, so moving text from one part to the next changes the id.
        assert_ne!(
            id(&FindingIdentity {
                rule_id: "rule",
                file: "ab",
                ..base
            }),
            id(&FindingIdentity {
                rule_id: "rulea",
                file: "b",
                ..base
            })
        );
        assert_eq!(
            uuid::Uuid::parse_str(&id(&base)).unwrap().get_version_num(),
            5
        );
    }
}
