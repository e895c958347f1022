//! One or more sample records of every record type, for the interop test.
use secpipe_schemas::{
    ops::DeadLetter,
    scan::{RepoContext, ScanReport, ScannerSummary},
    AvroRecord,
};

use super::Work;

pub struct Samples {
    scan_reports: Vec<ScanReport>,
    dead_letters: Vec<DeadLetter>,
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
    }
}

impl Samples {
    pub fn write(&self, w: &mut Work) {
        self.scan_reports.iter().for_each(|r| w.add(r));
        self.dead_letters.iter().for_each(|r| w.add(r));
    }

    pub fn check_back(&self, w: &Work) {
        let mut i = 0;
        for r in &self.scan_reports {
            w.check_back(i, r);
            i += 1;
        }
        for r in &self.dead_letters {
            w.check_back(i, r);
            i += 1;
        }
    }

    pub fn record_names(&self) -> Vec<&'static str> {
        vec![ScanReport::FULL_NAME, DeadLetter::FULL_NAME]
    }
}
