//! Rows written straight into ClickHouse's `RowBinary` format, for the loaders whose volume
//! makes per-row structs and string clones show in a profile (telemetry). The bytes go to the
//! server in chunks as they are written, so encoding overlaps the server's parsing.
//!
//! Format (ClickHouse's `RowBinary`): columns in the order the `INSERT` names them; `String` is
//! an unsigned LEB128 length then the bytes; integers and `DateTime` (a `UInt32`) are
//! little-endian; `Array(T)` is a LEB128 count then the elements.
use bytes::Bytes;
use clickhouse::insert_formatted::InsertFormatted;

use super::classify;
use crate::SinkError;

/// Bytes handed to the connection at a time.
const CHUNK: usize = 256 * 1024;

/// An `INSERT ... FORMAT RowBinary` in progress: append a row's columns, then [`Self::row_done`].
pub struct RowBinaryInsert {
    insert: InsertFormatted,
    buf: Vec<u8>,
    /// Scratch space for values whose length is known only once written (JSON).
    scratch: Vec<u8>,
    rows: u64,
}

impl RowBinaryInsert {
    /// Starts an insert of `columns` (in this order) into `table`.
    pub fn new(client: &clickhouse::Client, table: &str, columns: &[&str]) -> Self {
        let sql = format!(
            "INSERT INTO `{}`({}) FORMAT RowBinary",
            table.replace('`', "\\`"),
            columns
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(",")
        );
        Self {
            insert: client.insert_formatted_with(sql),
            buf: Vec::with_capacity(CHUNK + CHUNK / 4),
            scratch: Vec::new(),
            rows: 0,
        }
    }

    fn varint(&mut self, mut n: u64) {
        while n >= 0x80 {
            self.buf.push((n as u8) | 0x80);
            n >>= 7;
        }
        self.buf.push(n as u8);
    }

    pub fn string(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.varint(b.len() as u64);
        self.buf.extend_from_slice(b);
        self
    }

    pub fn u32(&mut self, n: u32) -> &mut Self {
        self.buf.extend_from_slice(&n.to_le_bytes());
        self
    }

    pub fn u64(&mut self, n: u64) -> &mut Self {
        self.buf.extend_from_slice(&n.to_le_bytes());
        self
    }

    pub fn i64(&mut self, n: i64) -> &mut Self {
        self.buf.extend_from_slice(&n.to_le_bytes());
        self
    }

    /// An `Array(String)`.
    pub fn strings<'a>(&mut self, items: impl ExactSizeIterator<Item = &'a str>) -> &mut Self {
        self.varint(items.len() as u64);
        for s in items {
            self.string(s);
        }
        self
    }

    /// A `String` column holding `value` as JSON.
    pub fn json(&mut self, value: &impl serde::Serialize) -> &mut Self {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        // Writing to a Vec cannot fail; a value that cannot be JSON (it has none here) is "".
        if serde_json::to_writer(&mut scratch, value).is_err() {
            scratch.clear();
        }
        self.bytes(&scratch);
        self.scratch = scratch;
        self
    }

    /// Ends a row; sends what is buffered once a chunk is full.
    pub async fn row_done(&mut self) -> Result<(), SinkError> {
        self.rows += 1;
        if self.buf.len() >= CHUNK {
            let full = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK + CHUNK / 4));
            self.insert
                .send(Bytes::from(full))
                .await
                .map_err(classify)?;
        }
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Sends the rest and waits for the server's answer. An insert without rows sends nothing.
    pub async fn end(mut self) -> Result<(), SinkError> {
        if self.rows == 0 {
            return Ok(());
        }
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            self.insert
                .send(Bytes::from(rest))
                .await
                .map_err(classify)?;
        }
        self.insert.end().await.map_err(classify)
    }

    /// The bytes buffered and not yet sent (tests).
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> &[u8] {
        &self.buf
    }
}
