//! Slack incoming webhooks: Block Kit blocks with a `text` fallback (notifications and
//! screen readers show it), kept within Slack's documented limits: 50 blocks, 150 characters
//! of header, 3000 per section text, 10 fields of 2000 each.

use reqwest::Url;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::text::{redact_url, truncate};
use super::{http, Integration, Notification, SendError, SendFuture};

const MAX_BLOCKS: usize = 50;
const MAX_HEADER: usize = 150;
const MAX_SECTION: usize = 3000;
const MAX_FIELDS: usize = 10;
const MAX_FIELD: usize = 2000;

/// A Slack incoming webhook (`type = "slack"`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlackConfig {
    /// Incoming webhook URLs (`https://hooks.slack.com/services/...`). Required.
    pub endpoints: Vec<String>,
}

pub(crate) struct Slack {
    name: String,
    client: reqwest::Client,
    urls: Vec<Url>,
    shown: Vec<String>,
}

impl SlackConfig {
    pub(crate) fn build(&self, name: &str, client: &reqwest::Client) -> Result<Slack, String> {
        let urls = self
            .endpoints
            .iter()
            .map(|e| http::parse_url(e))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Slack {
            name: name.to_string(),
            client: client.clone(),
            shown: urls.iter().map(redact_url).collect(),
            urls,
        })
    }
}

/// `s` escaped for mrkdwn (`&`, `<`, `>`) and cut to `max` characters without splitting an
/// escape sequence.
pub(crate) fn mrkdwn(s: &str, max: usize) -> String {
    let escaped = s
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    if escaped.chars().count() <= max {
        return escaped;
    }
    let mut cut: String = escaped.chars().take(max.saturating_sub(1)).collect();
    if let Some(amp) = cut.rfind('&') {
        if !cut[amp..].contains(';') {
            cut.truncate(amp);
        }
    }
    cut.push('…');
    cut
}

fn section(text: String) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})
}

/// The message for a notification: header, description, facts, resources, original, footer.
pub(crate) fn message(n: &Notification) -> Value {
    let title = n.title();
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": truncate(&title, MAX_HEADER), "emoji": true}
    })];
    if !n.description().is_empty() {
        blocks.push(section(mrkdwn(n.description(), MAX_SECTION)));
    }
    let fields: Vec<Value> = n
        .facts()
        .into_iter()
        .take(MAX_FIELDS)
        .map(|(label, value)| {
            let text = format!("*{label}*\n{}", mrkdwn(&value, MAX_FIELD - label.len() - 3));
            json!({"type": "mrkdwn", "text": text})
        })
        .collect();
    if !fields.is_empty() {
        blocks.push(json!({"type": "section", "fields": fields}));
    }
    if let Some(url) = n.url().filter(|u| !u.contains(['|', '>', '<'])) {
        blocks.push(section(format!("<{url}|Open the full report>")));
    }
    // The footer and a possible "and N more" line are always kept; resources fill the rest.
    let room = MAX_BLOCKS - blocks.len() - 2;
    let (resource_blocks, left_out) = resource_sections(n.resources(), room);
    blocks.extend(resource_blocks);
    if left_out > 0 {
        blocks.push(json!({"type": "context", "elements": [
            {"type": "mrkdwn", "text": format!("…and {left_out} more resources")}
        ]}));
    }
    if let Notification::Event(e) = n {
        if !e.original.is_null() && blocks.len() < MAX_BLOCKS - 1 {
            let original = serde_json::to_string_pretty(&e.original).unwrap_or_default();
            // Inside a code block only `&<>` matter; keep room for the fences.
            blocks.push(section(format!(
                "```{}```",
                mrkdwn(&original, MAX_SECTION - 6)
            )));
        }
    }
    let mut footer = format!("secpipe · notification {}", n.id());
    if let Some(key) = n.dedup_key() {
        footer.push_str(&format!(" · dedup key {key}"));
    }
    blocks.push(json!({"type": "context", "elements": [
        {"type": "mrkdwn", "text": mrkdwn(&footer, MAX_SECTION)}
    ]}));
    let mut fallback = title;
    if !n.description().is_empty() {
        fallback.push_str(": ");
        fallback.push_str(n.description());
    }
    json!({"text": mrkdwn(&fallback, MAX_SECTION), "blocks": blocks})
}

