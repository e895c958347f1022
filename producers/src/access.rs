//! Who may call the gateway: bearer tokens, stored in config only as SHA-256 hashes, each with a
//! role and the kinds of event it may write.
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a token holder is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Scan tools and agents: write events.
    Producer,
    /// Analysts: read (ClickHouse, APIs for analysts); no writes.
    Analyst,
    /// Administrators: everything, including the admin-events API.
    Admin,
}

/// The kinds of event the gateway accepts; a token lists the ones it may write.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// `POST /track`.
    ScanReport,
    /// `POST /v1/sarif`.
    Sarif,
    /// `POST /v1/scan-failures`.
    ScanFailure,
    /// `POST /v1/telemetry`.
    Telemetry,
}

impl EventKind {
    pub const ALL: [EventKind; 4] = [
        EventKind::ScanReport,
        EventKind::Sarif,
        EventKind::ScanFailure,
        EventKind::Telemetry,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ScanReport => "scan-report",
            EventKind::Sarif => "sarif",
            EventKind::ScanFailure => "scan-failure",
            EventKind::Telemetry => "telemetry",
        }
    }
}

/// One caller's token (a `[[gateway.tokens]]` entry).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Name of the caller, used in logs and rate limiting (e.g. `ci-scanner`).
    pub name: String,
    /// Lower-case hex SHA-256 of the token; the token itself is never stored.
    /// `secpipe token new` prints a token and its hash.
    pub sha256: String,
    /// `producer` (default), `analyst` or `admin`.
    #[serde(default = "default_role")]
    pub role: Role,
    /// Kinds of event this token may write; empty means every kind (producers and admins).
    #[serde(default)]
    pub kinds: Vec<EventKind>,
    /// Events per second this token may send (a burst of one second's worth is allowed);
    /// 0 means the gateway-wide `rate_limit_per_token`.
    #[serde(default)]
    pub rate_per_sec: u32,
}

fn default_role() -> Role {
    Role::Producer
}

/// Lower-case hex SHA-256 of a token.
pub fn hash_token(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// A caller the gateway recognised.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
    kinds: Vec<EventKind>,
    pub rate_per_sec: u32,
}

impl Caller {
    /// May this caller write events of `kind`?
    pub fn may_write(&self, kind: EventKind) -> bool {
        match self.role {
            Role::Analyst => false,
            Role::Producer | Role::Admin => self.kinds.is_empty() || self.kinds.contains(&kind),
        }
    }

    /// May this caller read administrative events?
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// Why a request was not authenticated or not allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization: Bearer` header (401).
    Missing,
    /// A token that matches no configured hash (401).
    Unknown,
    /// A known token without the right to this action (403).
    Forbidden(String),
}

/// Looks tokens up by hash.
#[derive(Debug, Clone)]
pub struct Authenticator {
    by_hash: std::collections::HashMap<String, Caller>,
}

impl Authenticator {
    pub fn new(tokens: &[TokenConfig], default_rate: u32) -> Self {
        let by_hash = tokens
            .iter()
            .map(|t| {
                (
                    t.sha256.to_ascii_lowercase(),
                    Caller {
                        name: t.name.clone(),
                        role: t.role,
                        kinds: t.kinds.clone(),
                        rate_per_sec: if t.rate_per_sec == 0 {
                            default_rate
                        } else {
                            t.rate_per_sec
                        },
                    },
                )
            })
            .collect();
        Self { by_hash }
    }

    /// The caller of a request with this `Authorization` header value.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<&Caller, AuthError> {
        let value = authorization.ok_or(AuthError::Missing)?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        self.authenticate_token(token)
    }

    /// The caller holding `token` (given in the URL by clients that cannot send headers).
    pub fn authenticate_token(&self, token: &str) -> Result<&Caller, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        self.by_hash
            .get(&hash_token(token))
            .ok_or(AuthError::Unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Vec<TokenConfig> {
        vec![
            TokenConfig {
                name: "ci".into(),
                sha256: hash_token("ci-secret"),
                role: Role::Producer,
                kinds: vec![EventKind::ScanReport, EventKind::Sarif],
                rate_per_sec: 0,
            },
            TokenConfig {
                name: "analyst".into(),
                sha256: hash_token("read-only"),
                role: Role::Analyst,
                kinds: vec![],
                rate_per_sec: 5,
            },
        ]
    }

    #[test]
    fn tokens_are_matched_by_hash_and_rights_checked_per_kind() {
        let auth = Authenticator::new(&tokens(), 100);
        let ci = auth.authenticate(Some("Bearer ci-secret")).unwrap();
        assert_eq!((ci.name.as_str(), ci.rate_per_sec), ("ci", 100));
        assert!(ci.may_write(EventKind::Sarif));
        assert!(!ci.may_write(EventKind::Telemetry));
        let analyst = auth.authenticate(Some("Bearer read-only")).unwrap();
        assert!(!analyst.may_write(EventKind::ScanReport));
        assert!(!analyst.is_admin());
    }

    #[test]
    fn missing_or_unknown_tokens_are_told_apart() {
        let auth = Authenticator::new(&tokens(), 100);
        assert_eq!(auth.authenticate(None).unwrap_err(), AuthError::Missing);
        assert_eq!(
            auth.authenticate(Some("Basic abc")).unwrap_err(),
            AuthError::Missing
        );
        assert_eq!(
            auth.authenticate(Some("Bearer nope")).unwrap_err(),
            AuthError::Unknown
        );
    }

    #[test]
    fn hash_is_lowercase_hex_sha256() {
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
