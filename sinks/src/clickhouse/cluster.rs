//! Cluster mode (`[clickhouse] cluster`): the migrations are written once, for a single server,
//! and each statement is rewritten here for a replicated cluster, so a new migration needs no
//! cluster-specific text.
//!
//! A data table `t` (any `*MergeTree` engine) becomes two tables on every node:
//! - `t_local`, `Replicated<Engine>('/clickhouse/tables/{shard}/<db>/t_local', '{replica}', ...)`,
//!   which holds the node's copy of its shard;
//! - `t`, `Distributed(<cluster>, <db>, t_local, cityHash64(<sorting key>))`, which everyone else
//!   reads and writes: the loader, the views, the admin API, the analysts. Keeping the plain name
//!   for the distributed table means the views, the loader and the analysts' SQL are the same in
//!   both modes. Sharding by the sorting key puts every version of a row on one shard, so
//!   `ReplacingMergeTree` still collapses them.
//!
//! Every DDL statement gets `ON CLUSTER` and database-qualified names (ClickHouse 18.16 runs
//! distributed DDL in the `default` database of each node). In views, `IN (SELECT ...)` becomes
//! `GLOBAL IN`: the subquery reads distributed tables, so it runs once over every shard (18.16
//! refuses it per shard when there are several). 18.16 cannot `ALTER` a Distributed
//! table `ON CLUSTER` when the shard is replicated, so after an `ALTER` of a data table its
//! distributed table is dropped and created again from the altered local table.
use std::collections::{BTreeMap, BTreeSet};

/// What a migration statement becomes in cluster mode, learning the tables as it goes.
#[derive(Debug, Clone)]
pub struct ClusterDdl {
    cluster: String,
    database: String,
    /// Data tables (distributed name → sharding key expression).
    data: BTreeMap<String, String>,
    /// Every table and view the migrations have created, to qualify in view bodies.
    known: BTreeSet<String>,
}

/// The local (replicated) table behind distributed table `table`.
pub fn local_name(table: &str) -> String {
    format!("{table}_local")
}

impl ClusterDdl {
    pub fn new(cluster: &str, database: &str) -> Self {
        Self {
            cluster: cluster.to_string(),
            database: database.to_string(),
            data: BTreeMap::new(),
            known: BTreeSet::new(),
        }
    }

    fn q(&self, table: &str) -> String {
        format!("`{}`.`{}`", self.database, table)
    }

    fn on(&self) -> String {
        format!("ON CLUSTER `{}`", self.cluster)
    }

    /// `CREATE DATABASE` on every node.
    pub fn create_database(&self) -> String {
        format!(
            "CREATE DATABASE IF NOT EXISTS `{}` {}",
            self.database,
            self.on()
        )
    }

    fn distributed(&self, table: &str) -> String {
        let key = &self.data[table];
        format!(
            "CREATE TABLE IF NOT EXISTS {} {} AS {} ENGINE = Distributed(`{}`, `{}`, `{}`, {key})",
            self.q(table),
            self.on(),
            self.q(&local_name(table)),
            self.cluster,
            self.database,
            local_name(table)
        )
    }

    fn drop(&self, table: &str) -> String {
        format!("DROP TABLE IF EXISTS {} {}", self.q(table), self.on())
    }

    /// The statements that do in the cluster what `stmt` does on a single server.
    pub fn rewrite(&mut self, stmt: &str) -> Result<Vec<String>, String> {
        let words: Vec<String> = stmt
            .split_whitespace()
            .take(6)
            .map(str::to_ascii_uppercase)
            .collect();
        let w = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
        match (w(0), w(1)) {
            ("CREATE", "TABLE") => self.create_table(stmt),
            ("CREATE", "VIEW") => self.create_view(stmt),
            ("ALTER", "TABLE") => self.alter(stmt),
            ("RENAME", "TABLE") => self.rename(stmt),
            ("DROP", "TABLE") => self.drop_table(stmt),
            // Through the distributed tables (the migration client inserts synchronously).
            ("INSERT", "INTO") => Ok(vec![stmt.to_string()]),
            _ => Err(format!(
                "cluster mode cannot run this migration statement (supported: CREATE TABLE, \
                 CREATE VIEW, ALTER TABLE, RENAME TABLE, DROP TABLE, INSERT INTO): {stmt}"
            )),
        }
    }

