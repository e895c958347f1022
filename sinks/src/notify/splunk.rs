//! Splunk HTTP Event Collector: `POST /services/collector/event` with
//! `Authorization: Splunk <token>` and the notification as the event, time-stamped with when it
//! was raised so that a retried delivery is indexed at the right time.

use reqwest::Url;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::text::{mask, redact_url};
use super::{http, Integration, Notification, Secret, SendError, SendFuture};

/// Splunk HEC (`type = "splunk"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SplunkConfig {
    /// HEC base URLs, e.g. `https://splunk.example.com:8088`. Required.
    pub endpoints: Vec<String>,
    /// The HEC token. Required.
    pub token: Secret,
    /// Events' `sourcetype`. Default `secpipe:notification`.
    pub sourcetype: String,
    /// Events' `source`. Default `secpipe`.
    pub source: String,
    /// Index to write to; empty means the token's default index. Default empty.
    pub index: String,
}

impl Default for SplunkConfig {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            token: Secret::default(),
            sourcetype: "secpipe:notification".into(),
            source: "secpipe".into(),
            index: String::new(),
        }
    }
}

pub(crate) struct Splunk {
    name: String,
    client: reqwest::Client,
    urls: Vec<Url>,
    shown: Vec<String>,
    authorization: String,
    sourcetype: String,
    source: String,
    index: String,
}

impl SplunkConfig {
    pub(crate) fn build(&self, name: &str, client: &reqwest::Client) -> Result<Splunk, String> {
        if self.token.is_empty() || !self.token.expose().chars().all(|c| c.is_ascii_graphic()) {
            return Err("token is missing or not a HEC token".into());
        }
        let urls = self
            .endpoints
            .iter()
            .map(|e| http::parse_url(e).map(|u| http::join(&u, "/services/collector/event")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Splunk {
            name: name.to_string(),
            client: client.clone(),
            shown: urls
                .iter()
                .map(|u| format!("{} (token {})", redact_url(u), mask(self.token.expose())))
                .collect(),
            urls,
            authorization: format!("Splunk {}", self.token.expose()),
            sourcetype: self.sourcetype.clone(),
            source: self.source.clone(),
            index: self.index.clone(),
        })
    }
}

impl Splunk {
    /// The HEC event for `n`, `now_ms` standing in for an unknown raise time.
    pub(crate) fn event(&self, n: &Notification, now_ms: u64) -> Value {
        if let Notification::Raw(r) = n {
            // A payload that is already a HEC event goes as it is; anything else is its event.
            return if r.payload.get("event").is_some() {
                r.payload.clone()
            } else {
                json!({"event": r.payload, "sourcetype": self.sourcetype, "source": self.source})
            };
        }
        let at = n.raised_at_ms().unwrap_or(now_ms);
        let mut event = json!({
            // HEC takes epoch seconds with a fraction.
            "time": at as f64 / 1000.0,
            "sourcetype": self.sourcetype,
            "source": self.source,
            "event": {
                "title": n.title(),
                "severity": n.severity(),
                "notification": n,
            },
        });
        if !n.account().is_empty() {
            event["host"] = json!(n.account());
        }
        if !self.index.is_empty() {
            event["index"] = json!(self.index);
        }
        event
    }
}

impl Integration for Splunk {
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
            let body = self.event(n, super::text::now_ms());
            let request = self
                .client
                .post(url.clone())
                .header("authorization", &self.authorization)
                .json(&body);
            http::send(request).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::fixtures::event;

    #[test]
    fn the_event_time_is_when_it_was_raised() {
        let cfg = SplunkConfig {
            endpoints: vec!["http://127.0.0.1:8088".into()],
            token: "00000000-0000-0000-0000-000000000000".into(),
            index: "security".into(),
            ..Default::default()
        };
        let splunk = cfg.build("splunk", &reqwest::Client::new()).unwrap();
        assert_eq!(
            splunk.urls[0].as_str(),
            "http://127.0.0.1:8088/services/collector/event"
        );
        assert!(!splunk.shown[0].contains("0000-0000-0000"));
        let v = splunk.event(&Notification::Event(event()), 0);
        assert_eq!(v["time"], 1_440_938_160.0);
        assert_eq!(v["index"], "security");
        assert_eq!(v["event"]["notification"]["action"], "ConsoleLogin");
        assert!(SplunkConfig::default()
            .build("s", &reqwest::Client::new())
            .is_err());
    }
}
