//! How scan reports are completed before they are produced (section `[scans]`): scanner names
//! made canonical through aliases, statuses in their stored form, and the owning team.
use std::collections::{BTreeMap, HashMap};

use secpipe_schemas::{repository, scan::ScanReport};
use serde::{Deserialize, Serialize};

/// Scanner names the ShiftLeft scan client used before 2020, and the names it reports today.
/// Built in, so the views that pick a scanner by name work for old and new clients alike.
pub const SHIFTLEFT_ALIASES: [(&str, &str); 38] = [
    ("Binary byte-code analyzer", "Binary byte-code Analyzer"),
    ("Class file analyzer", "Class File Analyzer"),
    ("Go static analysis", "Go Static Analysis"),
    ("Jar file analyzer", "Jar File Analyzer"),
    ("Secrets audit", "Secrets Audit"),
    ("Security audit for AWS", "Security Audit for AWS"),
    (
        "Security audit for Azure Resource Manager",
        "Security Audit for Azure Resource Manager",
    ),
    ("Security audit for Go", "Go Security Audit"),
    ("Security audit for Groovy", "Groovy Security Audit"),
    ("Security audit for IaC", "Security Audit for IaC"),
    (
        "Security audit for Infrastructure",
        "Security Audit for Infrastructure",
    ),
    ("Security audit for JSP", "JSP Security Audit"),
    ("Security audit for Kotlin", "Kotlin Security Audit"),
    ("Security audit for Kubernetes", "Kubernetes Security Audit"),
    ("Security audit for PHP", "PHP Security Audit"),
    // bandit's old name; the client's python audit kept the other spelling.
    ("Security audit for Python", "Security Audit for Python"),
    ("Security audit for Scala", "Scala Security Audit"),
    (
        "Security audit for Serverless Framework",
        "Serverless Security Audit",
    ),
    ("Security audit for Terraform", "Terraform Security Audit"),
    ("Security taint analysis for PHP", "PHP Security Analysis"),
    (
        "Security taint analysis for Python",
        "Python Security Analysis",
    ),
    ("Shell script analysis", "Shell Script Analysis"),
    ("ShiftLeft NG SAST analyzer", "ShiftLeft NextGen Analyzer"),
    ("ShiftLeft graph analyzer", "ShiftLeft NextGen Analyzer"),
    ("Source code analyzer", "Source Code Analyzer"),
    (
        "Source code analyzer for Apache Velocity",
        "Apache Velocity Source Analyzer",
    ),
    ("Source code analyzer for Go", "Go Source Analyzer"),
    ("Source code analyzer for JSP", "JSP Source Analyzer"),
    ("Source code analyzer for Java", "Java Source Analyzer"),
    (
        "Source code analyzer for JavaScript",
        "JavaScript Source Analyzer",
    ),
    ("Source code analyzer for PHP", "PHP Source Analyzer"),
    ("Source code analyzer for Python", "Python Source Analyzer"),
    ("Source code analyzer for SQL", "SQL Source Analyzer"),
    (
        "Source code analyzer for VisualForce",
        "VisualForce Source Analyzer",
    ),
    ("Source code analyzer for apex", "Apex Source Analyzer"),
    ("Static code analysis for Kotlin", "Kotlin Static Analysis"),
    ("Static security code scan", "Static Security code scan"),
    ("Terraform static analysis", "Terraform Static Analysis"),
];

/// One rule of the team mapping: repositories whose key matches `pattern` (a `*` glob over the
/// normalised URI, e.g. `github.com/acme/payments-*`) belong to `team`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TeamRule {
    pub pattern: String,
    pub team: String,
}

/// Settings of section `[scans]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ScanConfig {
    /// Apply [`SHIFTLEFT_ALIASES`] (old ShiftLeft scanner names → current ones). Default true.
    pub builtin_aliases: bool,
    /// More scanner aliases, `"name as sent" = "canonical name"`; they win over the built-in
    /// ones. Names compare without case.
    pub scanner_aliases: BTreeMap<String, String>,
    /// Repository → team rules, first match wins; they decide before a `team` the message sends
    /// and before the organisation taken from the repository URI.
    pub teams: Vec<TeamRule>,
}

impl Default for ScanConfig {
    fn default() -> Self {
        Self {
            builtin_aliases: true,
            scanner_aliases: BTreeMap::new(),
            teams: Vec::new(),
        }
    }
}

