//! Redaction of secrets in runtime telemetry, applied by the gateway before anything is produced
//! and again by the telemetry processor for events that reached Kafka another way.
//!
//! A secret is replaced by `redacted:<32 hex>`, a keyed SHA-256 (HMAC) fingerprint: the same
//! secret always gives the same fingerprint under one key, so analysts can see that two processes
//! used the same token without anyone being able to read it. Redaction is idempotent.
use hmac::{Hmac, Mac};
use secpipe_schemas::telemetry::TelemetryEvent;
use sha2::Sha256;

/// Prefix of every redacted value.
pub const PREFIX: &str = "redacted:";

/// Query and argument keys whose values are secrets.
const SECRET_KEYS: [&str; 16] = [
    "access_token",
    "refresh_token",
    "id_token",
    "token",
    "api_key",
    "apikey",
    "x-api-key",
    "password",
    "passwd",
    "pwd",
    "secret",
    "client_secret",
    "authorization",
    "auth",
    "signature",
    "sig",
];

/// Replaces secrets with keyed fingerprints.
#[derive(Clone)]
pub struct Redactor {
    mac: Hmac<Sha256>,
}

impl Redactor {
    /// A redactor keyed with `key`; an empty key draws a random one (fingerprints then differ
    /// between processes).
    pub fn new(key: &str) -> Self {
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
        Self {
            mac: Hmac::<Sha256>::new_from_slice(&key_bytes).expect("HMAC takes keys of any size"),
        }
    }

