//! Operators' commands: `config check`, `dlq tail|replay`, `migrate --status`, and the topology
//! check every processor runs at start-up.
use std::time::Duration;

use anyhow::Context;
use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    Message, Offset, TopicPartitionList,
};
use secpipe_producers::{EventProducer, OutRecord};
use secpipe_schemas::{ops::DeadLetter, Codec};
use serde_json::Value;

use crate::Settings;

/// The effective configuration as JSON, with every secret masked: values of keys that name a
/// password, secret, token, private key or signing key, and URLs with credentials in them.
pub fn effective_config(settings: &Settings) -> anyhow::Result<Value> {
    let mut v = serde_json::to_value(settings)?;
    mask(&mut v, "");
    Ok(v)
}

fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    !k.ends_with("_location")
        && !k.ends_with("_file")
        && [
            "password",
            "secret",
            "token",
            "redaction_key",
            "routing_key",
            "api_key",
            "apikey",
            "integration_key",
            "private_key",
            "signing_key",
            "webhook_url",
            "hec_token",
            "sha256",
        ]
        .iter()
        .any(|s| k.contains(s))
}

fn mask(v: &mut Value, key: &str) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                mask(child, k);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| mask(i, key)),
        Value::String(s) if !s.is_empty() && is_secret_key(key) => *s = "***".into(),
        Value::String(s) if s.contains("://") && s.contains('@') => {
            // user:password@host in a URL
            if let Some((scheme, rest)) = s.split_once("://") {
                if let Some((_, host)) = rest.split_once('@') {
                    *s = format!("{scheme}://***@{host}");
                }
            }
        }
        _ => {}
    }
}

/// Checks that `changelog` has at least as many partitions as `input`: input partition `p`
/// keeps its state in changelog partition `p`. Every processor runs it before it starts.
pub fn check_changelog_partitions(
    client: &BaseConsumer,
    input: &str,
    changelog: &str,
) -> anyhow::Result<()> {
    let partitions = |topic: &str| -> anyhow::Result<usize> {
        let md = client
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .with_context(|| format!("metadata of {topic}"))?;
        let t = md
            .topics()
            .first()
            .with_context(|| format!("no metadata for {topic}"))?;
        anyhow::ensure!(
            t.error().is_none() && !t.partitions().is_empty(),
            "topic {topic} does not exist (secpipe topics create makes it)"
        );
        Ok(t.partitions().len())
    };
    let (inputs, logs) = (partitions(input)?, partitions(changelog)?);
    anyhow::ensure!(
        logs >= inputs,
        "changelog {changelog} has {logs} partitions but its input {input} has {inputs}: \
         input partition p keeps its state in changelog partition p, so add partitions to the \
         changelog first"
    );
    Ok(())
}

/// One dead letter with where it sits in the dead-letter topic.
pub struct Letter {
    pub partition: i32,
    pub offset: i64,
    pub letter: DeadLetter,
}

/// Reads the whole dead-letter topic (oldest first per partition).
pub fn read_dead_letters(settings: &Settings) -> anyhow::Result<Vec<Letter>> {
    let topic = &settings.kafka.topics.dead_letter;
    let c: BaseConsumer = settings
        .kafka
        .client_config("dlq-reader")
        .set("group.id", "secpipe-dlq-reader")
        .set("enable.auto.commit", "false")
        .create()?;
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    let mut remaining = 0i64;
    for p in md
        .topics()
        .first()
        .context("no dead-letter topic")?
        .partitions()
    {
        let (low, high) = c.fetch_watermarks(topic, p.id(), Duration::from_secs(10))?;
        remaining += high - low;
        tpl.add_partition_offset(topic, p.id(), Offset::Offset(low))?;
    }
    c.assign(&tpl)?;
    let codec = Codec::<DeadLetter>::new()?;
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while remaining > 0 {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "reading {topic}: {remaining} records not read within 60 s"
        );
        let Some(msg) = c.poll(Duration::from_millis(500)) else {
            continue;
        };
        let msg = msg?;
        remaining -= 1;
        match codec.decode(msg.payload().unwrap_or_default()) {
            Ok(letter) => out.push(Letter {
                partition: msg.partition(),
                offset: msg.offset(),
                letter,
            }),
            Err(e) => {
                tracing::warn!(partition = msg.partition(), offset = msg.offset(), error = %e,
                "not a dead letter; skipped")
            }
        }
    }
    out.sort_by_key(|l| (l.letter.failed_at, l.partition, l.offset));
    Ok(out)
}