    fn create_table(&mut self, stmt: &str) -> Result<Vec<String>, String> {
        let (name, if_not_exists, rest) = head(stmt, 2)?;
        let (before, engine, args, after) = engine_clause(rest)
            .ok_or_else(|| format!("CREATE TABLE {name} without an ENGINE = clause"))?;
        self.known.insert(name.clone());
        let ine = if if_not_exists { "IF NOT EXISTS " } else { "" };
        if !engine.ends_with("MergeTree") || engine.starts_with("Replicated") {
            return Ok(vec![format!(
                "CREATE TABLE {ine}{} {} {rest}",
                self.q(&name),
                self.on()
            )]);
        }
        let local = local_name(&name);
        let path = format!(
            "'/clickhouse/tables/{{shard}}/{}/{local}', '{{replica}}'",
            self.database
        );
        let args = if args.trim().is_empty() {
            path
        } else {
            format!("{path}, {args}")
        };
        let key = sorting_key(after).unwrap_or_default();
        let key = if key.is_empty() {
            "rand()".to_string()
        } else {
            format!("cityHash64({key})")
        };
        self.data.insert(name.clone(), key);
        Ok(vec![
            format!(
                "CREATE TABLE {ine}{} {} {}ENGINE = Replicated{engine}({args}){after}",
                self.q(&local),
                self.on(),
                materialized_as_default(before)
            ),
            self.distributed(&name),
        ])
    }

    fn create_view(&mut self, stmt: &str) -> Result<Vec<String>, String> {
        let (name, if_not_exists, rest) = head(stmt, 2)?;
        let ine = if if_not_exists { "IF NOT EXISTS " } else { "" };
        let body = qualify_tables(rest, &self.database, &self.known);
        self.known.insert(name.clone());
        Ok(vec![format!(
            "CREATE VIEW {ine}{} {} {body}",
            self.q(&name),
            self.on()
        )])
    }

    fn alter(&mut self, stmt: &str) -> Result<Vec<String>, String> {
        let (name, _, rest) = head(stmt, 2)?;
        if !self.data.contains_key(&name) {
            return Ok(vec![format!(
                "ALTER TABLE {} {} {rest}",
                self.q(&name),
                self.on()
            )]);
        }
        Ok(vec![
            format!(
                "ALTER TABLE {} {} {}",
                self.q(&local_name(&name)),
                self.on(),
                materialized_as_default(rest)
            ),
            self.drop(&name),
            self.distributed(&name),
        ])
    }

    fn rename(&mut self, stmt: &str) -> Result<Vec<String>, String> {
        let list = skip_words(stmt, 2);
        let mut pairs = Vec::new();
        for pair in list.split(',') {
            let parts: Vec<&str> = pair.split_whitespace().collect();
            match parts.as_slice() {
                [from, to_kw, to] if to_kw.eq_ignore_ascii_case("TO") => {
                    pairs.push((unquote(from)?, unquote(to)?))
                }
                _ => return Err(format!("RENAME TABLE: cannot read '{pair}'")),
            }
        }
        let (data, other): (Vec<_>, Vec<_>) = pairs
            .into_iter()
            .partition(|(f, _)| self.data.contains_key(f));
        let mut out = Vec::new();
        if !other.is_empty() {
            let list: Vec<String> = other
                .iter()
                .map(|(f, t)| format!("{} TO {}", self.q(f), self.q(t)))
                .collect();
            out.push(format!("RENAME TABLE {} {}", list.join(", "), self.on()));
            for (f, t) in &other {
                self.known.remove(f);
                self.known.insert(t.clone());
            }
        }
        if !data.is_empty() {
            let list: Vec<String> = data
                .iter()
                .map(|(f, t)| format!("{} TO {}", self.q(&local_name(f)), self.q(&local_name(t))))
                .collect();
            out.push(format!("RENAME TABLE {} {}", list.join(", "), self.on()));
            // A distributed table names its local table: the renamed ones are made again.
            let keys: Vec<String> = data.iter().map(|(f, _)| self.data[f].clone()).collect();
            for (f, _) in &data {
                out.push(self.drop(f));
                self.data.remove(f);
                self.known.remove(f);
            }
            for ((_, t), key) in data.iter().zip(keys) {
                out.push(self.drop(t));
                self.data.insert(t.clone(), key);
                self.known.insert(t.clone());
                out.push(self.distributed(t));
            }
        }
        Ok(out)
    }

