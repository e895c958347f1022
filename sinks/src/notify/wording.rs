//! The wording every integration shares (title, facts, plain text, SMS form), so that Slack,
//! Teams, email and SMS say the same thing, each in its own format.

use super::message::Notification;
use super::text::truncate;

/// Facts carry static labels; a context label is one of the few secpipe fills in.
fn context_label(label: &str) -> &'static str {
    match label {
        "invoked_by" => "Invoked by",
        "cluster" => "Cluster",
        "namespace" => "Namespace",
        "branch" => "Branch",
        "repository" => "Repository",
        "host" => "Host",
        _ => "Context",
    }
}

impl Notification {
    /// One line saying what happened, the subject of every format.
    pub fn title(&self) -> String {
        match self {
            Notification::Raw(r) => format!("secpipe message {}", r.id),
            Notification::Result(r) => format!(
                "Scan report for {}: {} fail, {} warn, {} new risks",
                r.account, r.fail, r.warn, r.new_risks
            ),
            Notification::Alert(a) if a.resolved => {
                format!("[RESOLVED] {} on {}", a.title, a.account)
            }
            Notification::Alert(a) => {
                format!("[{}] {} on {}", a.status.label(), a.title, a.account)
            }
            Notification::Event(e) => {
                let mut t = format!("[{}] {} in {}", e.status.label(), e.action, e.account);
                if !e.caller.is_empty() {
                    t.push_str(" by ");
                    t.push_str(&e.caller);
                }
                t
            }
        }
    }

    /// The longer text: an alert's description, an event's justification.
    pub fn description(&self) -> &str {
        match self {
            Notification::Alert(a) => &a.description,
            Notification::Event(e) => &e.message,
            _ => "",
        }
    }

    /// Label and value pairs every rich format shows (Slack fields, Teams facts, email lines).
    pub fn facts(&self) -> Vec<(&'static str, String)> {
        let mut facts = Vec::new();
        match self {
            Notification::Raw(_) => {}
            Notification::Result(r) => {
                facts.push(("Account", r.account.clone()));
                facts.push(("Scan", r.scan_id.clone()));
                facts.push(("Pass", r.pass.to_string()));
                facts.push(("Warn", r.warn.to_string()));
                facts.push(("Fail", r.fail.to_string()));
                facts.push(("Unknown", r.unknown.to_string()));
                facts.push(("New risks", r.new_risks.to_string()));
            }
            Notification::Alert(a) => {
                facts.push(("Account", a.account.clone()));
                facts.push(("Result", a.status.label().to_string()));
                facts.push(("Severity", a.severity.to_string()));
                facts.push(("Scan", a.scan_id.clone()));
                if !a.resources.is_empty() {
                    facts.push(("Resources", a.resources.len().to_string()));
                }
            }
            Notification::Event(e) => {
                facts.push(("Account", e.account.clone()));
                facts.push(("Action", e.action.clone()));
                facts.push(("Result", e.status.label().to_string()));
                facts.push(("Severity", e.severity.to_string()));
                for (label, v) in [
                    ("Region", &e.region),
                    ("Caller", &e.caller),
                    ("IP address", &e.ip_address),
                ] {
                    if !v.is_empty() {
                        facts.push((label, v.clone()));
                    }
                }
            }
        }
        for (label, value) in self.context() {
            if !value.is_empty() {
                facts.push((context_label(label), value.clone()));
            }
        }
        if self.occurrences() > 1 {
            facts.push(("Occurrences", self.occurrences().to_string()));
        }
        facts
    }

    /// Affected resources (alerts only).
    pub fn resources(&self) -> &[String] {
        match self {
            Notification::Alert(a) => &a.resources,
            _ => &[],
        }
    }

    /// Plain text for bodies without markup (email, SNS topics, Splunk): title, description,
    /// facts, resources, and an event's original.
    pub fn plain_text(&self) -> String {
        let mut out = self.title();
        out.push_str("\n\n");
        if !self.description().is_empty() {
            out.push_str(self.description());
            out.push_str("\n\n");
        }
        for (label, value) in self.facts() {
            out.push_str(&format!("{label}: {value}\n"));
        }
        if !self.resources().is_empty() {
            out.push_str("\nAffected resources:\n");
            for r in self.resources() {
                out.push_str(&format!("- {r}\n"));
            }
        }
        if let Some(url) = self.url() {
            out.push_str(&format!("\nReport: {url}\n"));
        }
        if let Notification::Event(e) = self {
            if !e.original.is_null() {
                let original = serde_json::to_string_pretty(&e.original).unwrap_or_default();
                out.push_str(&format!("\nOriginal event:\n{original}\n"));
            }
        }
        out.push_str(&format!("\nNotification {}", self.id()));
        out
    }

    /// A form that fits one SMS: at most 140 characters of ASCII, or 70 when the text needs
    /// Unicode (UCS-2 messages hold 70).
    pub fn short_text(&self) -> String {
        let text = match self {
            Notification::Raw(r) => match &r.payload {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            },
            Notification::Result(r) => format!(
                "secpipe {}: {} fail {} warn {} new",
                r.account, r.fail, r.warn, r.new_risks
            ),
            Notification::Alert(a) => {
                let state = if a.resolved { "OK" } else { a.status.label() };
                format!(
                    "secpipe {state} {}: {} ({})",
                    a.severity, a.title, a.account
                )
            }
            Notification::Event(e) => format!(
                "secpipe {} {}: {} by {} in {} {}",
                e.status.label(),
                e.severity,
                e.action,
                e.caller,
                e.account,
                e.region
            ),
        };
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let limit = if text.is_ascii() { 140 } else { 70 };
        truncate(&text, limit).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::fixtures::alert;

    #[test]
    fn short_text_fits_one_sms() {
        let mut a = alert();
        a.title = "x".repeat(500);
        let s = Notification::Alert(a.clone()).short_text();
        assert_eq!(s.chars().count(), 140);
        a.title = "é".repeat(500);
        let s = Notification::Alert(a).short_text();
        assert_eq!(s.chars().count(), 70);
    }

    #[test]
    fn a_reminder_shows_its_occurrences() {
        let mut n = Notification::Alert(alert());
        assert!(!n.facts().iter().any(|(l, _)| *l == "Occurrences"));
        n.set_occurrences(7);
        assert!(n.facts().contains(&("Occurrences", "7".to_string())));
    }
}
