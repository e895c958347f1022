//! The ClickHouse side of secpipe: connection settings, versioned migrations, and the loader
//! sinks that insert decoded records as rows.

pub mod admin_api;
pub mod cluster;
mod migrations;
pub mod retention;
pub mod rowbinary;
mod scan_results;
pub mod tables;

use serde::{Deserialize, Serialize};

pub use migrations::{
    migrate, statements as migration_statements, status as migration_status, Migration,
    MigrationStatus, MIGRATIONS, SCHEMA_MIGRATIONS,
};
pub use scan_results::{ScanResultRow, ScanResultsSink};

use crate::SinkError;

/// How secpipe reaches ClickHouse (section `[clickhouse]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClickHouseConfig {
    /// HTTP interface URL. Default `http://127.0.0.1:8123`.
    pub url: String,
    /// Database holding secpipe's tables; `secpipe migrate` creates it. Default `secpipe`.
    pub database: String,
    /// User name. Default `default`.
    pub user: String,
    /// Password (never printed). Default empty.
    pub password: secpipe_schemas::Secret,
    /// Cluster name (a `remote_servers` entry of the servers). Empty (the default): one server,
    /// plain `*MergeTree` tables. Set: `secpipe migrate` creates every table `ON CLUSTER`,
    /// replicated (`t_local`, `Replicated*MergeTree` with the `{shard}`/`{replica}` macros) with
    /// a `Distributed` table `t` in front, which the loader, the views and the admin API use.
    pub cluster: String,
    /// PEM file of the CA certificate(s) that sign the server's certificate, for an `https://`
    /// URL. Default empty: the Mozilla root set (webpki-roots).
    pub ca_file: String,
    /// Compression of what the client sends and receives: `none` (default) or `lz4`. LZ4 saves
    /// bandwidth on a slow link to ClickHouse, but costs the loader CPU: on this 2-core machine
    /// it took 5.5% of the loader's samples; without it the loader bench gave medians of 46k and
    /// 60k rows/s in two sets of runs, against 44k with it (`deploy/local/bench.sh loader`).
    pub compression: String,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8123".into(),
            database: "secpipe".into(),
            user: "default".into(),
            password: Default::default(),
            cluster: String::new(),
            ca_file: String::new(),
            compression: "none".into(),
        }
    }
}

impl ClickHouseConfig {
    /// A client for secpipe's database. Validation is off: it needs
    /// `RowBinaryWithNamesAndTypes`, which ClickHouse 18.16 lacks; row types are checked by the
    /// migration tests instead.
    /// In cluster mode inserts into the distributed tables are synchronous: an insert returns
    /// once every shard's replica has the rows, so the loader commits offsets only for rows a
    /// replicated table holds.
    pub fn client(&self) -> ::clickhouse::Client {
        let client = self.server_client().with_database(&self.database);
        if self.cluster.is_empty() {
            client
        } else {
            client.with_setting("insert_distributed_sync", "1")
        }
    }

    /// The table holding the rows of `table` on this server: `table` itself on a single server,
    /// its replicated `_local` table in cluster mode (for partition management).
    pub fn storage_table(&self, table: &str) -> String {
        if self.cluster.is_empty() {
            table.to_string()
        } else {
            cluster::local_name(table)
        }
    }

    /// ` ON CLUSTER `name`` in cluster mode, empty on a single server.
    pub fn on_cluster(&self) -> String {
        if self.cluster.is_empty() {
            String::new()
        } else {
            format!(" ON CLUSTER `{}`", self.cluster)
        }
    }

    /// A client without a default database (to create it).
    pub fn server_client(&self) -> ::clickhouse::Client {
        let client = if self.url.starts_with("https://") {
            match self.tls_client() {
                Ok(c) => c,
                Err(e) => {
                    // `validate()` refuses such a config at start-up; a CA file removed later
                    // leaves a client that trusts nothing, so every request fails with the TLS
                    // error instead of the process trusting more than configured.
                    tracing::error!(error = %e, "clickhouse.ca_file");
                    tls_http_client(rustls::RootCertStore::empty())
                }
            }
        } else {
            ::clickhouse::Client::default()
        };
        client
            .with_url(&self.url)
            .with_user(&self.user)
            .with_password(self.password.expose())
            .with_validation(false)
            .with_compression(if self.compression == "lz4" {
                ::clickhouse::Compression::Lz4
            } else {
                ::clickhouse::Compression::None
            })
    }
}

impl ClickHouseConfig {
    /// Checks what can be checked without the server: the CA file is readable and holds a
    /// certificate.
    pub fn validate(&self) -> Result<(), String> {
        if !["none", "lz4"].contains(&self.compression.as_str()) {
            return Err(format!(
                "clickhouse.compression: '{}' is not one of none, lz4",
                self.compression
            ));
        }
        if !self.ca_file.is_empty() {
            self.root_store()?;
        }
        Ok(())
    }

    fn root_store(&self) -> Result<rustls::RootCertStore, String> {
        let mut roots = rustls::RootCertStore::empty();
        if self.ca_file.is_empty() {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            return Ok(roots);
        }
        use rustls_pki_types::{pem::PemObject, CertificateDer};
        let certs = CertificateDer::pem_file_iter(&self.ca_file)
            .map_err(|e| format!("clickhouse.ca_file {}: {e}", self.ca_file))?;
        for cert in certs {
            let cert = cert.map_err(|e| format!("clickhouse.ca_file {}: {e}", self.ca_file))?;
            roots
                .add(cert)
                .map_err(|e| format!("clickhouse.ca_file {}: {e}", self.ca_file))?;
        }
        if roots.is_empty() {
            return Err(format!(
                "clickhouse.ca_file {}: no PEM certificate in it",
                self.ca_file
            ));
        }
        Ok(roots)
    }