    fn drop_table(&mut self, stmt: &str) -> Result<Vec<String>, String> {
        let (name, if_exists, _) = head(stmt, 2)?;
        let ie = if if_exists { "IF EXISTS " } else { "" };
        self.known.remove(&name);
        let mut out = vec![format!("DROP TABLE {ie}{} {}", self.q(&name), self.on())];
        if self.data.remove(&name).is_some() {
            out.push(format!(
                "DROP TABLE {ie}{} {}",
                self.q(&local_name(&name)),
                self.on()
            ));
        }
        Ok(out)
    }
}

/// The text after the first `n` words.
fn skip_words(stmt: &str, n: usize) -> &str {
    let mut rest = stmt.trim_start();
    for _ in 0..n {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        rest = rest[end..].trim_start();
    }
    rest
}

/// After `n` leading words: an optional `IF [NOT] EXISTS`, the object's name, and the rest.
fn head(stmt: &str, n: usize) -> Result<(String, bool, &str), String> {
    let mut rest = skip_words(stmt, n);
    let upper = rest.to_ascii_uppercase();
    let mut conditional = false;
    for guard in ["IF NOT EXISTS", "IF EXISTS"] {
        if upper.starts_with(guard) {
            rest = rest[guard.len()..].trim_start();
            conditional = true;
            break;
        }
    }
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '(')
        .unwrap_or(rest.len());
    let name = unquote(&rest[..end])?;
    Ok((name, conditional, rest[end..].trim_start()))
}

/// A table name as written: `name` or `` `name` ``; a database-qualified name is refused (the
/// migrations run in the configured database).
fn unquote(name: &str) -> Result<String, String> {
    let n = name.trim().trim_matches('`');
    if n.is_empty() || n.contains('.') || n.contains('`') {
        return Err(format!(
            "cluster mode needs plain table names in migrations, not '{name}'"
        ));
    }
    Ok(n.to_string())
}

/// Splits `... ENGINE = Name(args) after` into (`... `, `Name`, `args`, `after`).
fn engine_clause(rest: &str) -> Option<(&str, &str, &str, &str)> {
    let upper = rest.to_ascii_uppercase();
    let at = upper.rfind("ENGINE")?;
    let eq = at + rest[at..].find('=')?;
    let tail = rest[eq + 1..].trim_start();
    let name_end = tail
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(tail.len());
    let engine = &tail[..name_end];
    let after_name = &tail[name_end..];
    if let Some(inner) = after_name.strip_prefix('(') {
        let close = matching_paren(inner)?;
        Some((&rest[..at], engine, &inner[..close], &inner[close + 1..]))
    } else {
        Some((&rest[..at], engine, "", after_name))
    }
}

