//! Configuration: built-in defaults, then a TOML file (`--config secpipe.toml`), then environment
//! variables `SECPIPE__SECTION__KEY` (e.g. `SECPIPE__KAFKA__BROKERS`). `secpipe.example.toml` at
//! the repository root documents every key; a test checks it against these structs.
use std::path::{Path, PathBuf};

use secpipe_gateway::GatewayConfig;
use secpipe_producers::KafkaConfig;
use secpipe_sinks::clickhouse::ClickHouseConfig;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Every setting of every role.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Broker connection and topic names.
    pub kafka: KafkaConfig,
    /// ClickHouse connection.
    pub clickhouse: ClickHouseConfig,
    /// The ingest gateway.
    pub gateway: GatewayConfig,
    /// The ClickHouse loader (`secpipe sink clickhouse`).
    pub loader: LoaderConfig,
    /// The stream processors (`secpipe process ...`).
    pub processors: crate::processing::ProcessorsConfig,
    /// Expiry of old rows (the loader runs the job).
    pub retention: secpipe_sinks::clickhouse::retention::RetentionConfig,
    /// Notification integrations and routes (`secpipe sink notify`).
    pub notify: secpipe_sinks::notify::NotifyConfig,
    /// The notification sink's consumer (`secpipe sink notify`): same keys as `[loader]`.
    pub notifier: LoaderConfig,
    /// The local stack of `deploy/local` (broker and ClickHouse on this machine).
    pub stack: StackConfig,
    /// Logging.
    pub log: LogConfig,
    /// `/metrics`, `/healthz`, `/readyz`.
    pub ops: crate::ops::OpsConfig,
    /// Record framing: single-object encoding, or a Schema Registry's wire format.
    pub schemas: SchemasConfig,
    /// How scan reports are completed: scanner aliases, repository → team mapping.
    pub scans: secpipe_producers::scan_settings::ScanConfig,
}

/// Avro framing (section `[schemas]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SchemasConfig {
    /// URL of a Confluent-compatible Schema Registry. Empty (default): records use Avro
    /// single-object encoding and need no registry. Set: every schema version is registered
    /// at start-up (subject = record full name) and records are written as `00` + schema id.
    /// Readers decode both framings either way.
    pub registry_url: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            kafka: Default::default(),
            clickhouse: Default::default(),
            gateway: Default::default(),
            loader: Default::default(),
            processors: Default::default(),
            retention: Default::default(),
            notify: Default::default(),
            notifier: LoaderConfig {
                group_id: "secpipe-notify".into(),
                batch_max_rows: 100,
                batch_max_wait_ms: 200,
                batch_min_wait_ms: 10,
                ..LoaderConfig::default()
            },
            stack: Default::default(),
            log: Default::default(),
            ops: Default::default(),
            schemas: Default::default(),
            scans: Default::default(),
        }
    }
}

/// The ClickHouse loader (section `[loader]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LoaderConfig {
    /// Consumer group of the loader; instances with the same group share partitions.
    /// Default `secpipe-loader`.
    pub group_id: String,
    /// A batch is inserted once it holds this many rows. Default 10000.
    pub batch_max_rows: usize,
    /// ... or once its oldest row waited this long, in milliseconds. Default 500.
    pub batch_max_wait_ms: u64,
    /// ... or, once the consumer has caught up (it has read every record fetched, none is
    /// waiting), as soon as its oldest row waited this long, in milliseconds: low latency at
    /// low and moderate rates, full batches under backlog (a batch grows while the previous one
    /// is written). Capped at `batch_max_wait_ms`. Default 50 (notifier: 10).
    pub batch_min_wait_ms: u64,
    /// First retry delay when ClickHouse is unavailable, in milliseconds; doubles up to
    /// `retry_max_backoff_ms`. Default 200.
    pub retry_initial_backoff_ms: u64,
    /// Longest delay between retries, in milliseconds. Default 10000.
    pub retry_max_backoff_ms: u64,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self {
            group_id: "secpipe-loader".into(),
            batch_max_rows: 10_000,
            batch_max_wait_ms: 500,
            batch_min_wait_ms: 50,
            retry_initial_backoff_ms: 200,
            retry_max_backoff_ms: 10_000,
        }
    }
}

