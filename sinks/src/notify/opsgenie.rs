//! Opsgenie Alert API: `POST /v2/alerts` with `Authorization: GenieKey <key>`, the dedup key as
//! the alert's alias (Opsgenie folds an open alert's alias into a count instead of a new
//! alert), priority P1-P5 from the severity; a resolution closes the alert by alias.

use reqwest::Url;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::text::{bounded_key, mask, truncate};
use super::{http, Integration, Notification, Secret, SendError, SendFuture, Severity};

/// Opsgenie's field limits.
const MAX_MESSAGE: usize = 130;
const MAX_ALIAS: usize = 512;
const MAX_DESCRIPTION: usize = 15_000;
const MAX_ENTITY: usize = 512;
const MAX_TAGS: usize = 20;
const MAX_TAG: usize = 50;
const MAX_DETAIL: usize = 1_000;

/// Opsgenie (`type = "opsgenie"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpsgenieConfig {
    /// API keys of Opsgenie API integrations; each is an endpoint. Required.
    pub endpoints: Vec<Secret>,
    /// API base URL; `https://api.eu.opsgenie.com` for the EU instance. Default
    /// `https://api.opsgenie.com`.
    pub api_url: String,
    /// The alert's `source`. Default `secpipe`.
    pub source: String,
}

impl Default for OpsgenieConfig {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            api_url: "https://api.opsgenie.com".into(),
            source: "secpipe".into(),
        }
    }
}

pub(crate) struct Opsgenie {
    name: String,
    client: reqwest::Client,
    base: Url,
    keys: Vec<Secret>,
    shown: Vec<String>,
    source: String,
}

impl OpsgenieConfig {
    pub(crate) fn build(&self, name: &str, client: &reqwest::Client) -> Result<Opsgenie, String> {
        let base = http::parse_url(&self.api_url)?;
        for (i, key) in self.endpoints.iter().enumerate() {
            let k = key.expose();
            if k.is_empty() || !k.chars().all(|c| c.is_ascii_graphic()) {
                return Err(format!("endpoints[{i}] is not an API key"));
            }
        }
        let alerts = http::join(&base, "/v2/alerts");
        Ok(Opsgenie {
            name: name.to_string(),
            client: client.clone(),
            shown: self
                .endpoints
                .iter()
                .map(|k| format!("{alerts} (key {})", mask(k.expose())))
                .collect(),
            base,
            keys: self.endpoints.clone(),
            source: self.source.clone(),
        })
    }
}

/// P1 (critical) to P5 (info).
pub(crate) fn priority(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "P1",
        Severity::High => "P2",
        Severity::Medium => "P3",
        Severity::Low => "P4",
        Severity::Info => "P5",
    }
}

/// The alias of `n`: its dedup key, or a digest when longer than Opsgenie allows.
pub(crate) fn alias(n: &Notification) -> String {
    bounded_key(&n.incident_key(), MAX_ALIAS)
}

/// The create-alert request body.
pub(crate) fn create(n: &Notification, source: &str) -> Value {
    let mut details = Map::new();
    for (label, value) in n.facts() {
        details.insert(label.to_string(), json!(truncate(&value, MAX_DETAIL)));
    }
    details.insert("notification".into(), json!(n.id()));
    if let Some(url) = n.url() {
        details.insert("report".into(), json!(url));
    }
    let mut description = n.plain_text();
    if description.chars().count() > MAX_DESCRIPTION {
        description = truncate(&description, MAX_DESCRIPTION).into_owned();
    }
    let tags: Vec<String> = n
        .tags()
        .iter()
        .take(MAX_TAGS)
        .map(|t| truncate(t, MAX_TAG).into_owned())
        .collect();
    json!({
        "message": truncate(&n.title(), MAX_MESSAGE),
        "alias": alias(n),
        "description": description,
        "tags": tags,
        "details": details,
        "entity": truncate(n.account(), MAX_ENTITY),
        "source": source,
        "priority": priority(n.severity()),
    })
}

impl Integration for Opsgenie {
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
            let (url, body) = match n {
                Notification::Raw(r) => (http::join(&self.base, "/v2/alerts"), r.payload.clone()),
                n if n.is_resolved() => {
                    let mut url = self.base.clone();
                    // Segment-wise, so that a '/' in the alias is escaped and not a new segment.
                    url.path_segments_mut()
                        .map_err(|_| SendError::Invalid("api_url cannot be a base".into()))?
                        .pop_if_empty()
                        .extend(["v2", "alerts", &alias(n), "close"]);
                    url.set_query(Some("identifierType=alias"));
                    let note = format!("Resolved: {}", n.title());
                    (
                        url,
                        json!({"source": self.source, "note": truncate(&note, 25_000)}),
                    )
                }
                n => (
                    http::join(&self.base, "/v2/alerts"),
                    create(n, &self.source),
                ),
            };
            let request = self
                .client
                .post(url)
                .header("authorization", format!("GenieKey {}", key.expose()))
                .json(&body);
            http::send(request).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::fixtures::alert;

    #[test]
    fn an_alert_becomes_an_opsgenie_alert_with_its_dedup_key_as_alias() {
        let mut a = alert();
        a.title = "x".repeat(300);
        a.tags = (0..30).map(|i| format!("tag-{i}")).collect();
        let body = create(&Notification::Alert(a), "secpipe");
        assert_eq!(body["alias"], "cloudfront-https/prod-aws");
        assert_eq!(body["priority"], "P2");
        assert_eq!(
            body["message"].as_str().unwrap().chars().count(),
            MAX_MESSAGE
        );
        assert_eq!(body["tags"].as_array().unwrap().len(), MAX_TAGS);
        assert_eq!(body["entity"], "prod-aws");
        assert_eq!(body["details"]["notification"], "n-1");
    }

    #[test]
    fn priorities_span_p1_to_p5() {
        let all = [
            Severity::Critical,
            Severity::High,
            Severity::Medium,
            Severity::Low,
            Severity::Info,
        ];
        let p: Vec<_> = all.into_iter().map(priority).collect();
        assert_eq!(p, ["P1", "P2", "P3", "P4", "P5"]);
    }
}
