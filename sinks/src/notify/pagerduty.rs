//! PagerDuty Events API v2 (`POST /v2/enqueue`): alerts and events trigger an incident under
//! their dedup key, a resolved alert resolves it. PagerDuty folds triggers with an open
//! incident's dedup key into that incident, so a redelivery after a restart pages nobody twice.

use reqwest::Url;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::text::{bounded_key, mask, rfc3339, truncate};
use super::{http, Integration, Notification, Secret, SendError, SendFuture, Severity};

/// PagerDuty's limits: dedup_key 255 characters, summary 1024.
const MAX_DEDUP_KEY: usize = 255;
const MAX_SUMMARY: usize = 1024;

/// PagerDuty Events API v2 (`type = "pagerduty"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PagerDutyConfig {
    /// Integration keys (routing keys) of Events API v2 integrations; each is an endpoint.
    /// Required.
    pub endpoints: Vec<Secret>,
    /// Events API base URL. Default `https://events.pagerduty.com`.
    pub api_url: String,
    /// `payload.source` when the notification names no account. Default `secpipe`.
    pub source: String,
}

impl Default for PagerDutyConfig {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            api_url: "https://events.pagerduty.com".into(),
            source: "secpipe".into(),
        }
    }
}

pub(crate) struct PagerDuty {
    name: String,
    client: reqwest::Client,
    enqueue: Url,
    keys: Vec<Secret>,
    shown: Vec<String>,
    source: String,
}

impl PagerDutyConfig {
    pub(crate) fn build(&self, name: &str, client: &reqwest::Client) -> Result<PagerDuty, String> {
        let base = http::parse_url(&self.api_url)?;
        let enqueue = http::join(&base, "/v2/enqueue");
        for (i, key) in self.endpoints.iter().enumerate() {
            let k = key.expose();
            if k.is_empty() || k.contains(char::is_whitespace) {
                return Err(format!("endpoints[{i}] is not a routing key"));
            }
        }
        Ok(PagerDuty {
            name: name.to_string(),
            client: client.clone(),
            shown: self
                .endpoints
                .iter()
                .map(|k| format!("{enqueue} (routing key {})", mask(k.expose())))
                .collect(),
            enqueue,
            keys: self.endpoints.clone(),
            source: self.source.clone(),
        })
    }
}

/// `critical`, `error`, `warning` or `info`, the four PagerDuty knows.
pub(crate) fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "critical",
        Severity::High => "error",
        Severity::Medium | Severity::Low => "warning",
        Severity::Info => "info",
    }
}

/// The event for `n`: a trigger, or a resolve for a resolved alert.
pub(crate) fn event(n: &Notification, routing_key: &str, default_source: &str) -> Value {
    let dedup_key = bounded_key(&n.incident_key(), MAX_DEDUP_KEY);
    if let Notification::Raw(r) = n {
        let mut payload = r.payload.clone();
        if let Some(obj) = payload.as_object_mut() {
            obj.entry("routing_key")
                .or_insert_with(|| json!(routing_key));
        }
        return payload;
    }
    if n.is_resolved() {
        return json!({"routing_key": routing_key, "event_action": "resolve", "dedup_key": dedup_key});
    }
    let mut details = Map::new();
    for (label, value) in n.facts() {
        details.insert(label.to_string(), json!(value));
    }
    if !n.description().is_empty() {
        details.insert("Description".into(), json!(n.description()));
    }
    if !n.resources().is_empty() {
        details.insert("Resources".into(), json!(n.resources()));
    }
    if let Notification::Event(e) = n {
        details.insert("Original".into(), e.original.clone());
    }
    details.insert("Notification".into(), json!(n.id()));
    let source = if n.account().is_empty() {
        default_source
    } else {
        n.account()
    };
    let mut payload = json!({
        "summary": truncate(&n.title(), MAX_SUMMARY),
        "source": source,
        "severity": severity(n.severity()),
        "component": n.account(),
        "group": n.kind().as_str(),
        "custom_details": details,
    });
    if let Some(at) = n.raised_at_ms() {
        payload["timestamp"] = json!(rfc3339(at));
    }
    let class = match n {
        Notification::Alert(a) => a.title.clone(),
        Notification::Event(e) => e.action.clone(),
        _ => "scan result".into(),
    };
    payload["class"] = json!(class);
    let mut event = json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "client": "secpipe",
        "payload": payload,
    });
    if let Some(url) = n.url() {
        event["client_url"] = json!(url);
        event["links"] = json!([{"href": url, "text": "Full report"}]);
    }
    event
}

impl Integration for PagerDuty {
    fn name(&self) -> &str {
        &self.name
    }

    fn endpoints(&self) -> &[String] {
        &self.shown
    }

    fn send<'a>(&'a self, endpoint: usize, n: &'a Notification) -> SendFuture<'a> {
        Box::pin(async move {
            let key = self
                .keys
                .get(endpoint)
                .ok_or_else(|| SendError::Invalid(format!("no endpoint {endpoint}")))?;
            let body = event(n, key.expose(), &self.source);
            http::send(self.client.post(self.enqueue.clone()).json(&body)).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::fixtures::{alert, event as runtime_event};

    #[test]
    fn an_alert_triggers_and_its_resolution_resolves_the_same_key() {
        let a = alert();
        let trigger = event(&Notification::Alert(a.clone()), "rk", "secpipe");
        assert_eq!(trigger["event_action"], "trigger");
        assert_eq!(trigger["dedup_key"], "cloudfront-https/prod-aws");
        assert_eq!(trigger["payload"]["severity"], "error");
        assert_eq!(trigger["payload"]["source"], "prod-aws");
        let mut resolved = a;
        resolved.resolved = true;
        let resolve = event(&Notification::Alert(resolved), "rk", "secpipe");
        assert_eq!(resolve["event_action"], "resolve");
        assert_eq!(resolve["dedup_key"], trigger["dedup_key"]);
        assert!(resolve.get("payload").is_none());
    }

    #[test]
    fn an_event_carries_its_original_and_timestamp() {
        let e = event(&Notification::Event(runtime_event()), "rk", "secpipe");
        assert_eq!(e["payload"]["severity"], "critical");
        assert_eq!(e["payload"]["timestamp"], "2015-08-30T12:36:00.000Z");
        assert_eq!(
            e["payload"]["custom_details"]["Original"]["detail"]["eventName"],
            "ConsoleLogin"
        );
    }
}
