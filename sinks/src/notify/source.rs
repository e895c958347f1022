//! From secpipe's records to the notification interface: alert records become alerts (a check
//! that failed, or its resolution) or events (a runtime call a rule flagged), scan reports become
//! scan results; each with a link back to its source from the `[notify.links]` templates.

use std::collections::BTreeMap;

use secpipe_schemas::alert::Alert as AlertRecord;
use secpipe_schemas::scan::ScanReport;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::message::{Alert, CheckStatus, Event, Kind, Notification, ScanResult, Severity};

/// Links back to the source (section `[notify.links]`): URL templates in which `{name}` is
/// replaced by the record's value. A template naming a value the record lacks gives no link
/// (rather than a broken one). PagerDuty gets it as `links`/`client_url`, Slack as a link,
/// Teams as an action, Opsgenie in the details.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinkConfig {
    /// Scan alerts and scan results: `{repository_uri}`, `{repository}`, `{branch}`,
    /// `{scan_id}`. Default `"{repository_uri}"` (the repository the scan report names).
    pub scan: String,
    /// Alerts on admin events (repeated failed image scans): `{id}`, `{cluster}`, `{image}`.
    /// Default empty (no link), e.g. `"https://admin.example.com/admin-events/{id}"`.
    pub admin_event: String,
    /// Runtime events: `{host}`, `{namespace}`, `{pod}`, `{event_id}`. Default empty, e.g. a
    /// dashboard `"https://grafana.example.com/d/hosts?var-host={host}"`.
    pub runtime: String,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            scan: "{repository_uri}".into(),
            admin_event: String::new(),
            runtime: String::new(),
        }
    }
}

/// `template` with every `{name}` replaced from `values`; `None` when it is empty or names a
/// value that is missing or empty.
pub fn render(template: &str, values: &BTreeMap<String, String>) -> Option<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after.find('}')?;
        let value = values.get(&after[..close]).filter(|v| !v.is_empty())?;
        out.push_str(value);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    (!out.trim().is_empty()).then_some(out)
}

/// A record the notifier consumes: its notification, if it makes one.
pub trait Notifiable: secpipe_schemas::AvroRecord + Send + Sync + 'static {
    /// The kinds of notification it makes: a restart resumes only the unfinished deliveries
    /// of these kinds (each consumer its own).
    const KINDS: &'static [Kind];

    fn notification(&self, links: &LinkConfig) -> Option<Notification>;
}

impl Notifiable for AlertRecord {
    const KINDS: &'static [Kind] = &[Kind::Alert, Kind::Event];

    fn notification(&self, links: &LinkConfig) -> Option<Notification> {
        Some(notification(self, links))
    }
}

impl Notifiable for ScanReport {
    const KINDS: &'static [Kind] = &[Kind::Result];

    fn notification(&self, links: &LinkConfig) -> Option<Notification> {
        Some(Notification::Result(scan_result(self, links)))
    }
}

fn severity(s: &str) -> Severity {
    match s {
        "critical" => Severity::Critical,
        "high" => Severity::High,
        "medium" => Severity::Medium,
        "low" => Severity::Low,
        _ => Severity::Info,
    }
}

/// Context worth naming from a record's attributes, in this order.
fn context(attributes: &BTreeMap<String, String>) -> Vec<(String, String)> {
    ["invoked_by", "repository", "branch", "cluster", "namespace"]
        .iter()
        .filter_map(|k| {
            attributes
                .get(*k)
                .filter(|v| !v.is_empty())
                .map(|v| (k.to_string(), v.clone()))
        })
        .collect()
}

