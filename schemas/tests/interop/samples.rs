//! One or more sample records of every record type, for the interop test.
use std::collections::BTreeMap;

use secpipe_schemas::{
    alert::Alert,
    failures::{AdminEvent, Image, ScanFailure},
    ops::DeadLetter,
    rollups::{HeartbeatRollup, RepoStatus, ScanRollup},
    scan::{Finding, RepoContext, ScanReport, ScannerSummary},
    telemetry::{sample, TelemetryEvent},
    AvroRecord,
};

use super::Work;

/// Runs `$f` on the record inside a telemetry event, with its concrete type.
macro_rules! with_record {
    ($ev:expr, |$r:ident| $body:expr) => {
        match $ev {
            TelemetryEvent::ComponentStart($r) => $body,
            TelemetryEvent::ComponentExit($r) => $body,
            TelemetryEvent::HostEnvironment($r) => $body,
            TelemetryEvent::PackageInfo($r) => $body,
            TelemetryEvent::Api($r) => $body,
            TelemetryEvent::Heartbeat($r) => $body,
            TelemetryEvent::Network($r) => $body,
            TelemetryEvent::DependencyInfo($r) => $body,
            TelemetryEvent::MemoryWarning($r) => $body,
            TelemetryEvent::File($r) => $body,
            TelemetryEvent::IdentityChange($r) => $body,
            TelemetryEvent::Process($r) => $body,
            TelemetryEvent::WebappRegistration($r) => $body,
            TelemetryEvent::WebappUriDiscovery($r) => $body,
            TelemetryEvent::AuthTokenSighting($r) => $body,
        }
    };
}

pub struct Samples {
    scan_reports: Vec<ScanReport>,
    dead_letters: Vec<DeadLetter>,
    findings: Vec<Finding>,
    failures: Vec<ScanFailure>,
    admin_events: Vec<AdminEvent>,
    alerts: Vec<Alert>,
    telemetry: Vec<TelemetryEvent>,
    scan_rollups: Vec<ScanRollup>,
    repo_statuses: Vec<RepoStatus>,
    heartbeat_rollups: Vec<HeartbeatRollup>,
}

fn image() -> Image {
    Image {
        full_name: "quay.io/acme/api:1.4@sha256:0123abcd".into(),
        registry: Some("quay.io".into()),
        repository: "acme/api".into(),
        tag: Some("1.4".into()),
        digest: Some("sha256:0123abcd".into()),
        original: Some("Quay.io/acme/api:1.4@sha256:0123abcd".into()),
    }
}

