//! The delivery engine against real local servers: retries and what is not retried, Retry-After,
//! dead deliveries, throttling of storms, routing, redaction, and what a restart changes.

use std::time::{Duration, Instant};

use crate::support::{alert, config, event, fast_retry, result, Receiver, Reply};
use secpipe_sinks::notify::{
    ConfigError, IntegrationConfig, Kind, Notification, Notifier, NotifyConfig, Outcome,
    PagerDutyConfig, RawMessage, RouteConfig, Secret, Severity, SlackConfig, ThrottleConfig,
    WebhookConfig,
};

fn webhook(url: String) -> IntegrationConfig {
    IntegrationConfig::Webhook(WebhookConfig {
        endpoints: vec![url],
        secret: Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
    })
}

fn notifier_for(receiver: &Receiver) -> Notifier {
    Notifier::new(&config(vec![("hook", webhook(receiver.url("/hook")))])).unwrap()
}

fn only_outcome(report: &secpipe_sinks::notify::DeliveryReport) -> &Outcome {
    assert_eq!(report.outcomes.len(), 1, "{report:#?}");
    &report.outcomes[0].outcome
}

#[tokio::test]
async fn a_500_is_retried_until_the_destination_accepts() {
    let receiver = Receiver::scripted(
        vec![Reply::status(500), Reply::status(502)],
        Reply::status(200),
    )
    .await;
    let report = notifier_for(&receiver)
        .deliver(&Notification::Alert(alert("a-1")))
        .await;
    assert_eq!(
        only_outcome(&report),
        &Outcome::Delivered {
            attempts: 3,
            status: 200
        }
    );
    let statuses: Vec<_> = report.attempts.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [Some(500), Some(502), Some(200)]);
    assert_eq!(
        report
            .attempts
            .iter()
            .map(|a| a.attempt)
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert!(report.attempts[0].error.as_deref().unwrap().contains("500"));
    assert!(report.attempts[2].error.is_none());
    // Every retry is the same message: a receiver deduplicating by webhook-id keeps one.
    let requests = receiver.requests();
    assert_eq!(requests.len(), 3);
    assert!(requests.iter().all(|r| r.header("webhook-id") == "a-1"));
}

#[tokio::test]
async fn a_429_waits_as_long_as_retry_after_says() {
    let receiver = Receiver::scripted(
        vec![Reply::status(429).header("retry-after", "1")],
        Reply::status(200),
    )
    .await;
    let report = notifier_for(&receiver)
        .deliver(&Notification::Alert(alert("a-1")))
        .await;
    assert_eq!(
        only_outcome(&report),
        &Outcome::Delivered {
            attempts: 2,
            status: 200
        }
    );
    let requests = receiver.requests();
    // The backoff is 1-5 ms: only Retry-After explains a gap of a second.
    let gap = requests[1].at - requests[0].at;
    assert!(gap >= Duration::from_millis(990), "retried after {gap:?}");
    assert_eq!(report.attempts[0].status, Some(429));
}

