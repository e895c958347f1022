//! Microsoft Teams through a Workflows ("When a Teams webhook request is received") URL: a
//! message whose one attachment is an Adaptive Card. Teams refuses messages over about 28 KB,
//! so long texts and resource lists are cut.

use reqwest::Url;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::text::{redact_url, truncate};
use super::{http, Integration, Notification, SendError, SendFuture};

/// The attachment content type Teams requires for an Adaptive Card.
pub(crate) const ADAPTIVE_CARD: &str = "application/vnd.microsoft.card.adaptive";
const MAX_TEXT: usize = 4000;
const MAX_RESOURCES: usize = 50;

/// A Teams workflow webhook (`type = "teams"`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TeamsConfig {
    /// Workflow trigger URLs (they carry their `sig` secret in the query). Required.
    pub endpoints: Vec<String>,
}

pub(crate) struct Teams {
    name: String,
    client: reqwest::Client,
    urls: Vec<Url>,
    shown: Vec<String>,
}

impl TeamsConfig {
    pub(crate) fn build(&self, name: &str, client: &reqwest::Client) -> Result<Teams, String> {
        let urls = self
            .endpoints
            .iter()
            .map(|e| http::parse_url(e))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Teams {
            name: name.to_string(),
            client: client.clone(),
            shown: urls.iter().map(redact_url).collect(),
            urls,
        })
    }
}

fn text_block(text: &str) -> Value {
    json!({"type": "TextBlock", "text": truncate(text, MAX_TEXT), "wrap": true})
}

/// The card's body for a notification.
pub(crate) fn card(n: &Notification) -> Value {
    let color = match n {
        Notification::Alert(a) if a.resolved => "Good",
        _ if n.severity() >= super::Severity::High => "Attention",
        _ => "Warning",
    };
    let mut body = vec![json!({
        "type": "TextBlock", "text": truncate(&n.title(), 500), "size": "Large",
        "weight": "Bolder", "wrap": true, "color": color
    })];
    if !n.description().is_empty() {
        body.push(text_block(n.description()));
    }
    let facts: Vec<Value> = n
        .facts()
        .into_iter()
        .map(|(title, value)| json!({"title": title, "value": truncate(&value, 500)}))
        .collect();
    if !facts.is_empty() {
        body.push(json!({"type": "FactSet", "facts": facts}));
    }
    let resources = n.resources();
    if !resources.is_empty() {
        let mut list: Vec<String> = resources
            .iter()
            .take(MAX_RESOURCES)
            .map(|r| format!("- {}", truncate(r, 200)))
            .collect();
        if resources.len() > MAX_RESOURCES {
            list.push(format!("- …and {} more", resources.len() - MAX_RESOURCES));
        }
        body.push(json!({"type": "TextBlock", "text": "Affected resources", "weight": "Bolder"}));
        body.push(text_block(&list.join("\n")));
    }
    if let Notification::Event(e) = n {
        if !e.original.is_null() {
            let original = serde_json::to_string_pretty(&e.original).unwrap_or_default();
            let mut block = text_block(&original);
            block["fontType"] = json!("Monospace");
            body.push(block);
        }
    }
    let mut footer = format!("secpipe · notification {}", n.id());
    if let Some(key) = n.dedup_key() {
        footer.push_str(&format!(" · dedup key {key}"));
    }
    body.push(json!({"type": "TextBlock", "text": footer, "isSubtle": true, "size": "Small", "wrap": true}));
    let mut card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
        "msteams": {"width": "Full"},
    });
    if let Some(url) = n.url() {
        card["actions"] =
            json!([{"type": "Action.OpenUrl", "title": "Open the full report", "url": url}]);
    }
    card
}

/// The message a workflow webhook takes: one Adaptive Card attachment.
pub(crate) fn message(card: Value) -> Value {
    json!({
        "type": "message",
        "attachments": [{"contentType": ADAPTIVE_CARD, "contentUrl": null, "content": card}]
    })
}

impl Integration for Teams {
    fn name(&self) -> &str {
        &self.name
    }

    fn endpoints(&self) -> &[String] {
        &self.shown
    }

    fn send<'a>(&'a self, endpoint: usize, n: &'a Notification) -> SendFuture<'a> {
        Box::pin(async move {
            let url = self
                .urls
                .get(endpoint)
                .ok_or_else(|| SendError::Invalid(format!("no endpoint {endpoint}")))?;
            let body = match n {
                // A raw payload that is already a message goes as it is; a bare card is wrapped.
                Notification::Raw(r) if r.payload["type"] == "AdaptiveCard" => {
                    message(r.payload.clone())
                }
                Notification::Raw(r) => r.payload.clone(),
                other => message(card(other)),
            };
            http::send(self.client.post(url.clone()).json(&body)).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::fixtures::alert;

    #[test]
    fn a_long_resource_list_is_cut_and_counted() {
        let mut a = alert();
        a.resources = (0..120).map(|i| format!("r{i}")).collect();
        let c = card(&Notification::Alert(a));
        let body = c["body"].as_array().unwrap();
        let list = body
            .iter()
            .find_map(|b| b["text"].as_str().filter(|t| t.starts_with("- r0")))
            .unwrap();
        assert_eq!(list.lines().count(), MAX_RESOURCES + 1);
        assert!(list.ends_with("…and 70 more"));
        assert!(serde_json::to_vec(&message(c)).unwrap().len() < 28_000);
    }

    #[test]
    fn a_resolution_is_shown_in_green() {
        let mut a = alert();
        a.resolved = true;
        let c = card(&Notification::Alert(a));
        assert_eq!(c["body"][0]["color"], "Good");
        assert!(c["body"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("[RESOLVED]"));
    }
}
