//! Redaction of secrets in runtime telemetry, applied by the gateway before anything is produced
//! and again by the telemetry processor for events that reached Kafka another way.
//!
//! Every string of an event is scanned by a detector ([`scan`]) for credential-bearing shapes:
//! values of secret-named keys (`password=`, `--api-key v`, `"token": "..."`, `X-Amz-Signature=`),
//! URL passwords, `Basic`/`Bearer` credentials, JWTs, well-known token formats and private key
//! blocks. Environment variables are redacted whole when their name names a secret, and scanned
//! like any text otherwise, so `PATH` or `SERVER_PORT` stay readable.
//!
//! A secret is replaced by `redacted:<32 hex>`: the first 128 bits of an HMAC-SHA-256 under the
//! site's redaction key. The same secret always gives the same fingerprint under one key, so
//! analysts can see that two processes used the same token without anyone being able to read it.
//! Redaction is idempotent: a fingerprint is never redacted again.
use hmac::{Hmac, Mac};
use regex::{Regex, RegexSet};
use secpipe_schemas::telemetry::{StackFrame, TelemetryEvent};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

pub mod corpus;
mod keys;
mod scan;
#[cfg(test)]
mod tests;
mod tokens;

pub use keys::KeyKind;
use scan::Scanner;

/// Prefix of every redacted value.
pub const PREFIX: &str = "redacted:";
/// Hex digits after [`PREFIX`]: 128 bits of the HMAC.
pub const FINGERPRINT_HEX: usize = 32;
/// Length of a redacted value: `redacted:` and 32 hex digits.
pub const FINGERPRINT_LEN: usize = PREFIX.len() + FINGERPRINT_HEX;

/// The redaction policy (section `[gateway.redaction]`), shared by the gateway and the
/// telemetry processor. The built-in rules always apply; this adds to them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RedactionConfig {
    /// Environment variable names (exact, case-sensitive) whose values are never redacted for
    /// their name: names that look secret but hold none. Their values are still scanned for
    /// secret shapes (a JWT is redacted wherever it is). The list replaces the default:
    /// `PWD`, `OLDPWD` (directories, though `pwd` names a password elsewhere) and MySQL's and
    /// MariaDB's `*_ALLOW_EMPTY_*PASSWORD` / `*_RANDOM_ROOT_PASSWORD` switches.
    pub allow_env_names: Vec<String>,
    /// More key endings that name secrets, case-insensitive, words separated by `_` or `-`
    /// (e.g. `license_blob` makes `ACME_LICENSE_BLOB=...`, `licenseBlob: ...` and
    /// `--license-blob v` secrets). Default none.
    pub extra_keys: Vec<String>,
    /// More secret shapes as regular expressions (Rust `regex` syntax), tried on every string.
    /// The group named `secret`, else group 1, else the whole match is replaced. Default none.
    pub extra_rules: Vec<ExtraRule>,
}

/// A configured secret shape.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ExtraRule {
    /// Name of the rule, for errors.
    pub name: String,
    /// The regular expression.
    pub pattern: String,
}

impl Default for RedactionConfig {
    fn default() -> Self {
        Self {
            allow_env_names: [
                "PWD",
                "OLDPWD",
                "MYSQL_ALLOW_EMPTY_PASSWORD",
                "MYSQL_RANDOM_ROOT_PASSWORD",
                "MARIADB_ALLOW_EMPTY_ROOT_PASSWORD",
                "MARIADB_RANDOM_ROOT_PASSWORD",
            ]
            .map(String::from)
            .to_vec(),
            extra_keys: Vec::new(),
            extra_rules: Vec::new(),
        }
    }
}

/// A redaction policy that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("redaction rule '{rule}': {reason}")]
pub struct RedactionError {
    pub rule: String,
    pub reason: String,
}

impl RedactionConfig {
    /// Checks every extra rule compiles and cannot match the empty string.
    pub fn validate(&self) -> Result<(), RedactionError> {
        ExtraRules::new(&self.extra_rules).map(|_| ())
    }
}

/// The configured regular expressions, tried together first.
#[derive(Clone)]
struct ExtraRules {
    any: RegexSet,
    each: Vec<Regex>,
}