/// Index of the `)` closing an already opened parenthesis.
fn matching_paren(s: &str) -> Option<usize> {
    let mut depth = 1;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// The `ORDER BY` expression of the clauses after the engine, its outer parentheses removed
/// (`cityHash64` takes the columns as arguments). `tuple()` is no key.
fn sorting_key(after: &str) -> Option<String> {
    let upper = after.to_ascii_uppercase();
    let at = upper.find("ORDER BY")? + "ORDER BY".len();
    let mut key = after[at..].trim();
    let upper_key = key.to_ascii_uppercase();
    for clause in ["PRIMARY KEY", "SAMPLE BY", "SETTINGS", "TTL "] {
        if let Some(end) = upper_key.find(clause) {
            key = key[..end].trim();
        }
    }
    if key.starts_with('(') && matching_paren(&key[1..]) == Some(key.len() - 2) {
        key = &key[1..key.len() - 1];
    }
    let key = key.trim();
    Some(if key == "tuple()" { "" } else { key }.to_string())
}

/// Prefixes with the database every known table named right after `FROM` or `JOIN`, and makes
/// `[NOT] IN (SELECT ...)` `GLOBAL` (the subquery reads distributed tables: run once, on the node
/// that answers, over every shard; 18.16 refuses it per shard), outside string literals.
fn qualify_tables(body: &str, database: &str, known: &BTreeSet<String>) -> String {
    let mut out = String::with_capacity(body.len() + 64);
    let mut last_word = String::new();
    let mut before_last = String::new();
    let mut last_start = 0;
    let mut chars = body.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '\'' {
            out.push(c);
            while let Some((_, d)) = chars.next() {
                out.push(d);
                if d == '\\' {
                    if let Some((_, e)) = chars.next() {
                        out.push(e);
                    }
                } else if d == '\'' {
                    break;
                }
            }
            last_word.clear();
            continue;
        }
        if c.is_ascii_alphanumeric() || c == '_' {
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if d.is_ascii_alphanumeric() || d == '_' {
                    chars.next();
                    end = j + d.len_utf8();
                } else {
                    break;
                }
            }
            let word = &body[i..end];
            let rest = body[end..].trim_start();
            let next = rest.chars().next();
            let after_from =
                last_word.eq_ignore_ascii_case("FROM") || last_word.eq_ignore_ascii_case("JOIN");
            let qualified = out.ends_with('.');
            let start = out.len();
            if after_from && !qualified && next != Some('.') && known.contains(word) {
                out.push_str(&format!("`{database}`.`{word}`"));
            } else if word.eq_ignore_ascii_case("IN") && is_subquery(rest) {
                if last_word.eq_ignore_ascii_case("NOT") {
                    if !before_last.eq_ignore_ascii_case("GLOBAL") {
                        out.insert_str(last_start, "GLOBAL ");
                    }
                    out.push_str(word);
                } else if last_word.eq_ignore_ascii_case("GLOBAL") {
                    out.push_str(word);
                } else {
                    out.push_str("GLOBAL ");
                    out.push_str(word);
                }
            } else {
                out.push_str(word);
            }
            before_last = std::mem::replace(&mut last_word, word.to_string());
            last_start = start;
            continue;
        }
        if !c.is_whitespace() {
            last_word.clear();
            before_last.clear();
        }
        out.push(c);
    }
    out
}

