//! `secpipe schemas check`: the rules that keep every record ever written readable.
//!
//! 1. Backward compatibility: the current version of each record can read every older version
//!    (Avro schema resolution: new fields need defaults, types may only widen, ...).
//! 2. Released versions are immutable: `schemas/avro/fingerprints.lock` pins the fingerprint of
//!    every released file. Editing one in place (instead of adding `<Record>.v<N+1>.avsc`) or
//!    deleting one fails the check; new files are listed and pinned by `secpipe schemas lock`.
use std::collections::BTreeMap;

use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};

use crate::catalog::SchemaVersion;

/// What the check found.
#[derive(Debug, Default, PartialEq)]
pub struct CheckReport {
    /// Breaking problems; the check fails when there is any.
    pub problems: Vec<String>,
    /// Schema files not pinned in the lock yet.
    pub unpinned: Vec<String>,
}

impl CheckReport {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Parses the lock: one `path fingerprint` pair per line, `#` comments.
fn parse_lock(lock: &str) -> BTreeMap<&str, &str> {
    lock.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(char::is_whitespace))
        .map(|(p, f)| (p.trim(), f.trim()))
        .collect()
}

/// Checks `versions` (every schema file) against the rules above.
pub fn check(versions: &[SchemaVersion], lock: &str) -> CheckReport {
    let mut report = CheckReport::default();
    let mut by_name: BTreeMap<&str, Vec<&SchemaVersion>> = BTreeMap::new();
    for v in versions {
        by_name.entry(&v.full_name).or_default().push(v);
    }
    for (name, mut history) in by_name {
        history.sort_by_key(|v| v.version);
        let current = history[history.len() - 1];
        for old in &history[..history.len() - 1] {
            match SchemaCompatibility::can_read(&old.schema, &current.schema) {
                Ok(Compatibility::Full) => {}
                Ok(_) => report.problems.push(format!(
                    "{name}: v{} can only partly read v{} ({}): some records would fail to decode",
                    current.version, old.version, old.path
                )),
                Err(e) => report.problems.push(format!(
                    "{name}: v{} cannot read records written with v{} ({}): {e}",
                    current.version, old.version, old.path
                )),
            }
        }
    }
    let pinned = parse_lock(lock);
    for v in versions {
        let fp = format!("{:016x}", v.fingerprint);
        match pinned.get(v.path) {
            Some(p) if *p == fp => {}
            Some(p) => report.problems.push(format!(
                "{}: released schema changed in place (fingerprint {p} is now {fp}); restore it and add a new version file instead",
                v.path
            )),
            None => report.unpinned.push(v.path.to_string()),
        }
    }
    for path in pinned.keys() {
        if !versions.iter().any(|v| v.path == *path) {
            report.problems.push(format!(
                "{path}: released schema version was deleted; records written with it could no longer be read"
            ));
        }
    }
    report
}

/// The lock file pinning every version in `versions`.
pub fn lock_file(versions: &[SchemaVersion]) -> String {
    let mut lines: Vec<String> = versions
        .iter()
        .map(|v| format!("{} {:016x}", v.path, v.fingerprint))
        .collect();
    lines.sort();
    format!(
        "# Fingerprints of released schema versions; `secpipe schemas check` fails if one changes.\n# Regenerate with `secpipe schemas lock` after adding a new version file.\n{}\n",
        lines.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog;

    fn version(path: &'static str, version: u32, source: &'static str) -> SchemaVersion {
        let schema = apache_avro::Schema::parse_str(source).unwrap();
        SchemaVersion {
            path,
            full_name: "t.R".into(),
            version,
            fingerprint: crate::catalog::fingerprint(&schema),
            schema,
            source,
        }
    }

    const V1: &str =
        r#"{"type":"record","name":"R","namespace":"t","fields":[{"name":"a","type":"string"}]}"#;

    #[test]
    fn the_compiled_in_schemas_pass_against_the_committed_lock() {
        let versions = catalog().unwrap().versions();
        let report = check(versions, include_str!("../avro/fingerprints.lock"));
        assert!(report.passed(), "{:#?}", report.problems);
        assert!(
            report.unpinned.is_empty(),
            "run `secpipe schemas lock`: {:?}",
            report.unpinned
        );
    }

    #[test]
    fn a_new_field_with_a_default_is_compatible() {
        let v2 = r#"{"type":"record","name":"R","namespace":"t","fields":[{"name":"a","type":"string"},{"name":"b","type":"long","default":0}]}"#;
        let versions = [version("t/R.v1.avsc", 1, V1), version("t/R.v2.avsc", 2, v2)];
        assert!(check(&versions, "").passed());
    }

    #[test]
    fn a_new_field_without_a_default_breaks_backward_compatibility() {
        let v2 = r#"{"type":"record","name":"R","namespace":"t","fields":[{"name":"a","type":"string"},{"name":"b","type":"long"}]}"#;
        let versions = [version("t/R.v1.avsc", 1, V1), version("t/R.v2.avsc", 2, v2)];
        let report = check(&versions, "");
        assert_eq!(report.problems.len(), 1, "{report:?}");
        assert!(report.problems[0].contains("cannot read records written with v1"));
    }

    #[test]
    fn a_narrowed_type_breaks_backward_compatibility() {
        let v1 =
            r#"{"type":"record","name":"R","namespace":"t","fields":[{"name":"n","type":"long"}]}"#;
        let v2 =
            r#"{"type":"record","name":"R","namespace":"t","fields":[{"name":"n","type":"int"}]}"#;
        let versions = [version("t/R.v1.avsc", 1, v1), version("t/R.v2.avsc", 2, v2)];
        assert!(!check(&versions, "").passed());
    }

    #[test]
    fn editing_or_deleting_a_released_version_fails() {
        let versions = [version("t/R.v1.avsc", 1, V1)];
        let lock = lock_file(&versions);
        assert!(check(&versions, &lock).passed());
        let edited = r#"{"type":"record","name":"R","namespace":"t","fields":[{"name":"a","type":"bytes"}]}"#;
        let report = check(&[version("t/R.v1.avsc", 1, edited)], &lock);
        assert!(
            report.problems[0].contains("changed in place"),
            "{report:?}"
        );
        let report = check(&[], &lock);
        assert!(report.problems[0].contains("deleted"), "{report:?}");
        let report = check(&versions, "");
        assert_eq!(report.unpinned, vec!["t/R.v1.avsc".to_string()]);
    }
}
