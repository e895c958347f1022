//! The ClickHouse side of secpipe: connection settings, versioned migrations, and the loader
//! sinks that insert decoded records as rows.

pub mod admin_api;
pub mod cluster;
mod migrations;
pub mod retention;
mod scan_results;
pub mod tables;

use serde::{Deserialize, Serialize};

pub use migrations::{migrate, status as migration_status, Migration, MigrationStatus, MIGRATIONS};
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
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8123".into(),
            database: "secpipe".into(),
            user: "default".into(),
            password: Default::default(),
            cluster: String::new(),
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
        ::clickhouse::Client::default()
            .with_url(&self.url)
            .with_user(&self.user)
            .with_password(self.password.expose())
            .with_validation(false)
    }
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
