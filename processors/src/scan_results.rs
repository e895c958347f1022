//! Scan results: rollups of findings per repository, branch, UTC day and scanner, the latest
//! status of each repository, and the scan alerts (a cross on some scanner; critical findings on
//! a default branch). Repositories are keyed by their normalised URI
//! ([`secpipe_schemas::repository::key`]), so same-named repositories of two organisations stay
//! apart.
//!
//! **One scan, several messages.** Everything that carries one scan id is merged into one scan:
//! - a message without scanner summaries (the scan client's `{"id", "depscan_summary"}` before its
//!   summary) is a fragment: it counts for nothing and does not make the summary a repeat;
//! - the tool's own message (`origin = track`) outranks summaries derived from SARIF runs of the
//!   same scan: whichever arrives first, the rollups and the status end up as the tool's message
//!   says (a SARIF contribution counted first is taken back);
//! - SARIF runs of other tools of the same scan add their scanners; a repeat of anything already
//!   counted (a retried POST, a re-uploaded report) counts once.
use secpipe_schemas::{
    alert::Alert,
    repository,
    rollups::{RepoStatus, ScanRollup},
    scan::{ScanReport, ScannerSummary},
    Codec, SchemaError,
};
use serde::{Deserialize, Serialize};

use crate::{
    alerts::{AlertRule, Draft},
    secs_to_micros, Change, InRecord, Outputs, PartitionState, ProcessError, Processor, StateStore,
};

const DAY_MICROS: i64 = 86_400 * 1_000_000;

/// Settings of the scan-results processor (section `[processors.scan_results]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ScanResultsConfig {
    /// How long a scan id is remembered to drop repeats, in seconds. Default 604800 (7 days).
    pub dedupe_horizon_secs: u64,
}

impl Default for ScanResultsConfig {
    fn default() -> Self {
        Self {
            dedupe_horizon_secs: 7 * 24 * 3600,
        }
    }
}

/// Rank of what a message says about its scan: a fragment (no scanner summaries) says nothing,
/// a SARIF-derived summary something, the tool's own message the final word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
enum Rank {
    Fragment,
    Sarif,
    Track,
}

fn rank_of(report: &ScanReport) -> Rank {
    if report.report_summary.is_empty() {
        Rank::Fragment
    } else if report.origin == "sarif" {
        Rank::Sarif
    } else {
        Rank::Track
    }
}

/// What one scanner of a scan added to the rollups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Counted {
    scanner: String,
    failed: bool,
    critical: i64,
    high: i64,
    medium: i64,
    low: i64,
}

impl From<&ScannerSummary> for Counted {
    fn from(s: &ScannerSummary) -> Self {
        Self {
            scanner: s.scanner.clone(),
            failed: repository::is_failed(&s.status),
            critical: s.critical,
            high: s.high,
            medium: s.medium,
            low: s.low,
        }
    }
}

/// A scan the processor has seen: what counts for it, and where it was counted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ScanEntry {
    /// When its first message arrived (microseconds); the scan's time.
    first_seen: i64,
    rank: Rank,
    /// Repository key the scanners were counted under; empty when none was known.
    repo: String,
    branch: String,
    counted: Vec<Counted>,
}

/// Scans seen, open daily rollups, the latest status per repository, and the scan alerts still
/// open (by dedup key, with when they opened) so that a clean scan can resolve them.
#[derive(Debug)]
pub struct ScanResultsState {
    scans: StateStore<ScanEntry>,
    /// Scan ids remembered by earlier versions (counted once, contributions unknown).
    legacy_seen: StateStore<i64>,
    rollups: StateStore<ScanRollup>,
    status: StateStore<RepoStatus>,
    open: StateStore<i64>,
}

impl Default for ScanResultsState {
    fn default() -> Self {
        Self {
            scans: StateStore::new("scan"),
            legacy_seen: StateStore::new("seen"),
            rollups: StateStore::new("rollup"),
            status: StateStore::new("status"),
            open: StateStore::new("open"),
        }
    }
}

impl PartitionState for ScanResultsState {
    fn drain_changes(&mut self) -> Vec<Change> {
        let mut out = Vec::new();
        self.scans.drain_into(&mut out);
        self.legacy_seen.drain_into(&mut out);
        self.rollups.drain_into(&mut out);
        self.status.drain_into(&mut out);
        self.open.drain_into(&mut out);
        out
    }

