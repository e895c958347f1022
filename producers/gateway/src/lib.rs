//! The ingest gateway (`secpipe gateway`): HTTP in, Avro records on Kafka out. It is a crate of
//! its own so that agents linking the producer library (`secpipe_producers::Ingestor`) compile
//! neither ClickHouse (the admin read APIs) nor the notification integrations.
//!
//! Every request is authenticated (bearer token, stored hashed), checked against the caller's
//! rights and rate limit, parsed, and answered 2xx only after the broker acknowledged every
//! record it produced. Every rejection is a status with a JSON body saying why.
mod admin_events;
mod admin_page;
mod admin_query;
mod ingest;
mod limits;
mod notify;
mod rejection;
mod rhacs_events;
mod tls;

use std::{future::Future, sync::Arc};

use axum::{
    body::Body,
    http::HeaderMap,
    routing::{get, post},
    Router,
};

pub use rejection::Rejection;
pub use secpipe_producers::{
    access::{hash_token, AuthError, Caller, EventKind, Role, TokenConfig},
    gateway_config::GatewayConfig,
};

use limits::RateLimiter;
use secpipe_producers::{
    access::Authenticator,
    ingest::Ingestor,
    kafka::{EventProducer, Topics},
    scan_settings::{ScanConfig, ScanSettings},
};

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
