//! Email against a real local SMTP server (support/smtp.rs): STARTTLS with a self-signed
//! certificate, AUTH PLAIN, the headers and body it received; and what happens without TLS.

use crate::support::smtp::{Options, SmtpServer};
use crate::support::{alert, config, event};
use secpipe_sinks::notify::{
    EmailConfig, IntegrationConfig, Notification, Notifier, Outcome, Secret, SmtpTls,
};

fn ca_file(pem: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let path = std::env::temp_dir().join(format!(
        "secpipe-notify-ca-{}-{}.pem",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, pem).unwrap();
    path.to_string_lossy().into_owned()
}

fn email(server: &SmtpServer, tls: SmtpTls) -> IntegrationConfig {
    IntegrationConfig::Email(EmailConfig {
        endpoints: vec!["secops@example.com".into(), "oncall@example.com".into()],
        host: if tls == SmtpTls::None {
            "127.0.0.1"
        } else {
            "localhost"
        }
        .into(),
        port: server.port,
        from: "secpipe@example.com".into(),
        tls,
        username: if tls == SmtpTls::None { "" } else { "secpipe" }.into(),
        password: Secret::new("hunter2"),
        ca_file: ca_file(&server.ca_pem),
        ..Default::default()
    })
}

#[tokio::test]
async fn email_goes_over_starttls_with_auth_to_a_real_smtp_server() {
    let server = SmtpServer::start(Options {
        starttls: true,
        credentials: Some(("secpipe".into(), "hunter2".into())),
        transient_rcpt_failures: 1,
    })
    .await;
    let mut notifier =
        Notifier::new(&config(vec![("mail", email(&server, SmtpTls::Starttls))])).unwrap();
    let report = notifier
        .deliver(&Notification::Alert(alert("alert-1")))
        .await;
    assert_eq!(report.delivered(), 2, "{report:#?}");
    // The one 451 was retried.
    assert_eq!(report.attempts.len(), 3);
    assert!(report.attempts.iter().any(|a| a.status == Some(451)));

    let mut received = server.received();
    received.sort_by(|a, b| a.rcpt_to.cmp(&b.rcpt_to));
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].rcpt_to, ["oncall@example.com"]);
    assert_eq!(received[1].rcpt_to, ["secops@example.com"]);
    for m in &received {
        assert!(m.tls, "the message came in plain text");
        assert_eq!(m.auth_user.as_deref(), Some("secpipe"));
        assert_eq!(m.mail_from, "secpipe@example.com");
        let (header, body) = m.data.split_once("\r\n\r\n").unwrap();
        assert!(header.contains("Subject: [secpipe] [FAIL] CloudFront HTTPS Only on prod-aws\r\n"));
        assert!(header.contains("From: secpipe@example.com\r\n"));
        assert!(header.contains(&format!("To: {}\r\n", m.rcpt_to[0])));
        assert!(header.contains("Message-ID: <alert-1@secpipe>\r\n"));
        assert!(header.contains("X-Secpipe-Dedup-Key: cloudfront-https/prod-aws\r\n"));
        assert!(header.contains("Content-Type: text/plain; charset=utf-8\r\n"));
        assert!(header.lines().any(|l| l.starts_with("Date: ")));
        assert!(body.contains("Distributions must redirect HTTP to HTTPS."));
        assert!(body.contains("- arn:aws:cloudfront::123456789012:distribution/E1"));
    }
    // Nothing but EHLO and STARTTLS went over the plain connection.
    let commands = server.commands();
    let starttls = commands.iter().position(|c| c == "STARTTLS").unwrap();
    assert!(commands[..starttls].iter().all(|c| c.starts_with("EHLO")));
}

#[tokio::test]
async fn email_refuses_a_server_that_does_not_offer_starttls() {
    let server = SmtpServer::start(Options::default()).await;
    let mut notifier =
        Notifier::new(&config(vec![("mail", email(&server, SmtpTls::Starttls))])).unwrap();
    let report = notifier
        .deliver(&Notification::Alert(alert("alert-1")))
        .await;
    assert_eq!(report.delivered(), 0);
    for o in report.dead() {
        match &o.outcome {
            Outcome::Dead {
                attempts,
                last_error,
            } => {
                assert_eq!(*attempts, 1, "a missing STARTTLS is not retried");
                assert!(last_error.contains("STARTTLS"), "{last_error}");
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(server.received().is_empty());
    assert!(!server.commands().iter().any(|c| c.starts_with("MAIL")));
}

#[tokio::test]
async fn email_to_a_loopback_relay_may_skip_tls() {
    let server = SmtpServer::start(Options::default()).await;
    let mut notifier =
        Notifier::new(&config(vec![("mail", email(&server, SmtpTls::None))])).unwrap();
    let report = notifier
        .deliver(&Notification::Event(event("event-1")))
        .await;
    assert_eq!(report.delivered(), 2, "{report:#?}");
    let received = server.received();
    assert!(received.iter().all(|m| !m.tls));
    assert!(received[0].data.contains("ConsoleLogin"));
    // Every SMTP attempt is recorded with the 250 of the end of DATA.
    assert!(report.attempts.iter().all(|a| a.status == Some(250)));
}
