//! Logging with `tracing`: human-readable by default, JSON with `--log-json` or `log.format`.
use tracing_subscriber::{fmt, EnvFilter};

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber. Logs go to stderr so that stdout stays for command output.
pub fn init(cfg: &LogConfig, force_json: bool) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = if force_json || cfg.format == LogFormat::Json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    // A second init (tests, `secpipe run`) keeps the first subscriber.
    let _ = result;
}
