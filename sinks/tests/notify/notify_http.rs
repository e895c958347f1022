//! The HTTP integrations against a real local server, checking the request each destination
//! documents: method, path, headers, required fields, signatures. SNS and email have their own
//! files (notify_sns.rs, notify_email.rs).

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::support::{alert, config, event, result, Receiver, Reply};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use secpipe_sinks::notify::{
    IntegrationConfig, Notification, Notifier, OpsgenieConfig, PagerDutyConfig, Secret,
    SlackConfig, SplunkConfig, TeamsConfig, WebhookConfig,
};
use sha2::Sha256;

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn deliver_one(notifier: &mut Notifier, n: Notification) {
    let report = notifier.deliver(&n).await;
    assert!(
        report.dead().next().is_none() && report.delivered() > 0,
        "{report:#?}"
    );
}

#[tokio::test]
async fn webhook_requests_carry_a_valid_standard_webhooks_signature() {
    let receiver = Receiver::ok().await;
    let key = b"a webhook signing key of 32 byte";
    let secret = format!("whsec_{}", BASE64.encode(key));
    let mut notifier = Notifier::new(&config(vec![(
        "hook",
        IntegrationConfig::Webhook(WebhookConfig {
            endpoints: vec![receiver.url("/hooks/secpipe")],
            secret: Secret::new(secret),
        }),
    )]))
    .unwrap();
    deliver_one(&mut notifier, Notification::Alert(alert("alert-1"))).await;

    let r = &receiver.requests()[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/hooks/secpipe")
    );
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(r.header("webhook-id"), "alert-1");
    let ts: u64 = r.header("webhook-timestamp").parse().unwrap();
    assert!(ts.abs_diff(unix_now()) <= 5, "timestamp {ts} is not now");
    let signed = [
        r.header("webhook-id").as_bytes(),
        b".",
        r.header("webhook-timestamp").as_bytes(),
        b".",
        &r.body,
    ]
    .concat();
    let expected = format!("v1,{}", BASE64.encode(hmac_sha256(key, &signed)));
    assert_eq!(r.header("webhook-signature"), expected);
    let body = r.json();
    assert_eq!(body["type"], "secpipe.alert");
    assert_eq!(body["data"]["id"], "alert-1");
    assert_eq!(body["data"]["dedup_key"], "cloudfront-https/prod-aws");
    assert_eq!(body["data"]["status"], "fail");
}

#[tokio::test]
async fn slack_gets_blocks_with_a_text_fallback_within_its_limits() {
    let receiver = Receiver::ok().await;
    let mut notifier = Notifier::new(&config(vec![(
        "slack",
        IntegrationConfig::Slack(SlackConfig {
            endpoints: vec![receiver.url("/services/T000/B000/XXXXSECRET")],
        }),
    )]))
    .unwrap();
    let mut big = alert("alert-big");
    big.title = "Ünïcödé title ".repeat(30);
    big.description = "Because <this> & that. ".repeat(400);
    big.resources = (0..3000)
        .map(|i| format!("arn:aws:s3:::a-bucket-with-quite-a-long-name-{i}"))
        .collect();
    deliver_one(&mut notifier, Notification::Alert(big)).await;

    let r = &receiver.requests()[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/services/T000/B000/XXXXSECRET")
    );
    assert_eq!(r.header("content-type"), "application/json");
    let body = r.json();
    let text = body["text"].as_str().unwrap();
    assert!(text.starts_with("[FAIL] Ünïcödé"));
    assert!(text.chars().count() <= 3000);
    let blocks = body["blocks"].as_array().unwrap();
    assert!(blocks.len() <= 50, "{} blocks", blocks.len());
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(blocks[0]["text"]["type"], "plain_text");
    assert!(blocks[0]["text"]["text"].as_str().unwrap().chars().count() <= 150);
    for b in blocks.iter().filter(|b| b["type"] == "section") {
        if let Some(t) = b["text"]["text"].as_str() {
            assert!(t.chars().count() <= 3000);
            assert!(
                !t.contains('<') || t.starts_with('<'),
                "unescaped markup: {t}"
            );
        }
        for f in b["fields"].as_array().into_iter().flatten() {
            assert!(f["text"].as_str().unwrap().chars().count() <= 2000);
        }
    }
    assert!(body.to_string().contains("&lt;this&gt; &amp; that"));
}