    /// `redacted:<32 hex>` for `secret`; an already redacted value is returned unchanged.
    pub fn fingerprint(&self, secret: &str) -> String {
        if is_redacted(secret) {
            return secret.to_string();
        }
        let mut mac = self.mac.clone();
        mac.update(secret.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut out = String::with_capacity(PREFIX.len() + 32);
        out.push_str(PREFIX);
        for b in &digest[..16] {
            out.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
            out.push(char::from_digit(u32::from(b & 0xf), 16).unwrap_or('0'));
        }
        out
    }

    /// Redacts every secret of `event` in place; returns how many values were replaced.
    pub fn redact_event(&self, event: &mut TelemetryEvent) -> usize {
        match event {
            TelemetryEvent::ComponentStart(e) => e
                .environment
                .iter_mut()
                .map(|var| self.replace_whole(&mut var.value))
                .sum(),
            TelemetryEvent::AuthTokenSighting(e) => self.replace_whole(&mut e.token_fingerprint),
            TelemetryEvent::Api(e) => e.arguments.iter_mut().map(|a| self.redact_text(a)).sum(),
            TelemetryEvent::Process(e) => e.arguments.iter_mut().map(|a| self.redact_text(a)).sum(),
            TelemetryEvent::WebappUriDiscovery(e) => self.redact_text(&mut e.uri),
            TelemetryEvent::File(e) => e.paths.iter_mut().map(|p| self.redact_text(p)).sum(),
            _ => 0,
        }
    }

    fn replace_whole(&self, value: &mut String) -> usize {
        if value.is_empty() || is_redacted(value) {
            return 0;
        }
        *value = self.fingerprint(value);
        1
    }

    /// Redacts secrets inside free text: `Bearer <token>`, `key=value` / `key: value` for
    /// secret-looking keys (query strings, command-line flags, headers), and JSON Web Tokens.
    /// Returns how many secrets were replaced.
    pub fn redact_text(&self, text: &mut String) -> usize {
        if !might_hold_secret(text) {
            return 0;
        }
        let mut out = String::with_capacity(text.len());
        let mut count = 0;
        let mut rest = text.as_str();
        while !rest.is_empty() {
            if let Some((start, end)) = next_secret(rest) {
                out.push_str(&rest[..start]);
                let secret = &rest[start..end];
                if is_redacted(secret) {
                    out.push_str(secret);
                } else {
                    out.push_str(&self.fingerprint(secret));
                    count += 1;
                }
                rest = &rest[end..];
            } else {
                out.push_str(rest);
                break;
            }
        }
        if count > 0 {
            *text = out;
        }
        count
    }
}

fn is_redacted(s: &str) -> bool {
    s.len() == PREFIX.len() + 32
        && s.starts_with(PREFIX)
        && s[PREFIX.len()..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// A cheap filter so the common case (no secret) costs one scan.
fn might_hold_secret(text: &str) -> bool {
    text.contains('=') || text.contains(':') || text.contains("eyJ") || {
        let lower = text.as_bytes();
        lower.windows(6).any(|w| w.eq_ignore_ascii_case(b"bearer"))
    }
}

fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
}

fn is_value_end(c: u8) -> bool {
    c.is_ascii_whitespace() || matches!(c, b'&' | b';' | b',' | b'"' | b'\'' | b'#')
}

/// The end of an already redacted value starting at `start`, if there is one.
fn redacted_at(s: &str, start: usize) -> Option<usize> {
    let end = start.checked_add(PREFIX.len() + 32)?;
    // `get`, not indexing: `end` can fall inside a multi-byte character of the text, and
    // slicing there would panic (in the gateway, and in the processor on every restart).
    s.get(start..end).filter(|v| is_redacted(v)).map(|_| end)
}

/// The byte range of the first secret in `s` (an already redacted value counts as one, so that
/// the caller keeps it as it is).
fn next_secret(s: &str) -> Option<(usize, usize)> {
    let found = find_secret(s)?;
    Some(match redacted_at(s, found.0) {
        Some(end) => (found.0, end),
        None => found,
    })
}

fn find_secret(s: &str) -> Option<(usize, usize)> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        // "Bearer <token>"
        if b.len() - i > 7 && b[i..i + 7].eq_ignore_ascii_case(b"bearer ") {
            let start = i + 7;
            let end = start + b[start..].iter().take_while(|&&c| is_token_char(c)).count();
            if end > start {
                return Some((start, end));
            }
        }
        // A JSON Web Token: eyJ<b64>.<b64>.<b64>
        if b[i..].starts_with(b"eyJ") && (i == 0 || !is_token_char(b[i - 1])) {
            let end = i + b[i..].iter().take_while(|&&c| is_token_char(c)).count();
            if s[i..end].matches('.').count() >= 2 {
                return Some((i, end));
            }
        }
        // key=value or key: value, for secret-looking keys
        if b[i] == b'=' || b[i] == b':' {
            let key_start = b[..i]
                .iter()
                .rposition(|&c| !(c.is_ascii_alphanumeric() || c == b'_' || c == b'-'))
                .map_or(0, |p| p + 1);
            let key = s[key_start..i].trim_start_matches('-').to_ascii_lowercase();
            if SECRET_KEYS.contains(&key.as_str()) {
                let mut start = i + 1;
                while start < b.len() && b[start] == b' ' {
                    start += 1;
                }
                // "Authorization: Bearer x" is handled by the bearer rule on the next pass.
                if b.len() - start > 7 && b[start..start + 7].eq_ignore_ascii_case(b"bearer ") {
                    i += 1;
                    continue;
                }
                let end = start + b[start..].iter().take_while(|&&c| !is_value_end(c)).count();
                if end > start {
                    return Some((start, end));
                }
            }
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redact(s: &str) -> (String, usize) {
        let r = Redactor::new("k");
        let mut s = s.to_string();
        let n = r.redact_text(&mut s);
        (s, n)
    }

    #[test]
    fn bearer_tokens_query_secrets_flags_and_jwts_are_replaced() {
        let (s, n) = redact("curl -H 'Authorization: Bearer abc.DEF-123' https://x/api?user=bob&access_token=s3cr3t&page=2");
        assert_eq!(n, 2, "{s}");
        assert!(!s.contains("abc.DEF-123") && !s.contains("s3cr3t"), "{s}");
        assert!(s.contains("user=bob") && s.contains("&page=2"), "{s}");
        let (s, n) = redact("--password=hunter2 --db-host=db");
        assert_eq!(
            (n, s.contains("hunter2"), s.contains("--db-host=db")),
            (1, false, true)
        );
        let (s, n) = redact("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl end");
        assert_eq!(n, 1);
        assert!(
            s.starts_with("token redacted:") && s.ends_with(" end"),
            "{s}"
        );
    }

    #[test]
    fn text_without_secrets_is_untouched() {
        for t in [
            "/usr/lib/libssl.so.3",
            "GET /api/v1/users?page=2",
            "host: db:5432",
            "",
        ] {
            assert_eq!(redact(t), (t.to_string(), 0));
        }
    }

    #[test]
    fn a_redacted_looking_prefix_cut_inside_a_multibyte_character_does_not_panic() {
        // 31 hex digits, then a 2-byte character: 41 bytes after the value's start end inside
        // it, so the "already redacted?" check must not slice there.
        let text = format!("token={PREFIX}{}é tail", "a".repeat(31));
        let (s, n) = redact(&text);
        assert_eq!(n, 1, "{s}");
        assert!(
            s.starts_with("token=redacted:") && s.ends_with(" tail"),
            "{s}"
        );
        let (s, n) = redact(&format!("Bearer {PREFIX}{}ü", "0".repeat(31)));
        assert_eq!(n, 1, "{s}");
    }

    #[test]
    fn any_mix_of_secret_shapes_and_multibyte_text_redacts_without_panicking() {
        // Every 3-piece text over fragments that start or end the rules' scans, next to
        // multi-byte characters: no slice of the scanner may land inside one.
        const PIECES: [&str; 12] = [
            "é",
            "ü€",
            "token=",
            "Authorization: ",
            "Bearer ",
            "eyJ",
            "a.b.c",
            "redacted:",
            // One hex digit short of a fingerprint: 41 bytes on lands in what follows.
            "redacted:0123456789abcdef0123456789abcde",
            "=",
            ":",
            " ",
        ];
        let r = Redactor::new("k");
        for a in PIECES {
            for b in PIECES {
                for c in PIECES {
                    let mut text = format!("{a}{b}{c}");
                    r.redact_text(&mut text);
                    let mut again = text.clone();
                    assert_eq!(r.redact_text(&mut again), 0, "not idempotent: {text}");
                }
            }
        }
    }

    #[test]
    fn redaction_is_idempotent_and_keyed() {
        let (once, _) = redact("Bearer abc");
        let (twice, n) = redact(&once);
        assert_eq!((once.as_str(), n), (twice.as_str(), 0));
        let a = Redactor::new("k1").fingerprint("secret");
        let b = Redactor::new("k2").fingerprint("secret");
        assert_ne!(a, b);
        assert_eq!(a, Redactor::new("k1").fingerprint("secret"));
        assert!(is_redacted(&a));
    }
}