    fn apply(&mut self, change: &Change) -> Result<(), String> {
        if !self.scans.try_apply(change)?
            && !self.legacy_seen.try_apply(change)?
            && !self.rollups.try_apply(change)?
            && !self.status.try_apply(change)?
        {
            self.open.try_apply(change)?;
        }
        Ok(())
    }

    fn snapshot(&self) -> Vec<Change> {
        let mut out = Vec::with_capacity(self.live_keys());
        self.scans.snapshot_into(&mut out);
        self.legacy_seen.snapshot_into(&mut out);
        self.rollups.snapshot_into(&mut out);
        self.status.snapshot_into(&mut out);
        self.open.snapshot_into(&mut out);
        out
    }

    fn live_keys(&self) -> usize {
        self.scans.len()
            + self.legacy_seen.len()
            + self.rollups.len()
            + self.status.len()
            + self.open.len()
    }
}

/// What a message does to its scan.
#[derive(Debug, PartialEq)]
enum Action {
    /// Nothing new: a repeat, a fragment after content, or a SARIF summary the tool's own
    /// message already outranks.
    Repeat,
    /// Remember the scan; count nothing yet (a fragment).
    Remember,
    /// Count the message's scanners (those not counted yet when `only_new`).
    Count { only_new: bool },
    /// Take back everything counted, then count the message.
    Replace,
}

fn decide(entry: Option<&ScanEntry>, report: &ScanReport) -> Action {
    let rank = rank_of(report);
    match entry {
        None if rank == Rank::Fragment => Action::Remember,
        None => Action::Count { only_new: false },
        Some(_) if rank == Rank::Fragment => Action::Repeat,
        Some(e) if e.rank == Rank::Fragment => Action::Count { only_new: false },
        Some(e) => match (rank, e.rank) {
            (Rank::Track, Rank::Sarif) => Action::Replace,
            (Rank::Sarif, Rank::Sarif)
                if report
                    .report_summary
                    .iter()
                    .any(|s| !e.counted.iter().any(|c| c.scanner == s.scanner)) =>
            {
                Action::Count { only_new: true }
            }
            _ => Action::Repeat,
        },
    }
}

/// Output topics of the scan-results processor.
#[derive(Debug, Clone)]
pub struct ScanResultsTopics {
    pub input: String,
    pub rollups: String,
    pub status: String,
    pub alerts: String,
}

/// The processor.
pub struct ScanResults {
    cfg: ScanResultsConfig,
    topics: ScanResultsTopics,
    rules: Vec<AlertRule>,
    reports: Codec<ScanReport>,
    rollups: Codec<ScanRollup>,
    statuses: Codec<RepoStatus>,
    alerts: Codec<Alert>,
}

impl ScanResults {
    pub fn new(
        cfg: ScanResultsConfig,
        topics: ScanResultsTopics,
        rules: &[AlertRule],
    ) -> Result<Self, SchemaError> {
        Ok(Self {
            cfg,
            topics,
            rules: rules
                .iter()
                .filter(|r| {
                    matches!(
                        r,
                        AlertRule::ScanFailed { .. }
                            | AlertRule::ScanCriticalOnDefaultBranch { .. }
                    )
                })
                .cloned()
                .collect(),
            reports: Codec::new()?,
            rollups: Codec::new()?,
            statuses: Codec::new()?,
            alerts: Codec::new()?,
        })
    }

