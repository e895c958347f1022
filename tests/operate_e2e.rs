//! Operators' commands against the real broker and ClickHouse: `config check`, `token new`,
//! `migrate --status`, `dlq tail|replay`, and the topology check a processor runs at start-up.
mod common;

use std::process::{Command, Output};

use common::*;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use secpipe::{
    roles::{self, Proc},
    runtime::Shutdown,
};

fn secpipe(args: &[&str], env: &[(String, String)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_secpipe"))
        .args(args)
        .envs(env.iter().cloned())
        .env("RUST_LOG", "error")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn config_check_prints_the_effective_config_with_secrets_masked() {
    let env = [
        (
            "SECPIPE__KAFKA__SASL_PASSWORD".to_string(),
            "kafka-s3cret".to_string(),
        ),
        ("SECPIPE__CLICKHOUSE__PASSWORD".into(), "ch-s3cret".into()),
        ("SECPIPE__KAFKA__BROKERS".into(), "10.1.2.3:9093".into()),
    ];
    let out = secpipe(&["config", "check"], &env);
    assert!(out.status.success(), "{}", text(&out));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["kafka"]["brokers"], "10.1.2.3:9093");
    assert_eq!(printed["kafka"]["sasl_password"], "***");
    assert_eq!(printed["clickhouse"]["password"], "***");
    assert!(!text(&out).contains("s3cret"));

    let bad = [(
        "SECPIPE__KAFKA__SECURITY_PROTOCOL".to_string(),
        "tls".to_string(),
    )];
    let out = secpipe(&["config", "check"], &bad);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("kafka.security_protocol"),
        "{}",
        text(&out)
    );
}

#[test]
fn token_new_takes_only_known_roles_and_prints_config_that_loads() {
    let out = secpipe(
        &["token", "new", "--name", "ci", "--role", "superuser"],
        &[],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("producer"),
        "the error lists the roles: {}",
        text(&out)
    );

    let out = secpipe(&["token", "new", "--name", "ops", "--role", "admin"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let entry: String = stdout
        .lines()
        .skip_while(|l| !l.starts_with("[[gateway.tokens]]"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(entry.contains("role = \"admin\""), "{entry}");
    let dir = std::env::temp_dir().join(format!("secpipe-token-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("secpipe.toml");
    std::fs::write(&file, &entry).unwrap();
    let out = secpipe(
        &["--config", file.to_str().unwrap(), "config", "check"],
        &[],
    );
    assert!(
        out.status.success(),
        "the printed entry loads: {}",
        text(&out)
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["gateway"]["tokens"][0]["role"], "admin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_status_lists_pending_then_applied_migrations() {
    let mut s = settings("migratestatus");
    require_stack(&s).await;
    s.clickhouse.database = format!("test_{}", uuid::Uuid::new_v4().simple());
    let mut env = child_env(&s);
    env.push((
        "SECPIPE__CLICKHOUSE__DATABASE".into(),
        s.clickhouse.database.clone(),
    ));
    let out = secpipe(&["migrate", "--status"], &env);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let n = secpipe_sinks::clickhouse::MIGRATIONS.len();
    assert_eq!(
        stdout.lines().filter(|l| l.ends_with("pending")).count(),
        n,
        "{stdout}"
    );

    let out = secpipe(&["migrate"], &env);
    assert!(out.status.success(), "{}", text(&out));
    let out = secpipe(&["migrate", "--status"], &env);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        stdout.lines().filter(|l| l.contains("applied at")).count(),
        n,
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_tail_shows_causes_and_replay_sends_records_back_to_their_topic() {
    let s = settings("dlq");
    require_stack(&s).await;
    let input = s.kafka.topics.scan_failures.clone();
    produce_raw(&s, &input, b"img", b"definitely not avro");
    let (trigger, shutdown) = Shutdown::new();
    let task = tokio::spawn(roles::processor(s.clone(), Proc::AdminEvents, shutdown));
    eventually(60, "the dead letter", || async {
        (records_in(&s, &s.kafka.topics.dead_letter) >= 1).then_some(())
    })
    .await;
    trigger.trigger();
    task.await.unwrap().unwrap();

    let env = child_env(&s);
    let out = tokio::task::spawn_blocking({
        let env = env.clone();
        move || secpipe(&["dlq", "tail", "--stage", "process.admin-events"], &env)
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.contains(&format!("from {input}/")), "{stdout}");
    assert!(stdout.contains("undecodable"), "{stdout}");
    assert!(stdout.contains("19 bytes"), "{stdout}");

    let before = records_in(&s, &input);
    let out = tokio::task::spawn_blocking(move || {
        secpipe(&["dlq", "replay", "--cause", "undecodable"], &env)
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("replayed 1 record"), "{}", text(&out));
    assert_eq!(records_in(&s, &input), before + 1);
    let replayed = read_all(&s, &input).pop().unwrap();
    assert_eq!(replayed.1, b"definitely not avro");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_refuses_a_changelog_with_fewer_partitions_than_its_input() {
    let mut s = settings("topology");
    require_stack(&s).await;
    let wider = format!("{}-wider", s.kafka.topics.scan_failures);
    let admin: AdminClient<_> = s.kafka.client_config("test-admin").create().unwrap();
    let r = admin
        .create_topics(
            &[NewTopic::new(&wider, 4, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    assert!(r[0].is_ok(), "{r:?}");
    s.kafka.topics.scan_failures = wider.clone();
    let (_trigger, shutdown) = Shutdown::new();
    let result = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        roles::processor(s.clone(), Proc::AdminEvents, shutdown),
    )
    .await
    .expect("the processor stops at once");
    let e = format!("{:#}", result.unwrap_err());
    assert!(
        e.contains("has 2 partitions but its input") && e.contains(&wider),
        "{e}"
    );
}