/// The notification for an alert record: runtime and admin events as events, the rest as alerts
/// (a FAIL from high severity up, a WARN below).
///
/// Events follow the reference's `event()`: `action` is the call (`setuid`, the failed
/// command), `region` the cluster or namespace, `caller` the host, `ip_address` the address,
/// `occurrences` what the processor counted, and `original` the source record the processor
/// attached (secpipe's alert record only when it attached none).
pub fn notification(a: &AlertRecord, links: &LinkConfig) -> Notification {
    let sev = severity(&a.severity);
    let status = if sev >= Severity::High {
        CheckStatus::Fail
    } else {
        CheckStatus::Warn
    };
    let attr = |k: &str| a.attributes.get(k).cloned().unwrap_or_default();
    let account = a
        .tags
        .iter()
        .find_map(|t| {
            t.strip_prefix("team:")
                .or_else(|| t.strip_prefix("namespace:"))
                .or_else(|| t.strip_prefix("cluster:"))
        })
        .or_else(|| a.resources.first().map(String::as_str))
        .unwrap_or("secpipe")
        .to_string();
    let raised_at_ms = u64::try_from(a.raised_at / 1000).ok();
    let occurrences = a
        .attributes
        .get("occurrences")
        .and_then(|o| o.parse::<u64>().ok())
        .filter(|&o| o > 0)
        .unwrap_or(1);
    let tags: Vec<String> = a
        .tags
        .iter()
        .cloned()
        .chain(std::iter::once(format!("rule:{}", a.rule)))
        .collect();
    let mut values = a.attributes.clone();
    values.insert("id".into(), a.source_id.clone());
    values
        .entry("scan_id".into())
        .or_insert_with(|| a.source_id.clone());
    let template = match a.rule.as_str() {
        "scan_failed" | "scan_critical_on_default_branch" => &links.scan,
        "admin_event_occurrences" => &links.admin_event,
        _ => &links.runtime,
    };
    let url = render(template, &values);
    // A resolution closes its incident whatever raised it: integrations that track incidents
    // know resolved alerts, not resolved events.
    if a.kind == "event" && a.status != "resolved" {
        let original = a
            .attributes
            .get("original")
            .and_then(|o| serde_json::from_str(o).ok())
            .unwrap_or_else(|| serde_json::to_value(a).unwrap_or_default());
        let region = [attr("cluster"), attr("namespace")]
            .into_iter()
            .find(|v| !v.is_empty())
            .unwrap_or_default();
        let action = [attr("call"), attr("command")]
            .into_iter()
            .find(|v| !v.is_empty())
            .unwrap_or_else(|| a.rule.clone());
        Notification::Event(Event {
            id: a.alert_id.clone(),
            account,
            action,
            region,
            caller: attr("host"),
            ip_address: [attr("ip"), attr("address")]
                .into_iter()
                .find(|v| !v.is_empty())
                .unwrap_or_default(),
            message: format!("{}\n{}", a.title, a.description),
            status,
            severity: sev,
            dedup_key: a.dedup_key.clone(),
            tags,
            occurrences,
            raised_at_ms,
            original,
            url,
            context: context(&a.attributes),
        })
    } else {
        Notification::Alert(Alert {
            id: a.alert_id.clone(),
            account,
            title: a.title.clone(),
            description: a.description.clone(),
            scan_id: a
                .attributes
                .get("scan_id")
                .cloned()
                .unwrap_or_else(|| a.source_id.clone()),
            status,
            severity: sev,
            resources: a.resources.clone(),
            dedup_key: a.dedup_key.clone(),
            resolved: a.status == "resolved",
            url,
            tags,
            occurrences,
            raised_at_ms,
            context: context(&a.attributes),
        })
    }
}

