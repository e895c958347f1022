//! AWS SNS `Publish` (query API, form-encoded, SigV4-signed): to a topic the full text with a
//! subject; to a phone number a short form that fits one SMS.

use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::Url;
use serde::{Deserialize, Serialize};

use super::sigv4::{self, uri_encode, AwsCredentials, SigV4Request};
use super::text::{amz_date, one_line, truncate};
use super::{http, Integration, Notification, Secret, SendError, SendFuture};

/// SNS allows subjects under 100 characters and messages up to 256 KB; the body is cut well
/// below that in characters so that multi-byte text fits too.
const MAX_SUBJECT: usize = 99;
const MAX_MESSAGE: usize = 60_000;
const CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=utf-8";

/// AWS SNS (`type = "sns"`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SnsConfig {
    /// Topic ARNs (`arn:aws:sns:us-east-1:123456789012:alerts`) or phone numbers in E.164
    /// (`+15555550100`). Required.
    pub endpoints: Vec<String>,
    /// AWS region of the topics. Required.
    pub region: String,
    /// Access key id. Required.
    pub access_key_id: String,
    /// Secret access key. Required.
    pub secret_access_key: Secret,
    /// Session token, with temporary credentials. Default empty.
    pub session_token: Secret,
    /// API URL; empty means `https://sns.<region>.amazonaws.com`. Default empty.
    pub endpoint_url: String,
}

/// Where one SNS endpoint publishes.
enum Destination {
    Topic(String),
    Phone(String),
}

pub(crate) struct Sns {
    name: String,
    client: reqwest::Client,
    url: Url,
    host: String,
    region: String,
    credentials: AwsCredentials,
    destinations: Vec<Destination>,
    shown: Vec<String>,
}

