//! Email over SMTP with STARTTLS: one plain-text message per recipient, its subject the
//! notification's title, its `Message-ID` derived from the notification id (mail clients thread
//! and some relays drop repeats by it).

use std::time::SystemTime;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use rustls_pki_types::ServerName;
use serde::{Deserialize, Serialize};

use super::smtp::{self, Envelope, SmtpClient};
use super::text::{bounded_key, one_line, truncate};
use super::{Integration, Notification, Secret, SendError, SendFuture};

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Upgrade with STARTTLS before anything else; refuse a server that does not offer it.
    #[default]
    Starttls,
    /// Plain text: only for a relay on the loopback interface.
    None,
}

/// Email through an SMTP submission server (`type = "email"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailConfig {
    /// Recipient addresses; each is an endpoint. Required.
    pub endpoints: Vec<String>,
    /// SMTP server host name; its certificate must name it. Required.
    pub host: String,
    /// Submission port. Default 587.
    pub port: u16,
    /// Sender address. Required.
    pub from: String,
    /// `starttls` (default) or `none` (only with a loopback `host`).
    pub tls: SmtpTls,
    /// User for AUTH PLAIN (after STARTTLS); empty means no authentication. Default empty.
    pub username: String,
    /// Password for AUTH PLAIN. Default empty.
    pub password: Secret,
    /// PEM file of CA certificates to trust besides the public roots (a private CA or a
    /// self-signed relay). Default empty.
    pub ca_file: String,
    /// Name this client gives in EHLO. Default `localhost`.
    pub helo_name: String,
    /// Put before every subject. Default `[secpipe] `.
    pub subject_prefix: String,
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            host: String::new(),
            port: 587,
            from: String::new(),
            tls: SmtpTls::Starttls,
            username: String::new(),
            password: Secret::default(),
            ca_file: String::new(),
            helo_name: "localhost".into(),
            subject_prefix: "[secpipe] ".into(),
        }
    }
}

pub(crate) struct Email {
    name: String,
    client: SmtpClient,
    from: String,
    recipients: Vec<String>,
    subject_prefix: String,
}