    fn raise(
        &self,
        open: &mut StateStore<i64>,
        report: &ScanReport,
        repo: &str,
        out: &mut Outputs,
    ) -> Result<(), ProcessError> {
        let branch = report.repo_context.branch.as_deref().unwrap_or("");
        let failing: Vec<&str> = report
            .report_summary
            .iter()
            .filter(|s| repository::is_failed(&s.status))
            .map(|s| s.scanner.as_str())
            .collect();
        let critical = saturating_sum(report.report_summary.iter().map(|s| s.critical));
        for rule in &self.rules {
            let (title, dedup_key) = match rule {
                AlertRule::ScanFailed { .. } if !failing.is_empty() => (
                    format!("Scan of {repo} ({branch}) failed: {}", failing.join(", ")),
                    format!("scan_failed/{repo}/{branch}"),
                ),
                AlertRule::ScanCriticalOnDefaultBranch { branches, .. }
                    if critical > 0 && branches.iter().any(|b| b == branch) =>
                {
                    (
                        format!("{critical} critical findings on {repo} {branch}"),
                        format!("scan_critical/{repo}/{branch}"),
                    )
                }
                _ => {
                    self.resolve(open, rule, report, repo, out)?;
                    continue;
                }
            };
            open.insert(dedup_key.clone(), report.received_at);
            let alert = Draft {
                rule,
                kind: "result",
                title,
                description: report
                    .report_summary
                    .iter()
                    .map(|s| {
                        format!(
                            "{} {}: critical {}, high {}, medium {}, low {}",
                            s.status, s.scanner, s.critical, s.high, s.medium, s.low
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n"),
                dedup_key,
                source_topic: &self.topics.input,
                source_id: &report.id,
                resources: vec![repo.to_string()],
                tags: report.team.iter().map(|t| format!("team:{t}")).collect(),
                attributes: scan_attributes(report, repo),
                raised_at: report.received_at,
            }
            .build();
            out.push_alert(&self.topics.alerts, &self.alerts, &alert)?;
        }
        Ok(())
    }

    /// A clean scan of a repository and branch resolves the alert `rule` raised on an earlier
    /// scan of them: the same dedup key, status `resolved` (incident integrations close it).
    fn resolve(
        &self,
        open: &mut StateStore<i64>,
        rule: &AlertRule,
        report: &ScanReport,
        repo: &str,
        out: &mut Outputs,
    ) -> Result<(), ProcessError> {
        let branch = report.repo_context.branch.as_deref().unwrap_or("");
        let (dedup_key, title) = match rule {
            AlertRule::ScanFailed { .. } => (
                format!("scan_failed/{repo}/{branch}"),
                format!("Scan of {repo} ({branch}) passes again"),
            ),
            AlertRule::ScanCriticalOnDefaultBranch { .. } => (
                format!("scan_critical/{repo}/{branch}"),
                format!("No critical findings on {repo} {branch} any more"),
            ),
            _ => return Ok(()),
        };
        // Only a scan at least as new as the one that opened it.
        match open.get(&dedup_key) {
            Some(&opened) if opened <= report.received_at => {}
            _ => return Ok(()),
        }
        open.remove(&dedup_key);
        let alert = Draft {
            rule,
            kind: "result",
            title,
            description: format!("Scan {} of {repo} ({branch}) is clean.", report.id),
            dedup_key,
            source_topic: &self.topics.input,
            source_id: &report.id,
            resources: vec![repo.to_string()],
            tags: report.team.iter().map(|t| format!("team:{t}")).collect(),
            attributes: scan_attributes(report, repo),
            raised_at: report.received_at,
        }
        .build_resolved();
        out.push_alert(&self.topics.alerts, &self.alerts, &alert)?;
        Ok(())
    }

    /// Adds (`sign` 1) or takes back (`sign` -1) one scanner's counts in the rollup of
    /// (`repo`, `branch`, `day`), and emits the rollup's new version.
    #[allow(clippy::too_many_arguments)]
    fn add_to_rollup(
        &self,
        state: &mut ScanResultsState,
        repo: &str,
        branch: &str,
        day: i32,
        team: Option<String>,
        c: &Counted,
        sign: i64,
        report: &ScanReport,
        out: &mut Outputs,
    ) -> Result<(), ProcessError> {
        let id = ScanRollup::derive_id(repo, branch, day, &c.scanner);
        if !state.rollups.contains(&id) {
            state.rollups.insert(
                id.clone(),
                ScanRollup {
                    rollup_id: id.clone(),
                    repository: repo.to_string(),
                    team: team.clone(),
                    branch: branch.to_string(),
                    day,
                    scanner: c.scanner.clone(),
                    scans: 0,
                    failed_scans: 0,
                    critical: 0,
                    high: 0,
                    medium: 0,
                    low: 0,
                    version: 0,
                    updated_at: 0,
                },
            );
        }
        let rollup = state.rollups.get_mut(&id).expect("just inserted");
        // Counts come from the request (or from whatever else wrote the topic): saturating,
        // so hostile ones cannot overflow and dead-letter every later scan of the day; a take
        // back never goes below zero.
        let apply = |total: &mut i64, n: i64| {
            *total = if sign >= 0 {
                total.saturating_add(n)
            } else {
                total.saturating_sub(n).max(0)
            }
        };
        apply(&mut rollup.scans, 1);
        apply(&mut rollup.failed_scans, i64::from(c.failed));
        apply(&mut rollup.critical, c.critical);
        apply(&mut rollup.high, c.high);
        apply(&mut rollup.medium, c.medium);
        apply(&mut rollup.low, c.low);
        if team.is_some() {
            rollup.team = team;
        }
        rollup.version = rollup.version.saturating_add(1);
        rollup.updated_at = rollup.updated_at.max(report.received_at);
        let bytes = self.rollups.encode(rollup)?;
        out.push(&self.topics.rollups, repo.to_string(), bytes);
        Ok(())
    }

    /// Sets the repository's status from everything counted for this scan, unless a newer
    /// scan already set it.
    fn update_status(
        &self,
        state: &mut ScanResultsState,
        repo: &str,
        branch: &str,
        report: &ScanReport,
        entry: &ScanEntry,
        out: &mut Outputs,
    ) -> Result<(), ProcessError> {
        let current = state.status.get(repo);
        let newer =
            current.is_none_or(|s| s.scan_id == report.id || s.scanned_at <= entry.first_seen);
        if !newer {
            return Ok(());
        }
        let sum = |f: fn(&Counted) -> i64| saturating_sum(entry.counted.iter().map(f));
        let failing: Vec<String> = entry
            .counted
            .iter()
            .filter(|c| c.failed)
            .map(|c| c.scanner.clone())
            .collect();
        let repo_type = if report.repo_type.is_empty() {
            current
                .filter(|s| s.scan_id == report.id)
                .map(|s| s.repo_type.clone())
                .unwrap_or_default()
        } else {
            report.repo_type.clone()
        };
        let status = RepoStatus {
            repository: repo.to_string(),
            team: report.team.clone(),
            branch: branch.to_string(),
            scan_id: report.id.clone(),
            scanned_at: entry.first_seen,
            status: if failing.is_empty() { "pass" } else { "fail" }.into(),
            failing_scanners: failing,
            repo_type,
            critical: sum(|c| c.critical),
            high: sum(|c| c.high),
            medium: sum(|c| c.medium),
            low: sum(|c| c.low),
            invoked_by: report.repo_context.invoked_by.clone(),
        };
        out.push(
            &self.topics.status,
            repo.to_string(),
            self.statuses.encode(&status)?,
        );
        state.status.insert(repo.to_string(), status);
        Ok(())
    }
}

impl Processor for ScanResults {
    type State = ScanResultsState;

    fn name(&self) -> &'static str {
        "scan-results"
    }

    fn input_topic(&self) -> &str {
        &self.topics.input
    }

    fn output_topics(&self) -> Vec<&str> {
        vec![
            &self.topics.rollups,
            &self.topics.status,
            &self.topics.alerts,
        ]
    }

    fn process(
        &mut self,
        state: &mut ScanResultsState,
        record: &InRecord<'_>,
        out: &mut Outputs,
    ) -> Result<(), ProcessError> {
        let report = self.reports.decode(record.payload)?;
        if state.legacy_seen.contains(&report.id) {
            out.counters.dedupe_hits += 1;
            return Ok(());
        }
        let action = decide(state.scans.get(&report.id), &report);
        let mut entry = match state.scans.get(&report.id) {
            Some(e) => e.clone(),
            None => ScanEntry {
                first_seen: report.received_at,
                rank: Rank::Fragment,
                repo: String::new(),
                branch: String::new(),
                counted: Vec::new(),
            },
        };
        let repo = report.repository_key();
        let branch = report.repo_context.branch.clone().unwrap_or_default();
        let day = day_of(entry.first_seen);
        let counted_now: Vec<Counted> = match action {
            Action::Repeat => {
                out.counters.dedupe_hits += 1;
                return Ok(());
            }
            Action::Remember => {
                state.scans.insert(report.id.clone(), entry);
                return Ok(());
            }
            Action::Replace => {
                if !entry.repo.is_empty() {
                    let (repo, branch) = (entry.repo.clone(), entry.branch.clone());
                    for c in std::mem::take(&mut entry.counted) {
                        self.add_to_rollup(state, &repo, &branch, day, None, &c, -1, &report, out)?;
                    }
                }
                entry.counted.clear();
                report.report_summary.iter().map(Counted::from).collect()
            }
            Action::Count { only_new } => report
                .report_summary
                .iter()
                .filter(|s| !only_new || !entry.counted.iter().any(|c| c.scanner == s.scanner))
                .map(Counted::from)
                .collect(),
        };
        entry.rank = entry.rank.max(rank_of(&report));
        // Without a repository there is nothing to roll up or to give a status: the scan is
        // remembered (a later message with the repository counts), and nothing is attributed
        // to an "(unknown)" repository.
        let Some(repo) = repo else {
            entry.counted.extend(counted_now);
            entry.repo.clear();
            state.scans.insert(report.id.clone(), entry);
            return Ok(());
        };
        if entry.repo.is_empty() && !entry.counted.is_empty() {
            // Scanners remembered without a repository count now that one is known.
            for c in &entry.counted {
                self.add_to_rollup(
                    state,
                    &repo,
                    &branch,
                    day,
                    report.team.clone(),
                    c,
                    1,
                    &report,
                    out,
                )?;
            }
        }
        for c in &counted_now {
            self.add_to_rollup(
                state,
                &repo,
                &branch,
                day,
                report.team.clone(),
                c,
                1,
                &report,
                out,
            )?;
        }
        entry.counted.extend(counted_now);
        entry.repo = repo.clone();
        entry.branch = branch.clone();
        self.update_status(state, &repo, &branch, &report, &entry, out)?;
        state.scans.insert(report.id.clone(), entry);
        self.raise(&mut state.open, &report, &repo, out)
    }

    fn tick(&mut self, state: &mut ScanResultsState, now_micros: i64, _out: &mut Outputs) {
        // Saturating throughout: the horizon is config, `now` the wall clock, and a rollup's
        // day comes from a record's `received_at`, which can be anything a producer wrote.
        let forget_before = now_micros.saturating_sub(secs_to_micros(self.cfg.dedupe_horizon_secs));
        state.scans.retain(|_, e| e.first_seen > forget_before);
        state
            .legacy_seen
            .retain(|_, &received| received > forget_before);
        // A day's rollup is final two days later (late scans of that day are rare).
        state.rollups.retain(|_, r| {
            i64::from(r.day)
                .saturating_add(3)
                .saturating_mul(DAY_MICROS)
                > now_micros
        });
    }
}

/// What a scan alert says about its scan, for the notifier's links and context.
fn scan_attributes(report: &ScanReport, repo: &str) -> std::collections::BTreeMap<String, String> {
    let ctx = &report.repo_context;
    [
        ("branch", ctx.branch.clone().unwrap_or_default()),
        ("scan_id", report.id.clone()),
        ("invoked_by", ctx.invoked_by.clone().unwrap_or_default()),
        ("repository", repo.to_string()),
        (
            "repository_uri",
            ctx.repository_uri.clone().unwrap_or_default(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The UTC day (days since 1970-01-01) of `micros`. Every i64 fits: `i64::MAX / DAY_MICROS` is
/// about 1.07e8 days, far inside i32; the clamp only documents that no cast can wrap.
fn day_of(micros: i64) -> i32 {
    let day = micros.div_euclid(DAY_MICROS);
    i32::try_from(day).unwrap_or(if day < 0 { i32::MIN } else { i32::MAX })
}

/// The sum of finding counts, sticking at the bounds instead of overflowing (which panics in
/// debug builds and wraps to a negative count in release builds).
fn saturating_sum(counts: impl Iterator<Item = i64>) -> i64 {
    counts.fold(0, i64::saturating_add)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secpipe_schemas::scan::{RepoContext, ScannerSummary};

    fn report(id: &str, repo: &str, branch: &str, at: i64, critical: i64, status: &str) -> Vec<u8> {
        Codec::<ScanReport>::new()
            .unwrap()
            .encode(&ScanReport {
                id: id.into(),
                scan_mode: None,
                tool: None,
                repo_context: RepoContext {
                    branch: Some(branch.into()),
                    repository_name: Some(repo.into()),
                    ..Default::default()
                },
                repo_type: vec!["nodejs".into()],
                team: None,
                report_summary: vec![ScannerSummary {
                    scanner: "njs".into(),
                    tool: None,
                    critical,
                    high: 1,
                    medium: 0,
                    low: 0,
                    status: status.into(),
                }],
                origin: "track".into(),
                received_at: at,
            })
            .unwrap()
    }

    fn processor() -> ScanResults {
        let topics = ScanResultsTopics {
            input: "in".into(),
            rollups: "rollups".into(),
            status: "status".into(),
            alerts: "alerts".into(),
        };
        ScanResults::new(
            ScanResultsConfig::default(),
            topics,
            &crate::alerts::default_rules(),
        )
        .unwrap()
    }

    fn feed(p: &mut ScanResults, state: &mut ScanResultsState, payloads: &[Vec<u8>]) -> Outputs {
        let mut out = Outputs::default();
        for (i, payload) in payloads.iter().enumerate() {
            let rec = InRecord {
                topic: "in",
                partition: 0,
                offset: i as i64,
                timestamp_ms: 0,
                key: None,
                payload,
            };
            p.process(state, &rec, &mut out).unwrap();
        }
        out
    }

    #[test]
    fn a_retried_scan_counts_once_in_the_rollup() {
        let mut p = processor();
        let mut state = ScanResultsState::default();
        let day0 = 20_000 * DAY_MICROS;
        let out = feed(
            &mut p,
            &mut state,
            &[
                report("s1", "web", "main", day0 + 1, 1, "❌"),
                report("s1", "web", "main", day0 + 2, 1, "❌"),
                report("s2", "web", "main", day0 + 3, 0, "✅"),
            ],
        );
        assert_eq!(out.counters.dedupe_hits, 1);
        let codec = Codec::<ScanRollup>::new().unwrap();
        let last = out
            .records
            .iter()
            .rfind(|r| r.topic == "rollups")
            .map(|r| codec.decode(&r.payload).unwrap())
            .unwrap();
        assert_eq!(
            (last.scans, last.failed_scans, last.critical, last.high),
            (2, 1, 1, 2)
        );
        assert_eq!((last.day, last.version), (20_000, 2));
    }

    #[test]
    fn the_newest_scan_sets_the_repository_status() {
        let mut p = processor();
        let mut state = ScanResultsState::default();
        let out = feed(
            &mut p,
            &mut state,
            &[
                report("s2", "web", "main", 200, 0, "✅"),
                report("s1", "web", "dev", 100, 0, "❌"),
            ],
        );
        let statuses: Vec<RepoStatus> = out
            .records
            .iter()
            .filter(|r| r.topic == "status")
            .map(|r| {
                Codec::<RepoStatus>::new()
                    .unwrap()
                    .decode(&r.payload)
                    .unwrap()
            })
            .collect();
        assert_eq!(
            statuses.len(),
            1,
            "an older scan does not replace the status"
        );
        assert_eq!(
            (statuses[0].scan_id.as_str(), statuses[0].status.as_str()),
            ("s2", "pass")
        );
    }

    #[test]
    fn failed_scans_and_criticals_on_default_branches_raise_alerts() {
        let mut p = processor();
        let mut state = ScanResultsState::default();
        let out = feed(
            &mut p,
            &mut state,
            &[
                report("a", "web", "main", 1, 3, "❌"),
                report("b", "web", "feature", 2, 3, "✅"),
            ],
        );
        let alerts: Vec<Alert> = out
            .records
            .iter()
            .filter(|r| r.topic == "alerts")
            .map(|r| Codec::<Alert>::new().unwrap().decode(&r.payload).unwrap())
            .collect();
        let rules: Vec<&str> = alerts.iter().map(|a| a.rule.as_str()).collect();
        assert_eq!(
            rules,
            vec!["scan_critical_on_default_branch", "scan_failed"]
        );
        assert_eq!(alerts[0].severity, "critical");
        assert_eq!(alerts[1].dedup_key, "scan_failed/web/main");
    }

    #[test]
    fn a_clean_scan_of_the_same_repository_and_branch_resolves_the_alerts_it_had() {
        let mut p = processor();
        let mut state = ScanResultsState::default();
        let out = feed(
            &mut p,
            &mut state,
            &[
                report("s1", "web", "main", 100, 2, "❌"),
                report("s2", "web", "dev", 200, 0, "✅"),
                report("s3", "web", "main", 300, 0, "✅"),
                report("s4", "web", "main", 400, 0, "✅"),
            ],
        );
        let alerts: Vec<Alert> = out
            .records
            .iter()
            .filter(|r| r.topic == "alerts")
            .map(|r| Codec::<Alert>::new().unwrap().decode(&r.payload).unwrap())
            .collect();
        let seen: Vec<(&str, &str, &str)> = alerts
            .iter()
            .map(|a| {
                (
                    a.source_id.as_str(),
                    a.status.as_str(),
                    a.dedup_key.as_str(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("s1", "open", "scan_critical/web/main"),
                ("s1", "open", "scan_failed/web/main"),
                ("s3", "resolved", "scan_critical/web/main"),
                ("s3", "resolved", "scan_failed/web/main"),
            ],
            "a clean scan of another branch resolves nothing; a second clean scan nothing more"
        );
        assert_ne!(alerts[1].alert_id, alerts[3].alert_id);
        // The open set survives a restore from the changelog.
        let mut restored = ScanResultsState::default();
        let mut state2 = ScanResultsState::default();
        feed(
            &mut p,
            &mut state2,
            &[report("s5", "api", "main", 100, 0, "❌")],
        );
        for c in state2.snapshot() {
            restored.apply(&c).unwrap();
        }
        let out = feed(
            &mut p,
            &mut restored,
            &[report("s6", "api", "main", 200, 0, "✅")],
        );
        assert_eq!(out.counters.alerts, 1);
    }

    #[test]
    fn hostile_counts_and_times_saturate_instead_of_overflowing() {
        let mut p = processor();
        let mut state = ScanResultsState::default();
        let huge = |id: &str, at: i64| {
            let mut r = Codec::<ScanReport>::new()
                .unwrap()
                .decode(&report(id, "web", "main", at, i64::MAX, "❌"))
                .unwrap();
            // Two scanners, so the per-report sums overflow too, not only the rollups.
            r.report_summary.push(r.report_summary[0].clone());
            r.report_summary[1].scanner = "other".into();
            r.report_summary[1].high = i64::MAX;
            Codec::<ScanReport>::new().unwrap().encode(&r).unwrap()
        };
        let out = feed(
            &mut p,
            &mut state,
            &[
                huge("a", i64::MAX),
                huge("b", i64::MAX),
                huge("c", i64::MIN),
                huge("d", 0),
            ],
        );
        let codec = Codec::<ScanRollup>::new().unwrap();
        let last_at_max = out
            .records
            .iter()
            .filter(|r| r.topic == "rollups")
            .map(|r| codec.decode(&r.payload).unwrap())
            .rfind(|r| r.day == day_of(i64::MAX) && r.scanner == "njs")
            .unwrap();
        assert_eq!(
            (last_at_max.scans, last_at_max.critical, last_at_max.high),
            (2, i64::MAX, 2)
        );
        for now in [i64::MIN, -1, 0, i64::MAX] {
            p.tick(&mut state, now, &mut Outputs::default());
        }
        let mut p = ScanResults::new(
            ScanResultsConfig {
                dedupe_horizon_secs: u64::MAX,
            },
            ScanResultsTopics {
                input: "in".into(),
                rollups: "rollups".into(),
                status: "status".into(),
                alerts: "alerts".into(),
            },
            &[],
        )
        .unwrap();
        p.tick(&mut state, i64::MIN, &mut Outputs::default());
    }

    #[test]
    fn a_snapshot_restores_seen_scans_rollups_and_statuses() {
        let mut p = processor();
        let mut state = ScanResultsState::default();
        feed(
            &mut p,
            &mut state,
            &[
                report("a", "web", "main", 1, 3, "❌"),
                report("b", "api", "dev", 2, 0, "✅"),
            ],
        );
        // Seen scans, rollups, statuses, and the two alerts open on web/main.
        assert_eq!(state.live_keys(), 2 + 2 + 2 + 2);
        crate::state::assert_snapshot_round_trips(&state);
        // The restored state still knows the scans it has seen.
        let mut restored = ScanResultsState::default();
        for c in state.snapshot() {
            restored.apply(&c).unwrap();
        }
        let out = feed(
            &mut p,
            &mut restored,
            &[report("a", "web", "main", 3, 3, "❌")],
        );
        assert_eq!((out.counters.dedupe_hits, out.records.len()), (1, 0));
    }

    fn with(payload: &[u8], f: impl FnOnce(&mut ScanReport)) -> Vec<u8> {
        let codec = Codec::<ScanReport>::new().unwrap();
        let mut r = codec.decode(payload).unwrap();
        f(&mut r);
        codec.encode(&r).unwrap()
    }

    fn decoded<T: secpipe_schemas::AvroRecord + serde::de::DeserializeOwned>(
        out: &Outputs,
        topic: &str,
    ) -> Vec<T> {
        let codec = Codec::<T>::new().unwrap();
        out.records
            .iter()
            .filter(|r| r.topic == topic)
            .map(|r| codec.decode(&r.payload).unwrap())
            .collect()
    }

    /// The newest version of every rollup.
    fn totals(out: &Outputs) -> std::collections::BTreeMap<String, ScanRollup> {
        decoded::<ScanRollup>(out, "rollups")
            .into_iter()
            .map(|r| (format!("{}|{}", r.repository, r.scanner), r))
            .collect()
    }

    #[test]
    fn a_fragment_first_does_not_make_the_summary_a_repeat() {
        let mut p = processor();
        let mut state = ScanResultsState::default();
        let fragment = with(&report("run", "web", "main", 10, 0, "✅"), |r| {
            r.report_summary.clear();
            r.repo_context = RepoContext::default();
        });
        let out = feed(
            &mut p,
            &mut state,
            &[
                fragment.clone(),
                report("run", "web", "main", 20, 2, "❌"),
                fragment,
            ],
        );
        assert_eq!(
            out.counters.dedupe_hits, 1,
            "only the late fragment is a repeat"
        );
        let statuses = decoded::<RepoStatus>(&out, "status");
        assert_eq!(statuses.len(), 1, "no status for an unknown repository");
        assert_eq!(
            (statuses[0].repository.as_str(), statuses[0].status.as_str()),
            ("web", "fail")
        );
        let t = totals(&out);
        assert_eq!(t.len(), 1);
        assert_eq!(t["web|njs"].critical, 2);
    }

    #[test]
    fn the_tools_own_message_outranks_sarif_in_either_order() {
        let sarif = |id: &str| {
            with(&report(id, "web", "main", 10, 5, "❌"), |r| {
                r.origin = "sarif".into();
                r.report_summary[0].high = 9;
            })
        };
        let track = |id: &str| report(id, "web", "main", 20, 0, "✅");
        for order in [[sarif("s"), track("s")], [track("s"), sarif("s")]] {
            let mut p = processor();
            let mut state = ScanResultsState::default();
            let out = feed(&mut p, &mut state, &order);
            let t = totals(&out);
            let r = &t["web|njs"];
            assert_eq!(
                (r.scans, r.failed_scans, r.critical, r.high),
                (1, 0, 0, 1),
                "{r:?}"
            );
            let last = decoded::<RepoStatus>(&out, "status").pop().unwrap();
            assert_eq!((last.status.as_str(), last.critical), ("pass", 0));
        }
    }

    #[test]
    fn sarif_runs_of_other_tools_add_their_scanners_and_repeats_count_once() {
        let mut p = processor();
        let mut state = ScanResultsState::default();
        let run = |scanner: &str| {
            with(&report("s", "web", "main", 10, 1, "❌"), |r| {
                r.origin = "sarif".into();
                r.report_summary[0].scanner = scanner.into();
            })
        };
        let out = feed(
            &mut p,
            &mut state,
            &[run("bandit"), run("ruff"), run("bandit")],
        );
        assert_eq!(out.counters.dedupe_hits, 1);
        let t = totals(&out);
        assert_eq!(t.len(), 2);
        assert_eq!(t["web|bandit"].scans, 1);
        assert_eq!(
            decoded::<RepoStatus>(&out, "status")
                .pop()
                .unwrap()
                .critical,
            2
        );
    }

    #[test]
    fn same_named_repositories_of_two_organisations_stay_apart() {
        let mut p = processor();
        let mut state = ScanResultsState::default();
        let in_org = |id: &str, org: &str, critical| {
            with(&report(id, "web", "main", 10, critical, "✅"), |r| {
                r.repo_context.repository_uri = Some(format!("https://github.com/{org}/web.git"));
            })
        };
        let out = feed(
            &mut p,
            &mut state,
            &[in_org("a", "acme", 1), in_org("b", "other", 7)],
        );
        let t = totals(&out);
        assert_eq!(t["github.com/acme/web|njs"].critical, 1);
        assert_eq!(t["github.com/other/web|njs"].critical, 7);
        assert_eq!(decoded::<RepoStatus>(&out, "status").len(), 2);
    }

    #[test]
    fn short_code_statuses_fail_the_scan() {
        let mut p = processor();
        let mut state = ScanResultsState::default();
        let out = feed(
            &mut p,
            &mut state,
            &[report("a", "web", "main", 1, 0, ":cross_mark:")],
        );
        assert_eq!(decoded::<RepoStatus>(&out, "status")[0].status, "fail");
        assert_eq!(decoded::<Alert>(&out, "alerts")[0].rule, "scan_failed");
    }
}
