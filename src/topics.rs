//! Topic administration: tansu does not create topics on first use, so `secpipe topics create`
//! makes every topic of the configuration, idempotently.
use std::time::Duration;

use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    types::RDKafkaErrorCode,
};
use secpipe_producers::KafkaConfig;

/// Creates every configured topic that does not exist yet. Returns the topics it created.
pub async fn create_all(cfg: &KafkaConfig) -> anyhow::Result<Vec<String>> {
    let admin: AdminClient<DefaultClientContext> = cfg.client_config("admin").create()?;
    let names = cfg.topics.all();
    let topics: Vec<NewTopic> = names
        .iter()
        .map(|name| {
            NewTopic::new(
                name,
                cfg.partitions,
                TopicReplication::Fixed(cfg.replication_factor),
            )
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