/// A plain `local@domain` address: no display name, no spaces, no brackets.
fn is_address(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>' | '(' | ')' | ',' | ';'))
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl EmailConfig {
    pub(crate) fn build(&self, name: &str) -> Result<Email, String> {
        if self.host.is_empty() {
            return Err("host is required".into());
        }
        if !is_address(&self.from) {
            return Err(format!("from {:?} is not an email address", self.from));
        }
        if let Some((i, bad)) = self
            .endpoints
            .iter()
            .enumerate()
            .find(|(_, e)| !is_address(e))
        {
            return Err(format!("endpoints[{i}] {bad:?} is not an email address"));
        }
        if self.helo_name.is_empty() || !self.helo_name.chars().all(|c| c.is_ascii_graphic()) {
            return Err("helo_name must be a host name".into());
        }
        let tls = match self.tls {
            SmtpTls::None if !is_loopback(&self.host) => {
                return Err("tls = \"none\" is only allowed with a loopback host".into())
            }
            SmtpTls::None if !self.username.is_empty() => {
                return Err("a password is never sent without TLS: set tls = \"starttls\"".into())
            }
            SmtpTls::None => None,
            SmtpTls::Starttls => {
                let pem = if self.ca_file.is_empty() {
                    None
                } else {
                    Some(
                        std::fs::read(&self.ca_file)
                            .map_err(|e| format!("ca_file {}: {e}", self.ca_file))?,
                    )
                };
                let connector = smtp::connector(pem.as_deref())?;
                let server_name = ServerName::try_from(self.host.clone())
                    .map_err(|e| format!("host {:?}: {e}", self.host))?;
                Some((connector, server_name))
            }
        };
        let credentials = (!self.username.is_empty())
            .then(|| (self.username.clone(), self.password.expose().to_string()));
        Ok(Email {
            name: name.to_string(),
            client: SmtpClient {
                host: self.host.clone(),
                port: self.port,
                helo: self.helo_name.clone(),
                tls,
                credentials,
            },
            from: self.from.clone(),
            recipients: self.endpoints.clone(),
            subject_prefix: self.subject_prefix.clone(),
        })
    }
}

/// A header value: one line, ASCII as it is, otherwise RFC 2047 encoded words folded onto
/// continuation lines.
pub(crate) fn encode_header(value: &str) -> String {
    let value = one_line(value);
    if value.is_ascii() && value.len() <= 900 {
        return value;
    }
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in value.chars() {
        // 45 bytes of UTF-8 make 60 of base64: each encoded word stays under 75 characters.
        if chunk.len() + c.len_utf8() > 45 {
            words.push(format!("=?UTF-8?B?{}?=", BASE64.encode(&chunk)));
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(format!("=?UTF-8?B?{}?=", BASE64.encode(&chunk)));
    }
    words.join("\r\n ")
}

/// The body with its transfer encoding: `7bit` when it is short-lined ASCII, else base64.
pub(crate) fn encode_body(text: &str) -> (&'static str, String) {
    let crlf = text.replace("\r\n", "\n").replace('\n', "\r\n");
    if crlf.is_ascii() && crlf.split("\r\n").all(|l| l.len() <= 998) {
        return ("7bit", crlf);
    }
    let b64 = BASE64.encode(text.as_bytes());
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    ("base64", lines.join("\r\n"))
}

impl Email {
    /// The whole message (header and body) for `n` to `to`.
    pub(crate) fn message(&self, n: &Notification, to: &str, now: SystemTime) -> String {
        let (subject, text) = match n {
            Notification::Raw(r) => {
                match (r.payload["subject"].as_str(), r.payload["body"].as_str()) {
                    (Some(s), Some(b)) => (s.to_string(), b.to_string()),
                    _ => (
                        n.title(),
                        serde_json::to_string_pretty(&r.payload).unwrap_or_default(),
                    ),
                }
            }
            other => (other.title(), other.plain_text()),
        };
        let subject = format!("{}{}", self.subject_prefix, truncate(&subject, 250));
        let id: String = n
            .id()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
            .collect();
        let (encoding, body) = encode_body(&text);
        let mut header = format!(
            "Date: {}\r\nFrom: {}\r\nTo: {to}\r\nSubject: {}\r\nMessage-ID: <{}@secpipe>\r\n\
             X-Secpipe-Notification: {}\r\n",
            httpdate::fmt_http_date(now),
            self.from,
            encode_header(&subject),
            bounded_key(&id, 200),
            encode_header(&truncate(n.id(), 200)),
        );
        if let Some(key) = n.dedup_key() {
            header.push_str(&format!(
                "X-Secpipe-Dedup-Key: {}\r\n",
                encode_header(&truncate(key, 200))
            ));
        }
        header.push_str(&format!(
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: {encoding}\r\n\r\n"
        ));
        header + &body + "\r\n"
    }
}

impl Integration for Email {
    fn name(&self) -> &str {
        &self.name
    }

    fn endpoints(&self) -> &[String] {
        &self.recipients
    }

    fn send<'a>(&'a self, endpoint: usize, n: &'a Notification) -> SendFuture<'a> {
        Box::pin(async move {
            let to = self
                .recipients
                .get(endpoint)
                .ok_or_else(|| SendError::Invalid(format!("no endpoint {endpoint}")))?;
            let data = self.message(n, to, SystemTime::now());
            let mail = Envelope {
                from: &self.from,
                to,
                data: &data,
            };
            self.client.send(&mail).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::fixtures::alert;

    fn email() -> Email {
        EmailConfig {
            endpoints: vec!["secops@example.com".into()],
            host: "127.0.0.1".into(),
            from: "secpipe@example.com".into(),
            tls: SmtpTls::None,
            ..Default::default()
        }
        .build("mail")
        .unwrap()
    }

    #[test]
    fn addresses_and_plaintext_relays_are_checked() {
        assert!(is_address("a.b+c@example.com"));
        assert!(!is_address("Alice <a@example.com>"));
        assert!(!is_address("a@"));
        let remote_plain = EmailConfig {
            host: "smtp.example.com".into(),
            from: "a@example.com".into(),
            tls: SmtpTls::None,
            ..Default::default()
        };
        assert!(remote_plain.build("m").is_err());
        let missing_ca = EmailConfig {
            host: "smtp.example.com".into(),
            from: "a@example.com".into(),
            ca_file: "/nonexistent/ca.pem".into(),
            ..Default::default()
        };
        assert!(missing_ca.build("m").err().unwrap().contains("ca_file"));
    }

    #[test]
    fn non_ascii_subjects_are_encoded_words_and_newlines_cannot_inject_headers() {
        let h = encode_header("Zugriff verweigert für „root“\r\nBcc: x@example.com");
        assert!(h.starts_with("=?UTF-8?B?"));
        assert!(h.split("\r\n ").all(|w| w.len() <= 75));
        assert_eq!(encode_header("a\r\nBcc: b"), "a  Bcc: b");
    }

    #[test]
    fn the_message_has_the_headers_a_mail_client_needs() {
        let mut a = alert();
        a.description = "line one\n.line starting with a dot".into();
        let m = email().message(
            &Notification::Alert(a),
            "secops@example.com",
            SystemTime::UNIX_EPOCH,
        );
        let (header, body) = m.split_once("\r\n\r\n").unwrap();
        assert!(header.contains("Subject: [secpipe] [FAIL] CloudFront HTTPS Only on prod-aws"));
        assert!(header.contains("Message-ID: <n-1@secpipe>"));
        assert!(header.contains("Date: Thu, 01 Jan 1970 00:00:00 GMT"));
        assert!(header.contains("Content-Transfer-Encoding: 7bit"));
        assert!(body.contains("\r\n.line starting with a dot"));
        let (encoding, _) = encode_body("é");
        assert_eq!(encoding, "base64");
    }
}
