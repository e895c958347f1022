//! The gateway's settings (section `[gateway]`). They live in the producer library because the
//! [`crate::Ingestor`] reads the redaction policy and the clock skew from them; the HTTP gateway
//! itself is the `secpipe-gateway` crate.
use std::{net::SocketAddr, path::PathBuf};

use secpipe_processors::redact::RedactionConfig;
use serde::{Deserialize, Serialize};

use crate::access::TokenConfig;

/// The gateway's settings (section `[gateway]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Address to listen on. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes; larger requests get 413. Default 4 MiB (a
    /// host-environment telemetry event alone is about 40 KB).
    pub max_body_bytes: usize,
    /// Seconds a client is told to wait (Retry-After) when the broker is unavailable. Default 5.
    pub retry_after_secs: u32,
    /// Events per second per token unless the token sets its own; 0 = unlimited. Default 100000.
    pub rate_limit_per_token: u32,
    /// Callers and their hashed tokens (`[[gateway.tokens]]`). Without any, every request is
    /// refused with 401: there is no anonymous access.
    pub tokens: Vec<TokenConfig>,
    /// Key of the keyed SHA-256 fingerprints (`redacted:<32 hex>`) that replace secrets in
    /// telemetry, at the gateway and in the telemetry processor. Set it: with the default empty
    /// key each process draws a random one, so fingerprints of the same secret differ across
    /// restarts.
    pub redaction_key: String,
    /// What else counts as a secret, on top of the built-in rules (`[gateway.redaction]`).
    pub redaction: RedactionConfig,
    /// How far after the gateway's clock a telemetry event time may be, in seconds; a later
    /// one is refused (400, field `envelope.event_time`). At most a year. Default 86400 (a day).
    pub max_clock_skew_secs: u64,
    /// PEM certificate chain; with `tls_key`, the gateway serves HTTPS (TLS 1.3 only).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 4 * 1024 * 1024,
            retry_after_secs: 5,
            rate_limit_per_token: 100_000,
            tokens: Vec::new(),
            redaction_key: String::new(),
            redaction: RedactionConfig::default(),
            max_clock_skew_secs: 86_400,
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl GatewayConfig {
    /// Longest `max_clock_skew_secs`: a year. Within it a number is a plausible time in at most
    /// one unit (seconds, milliseconds, microseconds, nanoseconds).
    pub const MAX_CLOCK_SKEW_SECS: u64 = 366 * 86_400;

    /// `max_clock_skew_secs` in microseconds, capped at [`Self::MAX_CLOCK_SKEW_SECS`].
    pub fn max_clock_skew_micros(&self) -> i64 {
        let secs = self.max_clock_skew_secs.min(Self::MAX_CLOCK_SKEW_SECS);
        i64::try_from(secs).unwrap_or(i64::MAX) * 1_000_000
    }

    /// Checks the settings that can be wrong on their own.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_clock_skew_secs > Self::MAX_CLOCK_SKEW_SECS {
            return Err(format!(
                "gateway.max_clock_skew_secs: expected at most {} (a year)",
                Self::MAX_CLOCK_SKEW_SECS
            ));
        }
        self.redaction
            .validate()
            .map_err(|e| format!("gateway.redaction: {e}"))
    }
}