/// The reference's `result()` for one scan report, per account (the repository):
/// a scanner that passed (✅) counts as pass, failed (❌) as fail, warned (⚠️) as warn, any other
/// status as unknown; `new_risks` is the critical and high findings the scan reported (the
/// report carries no history, so "new" means found by this scan).
pub fn scan_result(r: &ScanReport, links: &LinkConfig) -> ScanResult {
    let (mut pass, mut warn, mut fail, mut unknown) = (0, 0, 0, 0);
    let mut new_risks: u64 = 0;
    for s in &r.report_summary {
        match s.status.trim() {
            "✅" | "pass" | "PASS" => pass += 1,
            "❌" | "fail" | "FAIL" => fail += 1,
            "⚠️" | "⚠" | "warn" | "WARN" => warn += 1,
            _ => unknown += 1,
        }
        let risks = s.critical.max(0).saturating_add(s.high.max(0));
        new_risks = new_risks.saturating_add(u64::try_from(risks).unwrap_or(0));
    }
    let ctx = &r.repo_context;
    let repository = ctx
        .repository_name
        .clone()
        .or_else(|| ctx.repository_uri.clone())
        .unwrap_or_else(|| "(unknown)".into());
    let values: BTreeMap<String, String> = [
        ("repository", Some(repository.clone())),
        ("repository_uri", ctx.repository_uri.clone()),
        ("branch", ctx.branch.clone()),
        ("scan_id", Some(r.id.clone())),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
    .collect();
    let mut tags: Vec<String> = r.team.iter().map(|t| format!("team:{t}")).collect();
    tags.extend(ctx.branch.iter().map(|b| format!("branch:{b}")));
    ScanResult {
        id: format!("result/{}", r.id),
        account: repository,
        scan_id: r.id.clone(),
        pass,
        warn,
        fail,
        unknown,
        new_risks,
        url: render(&links.scan, &values),
        tags,
        raised_at_ms: u64::try_from(r.received_at / 1000).ok(),
    }
}

/// For the outbox: a record as JSON and back (the dead-letter topic wants it re-encoded).
pub(crate) fn to_json<R: Serialize>(r: &R) -> Result<String, serde_json::Error> {
    serde_json::to_string(r)
}

pub(crate) fn from_json<R: DeserializeOwned>(s: &str) -> Option<R> {
    serde_json::from_str(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: &str, severity: &str) -> AlertRecord {
        AlertRecord {
            alert_id: "a1".into(),
            rule: "scan_failed".into(),
            severity: severity.into(),
            kind: kind.into(),
            title: "Scan of web failed".into(),
            description: "details".into(),
            dedup_key: "scan_failed/web/main".into(),
            status: "open".into(),
            source_topic: "t".into(),
            source_id: "s1".into(),
            resources: vec!["web".into()],
            tags: vec!["team:shop".into()],
            attributes: BTreeMap::from([
                ("scan_id".into(), "scan-9".into()),
                (
                    "repository_uri".into(),
                    "https://git.example.com/shop/web".into(),
                ),
                ("invoked_by".into(), "alice".into()),
            ]),
            raised_at: 1_700_000_000_000_000,
        }
    }

    #[test]
    fn alerts_map_to_the_notification_interface_with_a_link_and_the_invoker() {
        let Notification::Alert(a) =
            notification(&record("result", "critical"), &LinkConfig::default())
        else {
            panic!()
        };
        assert_eq!(
            (a.status, a.severity),
            (CheckStatus::Fail, Severity::Critical)
        );
        assert_eq!((a.scan_id.as_str(), a.account.as_str()), ("scan-9", "shop"));
        assert_eq!(a.dedup_key, "scan_failed/web/main");
        assert_eq!(a.raised_at_ms, Some(1_700_000_000_000));
        assert_eq!(a.url.as_deref(), Some("https://git.example.com/shop/web"));
        assert_eq!(a.context, [("invoked_by".to_string(), "alice".to_string())]);
    }

    #[test]
    fn events_carry_the_call_the_place_the_count_and_the_source_record() {
        let mut r = record("event", "low");
        r.rule = "identity_change_to_root".into();
        r.attributes = BTreeMap::from([
            ("call".into(), "setuid".into()),
            ("namespace".into(), "payments".into()),
            ("host".into(), "node-7".into()),
            ("address".into(), "10.0.0.7".into()),
            ("occurrences".into(), "10".into()),
            (
                "original".into(),
                r#"{"event_id":"ev-1","type":"identity_change"}"#.into(),
            ),
        ]);
        let links = LinkConfig {
            runtime: "https://grafana.example.com/d/hosts?var-host={host}".into(),
            ..Default::default()
        };
        let Notification::Event(e) = notification(&r, &links) else {
            panic!()
        };
        assert_eq!(e.action, "setuid");
        assert_eq!(e.region, "payments");
        assert_eq!(e.ip_address, "10.0.0.7");
        assert_eq!(e.occurrences, 10);
        assert_eq!(e.original["event_id"], "ev-1");
        assert_eq!(
            e.url.as_deref(),
            Some("https://grafana.example.com/d/hosts?var-host=node-7")
        );
        // Without an original attached, the alert record stands in.
        r.attributes.remove("original");
        let Notification::Event(e) = notification(&r, &links) else {
            panic!()
        };
        assert_eq!(e.original["alert_id"], "a1");
    }

    #[test]
    fn a_template_naming_a_missing_value_gives_no_link() {
        let values = BTreeMap::from([("id".to_string(), "e1".to_string())]);
        assert_eq!(
            render("https://admin/{id}", &values).as_deref(),
            Some("https://admin/e1")
        );
        assert_eq!(render("https://admin/{cluster}/{id}", &values), None);
        assert_eq!(render("", &values), None);
        assert_eq!(render("https://admin/{id", &values), None);
    }

    #[test]
    fn a_scan_report_becomes_the_reference_result_counts() {
        use secpipe_schemas::scan::{RepoContext, ScannerSummary};
        let s = |status: &str, critical, high| ScannerSummary {
            scanner: status.into(),
            tool: None,
            critical,
            high,
            medium: 5,
            low: 5,
            status: status.into(),
        };
        let report = ScanReport {
            id: "scan-1".into(),
            scan_mode: None,
            tool: None,
            repo_context: RepoContext {
                branch: Some("main".into()),
                repository_name: Some("web".into()),
                repository_uri: Some("https://git.example.com/web".into()),
                ..Default::default()
            },
            repo_type: vec![],
            team: Some("shop".into()),
            report_summary: vec![s("✅", 0, 0), s("❌", 2, 3), s("⚠️", 0, 1), s("?", -4, 0)],
            origin: "track".into(),
            received_at: 1_700_000_000_000_000,
        };
        let r = scan_result(&report, &LinkConfig::default());
        assert_eq!(
            (r.pass, r.warn, r.fail, r.unknown, r.new_risks),
            (1, 1, 1, 1, 6)
        );
        assert_eq!((r.account.as_str(), r.scan_id.as_str()), ("web", "scan-1"));
        assert_eq!(r.id, "result/scan-1");
        assert_eq!(r.url.as_deref(), Some("https://git.example.com/web"));
        assert_eq!(r.tags, ["team:shop", "branch:main"]);
    }
}
