//! Generic webhook: the notification as JSON, signed as Standard Webhooks specify
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>` over
//! `"{id}.{timestamp}.{body}"`). The id is the notification's, so a receiver that remembers ids
//! drops a redelivery.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use reqwest::Url;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::text::{now_ms, redact_url, rfc3339};
use super::{http, Integration, Notification, Secret, SendError, SendFuture};

/// A generic JSON webhook (`type = "webhook"`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// Receiver URLs. Required.
    pub endpoints: Vec<String>,
    /// Signing secret: `whsec_` then the base64 key, as Standard Webhooks issue them. When
    /// empty, requests carry `webhook-id` and `webhook-timestamp` but no signature. Default empty.
    pub secret: Secret,
}

pub(crate) struct Webhook {
    name: String,
    client: reqwest::Client,
    urls: Vec<Url>,
    shown: Vec<String>,
    key: Option<Vec<u8>>,
}

impl WebhookConfig {
    pub(crate) fn build(&self, name: &str, client: &reqwest::Client) -> Result<Webhook, String> {
        let urls = self
            .endpoints
            .iter()
            .map(|e| http::parse_url(e))
            .collect::<Result<Vec<_>, _>>()?;
        let key = if self.secret.is_empty() {
            None
        } else {
            Some(decode_secret(self.secret.expose())?)
        };
        Ok(Webhook {
            name: name.to_string(),
            client: client.clone(),
            shown: urls.iter().map(redact_url).collect(),
            urls,
            key,
        })
    }
}

/// The key bytes of a `whsec_<base64>` secret.
fn decode_secret(secret: &str) -> Result<Vec<u8>, String> {
    let b64 = secret
        .strip_prefix("whsec_")
        .ok_or("secret must start with whsec_")?;
    let key = BASE64
        .decode(b64)
        .map_err(|e| format!("secret is not whsec_ and base64: {e}"))?;
    if key.is_empty() {
        return Err("secret is empty".into());
    }
    Ok(key)
}

/// The `webhook-signature` value: `v1,` and the base64 HMAC-SHA256 of `"{id}.{timestamp}.{body}"`.
pub fn sign(key: &[u8], id: &str, timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

/// The JSON body: a raw payload as it is, anything else in the Standard Webhooks envelope.
pub(crate) fn body(n: &Notification, now_ms: u64) -> Result<Vec<u8>, SendError> {
    let value = match n {
        Notification::Raw(r) => r.payload.clone(),
        other => serde_json::json!({
            "type": format!("secpipe.{}", other.kind().as_str()),
            "timestamp": rfc3339(now_ms),
            "data": other,
        }),
    };
    serde_json::to_vec(&value).map_err(|e| SendError::Invalid(e.to_string()))
}

impl Integration for Webhook {
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
            let now = now_ms();
            let body = body(n, now)?;
            let timestamp = now / 1000;
            let mut request = self
                .client
                .post(url.clone())
                .header("content-type", "application/json")
                .header("webhook-id", n.id())
                .header("webhook-timestamp", timestamp.to_string());
            if let Some(key) = &self.key {
                request = request.header("webhook-signature", sign(key, n.id(), timestamp, &body));
            }
            http::send(request.body(body)).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification's reference libraries.
        let key = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn secrets_must_be_whsec_base64() {
        assert!(decode_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(decode_secret("whsec_!!!").is_err());
        assert!(decode_secret("whsec_").is_err());
    }

    #[test]
    fn notifications_travel_in_an_envelope_and_raw_payloads_as_they_are() {
        let n = Notification::Alert(crate::notify::fixtures::alert());
        let v: serde_json::Value = serde_json::from_slice(&body(&n, 0).unwrap()).unwrap();
        assert_eq!(v["type"], "secpipe.alert");
        assert_eq!(v["timestamp"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["data"]["dedup_key"], "cloudfront-https/prod-aws");
        let raw = Notification::Raw(crate::notify::RawMessage {
            id: "r".into(),
            integration: "w".into(),
            endpoint: 0,
            payload: serde_json::json!({"x": 1}),
        });
        assert_eq!(body(&raw, 0).unwrap(), br#"{"x":1}"#);
    }
}