/// Resources as bullet lines packed into sections of at most 3000 characters, in at most
/// `room` sections; returns the sections and how many resources did not fit.
fn resource_sections(resources: &[String], room: usize) -> (Vec<Value>, usize) {
    if room == 0 || resources.is_empty() {
        return (Vec::new(), resources.len());
    }
    let mut sections = Vec::new();
    let mut current = String::from("*Affected resources*");
    let mut chars = current.len();
    let mut placed = 0;
    for r in resources {
        let line = format!("• {}", mrkdwn(r, 500));
        let line_chars = line.chars().count() + 1;
        if chars + line_chars > MAX_SECTION {
            if sections.len() + 1 == room {
                break;
            }
            sections.push(section(std::mem::take(&mut current)));
            chars = 0;
        }
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(&line);
        chars += line_chars;
        placed += 1;
    }
    sections.push(section(current));
    (sections, resources.len() - placed)
}

impl Integration for Slack {
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
                Notification::Raw(r) => r.payload.clone(),
                other => message(other),
            };
            http::send(self.client.post(url.clone()).json(&body)).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::fixtures::{alert, event};

    fn texts(v: &Value) -> Vec<String> {
        let mut out = Vec::new();
        for b in v["blocks"].as_array().unwrap() {
            if let Some(t) = b["text"]["text"].as_str() {
                out.push(t.to_string());
            }
            for f in b["fields"].as_array().into_iter().flatten() {
                out.push(f["text"].as_str().unwrap().to_string());
            }
        }
        out
    }

    #[test]
    fn escaping_never_leaves_half_an_entity() {
        assert_eq!(mrkdwn("a<b>&c", 100), "a&lt;b&gt;&amp;c");
        let cut = mrkdwn(&"&".repeat(10), 7);
        assert_eq!(cut, "&amp;…");
        assert!(mrkdwn(&"é".repeat(5000), 3000).chars().count() <= 3000);
    }

    #[test]
    fn a_huge_alert_stays_within_slacks_limits() {
        let mut a = alert();
        a.title = "T".repeat(400);
        a.description = "<d>".repeat(4000);
        a.resources = (0..5000)
            .map(|i| format!("arn:aws:s3:::bucket-with-a-rather-long-name-{i}"))
            .collect();
        let v = message(&Notification::Alert(a));
        let blocks = v["blocks"].as_array().unwrap();
        assert!(blocks.len() <= MAX_BLOCKS, "{} blocks", blocks.len());
        assert!(blocks[0]["text"]["text"].as_str().unwrap().chars().count() <= MAX_HEADER);
        for t in texts(&v) {
            assert!(
                t.chars().count() <= MAX_SECTION,
                "{} chars",
                t.chars().count()
            );
        }
        assert!(v["text"].as_str().unwrap().chars().count() <= MAX_SECTION);
        let last_context = blocks[blocks.len() - 2]["elements"][0]["text"]
            .as_str()
            .unwrap();
        assert!(last_context.contains("more resources"), "{last_context}");
    }

    #[test]
    fn an_event_shows_its_facts_and_original() {
        let v = message(&Notification::Event(event()));
        let all = texts(&v).join("\n");
        for needle in [
            "ConsoleLogin",
            "203.0.113.7",
            "us-east-1",
            "root",
            "eventName",
        ] {
            assert!(all.contains(needle), "missing {needle}");
        }
        assert!(v["text"]
            .as_str()
            .unwrap()
            .starts_with("[FAIL] ConsoleLogin"));
    }
}
