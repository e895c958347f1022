//! Alert rules, from config: which conditions raise an [`Alert`], with what severity. Each
//! processor evaluates the rules that concern its records; every alert carries a dedup key so
//! notifications collapse repeats of the same condition.
use std::collections::BTreeMap;

use secpipe_schemas::alert::Alert;
use serde::{Deserialize, Serialize};

/// One rule (`[[processors.alert_rules]]`, tagged by `rule`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum AlertRule {
    /// A scan with critical findings on one of `branches`.
    ScanCriticalOnDefaultBranch {
        #[serde(default = "critical")]
        severity: String,
        #[serde(default = "default_branches")]
        branches: Vec<String>,
    },
    /// A scan in which some scanner's status is a cross.
    ScanFailed {
        #[serde(default = "high")]
        severity: String,
    },
    /// An admin event (repeated failed image scan) whose occurrences reach `threshold`.
    AdminEventOccurrences {
        #[serde(default = "medium")]
        severity: String,
        #[serde(default = "default_threshold")]
        threshold: i64,
    },
    /// A process changing its identity to root (uid/gid 0).
    IdentityChangeToRoot {
        #[serde(default = "high")]
        severity: String,
    },
    /// A process launched from a world-writable temporary directory.
    ProcessFromTempDir {
        #[serde(default = "high")]
        severity: String,
        #[serde(default = "default_temp_dirs")]
        dirs: Vec<String>,
    },
    /// A port a host had not listened on before (bind, or a new web application).
    NewListeningPort {
        #[serde(default = "low")]
        severity: String,
    },
}

fn critical() -> String {
    "critical".into()
}
fn high() -> String {
    "high".into()
}
fn medium() -> String {
    "medium".into()
}
fn low() -> String {
    "low".into()
}
fn default_branches() -> Vec<String> {
    vec!["main".into(), "master".into()]
}
fn default_threshold() -> i64 {
    10
}
fn default_temp_dirs() -> Vec<String> {
    vec!["/tmp/".into(), "/var/tmp/".into(), "/dev/shm/".into()]
}

/// Every rule with its defaults: what secpipe raises out of the box.
pub fn default_rules() -> Vec<AlertRule> {
    vec![
        AlertRule::ScanCriticalOnDefaultBranch {
            severity: critical(),
            branches: default_branches(),
        },
        AlertRule::ScanFailed { severity: high() },
        AlertRule::AdminEventOccurrences {
            severity: medium(),
            threshold: default_threshold(),
        },
        AlertRule::IdentityChangeToRoot { severity: high() },
        AlertRule::ProcessFromTempDir {
            severity: high(),
            dirs: default_temp_dirs(),
        },
        AlertRule::NewListeningPort { severity: low() },
    ]
}

impl AlertRule {
    /// The rule's name as it appears in alerts.
    pub fn name(&self) -> &'static str {
        match self {
            AlertRule::ScanCriticalOnDefaultBranch { .. } => "scan_critical_on_default_branch",
            AlertRule::ScanFailed { .. } => "scan_failed",
            AlertRule::AdminEventOccurrences { .. } => "admin_event_occurrences",
            AlertRule::IdentityChangeToRoot { .. } => "identity_change_to_root",
            AlertRule::ProcessFromTempDir { .. } => "process_from_temp_dir",
            AlertRule::NewListeningPort { .. } => "new_listening_port",
        }
    }

    pub fn severity(&self) -> &str {
        match self {
            AlertRule::ScanCriticalOnDefaultBranch { severity, .. }
            | AlertRule::ScanFailed { severity }
            | AlertRule::AdminEventOccurrences { severity, .. }
            | AlertRule::IdentityChangeToRoot { severity }
            | AlertRule::ProcessFromTempDir { severity, .. }
            | AlertRule::NewListeningPort { severity } => severity,
        }
    }

    /// Checks the severity is one secpipe knows.
    pub fn validate(&self) -> Result<(), String> {
        if secpipe_schemas::alert::SEVERITIES.contains(&self.severity()) {
            Ok(())
        } else {
            Err(format!(
                "alert rule {}: severity '{}' is not one of {}",
                self.name(),
                self.severity(),
                secpipe_schemas::alert::SEVERITIES.join(", ")
            ))
        }
    }
}

/// What an alert says; [`Draft::build`] adds the derived id.
pub struct Draft<'a> {
    pub rule: &'a AlertRule,
    pub kind: &'static str,
    pub title: String,
    pub description: String,
    pub dedup_key: String,
    pub source_topic: &'a str,
    pub source_id: &'a str,
    pub resources: Vec<String>,
    pub tags: Vec<String>,
    pub attributes: BTreeMap<String, String>,
    /// Event time of the record that raised it (microseconds).
    pub raised_at: i64,
}

impl Draft<'_> {
    pub fn build(self) -> Alert {
        self.with_status("open")
    }

    /// The resolution of the condition this draft's dedup key names.
    pub fn build_resolved(self) -> Alert {
        self.with_status("resolved")
    }

    fn with_status(self, status: &str) -> Alert {
        let rule = self.rule.name();
        Alert {
            alert_id: Alert::derive_id(rule, self.source_id, status),
            rule: rule.to_string(),
            severity: self.rule.severity().to_string(),
            kind: self.kind.to_string(),
            title: self.title,
            description: self.description,
            dedup_key: self.dedup_key,
            status: status.into(),
            source_topic: self.source_topic.to_string(),
            source_id: self.source_id.to_string(),
            resources: self.resources,
            tags: self.tags,
            attributes: self.attributes,
            raised_at: self.raised_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_read_from_toml_take_defaults_and_reject_unknown_severities() {
        #[derive(Deserialize)]
        struct C {
            alert_rules: Vec<AlertRule>,
        }
        let c: C = serde_json::from_str(
            r#"{"alert_rules":[{"rule":"scan_failed"},{"rule":"admin_event_occurrences","threshold":3,"severity":"critical"}]}"#,
        )
        .unwrap();
        assert_eq!(
            c.alert_rules[0],
            AlertRule::ScanFailed {
                severity: "high".into()
            }
        );
        assert_eq!(
            c.alert_rules[1],
            AlertRule::AdminEventOccurrences {
                severity: "critical".into(),
                threshold: 3
            }
        );
        assert!(AlertRule::ScanFailed {
            severity: "urgent".into()
        }
        .validate()
        .is_err());
        assert!(default_rules().iter().all(|r| r.validate().is_ok()));
    }
}
