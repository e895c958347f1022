//! secpipe on a broker that requires SASL/SCRAM: a tansu broker of this test's own started with
//! `--authentication` (sqlite storage: tansu's memory storage keeps no users). The user is made
//! with `tansu user create` before authentication is switched on, because tansu's CLI cannot log
//! in itself. Topics are created, a processor consumes in its group and produces, and the
//! outputs are read back, every client through SCRAM-SHA-512 (and SCRAM-SHA-256 for the
//! reader). A wrong password is refused.
//!
//! tansu 0.6 supports SCRAM-SHA-256/512 only (no PLAIN), and it gives each login 60 s: past that
//! librdkafka's re-authentication is refused and it reconnects, logging an error each minute.
mod common;

use std::time::Duration;

use common::*;
use secpipe::{
    roles::{self, Proc},
    runtime::Shutdown,
    Settings,
};
use secpipe_producers::{EventProducer, OutRecord};
use secpipe_schemas::{
    failures::{AdminEvent, Image, ScanFailure},
    now_micros, Codec,
};

fn tansu_user(port: u16, mechanism: &str, user: &str, password: &str) {
    let out = std::process::Command::new("tansu")
        .args([
            "user",
            "create",
            "--broker",
            &format!("tcp://127.0.0.1:{port}"),
            "--mechanism",
            mechanism,
            user,
            password,
        ])
        .output()
        .expect("tansu is installed");
    assert!(
        out.status.success(),
        "tansu user create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sasl(s: &Settings, port: u16, mechanism: &str, password: &str) -> Settings {
    let mut s = s.clone();
    s.kafka.brokers = format!("127.0.0.1:{port}");
    s.kafka.security_protocol = "sasl_plaintext".into();
    s.kafka.sasl_mechanism = mechanism.into();
    s.kafka.sasl_username = "secpipe".into();
    s.kafka.sasl_password = password.into();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_produces_and_consumes_through_sasl_scram() {
    let base = settings("sasl");
    let port = free_port();
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("sasl-{}", uuid::Uuid::new_v4().simple()));
    let mut broker = Broker::start(port, dir);
    tansu_user(port, "scram512", "secpipe", "s3cret-512");
    tansu_user(port, "scram256", "secpipe", "s3cret-512");
    broker.kill();
    broker.authentication = true;
    broker.restart();

    let s = sasl(&base, port, "SCRAM-SHA-512", "s3cret-512");
    let created = secpipe::topics::create_all(&s)
        .await
        .expect("topics through SASL");
    assert_eq!(created.len(), secpipe::topics::all(&s).len());

    let codec = Codec::<ScanFailure>::new().unwrap();
    let t0 = now_micros();
    let payloads: Vec<Vec<u8>> = (0..3)
        .map(|i| {
            codec
                .encode(&ScanFailure {
                    failure_id: format!("sasl-{i}"),
                    command: "image scan".into(),
                    image: Image {
                        full_name: "registry.example/app:1".into(),
                        registry: None,
                        repository: "app".into(),
                        tag: Some("1".into()),
                        digest: None,
                        original: None,
                    },
                    reason: "timeout".into(),
                    source: "api".into(),
                    cluster: None,
                    occurred_at: t0 + i * 1_000_000,
                    received_at: t0,
                })
                .unwrap()
        })
        .collect();
    let producer = EventProducer::new(&s.kafka, "test").unwrap();
    let records: Vec<OutRecord<'_>> = payloads
        .iter()
        .map(|p| OutRecord {
            topic: &s.kafka.topics.scan_failures,
            key: b"app",
            payload: p,
            headers: &[],
            partition: None,
        })
        .collect();
    producer
        .send_all(&records)
        .await
        .expect("produce through SASL");

    let (trigger, shutdown) = Shutdown::new();
    let task = tokio::spawn(roles::processor(s.clone(), Proc::AdminEvents, shutdown));
    // The reader logs in with the other mechanism.
    let reader = sasl(&base, port, "SCRAM-SHA-256", "s3cret-512");
    let occurrences = eventually(90, "the admin event with 3 occurrences", || {
        let reader = reader.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let codec = Codec::<AdminEvent>::new().unwrap();
                read_all(&reader, &reader.kafka.topics.admin_events)
                    .iter()
                    .filter_map(|(_, p)| codec.decode(p).ok())
                    .map(|e| e.occurrences)
                    .max()
                    .filter(|&n| n == 3)
            })
            .await
            .unwrap()
        }
    })
    .await;
    assert_eq!(occurrences, 3);
    trigger.trigger();
    task.await.unwrap().unwrap();

    // A wrong password gets nothing through.
    let mut wrong = sasl(&base, port, "SCRAM-SHA-512", "not-the-password");
    wrong.kafka.message_timeout_ms = 3_000;
    let producer = EventProducer::new(&wrong.kafka, "test-wrong").unwrap();
    let refused = tokio::time::timeout(
        Duration::from_secs(30),
        producer.send(OutRecord {
            topic: &wrong.kafka.topics.scan_failures,
            key: b"app",
            payload: &payloads[0],
            headers: &[],
            partition: None,
        }),
    )
    .await
    .expect("the send ends");
    assert!(refused.is_err(), "a wrong password must not produce");
}
