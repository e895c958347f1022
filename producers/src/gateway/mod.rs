//! The ingest gateway (`secpipe gateway`): HTTP in, Avro records on Kafka out.
//!
//! Every request is authenticated (bearer token, stored hashed), checked against the caller's
//! rights and rate limit, parsed, and answered 2xx only after the broker acknowledged every
//! record it produced. Every rejection is a status with a JSON body saying why.
mod admin_events;
mod admin_page;
mod admin_query;
mod auth;
mod ingest;
mod limits;
mod notify;
mod rejection;
mod rhacs_events;
mod tls;

use std::{future::Future, net::SocketAddr, path::PathBuf, sync::Arc};

use axum::{
    body::Body,
    http::HeaderMap,
    routing::{get, post},
    Router,
};
use secpipe_processors::redact::RedactionConfig;
use serde::{Deserialize, Serialize};

pub use auth::{hash_token, AuthError, Caller, EventKind, Role, TokenConfig};
pub use rejection::Rejection;

use crate::{
    ingest::Ingestor,
    kafka::{EventProducer, Topics},
    scan_settings::{ScanConfig, ScanSettings},
};
use auth::Authenticator;
use limits::RateLimiter;

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

/// Shared state of every request.
pub(crate) struct Gateway {
    ingestor: Ingestor,
    /// Where the admin-events API reads; `None` when the gateway runs without ClickHouse.
    clickhouse: Option<clickhouse::Client>,
    /// The configured admin-event retention (`processors.admin_events.retention_secs`), in
    /// force unless an administrator set another at run time.
    admin_retention_secs: u64,
    /// What `/v1/admin/notify/...` sends with; `None`: those endpoints answer 500.
    notify: Option<secpipe_sinks::notify::NotifyConfig>,
    cfg: GatewayConfig,
    auth: Authenticator,
    limiter: RateLimiter,
}

impl Gateway {
    /// Authenticates the caller and checks it may write `kind`; the token is taken from the URL when one is given there
    /// (`/track/{token}`); such a token is only hashed and compared, never logged.
    fn authorize_with(
        &self,
        headers: &HeaderMap,
        url_token: Option<&str>,
        kind: EventKind,
    ) -> Result<&Caller, Rejection> {
        let caller = match url_token {
            Some(token) => self.auth.authenticate_token(token),
            None => self.auth.authenticate(
                headers
                    .get(axum::http::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok()),
            ),
        }
        .map_err(Rejection::Auth)?;
        if !caller.may_write(kind) {
            return Err(Rejection::Auth(AuthError::Forbidden(format!(
                "token '{}' may not write {} events",
                caller.name,
                kind.as_str()
            ))));
        }
        Ok(caller)
    }

    /// Charges `events` to the caller's rate limit.
    fn charge(&self, caller: &Caller, events: usize) -> Result<(), Rejection> {
        let cost = u32::try_from(events).unwrap_or(u32::MAX);
        self.limiter
            .take(&caller.name, caller.rate_per_sec, cost)
            .map_err(|retry_after| Rejection::RateLimited { retry_after })
    }

    /// Reads the body, refusing more than `max_body_bytes` with 413.
    async fn body(&self, body: Body) -> Result<bytes::Bytes, Rejection> {
        let limit = self.cfg.max_body_bytes;
        axum::body::to_bytes(body, limit).await.map_err(|e| {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                Rejection::TooLarge { limit }
            } else {
                Rejection::invalid("$", format!("cannot read the request body: {e}"))
            }
        })
    }
}

/// Where the admin read APIs read, and the configured admin-event retention.
#[derive(Debug, Clone, Copy)]
pub struct AdminStore<'a> {
    pub clickhouse: &'a secpipe_sinks::clickhouse::ClickHouseConfig,
    /// `processors.admin_events.retention_secs`.
    pub retention_secs: u64,
}

