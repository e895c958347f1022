//! The ClickHouse side of secpipe: connection settings, versioned migrations, and the loader
//! sinks that insert decoded records as rows.

pub mod admin_api;
mod migrations;
pub mod retention;
mod scan_results;
pub mod tables;

use serde::{Deserialize, Serialize};

pub use migrations::{migrate, Migration, MIGRATIONS};
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
    /// Password. Default empty.
    pub password: String,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8123".into(),
            database: "secpipe".into(),
            user: "default".into(),
            password: String::new(),
        }
    }
}

impl ClickHouseConfig {
    /// A client for secpipe's database. Validation is off: it needs
    /// `RowBinaryWithNamesAndTypes`, which ClickHouse 18.16 lacks; row types are checked by the
    /// migration tests instead.
    pub fn client(&self) -> ::clickhouse::Client {
        self.server_client().with_database(&self.database)
    }

    /// A client without a default database (to create it).
    pub fn server_client(&self) -> ::clickhouse::Client {
        ::clickhouse::Client::default()
            .with_url(&self.url)
            .with_user(&self.user)
            .with_password(&self.password)
            .with_validation(false)
    }
}

/// Sorts a ClickHouse error into "try again later" and "these rows are bad". Exceptions about
/// the table, the server's load or access are not the rows' fault: the batch is held and retried
/// (and the log says why) rather than dead-lettered.
pub(crate) fn classify(e: ::clickhouse::error::Error) -> SinkError {
    use ::clickhouse::error::Error as E;
    match e {
        E::BadResponse(msg) => match exception_code(&msg) {
            // UNKNOWN_TABLE, NO_SUCH_COLUMN_IN_TABLE, UNKNOWN_DATABASE, TIMEOUT_EXCEEDED,
            // UNKNOWN_USER, WRONG_PASSWORD, REQUIRED_PASSWORD, TOO_MANY_SIMULTANEOUS_QUERIES,
            // MEMORY_LIMIT_EXCEEDED, TABLE_IS_READ_ONLY, TOO_MANY_PARTS, AUTHENTICATION_FAILED
            Some(60 | 16 | 81 | 159 | 192 | 193 | 194 | 202 | 241 | 242 | 252 | 516) | None => {
                SinkError::Unavailable(msg)
            }
            Some(_) => SinkError::Rejected(msg),
        },
        other => SinkError::Unavailable(other.to_string()),
    }
}

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
}