/// Which dead letters a command applies to.
#[derive(Debug, Default, Clone)]
pub struct Selection {
    /// Only letters from this original topic.
    pub topic: Option<String>,
    /// Only letters written by this stage.
    pub stage: Option<String>,
    /// Only letters whose error contains this text.
    pub cause: Option<String>,
    /// Only these letters, as `partition@offset` of the dead-letter topic.
    pub ids: Vec<String>,
}

impl Selection {
    pub fn matches(&self, l: &Letter) -> bool {
        self.topic.as_ref().is_none_or(|t| &l.letter.topic == t)
            && self.stage.as_ref().is_none_or(|s| &l.letter.stage == s)
            && self
                .cause
                .as_ref()
                .is_none_or(|c| l.letter.error.contains(c.as_str()))
            && (self.ids.is_empty() || self.ids.contains(&format!("{}@{}", l.partition, l.offset)))
    }
}

/// One line per letter: id, when, stage, origin, size, cause.
pub fn describe(l: &Letter) -> String {
    let d = &l.letter;
    format!(
        "{}@{}  {}  {}  from {}/{}@{}  {} bytes  {}",
        l.partition,
        l.offset,
        rfc3339(d.failed_at),
        d.stage,
        d.topic,
        d.partition,
        d.offset,
        d.payload.len(),
        d.error
    )
}

/// `micros` since the Unix epoch as an RFC 3339 UTC time (before 1970: the epoch).
fn rfc3339(micros: i64) -> String {
    secpipe_sinks::notify::rfc3339((micros.max(0) / 1000) as u64)
}

/// Produces the original key and payload of every selected letter to its original topic.
/// Letters whose payload was truncated are skipped (they cannot be replayed whole). Returns
/// (replayed, skipped).
pub async fn replay(
    settings: &Settings,
    letters: &[Letter],
    sel: &Selection,
) -> anyhow::Result<(usize, usize)> {
    let producer = EventProducer::new(&settings.kafka, "dlq-replay")?;
    let (mut replayed, mut skipped) = (0, 0);
    for l in letters.iter().filter(|l| sel.matches(l)) {
        let d = &l.letter;
        if d.error.contains("payload truncated") {
            eprintln!(
                "skipped {}@{}: its payload was truncated",
                l.partition, l.offset
            );
            skipped += 1;
            continue;
        }
        let id = format!("{}@{}", l.partition, l.offset);
        producer
            .send(OutRecord {
                topic: &d.topic,
                key: d.key.as_deref().unwrap_or_default(),
                payload: &d.payload,
                headers: &[("secpipe-replayed-from", id.as_bytes())],
                partition: None,
            })
            .await
            .with_context(|| format!("replaying {id} to {}", d.topic))?;
        replayed += 1;
    }
    Ok((replayed, skipped))
}

/// Prints what became of a hand-sent notification (`secpipe notify raw|test`), one line per
/// endpoint; an error when some endpoint did not take it.
pub fn print_delivery(report: &secpipe_sinks::notify::DeliveryReport) -> anyhow::Result<()> {
    use secpipe_sinks::notify::Outcome;
    for o in &report.outcomes {
        match &o.outcome {
            Outcome::Delivered { attempts, status } => println!(
                "{} {}: delivered (status {status}, {attempts} attempt(s))",
                o.target.integration, o.endpoint
            ),
            Outcome::Throttled => println!("{} {}: held back", o.target.integration, o.endpoint),
            Outcome::Dead {
                attempts,
                last_error,
            } => println!(
                "{} {}: FAILED after {attempts} attempt(s): {last_error}",
                o.target.integration, o.endpoint
            ),
        }
    }
    let dead = report.dead().count();
    anyhow::ensure!(
        dead == 0,
        "{dead} of {} endpoint(s) did not take the notification",
        report.outcomes.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(-5),
            "1970-01-01T00:00:00.000Z",
            "before 1970: the epoch"
        );
        assert_eq!(rfc3339(1_795_996_800_000_000), "2026-11-30T00:00:00.000Z");
        assert_eq!(
            rfc3339(951_782_400_000_000 + 3_723_004_000),
            "2000-02-29T01:02:03.004Z"
        );
    }

    #[test]
    fn config_check_masks_every_secret_and_keeps_the_rest() {
        let mut s = Settings::default();
        s.kafka.sasl_password = "kafka-pw".into();
        s.clickhouse.password = "ch-pw".into();
        s.gateway.redaction_key = "redact-me".into();
        s.clickhouse.url = "https://user:pw@ch.example:8443".into();
        let text = effective_config(&s).unwrap().to_string();
        for secret in ["kafka-pw", "ch-pw", "redact-me", "user:pw"] {
            assert!(!text.contains(secret), "{secret} printed: {text}");
        }
        assert!(text.contains("ch.example:8443"));
        assert!(text.contains("\"brokers\":\"127.0.0.1:9092\""));
    }
}