/// Broker storage of the local stack.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BrokerStorage {
    /// `sqlite://tansu.db` in the broker's folder: survives restarts.
    Sqlite,
    /// `memory://tansu/`: about ten times faster to produce to, lost on restart (benchmarks).
    Memory,
}

/// The local stack (section `[stack]`), used by the scripts in `deploy/local`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StackConfig {
    /// Folder for the broker's and ClickHouse's data and logs, relative to the working directory.
    /// Default `.secpipe` (ignored by git).
    pub state_dir: PathBuf,
    /// `sqlite` (durable, default) or `memory`.
    pub broker_storage: BrokerStorage,
    /// ClickHouse's native TCP port (for `clickhouse-client`). Default 9000.
    pub clickhouse_tcp_port: u16,
}

impl Default for StackConfig {
    fn default() -> Self {
        Self {
            state_dir: PathBuf::from(".secpipe"),
            broker_storage: BrokerStorage::Sqlite,
            clickhouse_tcp_port: 9000,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Logging (section `[log]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (default) or `json`; `--log-json` on the command line forces `json`.
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `secpipe=debug,rdkafka=warn`. Default `info`.
    /// `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// Configuration that cannot be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("configuration file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Settings {
    /// Defaults, then `file` (if given), then `SECPIPE__*` environment variables.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(file, std::env::vars())
    }

    /// Like [`Settings::load`] with an explicit environment (for tests).
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder();
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::File {
                    path: path.to_path_buf(),
                    reason: "no such file".into(),
                });
            }
            builder = builder.add_source(
                config::File::from(path)
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        let env: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("SECPIPE__"))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("SECPIPE")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(env)),
        );
        let built = builder.build().map_err(|e| match file {
            Some(p) => ConfigError::File {
                path: p.to_path_buf(),
                reason: e.to_string(),
            },
            None => ConfigError::Invalid(e.to_string()),
        })?;
        let settings: Settings = built
            .try_deserialize()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, expected: &str| {
            Err(ConfigError::Invalid(format!("{key}: expected {expected}")))
        };
        if self.kafka.brokers.trim().is_empty() {
            return bad("kafka.brokers", "at least one host:port");
        }
        if self.kafka.partitions < 1 {
            return bad("kafka.partitions", "a positive number");
        }
        self.kafka.validate().map_err(ConfigError::Invalid)?;
        self.scans.validate().map_err(ConfigError::Invalid)?;
        if self.kafka.max_poll_interval_ms < self.kafka.session_timeout_ms {
            return bad(
                "kafka.max_poll_interval_ms",
                "at least kafka.session_timeout_ms (librdkafka refuses less)",
            );
        }
        self.gateway.validate().map_err(ConfigError::Invalid)?;
        if self.loader.batch_max_rows == 0 {
            return bad("loader.batch_max_rows", "a positive number");
        }
        for rule in &self.processors.alert_rules {
            rule.validate()
                .map_err(|e| ConfigError::Invalid(format!("processors.alert_rules: {e}")))?;
        }
        if self.processors.batch_max_records == 0 {
            return bad("processors.batch_max_records", "a positive number");
        }
        if !self.clickhouse.url.starts_with("http://")
            && !self.clickhouse.url.starts_with("https://")
        {
            return bad("clickhouse.url", "an http:// or https:// URL");
        }
        self.clickhouse.validate().map_err(ConfigError::Invalid)?;
        Ok(())
    }

    /// Shell variable assignments the `deploy/local` scripts evaluate, so that ports and paths
    /// come from the same configuration as the pipeline.
    pub fn stack_env(&self) -> Vec<(&'static str, String)> {
        let (broker_host, broker_port) = split_host_port(
            self.kafka.brokers.split(',').next().unwrap_or_default(),
            9092,
        );
        let ch_authority = self
            .clickhouse
            .url
            .split("://")
            .nth(1)
            .unwrap_or_default()
            .split('/')
            .next()
            .unwrap_or_default();
        let (ch_host, ch_port) = split_host_port(ch_authority, 8123);
        vec![
            (
                "SECPIPE_STATE_DIR",
                self.stack.state_dir.display().to_string(),
            ),
            ("SECPIPE_BROKER_HOST", broker_host),
            ("SECPIPE_BROKER_PORT", broker_port.to_string()),
            (
                "SECPIPE_BROKER_STORAGE",
                match self.stack.broker_storage {
                    BrokerStorage::Sqlite => "sqlite",
                    BrokerStorage::Memory => "memory",
                }
                .into(),
            ),
            ("SECPIPE_CH_HOST", ch_host),
            ("SECPIPE_CH_HTTP_PORT", ch_port.to_string()),
            (
                "SECPIPE_CH_TCP_PORT",
                self.stack.clickhouse_tcp_port.to_string(),
            ),
            ("SECPIPE_CH_DATABASE", self.clickhouse.database.clone()),
            ("SECPIPE_GATEWAY_ADDR", self.gateway.listen.to_string()),
        ]
    }
}