impl ScanConfig {
    /// Errors naming the setting.
    pub fn validate(&self) -> Result<(), String> {
        for (i, rule) in self.teams.iter().enumerate() {
            if rule.pattern.trim().is_empty() || rule.team.trim().is_empty() {
                return Err(format!(
                    "scans.teams[{i}]: pattern and team must not be empty"
                ));
            }
        }
        for (from, to) in &self.scanner_aliases {
            if from.trim().is_empty() || to.trim().is_empty() {
                return Err("scans.scanner_aliases: names must not be empty".into());
            }
        }
        Ok(())
    }
}

/// [`ScanConfig`] ready to apply.
#[derive(Debug, Clone)]
pub struct ScanSettings {
    aliases: HashMap<String, String>,
    teams: Vec<TeamRule>,
}

impl Default for ScanSettings {
    fn default() -> Self {
        Self::new(&ScanConfig::default())
    }
}

impl ScanSettings {
    pub fn new(cfg: &ScanConfig) -> Self {
        let mut aliases = HashMap::new();
        if cfg.builtin_aliases {
            for (from, to) in SHIFTLEFT_ALIASES {
                aliases.insert(from.to_lowercase(), to.to_string());
                // A canonical name in another case is the canonical name.
                aliases.insert(to.to_lowercase(), to.to_string());
            }
        }
        for (from, to) in &cfg.scanner_aliases {
            aliases.insert(from.trim().to_lowercase(), to.trim().to_string());
        }
        Self {
            aliases,
            teams: cfg.teams.clone(),
        }
    }

    /// The canonical name of scanner `name`.
    pub fn scanner(&self, name: &str) -> String {
        let name = name.trim();
        self.aliases
            .get(&name.to_lowercase())
            .cloned()
            .unwrap_or_else(|| name.to_string())
    }

    /// The team of the repository with `key`: the first matching rule, else `sent` (what the
    /// message said), else the organisation in the key.
    pub fn team(&self, key: Option<&str>, sent: Option<String>) -> Option<String> {
        if let Some(key) = key {
            if let Some(rule) = self
                .teams
                .iter()
                .find(|r| repository::glob_matches(r.pattern.trim(), key))
            {
                return Some(rule.team.trim().to_string());
            }
        }
        sent.filter(|t| !t.trim().is_empty())
            .or_else(|| key.and_then(repository::organisation).map(str::to_string))
    }

    /// Completes `report`: canonical scanner names (the name as sent stays in the entry's
    /// `tool` when that was empty), stored statuses, and the team.
    pub fn complete(&self, report: &mut ScanReport) {
        for s in &mut report.report_summary {
            let canonical = self.scanner(&s.scanner);
            if canonical != s.scanner {
                if s.tool.is_none() {
                    s.tool = Some(s.scanner.clone());
                }
                s.scanner = canonical;
            }
            s.status = repository::normalize_status(&s.status);
        }
        let rc = &report.repo_context;
        let key = repository::key(rc.repository_uri.as_deref(), rc.repository_name.as_deref());
        report.team = self.team(key.as_deref(), report.team.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_and_new_scanner_names_meet() {
        let s = ScanSettings::default();
        assert_eq!(
            s.scanner("Source code analyzer for JavaScript"),
            "JavaScript Source Analyzer"
        );
        assert_eq!(
            s.scanner("javascript source analyzer"),
            "JavaScript Source Analyzer"
        );
        assert_eq!(s.scanner("njsscan"), "njsscan");
        let custom = ScanSettings::new(&ScanConfig {
            builtin_aliases: false,
            scanner_aliases: [("njs".to_string(), "NodeJsScan".to_string())].into(),
            teams: vec![],
        });
        assert_eq!(custom.scanner("NJS"), "NodeJsScan");
        assert_eq!(
            custom.scanner("Source code analyzer for JavaScript"),
            "Source code analyzer for JavaScript"
        );
    }

    #[test]
    fn the_mapping_decides_the_team_first() {
        let s = ScanSettings::new(&ScanConfig {
            teams: vec![TeamRule {
                pattern: "github.com/acme/pay*".into(),
                team: "payments".into(),
            }],
            ..ScanConfig::default()
        });
        assert_eq!(
            s.team(Some("github.com/acme/pay-api"), Some("sent".into())),
            Some("payments".into())
        );
        assert_eq!(
            s.team(Some("github.com/acme/web"), Some("sent".into())),
            Some("sent".into())
        );
        assert_eq!(
            s.team(Some("github.com/acme/web"), None),
            Some("acme".into())
        );
        assert_eq!(s.team(Some("web"), None), None);
    }
}