/// What the gateway works with besides its own settings.
pub struct Backends<'a> {
    /// Where ingested records go.
    pub producer: EventProducer,
    pub topics: Topics,
    /// How scan reports are completed (`[scans]`).
    pub scans: &'a ScanConfig,
    /// The admin read APIs' store; `None` without ClickHouse.
    pub admin: Option<AdminStore<'a>>,
    /// What `/v1/admin/notify/...` sends with; `None` without notifications.
    pub notify: Option<&'a secpipe_sinks::notify::NotifyConfig>,
}

/// Builds the gateway's routes.
pub fn router(cfg: &GatewayConfig, backends: Backends<'_>) -> Result<Router, String> {
    let Backends {
        producer,
        topics,
        scans,
        admin,
        notify,
    } = backends;
    if cfg.tokens.is_empty() {
        tracing::warn!("gateway.tokens is empty: every request will be refused with 401");
    }
    let state = Arc::new(Gateway {
        ingestor: Ingestor::new(producer, topics, cfg)
            .map_err(|e| e.to_string())?
            .with_scan_settings(ScanSettings::new(scans)),
        clickhouse: admin.map(|a| a.clickhouse.client()),
        admin_retention_secs: admin.map_or(0, |a| a.retention_secs),
        notify: notify.cloned(),
        auth: Authenticator::new(&cfg.tokens, cfg.rate_limit_per_token),
        limiter: RateLimiter::default(),
        cfg: cfg.clone(),
    });
    Ok(Router::new()
        .route("/track", post(ingest::track))
        // For clients that cannot send headers (the ShiftLeft scan client): the token in the path.
        .route("/track/{token}", post(ingest::track_with_token))
        .route("/v1/sarif", post(ingest::sarif))
        .route("/v1/scan-failures", post(ingest::scan_failure))
        .route("/v1/telemetry", post(ingest::telemetry))
        .route("/v1/admin-events", get(admin_events::list))
        .route(
            "/v1/admin-events/settings",
            get(admin_events::get_settings).put(admin_events::put_settings),
        )
        .route("/v1/admin-events/{id}", get(admin_events::get))
        .route("/v1/admin-events/{id}/failures", get(admin_events::failures))
        // RHACS's administration-events API over the same events.
        .route("/v1/administration/events", get(rhacs_events::list))
        .route("/v1/administration/events/{id}", get(rhacs_events::get))
        .route("/v1/count/administration/events", get(rhacs_events::count))
        .route("/admin/events", get(admin_page::page))
        .route("/v1/admin/notify/{integration}/test", post(notify::test))
        .route("/v1/admin/notify/{integration}/raw", post(notify::raw))
        .route("/healthz", get(|| async { "ok" }))
        // Every rejection is JSON, the router's own too.
        .fallback(|| async { Rejection::NotFound("no such endpoint".into()) })
        .method_not_allowed_fallback(|| async {
            (
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                axum::Json(serde_json::json!({
                    "error": "method_not_allowed",
                    "reason": "this endpoint does not take this method (POST for ingest, GET for the admin API, PUT for its settings)",
                })),
            )
        })
        // The body limit is enforced by `Gateway::body` so that a 413 says why in JSON.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state))
}

/// Serves the gateway on `listener` until `shutdown` resolves, then finishes in-flight requests.
/// With `tls_cert` and `tls_key` set, connections are TLS 1.3.
pub async fn serve(
    listener: tokio::net::TcpListener,
    cfg: &GatewayConfig,
    backends: Backends<'_>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(cfg, backends)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let addr = listener.local_addr()?;
    match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => {
            let acceptor = tls::acceptor(cert, key)?;
            tracing::info!(listen = %addr, "gateway listening (TLS 1.3)");
            axum::serve(tls::TlsListener::new(listener, acceptor), app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        (None, None) => {
            tracing::info!(listen = %addr, "gateway listening");
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "gateway.tls_cert and gateway.tls_key must be set together",
        )),
    }
}