fn split_host_port(s: &str, default_port: u16) -> (String, u16) {
    match s.trim().rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().unwrap_or(default_port)),
        None => (s.trim().to_string(), default_port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_apply_without_file_or_environment() {
        let s = Settings::load_with_env(None, env(&[])).unwrap();
        assert_eq!(s, Settings::default());
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = std::env::temp_dir().join(format!("secpipe-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("a.toml");
        std::fs::write(
            &file,
            "[kafka]\nbrokers = \"10.0.0.1:9092\"\n[loader]\nbatch_max_rows = 7\n",
        )
        .unwrap();
        let s = Settings::load_with_env(
            Some(&file),
            env(&[("SECPIPE__LOADER__BATCH_MAX_ROWS", "9"), ("UNRELATED", "x")]),
        )
        .unwrap();
        assert_eq!(s.kafka.brokers, "10.0.0.1:9092");
        assert_eq!(s.loader.batch_max_rows, 9);
    }

    #[test]
    fn a_bad_value_names_the_key_and_what_was_expected() {
        let e = Settings::load_with_env(None, env(&[("SECPIPE__GATEWAY__MAX_BODY_BYTES", "lots")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_body_bytes"), "{e}");
        let e = Settings::load_with_env(None, env(&[("SECPIPE__STACK__BROKER_STORAGE", "disk")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("broker_storage") || e.contains("sqlite"), "{e}");
        let e = Settings::load_with_env(None, env(&[("SECPIPE__LOADER__BATCH_MAX_ROWS", "0")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("loader.batch_max_rows"), "{e}");
        let e = Settings::load_with_env(
            None,
            env(&[("SECPIPE__CLICKHOUSE__CA_FILE", "/nonexistent/ca.pem")]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("clickhouse.ca_file"), "{e}");
    }

    #[test]
    fn example_config_matches_the_structs() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("secpipe.example.toml");
        let s = Settings::load_with_env(Some(&path), env(&[])).unwrap();
        // The example documents the defaults: loading it must give exactly the defaults.
        assert_eq!(s, Settings::default());
    }

    #[test]
    fn stack_env_takes_ports_from_the_urls() {
        let s = Settings::load_with_env(
            None,
            env(&[
                ("SECPIPE__KAFKA__BROKERS", "127.0.0.1:19092"),
                ("SECPIPE__CLICKHOUSE__URL", "http://127.0.0.1:18123"),
            ]),
        )
        .unwrap();
        let vars = s.stack_env();
        assert!(vars.contains(&("SECPIPE_BROKER_PORT", "19092".into())));
        assert!(vars.contains(&("SECPIPE_CH_HTTP_PORT", "18123".into())));
    }
}