fn is_phone(s: &str) -> bool {
    s.strip_prefix('+')
        .is_some_and(|d| (8..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
}

fn is_topic_arn(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "sns"
        && parts[3..].iter().all(|p| !p.is_empty())
}

impl SnsConfig {
    pub(crate) fn build(&self, name: &str, client: &reqwest::Client) -> Result<Sns, String> {
        if self.region.is_empty()
            || !self
                .region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(format!("region {:?} is not an AWS region", self.region));
        }
        if self.access_key_id.is_empty() || self.secret_access_key.is_empty() {
            return Err("access_key_id and secret_access_key are required".into());
        }
        let url = if self.endpoint_url.is_empty() {
            format!("https://sns.{}.amazonaws.com/", self.region)
        } else {
            self.endpoint_url.clone()
        };
        let url = http::parse_url(&url)?;
        let mut host = url.host_str().unwrap_or_default().to_string();
        if let Some(port) = url.port() {
            host.push_str(&format!(":{port}"));
        }
        let mut destinations = Vec::new();
        let mut shown = Vec::new();
        for (i, e) in self.endpoints.iter().enumerate() {
            if is_topic_arn(e) {
                destinations.push(Destination::Topic(e.clone()));
                shown.push(e.clone());
            } else if is_phone(e) {
                destinations.push(Destination::Phone(e.clone()));
                shown.push(format!(
                    "sms:{}{}",
                    &e[..2],
                    "*".repeat(e.len() - 6) + &e[e.len() - 4..]
                ));
            } else {
                return Err(format!(
                    "endpoints[{i}] is neither an SNS topic ARN nor an E.164 phone number"
                ));
            }
        }
        let token = self.session_token.expose();
        Ok(Sns {
            name: name.to_string(),
            client: client.clone(),
            url,
            host,
            region: self.region.clone(),
            credentials: AwsCredentials {
                access_key_id: self.access_key_id.clone(),
                secret_access_key: self.secret_access_key.expose().to_string(),
                session_token: (!token.is_empty()).then(|| token.to_string()),
            },
            destinations,
            shown,
        })
    }
}

/// The Publish parameters for `n` to `destination`.
fn publish_params(n: &Notification, destination: &Destination) -> Vec<(&'static str, String)> {
    let mut params = vec![("Action", "Publish".to_string())];
    match destination {
        Destination::Phone(number) => {
            params.push(("PhoneNumber", number.clone()));
            params.push(("Message", n.short_text()));
        }
        Destination::Topic(arn) => {
            params.push(("TopicArn", arn.clone()));
            let message = match n {
                Notification::Raw(r) => match &r.payload {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                },
                other => other.plain_text(),
            };
            params.push(("Message", truncate(&message, MAX_MESSAGE).into_owned()));
            if !matches!(n, Notification::Raw(_)) {
                let subject = one_line(&n.title());
                params.push((
                    "Subject",
                    truncate(subject.trim(), MAX_SUBJECT).into_owned(),
                ));
            }
        }
    }
    params.push(("Version", "2010-03-31".to_string()));
    params
}

/// SNS answers throttling with 400 and `<Code>Throttling</Code>`: retry those too.
fn retry_throttling(e: SendError) -> SendError {
    match e {
        SendError::Status {
            status,
            retry_after,
            body,
            retryable: false,
        } if body.contains("<Code>Throttling</Code>")
            || body.contains("<Code>ThrottlingException</Code>") =>
        {
            SendError::Status {
                status,
                retry_after,
                body,
                retryable: true,
            }
        }
        other => other,
    }
}

impl Integration for Sns {
    fn name(&self) -> &str {
        &self.name
    }

    fn endpoints(&self) -> &[String] {
        &self.shown
    }

    fn send<'a>(&'a self, endpoint: usize, n: &'a Notification) -> SendFuture<'a> {
        Box::pin(async move {
            let destination = self
                .destinations
                .get(endpoint)
                .ok_or_else(|| SendError::Invalid(format!("no endpoint {endpoint}")))?;
            let body = publish_params(n, destination)
                .iter()
                .map(|(k, v)| format!("{k}={}", uri_encode(v)))
                .collect::<Vec<_>>()
                .join("&");
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let date = amz_date(now);
            let signed = sigv4::sign(
                &SigV4Request {
                    method: "POST",
                    host: &self.host,
                    path: self.url.path(),
                    query: &[],
                    headers: &[("content-type", CONTENT_TYPE)],
                    payload: body.as_bytes(),
                    region: &self.region,
                    service: "sns",
                    amz_date: &date,
                },
                &self.credentials,
            );
            let mut request = self
                .client
                .post(self.url.clone())
                .header("host", &self.host)
                .header("content-type", CONTENT_TYPE)
                .header("x-amz-date", &date)
                .header("authorization", signed.authorization);
            if let Some(token) = &self.credentials.session_token {
                request = request.header("x-amz-security-token", token);
            }
            http::send(request.body(body))
                .await
                .map_err(retry_throttling)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::fixtures::alert;

    #[test]
    fn endpoints_are_topic_arns_or_phone_numbers() {
        assert!(is_topic_arn("arn:aws:sns:us-east-1:123456789012:alerts"));
        assert!(is_topic_arn(
            "arn:aws-cn:sns:cn-north-1:123456789012:alerts"
        ));
        assert!(!is_topic_arn("arn:aws:sqs:us-east-1:123456789012:q"));
        assert!(is_phone("+15555550100"));
        assert!(!is_phone("15555550100"));
        assert!(!is_phone("+1555"));
        let cfg = SnsConfig {
            endpoints: vec!["+15555550100".into()],
            region: "us-east-1".into(),
            access_key_id: "AK".into(),
            secret_access_key: "s".into(),
            ..Default::default()
        };
        let sns = cfg.build("sns", &reqwest::Client::new()).unwrap();
        assert_eq!(sns.shown, ["sms:+1******0100"]);
        assert_eq!(sns.url.as_str(), "https://sns.us-east-1.amazonaws.com/");
        let bad = SnsConfig {
            endpoints: vec!["alerts".into()],
            ..cfg
        };
        assert!(bad.build("sns", &reqwest::Client::new()).is_err());
    }

    #[test]
    fn a_phone_gets_the_sms_form_and_a_topic_the_full_text() {
        let n = Notification::Alert(alert());
        let sms = publish_params(&n, &Destination::Phone("+15555550100".into()));
        let message = &sms.iter().find(|(k, _)| *k == "Message").unwrap().1;
        assert!(message.chars().count() <= 140);
        assert!(!sms.iter().any(|(k, _)| *k == "Subject"));
        let topic = publish_params(&n, &Destination::Topic("arn:aws:sns:r:1:t".into()));
        let subject = &topic.iter().find(|(k, _)| *k == "Subject").unwrap().1;
        assert_eq!(subject, "[FAIL] CloudFront HTTPS Only on prod-aws");
        assert_eq!(
            topic.last().unwrap(),
            &("Version", "2010-03-31".to_string())
        );
    }

    #[test]
    fn sns_throttling_is_retryable() {
        let e = retry_throttling(SendError::Status {
            status: 400,
            retry_after: None,
            body: "<ErrorResponse><Error><Code>Throttling</Code></Error></ErrorResponse>".into(),
            retryable: false,
        });
        assert!(e.is_retryable());
    }
}