#[tokio::test]
async fn teams_gets_a_message_with_an_adaptive_card_attachment() {
    let receiver = Receiver::start(Reply::status(202)).await;
    let mut notifier = Notifier::new(&config(vec![(
        "teams",
        IntegrationConfig::Teams(TeamsConfig {
            endpoints: vec![receiver.url("/workflows/abc/triggers/manual/paths/invoke?sig=S3CR3T")],
        }),
    )]))
    .unwrap();
    deliver_one(&mut notifier, Notification::Event(event("event-1"))).await;

    let r = &receiver.requests()[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/workflows/abc/triggers/manual/paths/invoke");
    assert_eq!(r.query.as_deref(), Some("sig=S3CR3T"));
    let body = r.json();
    assert_eq!(body["type"], "message");
    let attachment = &body["attachments"][0];
    assert_eq!(
        attachment["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let card = &attachment["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    assert_eq!(card["version"], "1.4");
    let facts = card["body"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "FactSet")
        .unwrap();
    let facts: HashMap<&str, &str> = facts["facts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["title"].as_str().unwrap(), f["value"].as_str().unwrap()))
        .collect();
    assert_eq!(facts["Action"], "ConsoleLogin");
    assert_eq!(facts["IP address"], "203.0.113.7");
    assert_eq!(facts["Caller"], "root");
    assert!(card
        .to_string()
        .contains("AWS Console Sign In via CloudTrail"));
}

#[tokio::test]
async fn pagerduty_triggers_and_resolves_under_one_dedup_key() {
    let receiver = Receiver::start(
        Reply::status(202).body(r#"{"status":"success","message":"Event processed"}"#),
    )
    .await;
    let routing_key = "R0UT1NGKEY0123456789abcdef012345";
    let mut notifier = Notifier::new(&config(vec![(
        "pd",
        IntegrationConfig::Pagerduty(PagerDutyConfig {
            endpoints: vec![Secret::new(routing_key)],
            api_url: receiver.url(""),
            ..Default::default()
        }),
    )]))
    .unwrap();
    let firing = alert("alert-1");
    let mut resolved = alert("alert-1-resolved");
    resolved.resolved = true;
    deliver_one(&mut notifier, Notification::Alert(firing)).await;
    deliver_one(&mut notifier, Notification::Alert(resolved)).await;

    let requests = receiver.requests();
    assert_eq!(requests.len(), 2);
    for r in &requests {
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("POST", "/v2/enqueue")
        );
        assert_eq!(r.header("content-type"), "application/json");
    }
    let trigger = requests[0].json();
    assert_eq!(trigger["routing_key"], routing_key);
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["dedup_key"], "cloudfront-https/prod-aws");
    let payload = &trigger["payload"];
    assert_eq!(
        payload["summary"],
        "[FAIL] CloudFront HTTPS Only on prod-aws"
    );
    assert_eq!(payload["source"], "prod-aws");
    assert!(
        ["critical", "error", "warning", "info"].contains(&payload["severity"].as_str().unwrap())
    );
    assert_eq!(payload["severity"], "error");
    assert_eq!(payload["timestamp"], "2023-11-14T22:13:20.000Z");
    assert_eq!(
        trigger["links"][0]["href"],
        "https://secpipe.example.com/scans/scan-42"
    );
    let resolve = requests[1].json();
    assert_eq!(resolve["event_action"], "resolve");
    assert_eq!(resolve["dedup_key"], trigger["dedup_key"]);
    assert_eq!(resolve["routing_key"], routing_key);
}

#[tokio::test]
async fn opsgenie_creates_with_the_dedup_key_as_alias_and_closes_by_alias() {
    let receiver =
        Receiver::start(Reply::status(202).body(r#"{"result":"Request will be processed"}"#)).await;
    let mut notifier = Notifier::new(&config(vec![(
        "og",
        IntegrationConfig::Opsgenie(OpsgenieConfig {
            endpoints: vec![Secret::new("eb243592-faa2-4ba2-a551q-1afdf565c889")],
            api_url: receiver.url(""),
            ..Default::default()
        }),
    )]))
    .unwrap();
    let mut critical = event("event-1");
    critical.severity = secpipe_sinks::notify::Severity::Critical;
    deliver_one(&mut notifier, Notification::Event(critical)).await;
    let mut resolved = alert("alert-2");
    resolved.resolved = true;
    deliver_one(&mut notifier, Notification::Alert(resolved)).await;

    let requests = receiver.requests();
    let create = &requests[0];
    assert_eq!(
        (create.method.as_str(), create.path.as_str()),
        ("POST", "/v2/alerts")
    );
    assert_eq!(
        create.header("authorization"),
        "GenieKey eb243592-faa2-4ba2-a551q-1afdf565c889"
    );
    let body = create.json();
    assert_eq!(body["alias"], "root-login/prod-aws");
    assert_eq!(body["priority"], "P1");
    assert!(body["message"].as_str().unwrap().chars().count() <= 130);
    assert_eq!(body["entity"], "prod-aws");
    assert_eq!(body["details"]["Action"], "ConsoleLogin");
    let close = &requests[1];
    assert_eq!(close.method, "POST");
    // The alias's '/' is escaped: it is one path segment.
    assert_eq!(close.path, "/v2/alerts/cloudfront-https%2Fprod-aws/close");
    assert_eq!(close.query.as_deref(), Some("identifierType=alias"));
    assert_eq!(close.json()["source"], "secpipe");
}

#[tokio::test]
async fn splunk_hec_gets_a_timed_event_with_the_token_header() {
    let receiver = Receiver::start(Reply::status(200).body(r#"{"text":"Success","code":0}"#)).await;
    let mut notifier = Notifier::new(&config(vec![(
        "splunk",
        IntegrationConfig::Splunk(SplunkConfig {
            endpoints: vec![receiver.url("")],
            token: Secret::new("12345678-90ab-cdef-1234-567890abcdef"),
            index: "security".into(),
            ..Default::default()
        }),
    )]))
    .unwrap();
    deliver_one(&mut notifier, Notification::Result(result("result-1"))).await;

    let r = &receiver.requests()[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/services/collector/event")
    );
    assert_eq!(
        r.header("authorization"),
        "Splunk 12345678-90ab-cdef-1234-567890abcdef"
    );
    let body = r.json();
    assert_eq!(body["time"], 1_700_000_000.0);
    assert_eq!(body["sourcetype"], "secpipe:notification");
    assert_eq!(body["index"], "security");
    assert_eq!(body["event"]["notification"]["kind"], "result");
    assert_eq!(body["event"]["notification"]["fail"], 2);
    assert_eq!(body["event"]["severity"], "high");
}

#[tokio::test]
async fn the_same_notification_is_formatted_by_every_integration_with_its_stable_id() {
    // One notification to all the HTTP integrations at once: each destination gets one request.
    let receiver = Receiver::start(Reply::status(202)).await;
    let mut notifier = Notifier::new(&config(vec![
        (
            "hook",
            IntegrationConfig::Webhook(WebhookConfig {
                endpoints: vec![receiver.url("/hook")],
                secret: Secret::default(),
            }),
        ),
        (
            "slack",
            IntegrationConfig::Slack(SlackConfig {
                endpoints: vec![receiver.url("/slack")],
            }),
        ),
        (
            "pd",
            IntegrationConfig::Pagerduty(PagerDutyConfig {
                endpoints: vec![Secret::new("KEY")],
                api_url: receiver.url("/pd"),
                ..Default::default()
            }),
        ),
    ]))
    .unwrap();
    let report = notifier
        .deliver(&Notification::Result(result("result-9")))
        .await;
    assert_eq!(report.delivered(), 3, "{report:#?}");
    let mut paths: Vec<String> = receiver.requests().iter().map(|r| r.path.clone()).collect();
    paths.sort();
    assert_eq!(paths, ["/hook", "/pd/v2/enqueue", "/slack"]);
    let requests = receiver.requests();
    let hook = requests.iter().find(|r| r.path == "/hook").unwrap();
    assert_eq!(hook.header("webhook-id"), "result-9");
    assert!(
        hook.header("webhook-signature").is_empty(),
        "no secret, no signature"
    );
    let pd = requests
        .iter()
        .find(|r| r.path == "/pd/v2/enqueue")
        .unwrap();
    assert_eq!(pd.json()["dedup_key"], "secpipe/result/result-9");
}