#[tokio::test]
async fn a_retry_after_beyond_the_maximum_makes_the_delivery_dead_at_once() {
    let receiver = Receiver::start(Reply::status(503).header("retry-after", "3600")).await;
    let started = Instant::now();
    let report = notifier_for(&receiver)
        .deliver(&Notification::Alert(alert("a-1")))
        .await;
    match only_outcome(&report) {
        Outcome::Dead {
            attempts,
            last_error,
        } => {
            assert_eq!(*attempts, 1);
            assert!(last_error.contains("Retry-After"), "{last_error}");
        }
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_400_is_not_retried() {
    let receiver = Receiver::start(Reply::status(400).body("invalid_payload")).await;
    let report = notifier_for(&receiver)
        .deliver(&Notification::Alert(alert("a-1")))
        .await;
    match only_outcome(&report) {
        Outcome::Dead {
            attempts,
            last_error,
        } => {
            assert_eq!(*attempts, 1);
            assert!(
                last_error.contains("HTTP 400: invalid_payload"),
                "{last_error}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(receiver.requests().len(), 1);
}

#[tokio::test]
async fn a_delivery_that_keeps_failing_is_dead_after_max_attempts() {
    let receiver = Receiver::start(Reply::status(503).body("down for maintenance")).await;
    let report = notifier_for(&receiver)
        .deliver(&Notification::Alert(alert("a-1")))
        .await;
    let max = fast_retry().max_attempts;
    match only_outcome(&report) {
        Outcome::Dead {
            attempts,
            last_error,
        } => {
            assert_eq!(*attempts, max);
            assert!(last_error.contains("503") && last_error.contains("maintenance"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(report.attempts.len(), max as usize);
    assert_eq!(receiver.requests().len(), max as usize);
    assert_eq!(report.dead().count(), 1);
}

#[tokio::test]
async fn an_unreachable_endpoint_is_dead_with_a_connection_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut notifier = Notifier::new(&config(vec![(
        "hook",
        webhook(format!("http://127.0.0.1:{port}/hook")),
    )]))
    .unwrap();
    let report = notifier.deliver(&Notification::Alert(alert("a-1"))).await;
    match only_outcome(&report) {
        Outcome::Dead {
            attempts,
            last_error,
        } => {
            assert_eq!(*attempts, fast_retry().max_attempts);
            assert!(last_error.contains("connection failed"), "{last_error}");
        }
        other => panic!("{other:?}"),
    }
    assert!(report.attempts.iter().all(|a| a.status.is_none()));
}

#[tokio::test]
async fn a_slow_endpoint_times_out_and_the_retry_succeeds() {
    let receiver = Receiver::scripted(
        vec![Reply::status(200).delay(Duration::from_secs(5))],
        Reply::status(200),
    )
    .await;
    let mut cfg = config(vec![("hook", webhook(receiver.url("/hook")))]);
    cfg.retry.timeout_ms = 200;
    let report = Notifier::new(&cfg)
        .unwrap()
        .deliver(&Notification::Alert(alert("a-1")))
        .await;
    assert_eq!(
        only_outcome(&report),
        &Outcome::Delivered {
            attempts: 2,
            status: 200
        }
    );
    assert_eq!(
        report.attempts[0].error.as_deref(),
        Some("timed out after 200 ms")
    );
    assert!(report.attempts[0].latency_ms >= 200);
}

fn throttled_config(receiver: &Receiver, interval_ms: u64) -> NotifyConfig {
    let mut cfg = config(vec![("hook", webhook(receiver.url("/hook")))]);
    cfg.throttle = ThrottleConfig {
        reminder_interval_ms: interval_ms,
        ..Default::default()
    };
    cfg
}

#[tokio::test]
async fn a_storm_of_one_alert_becomes_one_message_then_a_reminder() {
    let receiver = Receiver::ok().await;
    let mut notifier = Notifier::new(&throttled_config(&receiver, 300)).unwrap();
    let first = Instant::now();
    let mut throttled = 0;
    for i in 0..50 {
        let report = notifier
            .deliver(&Notification::Alert(alert(&format!("storm-{i}"))))
            .await;
        if report.is_throttled() {
            throttled += 1;
            assert!(report.attempts.is_empty());
        }
    }
    assert_eq!(throttled, 49);
    assert_eq!(receiver.requests().len(), 1);

    // Keep the storm going until the reminder goes out.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut i = 50;
    let reminder = loop {
        i += 1;
        let report = notifier
            .deliver(&Notification::Alert(alert(&format!("storm-{i}"))))
            .await;
        if report.delivered() == 1 {
            break report;
        }
        assert!(Instant::now() < deadline, "no reminder within 5 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(first.elapsed() >= Duration::from_millis(300));
    assert_eq!(reminder.notification_id, format!("storm-{i}"));
    let requests = receiver.requests();
    assert_eq!(requests.len(), 2);
    let data = &requests[1].json()["data"];
    // The reminder stands for itself and everything held back since the first message:
    // all i alerts sent so far but that first one.
    assert_eq!(data["occurrences"], i as u64 - 1);
    assert_eq!(requests[0].json()["data"]["occurrences"], 1);
}

#[tokio::test]
async fn a_resolution_is_never_held_back_and_the_next_firing_is_news() {
    let receiver = Receiver::ok().await;
    let mut notifier = Notifier::new(&throttled_config(&receiver, 3_600_000)).unwrap();
    let mut resolved = alert("a-2");
    resolved.resolved = true;
    for (n, delivered) in [
        (alert("a-1"), true),
        (alert("a-1b"), false),
        (resolved, true),
        (alert("a-3"), true),
    ] {
        let report = notifier.deliver(&Notification::Alert(n)).await;
        assert_eq!(report.delivered() == 1, delivered, "{report:#?}");
    }
    assert_eq!(receiver.requests().len(), 3);
}

#[tokio::test]
async fn a_dead_first_message_does_not_silence_the_storm() {
    let receiver = Receiver::scripted(vec![Reply::status(400)], Reply::status(200)).await;
    let mut notifier = Notifier::new(&throttled_config(&receiver, 3_600_000)).unwrap();
    let first = notifier.deliver(&Notification::Alert(alert("a-1"))).await;
    assert_eq!(first.dead().count(), 1);
    let second = notifier.deliver(&Notification::Alert(alert("a-2"))).await;
    assert_eq!(second.delivered(), 1);
}

#[tokio::test]
async fn routes_send_by_kind_severity_and_tag() {
    let channel = Receiver::ok().await;
    let pager = Receiver::start(Reply::status(202)).await;
    let mut cfg = config(vec![
        ("channel", webhook(channel.url("/channel"))),
        ("pager", webhook(pager.url("/pager"))),
    ]);
    cfg.routes = vec![
        RouteConfig {
            name: "everything to the channel".into(),
            kinds: vec![Kind::Result, Kind::Alert],
            to: vec!["channel".into()],
            ..Default::default()
        },
        RouteConfig {
            name: "page on critical".into(),
            min_severity: Severity::Critical,
            to: vec!["pager".into()],
            ..Default::default()
        },
        RouteConfig {
            name: "pci events".into(),
            kinds: vec![Kind::Event],
            tags: vec!["pci".into()],
            to: vec!["pager".into(), "channel".into()],
            ..Default::default()
        },
    ];
    let mut notifier = Notifier::new(&cfg).unwrap();
    let mut high = alert("high");
    high.severity = Severity::High;
    let mut critical = alert("critical");
    critical.severity = Severity::Critical;
    critical.dedup_key = "other-condition".into();
    let mut low_event = event("low-event");
    low_event.severity = Severity::Low;
    let mut pci_event = event("pci-event");
    pci_event.severity = Severity::Low;
    pci_event.tags = vec!["pci".into()];
    pci_event.dedup_key = "pci".into();
    let cases = [
        (Notification::Alert(high), 1, 0),
        (Notification::Alert(critical), 1, 1),
        (Notification::Result(result("result")), 1, 0),
        (Notification::Event(low_event), 0, 0),
        (Notification::Event(pci_event), 1, 1),
    ];
    for (n, to_channel, to_pager) in cases {
        let (c, p) = (channel.requests().len(), pager.requests().len());
        let report = notifier.deliver(&n).await;
        assert_eq!(
            (channel.requests().len() - c, pager.requests().len() - p),
            (to_channel, to_pager),
            "{}",
            n.id()
        );
        assert_eq!(report.outcomes.len(), to_channel + to_pager);
    }
}

#[tokio::test]
async fn a_raw_message_goes_as_it_is_to_the_one_endpoint_it_names() {
    let first = Receiver::ok().await;
    let second = Receiver::ok().await;
    let cfg = config(vec![(
        "slack",
        IntegrationConfig::Slack(SlackConfig {
            endpoints: vec![first.url("/a"), second.url("/b")],
        }),
    )]);
    let mut notifier = Notifier::new(&cfg).unwrap();
    let payload = serde_json::json!({"text": "deploy finished", "blocks": []});
    let raw = Notification::Raw(RawMessage {
        id: "raw-1".into(),
        integration: "slack".into(),
        endpoint: 1,
        payload: payload.clone(),
    });
    let report = notifier.deliver(&raw).await;
    assert_eq!(report.delivered(), 1);
    assert!(first.requests().is_empty());
    assert_eq!(second.requests()[0].json(), payload);

    let nowhere = Notification::Raw(RawMessage {
        id: "raw-2".into(),
        integration: "fax".into(),
        endpoint: 0,
        payload,
    });
    let report = notifier.deliver(&nowhere).await;
    match only_outcome(&report) {
        Outcome::Dead {
            attempts: 0,
            last_error,
        } => assert!(last_error.contains("fax")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn attempts_never_show_secrets() {
    let receiver = Receiver::start(Reply::status(500)).await;
    let cfg = config(vec![
        (
            "slack",
            IntegrationConfig::Slack(SlackConfig {
                endpoints: vec![receiver.url("/services/T000/B000/SLACKSECRET")],
            }),
        ),
        (
            "pd",
            IntegrationConfig::Pagerduty(PagerDutyConfig {
                endpoints: vec![Secret::new("PDROUTINGKEYSECRET00000000000000")],
                api_url: receiver.url(""),
                ..Default::default()
            }),
        ),
    ]);
    let report = Notifier::new(&cfg)
        .unwrap()
        .deliver(&Notification::Alert(alert("a-1")))
        .await;
    assert_eq!(report.dead().count(), 2);
    let shown = format!("{:?}", report);
    assert!(!shown.contains("SLACKSECRET"), "{shown}");
    assert!(!shown.contains("PDROUTINGKEYSECRET"), "{shown}");
    assert!(report
        .attempts
        .iter()
        .any(|a| a.endpoint == format!("http://{}/services/…", receiver.addr)));
    assert!(report
        .attempts
        .iter()
        .any(|a| a.endpoint.ends_with("(routing key …0000)")));
    // And the config's Debug output does not show them either.
    assert!(!format!("{cfg:?}").contains("PDROUTINGKEYSECRET"));
}

#[tokio::test]
async fn a_redelivery_after_a_restart_keeps_its_dedup_keys() {
    let pagerduty = Receiver::start(Reply::status(202)).await;
    let hook = Receiver::ok().await;
    let cfg = throttled_config(&hook, 3_600_000);
    let mut cfg = NotifyConfig {
        integrations: cfg
            .integrations
            .into_iter()
            .chain([(
                "pd".to_string(),
                IntegrationConfig::Pagerduty(PagerDutyConfig {
                    endpoints: vec![Secret::new("ROUTINGKEY")],
                    api_url: pagerduty.url(""),
                    ..Default::default()
                }),
            )])
            .collect(),
        ..cfg
    };
    cfg.routes[0].to = vec!["hook".into(), "pd".into()];
    let n = Notification::Alert(alert("a-1"));

    let mut before = Notifier::new(&cfg).unwrap();
    assert_eq!(before.deliver(&n).await.delivered(), 2);
    let saved = before.throttle_snapshot();
    drop(before);

    // A restart that lost the throttle state: the same record is consumed again.
    let mut after = Notifier::new(&cfg).unwrap();
    assert_eq!(after.deliver(&n).await.delivered(), 2);
    let pd = pagerduty.requests();
    assert_eq!(pd.len(), 2);
    assert_eq!(pd[0].json()["dedup_key"], pd[1].json()["dedup_key"]);
    let hooks = hook.requests();
    assert_eq!(hooks[0].header("webhook-id"), hooks[1].header("webhook-id"));

    // A restart that restored it holds the repeat back.
    let mut restored = Notifier::new(&cfg).unwrap();
    restored.restore_throttle(saved);
    assert!(restored.deliver(&n).await.is_throttled());
    assert_eq!(pagerduty.requests().len(), 2);
}

#[test]
fn an_invalid_config_is_a_typed_error_naming_the_key() {
    let cases: Vec<(IntegrationConfig, &str)> = vec![
        (
            IntegrationConfig::Webhook(WebhookConfig {
                endpoints: vec!["http://127.0.0.1/x".into()],
                secret: Secret::new("not-whsec"),
            }),
            "whsec_",
        ),
        (
            IntegrationConfig::Slack(SlackConfig {
                endpoints: vec!["hooks.slack.com/services/x".into()],
            }),
            "invalid URL",
        ),
        (
            IntegrationConfig::Slack(SlackConfig { endpoints: vec![] }),
            "endpoints is empty",
        ),
        (
            IntegrationConfig::Pagerduty(PagerDutyConfig {
                endpoints: vec![Secret::new("has space")],
                ..Default::default()
            }),
            "routing key",
        ),
    ];
    for (integration, reason) in cases {
        let err = Notifier::new(&config(vec![("broken", integration)]))
            .err()
            .unwrap();
        assert!(matches!(err, ConfigError::Integration { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.starts_with("notify.integrations.broken: "), "{msg}");
        assert!(msg.contains(reason), "{msg}");
    }
    let mut cfg = NotifyConfig::default();
    cfg.retry.max_attempts = 0;
    assert!(matches!(Notifier::new(&cfg), Err(ConfigError::Retry(_))));
}