impl ExtraRules {
    fn new(rules: &[ExtraRule]) -> Result<Option<Self>, RedactionError> {
        if rules.is_empty() {
            return Ok(None);
        }
        let mut each = Vec::with_capacity(rules.len());
        for r in rules {
            let err = |reason: String| RedactionError {
                rule: r.name.clone(),
                reason,
            };
            let re = Regex::new(&r.pattern).map_err(|e| err(e.to_string()))?;
            if re.is_match("") {
                return Err(err("matches the empty string".into()));
            }
            each.push(re);
        }
        let any = RegexSet::new(rules.iter().map(|r| &r.pattern)).map_err(|e| RedactionError {
            rule: "extra_rules".into(),
            reason: e.to_string(),
        })?;
        Ok(Some(Self { any, each }))
    }

    fn find(&self, text: &str, spans: &mut Vec<(usize, usize)>) {
        for i in self.any.matches(text).iter() {
            let re = &self.each[i];
            for caps in re.captures_iter(text) {
                let m = caps
                    .name("secret")
                    .or_else(|| caps.get(1))
                    .or_else(|| caps.get(0));
                if let Some(m) = m.filter(|m| !m.is_empty()) {
                    spans.push((m.start(), m.end()));
                }
            }
        }
    }
}

/// Replaces secrets with keyed fingerprints.
#[derive(Clone)]
pub struct Redactor {
    /// Tells redactors (and so policies) apart in the per-thread cache of clean frames.
    id: usize,
    mac: Hmac<Sha256>,
    scanner: std::sync::Arc<Scanner>,
    extra: Option<ExtraRules>,
    allow_env_names: Vec<String>,
}

impl Redactor {
    /// A redactor with the default policy, keyed with `key`; an empty key draws a random one
    /// (fingerprints then differ between processes).
    pub fn new(key: &str) -> Self {
        Self::with_policy(key, &RedactionConfig::default())
            .expect("the default policy has no extra rules to fail")
    }

