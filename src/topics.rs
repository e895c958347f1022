//! Topic administration: tansu does not create topics on first use, so `secpipe topics create`
//! makes every topic of the configuration, idempotently.
use std::time::Duration;

use crate::Settings;
use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    types::RDKafkaErrorCode,
};

/// Names of the processors, whose changelog topics `create_all` makes.
pub const PROCESSORS: [&str; 3] = ["admin-events", "scan-results", "telemetry"];

/// Every topic of the configuration: data topics and the processors' changelogs.
pub fn all(settings: &Settings) -> Vec<String> {
    let mut names: Vec<String> = settings
        .kafka
        .topics
        .all()
        .into_iter()
        .map(str::to_string)
        .collect();
    names.extend(
        PROCESSORS
            .iter()
            .map(|p| format!("{}{p}", settings.processors.changelog_prefix)),
    );
    names
}

/// Creates every topic that does not exist yet. Returns the topics it created.
pub async fn create_all(settings: &Settings) -> anyhow::Result<Vec<String>> {
    let cfg = &settings.kafka;
    let admin: AdminClient<DefaultClientContext> = cfg.client_config("admin").create()?;
    let names = all(settings);
    let max_message_bytes = cfg.max_message_bytes.to_string();
    let topics: Vec<NewTopic> = names
        .iter()
        .map(|name| {
            let topic = NewTopic::new(
                name,
                cfg.partitions,
                TopicReplication::Fixed(cfg.replication_factor),
            )
            // The brokers hold what secpipe's producers are built to write, and no more.
            .set("max.message.bytes", &max_message_bytes);
            // State changelogs only need each key's last value.
            if name.starts_with(&settings.processors.changelog_prefix) {
                topic.set("cleanup.policy", "compact")
            } else {
                topic
            }
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin.create_topics(&topics, &opts).await?;
    let mut created = Vec::new();
    for r in results {
        match r {
            Ok(name) => created.push(name),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => anyhow::bail!("creating topic {name}: {code}"),
        }
    }
    Ok(created)
}