/// `MATERIALIZED` column expressions become `DEFAULT` (outside string literals): 18.16 forwards
/// a Distributed insert with every column it computed, and the local table refuses a value for
/// a MATERIALIZED column. A DEFAULT column stores the same value; it also shows in `SELECT *`.
fn materialized_as_default(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_literal = false;
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.eq_ignore_ascii_case("MATERIALIZED") {
            out.push_str("DEFAULT");
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    let mut escaped = false;
    for c in text.chars() {
        if in_literal {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '\'' {
                in_literal = false;
            }
            continue;
        }
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        flush(&mut word, &mut out);
        if c == '\'' {
            in_literal = true;
        }
        out.push(c);
    }
    flush(&mut word, &mut out);
    out
}

/// Whether `rest` opens a subquery: `(` then `SELECT`.
fn is_subquery(rest: &str) -> bool {
    rest.strip_prefix('(').is_some_and(|r| {
        r.trim_start()
            .get(..6)
            .is_some_and(|w| w.eq_ignore_ascii_case("SELECT"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ddl() -> ClusterDdl {
        ClusterDdl::new("c1", "db")
    }

    #[test]
    fn a_merge_tree_table_becomes_a_replicated_local_table_and_a_distributed_table() {
        let mut d = ddl();
        let out = d
            .rewrite(
                "CREATE TABLE IF NOT EXISTS findings\n(\n    id String,\n    v UInt64\n)\n\
                 ENGINE = ReplacingMergeTree(v)\nPARTITION BY toYYYYMM(v)\nORDER BY (repo, id)",
            )
            .unwrap();
        assert_eq!(out.len(), 2);
        assert!(out[0].starts_with(
            "CREATE TABLE IF NOT EXISTS `db`.`findings_local` ON CLUSTER `c1` (\n    id String,"
        ));
        assert!(out[0].contains(
            "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/findings_local', '{replica}', v)\nPARTITION BY toYYYYMM(v)\nORDER BY (repo, id)"
        ), "{}", out[0]);
        assert_eq!(
            out[1],
            "CREATE TABLE IF NOT EXISTS `db`.`findings` ON CLUSTER `c1` AS `db`.`findings_local` \
             ENGINE = Distributed(`c1`, `db`, `findings_local`, cityHash64(repo, id))"
        );
    }

    #[test]
    fn an_engine_without_arguments_gets_only_the_replication_arguments() {
        let mut d = ddl();
        let out = d
            .rewrite("CREATE TABLE schema_migrations (version UInt32) ENGINE = MergeTree ORDER BY version")
            .unwrap();
        assert!(out[0].starts_with("CREATE TABLE `db`.`schema_migrations_local` ON CLUSTER `c1` (version UInt32) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/db/schema_migrations_local', '{replica}') ORDER BY version"), "{}", out[0]);
        assert!(out[1].ends_with("cityHash64(version))"));
    }

    #[test]
    fn altering_a_data_table_alters_every_replica_and_remakes_its_distributed_table() {
        let mut d = ddl();
        d.rewrite("CREATE TABLE t (k String) ENGINE = ReplacingMergeTree ORDER BY k")
            .unwrap();
        let out = d
            .rewrite("ALTER TABLE t ADD COLUMN team String DEFAULT lower(k)")
            .unwrap();
        assert_eq!(
            out,
            vec![
                "ALTER TABLE `db`.`t_local` ON CLUSTER `c1` ADD COLUMN team String DEFAULT lower(k)",
                "DROP TABLE IF EXISTS `db`.`t` ON CLUSTER `c1`",
                "CREATE TABLE IF NOT EXISTS `db`.`t` ON CLUSTER `c1` AS `db`.`t_local` ENGINE = Distributed(`c1`, `db`, `t_local`, cityHash64(k))",
            ]
        );
    }

    #[test]
    fn renaming_data_tables_renames_the_local_tables_and_points_distributed_tables_at_them() {
        let mut d = ddl();
        d.rewrite("CREATE TABLE a (k String) ENGINE = MergeTree ORDER BY k")
            .unwrap();
        d.rewrite("CREATE TABLE a_v3 (id String) ENGINE = MergeTree ORDER BY id")
            .unwrap();
        let out = d.rewrite("RENAME TABLE a TO a_old, a_v3 TO a").unwrap();
        assert_eq!(
            out,
            vec![
                "RENAME TABLE `db`.`a_local` TO `db`.`a_old_local`, `db`.`a_v3_local` TO `db`.`a_local` ON CLUSTER `c1`",
                "DROP TABLE IF EXISTS `db`.`a` ON CLUSTER `c1`",
                "DROP TABLE IF EXISTS `db`.`a_v3` ON CLUSTER `c1`",
                "DROP TABLE IF EXISTS `db`.`a_old` ON CLUSTER `c1`",
                "CREATE TABLE IF NOT EXISTS `db`.`a_old` ON CLUSTER `c1` AS `db`.`a_old_local` ENGINE = Distributed(`c1`, `db`, `a_old_local`, cityHash64(k))",
                "DROP TABLE IF EXISTS `db`.`a` ON CLUSTER `c1`",
                "CREATE TABLE IF NOT EXISTS `db`.`a` ON CLUSTER `c1` AS `db`.`a_local` ENGINE = Distributed(`c1`, `db`, `a_local`, cityHash64(id))",
            ]
        );
        let dropped = d.rewrite("DROP TABLE a_old").unwrap();
        assert_eq!(
            dropped,
            vec![
                "DROP TABLE `db`.`a_old` ON CLUSTER `c1`",
                "DROP TABLE `db`.`a_old_local` ON CLUSTER `c1`",
            ]
        );
    }

    #[test]
    fn views_read_the_distributed_tables_by_qualified_name() {
        let mut d = ddl();
        d.rewrite("CREATE TABLE findings (k String) ENGINE = MergeTree ORDER BY k")
            .unwrap();
        let out = d
            .rewrite(
                "CREATE VIEW IF NOT EXISTS v AS SELECT * FROM findings FINAL \
                 WHERE k IN (SELECT k FROM findings WHERE k != 'FROM findings') \
                 AND extract(k, 'x') != '' AND findingsx.k = 1",
            )
            .unwrap();
        assert_eq!(
            out,
            vec!["CREATE VIEW IF NOT EXISTS `db`.`v` ON CLUSTER `c1` AS SELECT * FROM `db`.`findings` FINAL \
                  WHERE k GLOBAL IN (SELECT k FROM `db`.`findings` WHERE k != 'FROM findings') \
                  AND extract(k, 'x') != '' AND findingsx.k = 1"]
        );
        assert_eq!(
            d.rewrite("DROP TABLE IF EXISTS v").unwrap(),
            vec!["DROP TABLE IF EXISTS `db`.`v` ON CLUSTER `c1`"]
        );
    }

    #[test]
    fn materialized_columns_become_defaults_so_distributed_inserts_pass() {
        let mut d = ddl();
        let out = d
            .rewrite(
                "CREATE TABLE n (at UInt64, at_time DateTime MATERIALIZED toDateTime(at), \
                 note String DEFAULT 'MATERIALIZED') ENGINE = MergeTree ORDER BY at",
            )
            .unwrap();
        assert!(
            out[0].contains(
                "at_time DateTime DEFAULT toDateTime(at), note String DEFAULT 'MATERIALIZED')"
            ),
            "{}",
            out[0]
        );
        let out = d
            .rewrite("ALTER TABLE n ADD COLUMN day Date materialized toDate(at)")
            .unwrap();
        assert!(
            out[0].ends_with("ADD COLUMN day Date DEFAULT toDate(at)"),
            "{}",
            out[0]
        );
    }

    #[test]
    fn subqueries_of_in_become_global_and_lists_stay_local() {
        let known = BTreeSet::from(["t".to_string()]);
        assert_eq!(
            qualify_tables(
                "SELECT 1 FROM t WHERE a NOT IN (SELECT a FROM t) AND b IN ('x', 'y') \
                 AND c in ( select c FROM t) AND d GLOBAL IN (SELECT 1)",
                "db",
                &known
            ),
            "SELECT 1 FROM `db`.`t` WHERE a GLOBAL NOT IN (SELECT a FROM `db`.`t`) AND b IN ('x', 'y') \
             AND c GLOBAL in ( select c FROM `db`.`t`) AND d GLOBAL IN (SELECT 1)"
        );
    }

    #[test]
    fn inserts_pass_and_unknown_statements_are_refused() {
        let mut d = ddl();
        assert_eq!(
            d.rewrite("INSERT INTO a SELECT * FROM b").unwrap(),
            vec!["INSERT INTO a SELECT * FROM b"]
        );
        let e = d.rewrite("OPTIMIZE TABLE a FINAL").unwrap_err();
        assert!(e.contains("cannot run"), "{e}");
        assert!(d.rewrite("DROP TABLE other.a").is_err());
    }

    #[test]
    fn every_migration_rewrites_in_cluster_mode() {
        let mut d = ddl();
        for m in super::super::MIGRATIONS {
            for stmt in super::super::migrations::statements(m.sql) {
                let out = d
                    .rewrite(&stmt)
                    .unwrap_or_else(|e| panic!("migration {} ({}): {e}", m.version, m.name));
                for s in out {
                    let upper = s.to_ascii_uppercase();
                    assert!(
                        upper.starts_with("INSERT") || upper.contains("ON CLUSTER `C1`"),
                        "{s}"
                    );
                    assert!(!s.contains(" ENGINE = MergeTree"), "{s}");
                    assert!(!s.contains(" ENGINE = ReplacingMergeTree"), "{s}");
                }
            }
        }
        assert!(d.data.contains_key("scan_results"));
        assert!(!d.data.contains_key("scan_results_v3"));
        assert!(!d.data.contains_key("scan_results_v2_replaced"));
    }
}