    /// A redactor keyed with `key` applying `policy` on top of the built-in rules.
    pub fn with_policy(key: &str, policy: &RedactionConfig) -> Result<Self, RedactionError> {
        let key_bytes: Vec<u8> = if key.is_empty() {
            uuid::Uuid::new_v4()
                .as_bytes()
                .iter()
                .chain(uuid::Uuid::new_v4().as_bytes())
                .copied()
                .collect()
        } else {
            key.as_bytes().to_vec()
        };
        static NEXT_ID: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);
        Ok(Self {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            mac: Hmac::<Sha256>::new_from_slice(&key_bytes).expect("HMAC takes keys of any size"),
            scanner: std::sync::Arc::new(Scanner::new(&policy.extra_keys)),
            extra: ExtraRules::new(&policy.extra_rules)?,
            allow_env_names: policy.allow_env_names.clone(),
        })
    }

    /// `redacted:<32 hex>` for `secret`; an already redacted value is returned unchanged.
    pub fn fingerprint(&self, secret: &str) -> String {
        if is_redacted(secret) {
            return secret.to_string();
        }
        let mut mac = self.mac.clone();
        mac.update(secret.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut out = String::with_capacity(FINGERPRINT_LEN);
        out.push_str(PREFIX);
        for b in &digest[..FINGERPRINT_HEX / 2] {
            out.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
            out.push(char::from_digit(u32::from(b & 0xf), 16).unwrap_or('0'));
        }
        out
    }

    /// Redacts every secret of `event` in place, in every string it holds; returns how many
    /// values were replaced.
    pub fn redact_event(&self, event: &mut TelemetryEvent) -> usize {
        use TelemetryEvent as E;
        let t = |s: &mut String| self.redact_text(s);
        let o = |s: &mut Option<String>| s.as_mut().map_or(0, |s| self.redact_text(s));
        let env = event.envelope_mut();
        let mut n = t(&mut env.event_id)
            + t(&mut env.host)
            + o(&mut env.container_id)
            + o(&mut env.pod)
            + o(&mut env.namespace)
            + o(&mut env.app);
        n += match event {
            E::ComponentStart(e) => {
                let mut n = t(&mut e.cpu_model)
                    + t(&mut e.os_name)
                    + t(&mut e.os_version)
                    + o(&mut e.cloud_provider)
                    + o(&mut e.container_runtime)
                    + t(&mut e.executable);
                for m in &mut e.memory_maps {
                    n += t(&mut m.perms) + o(&mut m.path);
                }
                for var in &mut e.environment {
                    n += self.redact_env(&var.name, &mut var.value) + t(&mut var.name);
                }
                n
            }
            E::ComponentExit(_) => 0,
            E::HostEnvironment(e) => e
                .packages
                .iter_mut()
                .map(|p| {
                    t(&mut p.name)
                        + t(&mut p.version)
                        + t(&mut p.source)
                        + p.licenses.iter_mut().map(t).sum::<usize>()
                })
                .sum(),
            E::PackageInfo(e) => {
                t(&mut e.path) + t(&mut e.name) + o(&mut e.version) + o(&mut e.sha256)
            }
            E::DependencyInfo(e) => {
                t(&mut e.path)
                    + t(&mut e.sha256)
                    + o(&mut e.parent_path)
                    + o(&mut e.language)
                    + o(&mut e.version)
            }
            E::Api(e) => {
                t(&mut e.api_name)
                    + self.redact_arguments(&mut e.arguments)
                    + o(&mut e.class_name)
                    + self.redact_stack(&mut e.stack)
            }
            E::Heartbeat(e) => e
                .open_descriptors
                .iter_mut()
                .map(|d| {
                    t(&mut d.kind) + o(&mut d.path) + o(&mut d.local_addr) + o(&mut d.remote_addr)
                })
                .sum(),
            E::Network(e) => {
                t(&mut e.operation)
                    + t(&mut e.address_family)
                    + o(&mut e.local_addr)
                    + o(&mut e.remote_addr)
                    + e.fqdns.iter_mut().map(t).sum::<usize>()
                    + self.redact_stack(&mut e.stack)
            }
            E::MemoryWarning(e) => {
                t(&mut e.warning_type) + o(&mut e.function) + self.redact_stack(&mut e.stack)
            }
            E::File(e) => {
                t(&mut e.operation)
                    + e.paths.iter_mut().map(t).sum::<usize>()
                    + self.redact_stack(&mut e.stack)
            }
            E::IdentityChange(e) => t(&mut e.change_type) + self.redact_stack(&mut e.stack),
            E::Process(e) => {
                t(&mut e.operation)
                    + t(&mut e.path)
                    + self.redact_arguments(&mut e.arguments)
                    + self.redact_stack(&mut e.stack)
            }
            E::WebappRegistration(e) => {
                t(&mut e.protocol)
                    + t(&mut e.address_family)
                    + t(&mut e.local_addr)
                    + o(&mut e.remote_addr)
            }
            E::WebappUriDiscovery(e) => t(&mut e.method) + t(&mut e.uri),
            // The agent should send a fingerprint; whatever it sent is replaced by one.
            E::AuthTokenSighting(e) => {
                t(&mut e.auth_type) + self.replace_whole(&mut e.token_fingerprint)
            }
        };
        n
    }

    fn redact_stack(&self, stack: &mut [StackFrame]) -> usize {
        stack
            .iter_mut()
            .map(|f| {
                f.module.as_mut().map_or(0, |s| self.redact_frame(s))
                    + f.symbol.as_mut().map_or(0, |s| self.redact_frame(s))
            })
            .sum()
    }

    /// A stack frame's module or symbol. The same few thousand recur in every event of a
    /// service, so the ones found clean are remembered (per thread, compared whole, so a
    /// remembered string is exactly one that was scanned).
    fn redact_frame(&self, text: &mut String) -> usize {
        let known_clean = CLEAN_FRAMES.with(|c| {
            let c = c.borrow();
            c.0 == self.id && c.1.contains(text.as_str())
        });
        if known_clean {
            return 0;
        }
        let n = self.redact_text(text);
        if n == 0 {
            CLEAN_FRAMES.with(|c| {
                let mut c = c.borrow_mut();
                if c.0 != self.id || c.1.len() >= CLEAN_FRAMES_MAX {
                    c.0 = self.id;
                    c.1.clear();
                }
                c.1.insert(text.clone());
            });
        }
        n
    }

    /// Arguments of a process or call: each is scanned as text, and the argument after a flag
    /// naming a secret (`--password`, `-storepass`) is its value. After a MySQL or MariaDB
    /// client program (`mysql`, `/usr/bin/mysqldump`, `mariadb-dump`), `-p<password>` keeps its
    /// `-p` and loses its value.
    pub fn redact_arguments(&self, args: &mut [String]) -> usize {
        let mut n = 0;
        let mut value_of: Option<KeyKind> = None;
        let mut db_client = false;
        for arg in args.iter_mut() {
            if db_client && !arg.starts_with("--") {
                if let Some(password) = arg.strip_prefix("-p").filter(|v| !v.is_empty()) {
                    if !is_redacted(password) {
                        *arg = format!("-p{}", self.fingerprint(password));
                        n += 1;
                    }
                    continue;
                }
            }
            db_client |= scan::is_db_client(arg);
            if let Some(kind) = value_of.take() {
                if !arg.starts_with("--") {
                    let secret = match kind {
                        KeyKind::SecretIfRandom => scan::looks_random(arg.as_bytes()),
                        _ => true,
                    };
                    if secret {
                        n += self.replace_whole(arg);
                        continue;
                    }
                }
            }
            value_of = self.scanner.bare_flag(arg);
            n += self.redact_text(arg);
        }
        n
    }

    /// The value of environment variable `name`: whole when the name names a secret (and is
    /// not allow-listed), else scanned for secret shapes like any text.
    pub fn redact_env(&self, name: &str, value: &mut String) -> usize {
        if !self.allow_env_names.iter().any(|a| a == name) {
            match self.scanner.classify_name(name) {
                KeyKind::Secret | KeyKind::Header => return self.replace_whole(value),
                KeyKind::SecretIfRandom if scan::looks_random(value.as_bytes()) => {
                    return self.replace_whole(value)
                }
                _ => {}
            }
        }
        self.redact_text(value)
    }

    fn replace_whole(&self, value: &mut String) -> usize {
        if value.is_empty() || is_redacted(value) {
            return 0;
        }
        *value = self.fingerprint(value);
        1
    }

    /// Redacts every secret inside free text; returns how many were replaced.
    ///
    /// The rules run again on their own output until it has nothing left to redact, so the
    /// result is a fixed point: redacting it again changes nothing. Each round only replaces
    /// text outside fingerprints, so rounds are few (one, and a second that finds nothing, in
    /// practice); the bound only guards against a mistake.
    pub fn redact_text(&self, text: &mut String) -> usize {
        let mut count = 0;
        for _ in 0..8 {
            match self.redact_once(text) {
                0 => break,
                n => count += n,
            }
        }
        count
    }

    fn redact_once(&self, text: &mut String) -> usize {
        let mut spans = Vec::new();
        self.scanner.find(text, &mut spans);
        if let Some(extra) = &self.extra {
            extra.find(text, &mut spans);
        }
        if spans.is_empty() {
            return 0;
        }
        spans.sort_unstable();
        // Merge overlapping ranges, and leave fingerprints already in the text alone.
        let existing = fingerprints_in(text);
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(spans.len());
        for (s, e) in spans {
            match merged.last_mut() {
                Some(last) if s < last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        if !existing.is_empty() {
            merged = without(&merged, &existing, text.as_bytes());
        }
        let mut out = String::with_capacity(text.len());
        let mut count = 0;
        let mut at = 0;
        for (s, e) in merged {
            // Ranges are on ASCII bytes; `get` keeps a mistake from ever panicking.
            let (Some(before), Some(secret)) = (text.get(at..s), text.get(s..e)) else {
                continue;
            };
            out.push_str(before);
            out.push_str(&self.fingerprint(secret));
            count += 1;
            at = e;
        }
        if count == 0 {
            return 0;
        }
        out.push_str(text.get(at..).unwrap_or_default());
        *text = out;
        count
    }
}

thread_local! {
    /// (redactor id, stack frame strings that redactor found clean on this thread).
    static CLEAN_FRAMES: std::cell::RefCell<(usize, std::collections::HashSet<String>)> =
        std::cell::RefCell::new((0, std::collections::HashSet::new()));
}

/// Frame strings remembered per thread before the memory starts over.
const CLEAN_FRAMES_MAX: usize = 16_384;

/// Whether `s` is exactly a fingerprint.
pub fn is_redacted(s: &str) -> bool {
    s.len() == FINGERPRINT_LEN
        && s.starts_with(PREFIX)
        && s[PREFIX.len()..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// The byte ranges of the fingerprints inside `text`.
fn fingerprints_in(text: &str) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    text.match_indices(PREFIX)
        .filter_map(|(i, _)| {
            let end = i + FINGERPRINT_LEN;
            let hex = b.get(i + PREFIX.len()..end)?;
            hex.iter().all(u8::is_ascii_hexdigit).then_some((i, end))
        })
        .collect()
}

/// `spans` minus the ranges of `existing` fingerprints; a piece left with no letter or digit
/// (the `:` before a fingerprint) is dropped.
fn without(spans: &[(usize, usize)], existing: &[(usize, usize)], b: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::with_capacity(spans.len());
    for &(s, e) in spans {
        let mut at = s;
        for &(fs, fe) in existing {
            if fe <= at || fs >= e {
                continue;
            }
            if fs > at {
                out.push((at, fs));
            }
            at = fe;
        }
        if at < e {
            out.push((at, e));
        }
    }
    out.retain(|&(s, e)| b[s..e].iter().any(u8::is_ascii_alphanumeric));
    out
}