pub fn all() -> Samples {
    Samples {
        scan_reports: vec![
            ScanReport {
                id: "5f0c6f0e-7a1d-4c62-9d7e-1a0b2c3d4e01".into(),
                scan_mode: Some("ci".into()),
                tool: Some("@ShiftLeft/scan".into()),
                repo_context: RepoContext {
                    branch: Some("main".into()),
                    pull_request: Some(true),
                    repository_name: Some("shop-web".into()),
                    repository_uri: Some("https://git.example.com/shop/shop-web".into()),
                    revision_id: Some("a1b2c3d4".into()),
                    invoked_by: Some("alice".into()),
                },
                repo_type: vec!["nodejs".into(), "credscan".into()],
                team: Some("shop".into()),
                report_summary: vec![ScannerSummary {
                    scanner: "Source code analyzer for JavaScript".into(),
                    tool: Some("njsscan".into()),
                    critical: 2,
                    high: 5,
                    medium: 3,
                    low: 9,
                    status: "❌".into(),
                }],
                origin: "track".into(),
                received_at: 1_732_431_600_123_456,
            },
            ScanReport {
                id: "x".into(),
                scan_mode: None,
                tool: None,
                repo_context: RepoContext::default(),
                repo_type: vec![],
                team: None,
                report_summary: vec![],
                origin: "sarif".into(),
                received_at: 0,
            },
        ],
        dead_letters: vec![DeadLetter {
            stage: "sink.clickhouse".into(),
            topic: "secpipe.scan-results".into(),
            partition: 1,
            offset: 99,
            key: Some(b"shop-web".to_vec()),
            payload: vec![0, 1, 2, 0xFF],
            error: "unknown framing".into(),
            failed_at: 1_732_431_600_000_001,
        }],
        findings: vec![Finding {
            finding_id: "f-1".into(),
            scan_id: "5f0c6f0e-7a1d-4c62-9d7e-1a0b2c3d4e01".into(),
            tool: "njsscan".into(),
            rule_id: "node_sqli".into(),
            level: "error".into(),
            severity: "critical".into(),
            message: "SQL injection via string concatenation ✗".into(),
            file: "src/db.js".into(),
            line: Some(42),
            start_column: Some(17),
            end_line: Some(42),
            end_column: None,
            fingerprint: None,
            repository: Some("git.example.com/shop/shop-web".into()),
            category: "njsscan/".into(),
            received_at: 1_732_431_600_123_456,
        }],
        failures: vec![ScanFailure {
            failure_id: "sf-1".into(),
            command: "image scan".into(),
            image: image(),
            reason: "failed to pull image: unauthorized".into(),
            source: "cli".into(),
            cluster: None,
            occurred_at: 1_732_431_000_000_000,
            received_at: 1_732_431_600_000_000,
        }],
        admin_events: vec![AdminEvent {
            id: "ae-1".into(),
            command: "deployment check".into(),
            image: image(),
            reason: "policy evaluation timed out".into(),
            cluster: Some("prod-east".into()),
            source: "api".into(),
            first_seen: 1_732_431_000_000_000,
            last_seen: 1_732_431_300_000_000,
            occurrences: 7,
            version: 7,
            expires_at: 1_732_776_900_000_000,
            sources: vec!["api".into(), "cli".into()],
        }],
        alerts: vec![Alert {
            alert_id: "al-1".into(),
            rule: "scan_failed".into(),
            severity: "high".into(),
            kind: "result".into(),
            title: "Scan of shop-web failed".into(),
            description: "2 scanners reported ❌".into(),
            dedup_key: "scan_failed/shop-web".into(),
            status: "open".into(),
            source_topic: "secpipe.scan-results".into(),
            source_id: "5f0c6f0e-7a1d-4c62-9d7e-1a0b2c3d4e01".into(),
            resources: vec!["shop-web".into()],
            tags: vec!["team:shop".into()],
            attributes: BTreeMap::from([
                ("branch".into(), "main".into()),
                ("critical".into(), "2".into()),
            ]),
            raised_at: 1_732_431_600_123_999,
        }],
        telemetry: sample::one_of_each(3),
        scan_rollups: vec![ScanRollup {
            rollup_id: "r-1".into(),
            repository: "shop-web".into(),
            team: Some("shop".into()),
            branch: "main".into(),
            day: 20_051,
            scanner: "Source code analyzer for JavaScript".into(),
            scans: 3,
            failed_scans: 1,
            critical: 2,
            high: 5,
            medium: 3,
            low: 9,
            version: 3,
            updated_at: 1_732_431_600_123_456,
        }],
        repo_statuses: vec![RepoStatus {
            repository: "shop-web".into(),
            team: None,
            branch: "main".into(),
            scan_id: "s-1".into(),
            scanned_at: 1_732_431_600_123_456,
            status: "fail".into(),
            failing_scanners: vec!["Secrets Audit".into()],
            repo_type: vec!["nodejs".into()],
            critical: 0,
            high: 1,
            medium: 0,
            low: 0,
            invoked_by: Some("alice".into()),
        }],
        heartbeat_rollups: vec![HeartbeatRollup {
            rollup_id: "h-1".into(),
            host: "node-1".into(),
            container_id: Some("c0ffee".into()),
            pod: Some("api-7d9".into()),
            namespace: Some("shop".into()),
            pid: 1,
            app: None,
            minute: 1_732_431_600_000_000,
            heartbeats: 6,
            cpu_user_ms: 1200,
            cpu_system_ms: 300,
            rss_bytes_max: 250_000_000,
            rss_bytes_sum: 1_400_000_000,
            vm_bytes_max: 2_000_000_000,
            agent_cpu_ms: 12,
            agent_rss_bytes_max: 9_000_000,
            threads_created: 4,
            forks: 0,
            open_descriptors_max: 48,
            version: 6,
        }],
    }
}

impl Samples {
    pub fn write(&self, w: &mut Work) {
        self.scan_reports.iter().for_each(|r| w.add(r));
        self.dead_letters.iter().for_each(|r| w.add(r));
        self.findings.iter().for_each(|r| w.add(r));
        self.failures.iter().for_each(|r| w.add(r));
        self.admin_events.iter().for_each(|r| w.add(r));
        self.alerts.iter().for_each(|r| w.add(r));
        self.scan_rollups.iter().for_each(|r| w.add(r));
        self.repo_statuses.iter().for_each(|r| w.add(r));
        self.heartbeat_rollups.iter().for_each(|r| w.add(r));
        for ev in &self.telemetry {
            with_record!(ev, |r| w.add(r));
        }
    }

    pub fn check_back(&self, w: &Work) {
        let mut i = 0;
        let mut next = || {
            i += 1;
            i - 1
        };
        self.scan_reports
            .iter()
            .for_each(|r| w.check_back(next(), r));
        self.dead_letters
            .iter()
            .for_each(|r| w.check_back(next(), r));
        self.findings.iter().for_each(|r| w.check_back(next(), r));
        self.failures.iter().for_each(|r| w.check_back(next(), r));
        self.admin_events
            .iter()
            .for_each(|r| w.check_back(next(), r));
        self.alerts.iter().for_each(|r| w.check_back(next(), r));
        self.scan_rollups
            .iter()
            .for_each(|r| w.check_back(next(), r));
        self.repo_statuses
            .iter()
            .for_each(|r| w.check_back(next(), r));
        self.heartbeat_rollups
            .iter()
            .for_each(|r| w.check_back(next(), r));
        for ev in &self.telemetry {
            let index = next();
            with_record!(ev, |r| w.check_back(index, r));
        }
    }

    pub fn record_names(&self) -> Vec<&'static str> {
        let mut names = vec![
            ScanReport::FULL_NAME,
            DeadLetter::FULL_NAME,
            Finding::FULL_NAME,
            ScanFailure::FULL_NAME,
            AdminEvent::FULL_NAME,
            Alert::FULL_NAME,
            ScanRollup::FULL_NAME,
            RepoStatus::FULL_NAME,
            HeartbeatRollup::FULL_NAME,
        ];
        names.extend(self.telemetry.iter().map(|e| e.kind().full_name()));
        names
    }
}
