//! Deliveries a person asks for, outside the alert stream: `secpipe notify raw` (the reference's
//! `raw`: a payload already in the destination's format, to one integration's endpoints) and
//! `secpipe notify test` (a harmless test alert through every endpoint of one integration, to
//! check a new configuration end to end). Both go straight out with the configured retries: no
//! routes, no throttle, no outbox.

use serde_json::Value;

use super::message::{Alert, CheckStatus, Notification, RawMessage, Severity};
use super::text::now_ms;
use super::{ConfigError, DeliveryReport, Notifier, NotifyConfig, Target};

/// The notifier for `integration` alone, its endpoints replaced by `endpoint` when given.
fn only(
    cfg: &NotifyConfig,
    integration: &str,
    endpoint: Option<&str>,
) -> Result<Notifier, ConfigError> {
    let mut one =
        cfg.integrations
            .get(integration)
            .cloned()
            .ok_or_else(|| ConfigError::Integration {
                integration: integration.to_string(),
                reason: format!(
                    "not configured (configured: {})",
                    cfg.integrations
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })?;
    if let Some(endpoint) = endpoint {
        one.set_endpoints(vec![endpoint.to_string()]);
    }
    let config = NotifyConfig {
        integrations: [(integration.to_string(), one)].into(),
        routes: Vec::new(),
        ..cfg.clone()
    };
    Notifier::new(&config)
}

fn every_endpoint(notifier: &Notifier) -> Vec<Target> {
    notifier.all_targets()
}

/// Sends `payload` as it is (after the integration's framing: signature, key, envelope) to
/// `endpoint`, or to every endpoint of `integration` when `None`.
pub async fn raw(
    cfg: &NotifyConfig,
    integration: &str,
    endpoint: Option<&str>,
    payload: Value,
) -> Result<DeliveryReport, ConfigError> {
    let notifier = only(cfg, integration, endpoint)?;
    let n = Notification::Raw(RawMessage {
        id: format!("secpipe-raw-{}", uuid::Uuid::new_v4().simple()),
        integration: integration.to_string(),
        endpoint: 0,
        payload,
    });
    Ok(notifier.deliver_to(&n, &every_endpoint(&notifier)).await)
}

/// The test alert `secpipe notify test` sends.
pub fn test_alert() -> Notification {
    let id = uuid::Uuid::new_v4().simple().to_string();
    Notification::Alert(Alert {
        id: format!("secpipe-test-{id}"),
        account: "secpipe".into(),
        title: "secpipe test notification".into(),
        description: "A person ran `secpipe notify test`: this integration receives secpipe's \
                      notifications. Nothing needs doing."
            .into(),
        scan_id: String::new(),
        status: CheckStatus::Warn,
        severity: Severity::Info,
        resources: Vec::new(),
        dedup_key: format!("secpipe/test/{id}"),
        resolved: false,
        url: None,
        tags: vec!["secpipe-test".into()],
        occurrences: 1,
        raised_at_ms: Some(now_ms()),
        context: Vec::new(),
    })
}

/// Sends a test alert to every endpoint of `integration`.
pub async fn test(cfg: &NotifyConfig, integration: &str) -> Result<DeliveryReport, ConfigError> {
    let notifier = only(cfg, integration, None)?;
    Ok(notifier
        .deliver_to(&test_alert(), &every_endpoint(&notifier))
        .await)
}