    fn tls_client(&self) -> Result<::clickhouse::Client, String> {
        Ok(tls_http_client(self.root_store()?))
    }
}

/// A ClickHouse client over rustls (ring) trusting `roots`, pooled like the crate's default.
fn tls_http_client(roots: rustls::RootCertStore) -> ::clickhouse::Client {
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.set_keepalive(Some(std::time::Duration::from_secs(60)));
    http.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(std::time::Duration::from_secs(2))
        .build(connector);
    ::clickhouse::Client::with_http_client(client)
}

/// Sorts a ClickHouse error into "these rows are bad" and "try again later". Only exceptions
/// about a row's content are the rows' fault (their rows are isolated and dead-lettered); any
/// condition of the server, the table or the account (read-only, no permission, disk full, too
/// many parts, timeouts) and every code not known to be about content hold the batch, which is
/// retried and never dead-lettered.
pub(crate) fn classify(e: ::clickhouse::error::Error) -> SinkError {
    use ::clickhouse::error::Error as E;
    match e {
        E::BadResponse(msg) => match exception_code(&msg) {
            Some(code) if ROW_CONTENT_CODES.contains(&code) => SinkError::Rejected(msg),
            _ => SinkError::Unavailable(msg),
        },
        other => SinkError::Unavailable(other.to_string()),
    }
}

/// ClickHouse exception codes that blame the data of an inserted row.
const ROW_CONTENT_CODES: &[u32] = &[
    6,   // CANNOT_PARSE_TEXT
    25,  // CANNOT_PARSE_ESCAPE_SEQUENCE
    26,  // CANNOT_PARSE_QUOTED_STRING
    27,  // CANNOT_PARSE_INPUT_ASSERTION_FAILED
    32,  // ATTEMPT_TO_READ_AFTER_EOF
    33,  // CANNOT_READ_ALL_DATA
    38,  // CANNOT_PARSE_DATE
    41,  // CANNOT_PARSE_DATETIME
    53,  // TYPE_MISMATCH
    69,  // ARGUMENT_OUT_OF_BOUND
    70,  // CANNOT_CONVERT_TYPE
    72,  // CANNOT_PARSE_NUMBER
    117, // INCORRECT_DATA
    128, // TOO_LARGE_ARRAY_SIZE
    131, // TOO_LARGE_STRING_SIZE
    190, // SIZES_OF_ARRAYS_DOESNT_MATCH
    321, // VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
    349, // CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
    395, // FUNCTION_THROW_IF_VALUE_IS_NON_ZERO (a table's check on a column)
    469, // VIOLATED_CONSTRAINT
];

/// The `Code: N` of a ClickHouse exception message.
fn exception_code(msg: &str) -> Option<u32> {
    let rest = msg.split("Code: ").nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_errors_are_rejections_and_table_errors_are_held() {
        let bad_row = "Code: 27, e.displayText() = DB::Exception: Cannot parse input";
        assert!(matches!(
            classify(::clickhouse::error::Error::BadResponse(bad_row.into())),
            SinkError::Rejected(_)
        ));
        let no_table = "Code: 60, e.displayText() = DB::Exception: Table secpipe.x doesn't exist";
        assert!(matches!(
            classify(::clickhouse::error::Error::BadResponse(no_table.into())),
            SinkError::Unavailable(_)
        ));
        assert!(matches!(
            classify(::clickhouse::error::Error::TimedOut),
            SinkError::Unavailable(_)
        ));
    }

    #[test]
    fn server_and_account_conditions_and_unknown_codes_hold_the_batch() {
        for (code, what) in [
            (164, "READONLY"),
            (243, "NOT_ENOUGH_SPACE"),
            (291, "DATABASE_ACCESS_DENIED"),
            (497, "ACCESS_DENIED"),
            (252, "TOO_MANY_PARTS"),
            (159, "TIMEOUT_EXCEEDED"),
            (99_999, "a code this version does not know"),
        ] {
            let msg = format!("Code: {code}, e.displayText() = DB::Exception: {what}");
            assert!(
                matches!(
                    classify(::clickhouse::error::Error::BadResponse(msg)),
                    SinkError::Unavailable(_)
                ),
                "{code} {what} holds"
            );
        }
        let no_code = "DB::Exception without a code";
        assert!(matches!(
            classify(::clickhouse::error::Error::BadResponse(no_code.into())),
            SinkError::Unavailable(_)
        ));
        let check = "Code: 395, e.displayText() = DB::Exception: Value passed to 'throwIf'";
        assert!(matches!(
            classify(::clickhouse::error::Error::BadResponse(check.into())),
            SinkError::Rejected(_)
        ));
    }
}

#[cfg(test)]
mod compression_tests {
    use super::ClickHouseConfig;

    #[test]
    fn compression_is_none_or_lz4() {
        let mut cfg = ClickHouseConfig::default();
        assert_eq!(cfg.compression, "none");
        assert!(cfg.validate().is_ok());
        cfg.compression = "lz4".into();
        assert!(cfg.validate().is_ok());
        cfg.compression = "zstd".into();
        let e = cfg.validate().unwrap_err();
        assert!(e.contains("clickhouse.compression"), "{e}");
    }
}
