//! Small text and time helpers the formats share: truncation on character boundaries, UTC
//! timestamps without a date library, hex, and hiding secrets in what is logged or stored.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

/// `s` cut to at most `max` characters (not bytes), ending in `…` when cut.
pub fn truncate(s: &str, max: usize) -> Cow<'_, str> {
    match s.char_indices().nth(max) {
        None => Cow::Borrowed(s),
        Some(_) if max == 0 => Cow::Borrowed(""),
        Some(_) => {
            let end = s.char_indices().nth(max - 1).map_or(s.len(), |(i, _)| i);
            Cow::Owned(format!("{}…", &s[..end]))
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Year, month, day, hour, minute, second (UTC) of `secs` since the epoch.
fn civil(secs: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil, for the proleptic Gregorian calendar.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

/// RFC 3339 in UTC with milliseconds: `2015-08-30T12:36:00.000Z`.
pub fn rfc3339(ms: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(ms / 1000);
    format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
        ms % 1000
    )
}

/// The SigV4 timestamp form: `20150830T123600Z`.
pub fn amz_date(secs: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

/// A secret shown by its last four characters only, e.g. `…a1b2`.
pub fn mask(secret: &str) -> String {
    let n = secret.chars().count();
    if n <= 8 {
        return "****".into();
    }
    let tail: String = secret.chars().skip(n - 4).collect();
    format!("…{tail}")
}

/// A URL without what may be a secret: no user info, no query, only its first path segment
/// (webhook URLs carry their token in the path: Slack's `/services/T/B/token`, Teams' workflow
/// id and `sig`). `https://hooks.slack.com/services/T0/B0/x` -> `https://hooks.slack.com/services/…`.
pub fn redact_url(url: &reqwest::Url) -> String {
    let mut out = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
    if let Some(port) = url.port() {
        out.push_str(&format!(":{port}"));
    }
    let mut segments = url
        .path_segments()
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty());
    if let Some(first) = segments.next() {
        out.push('/');
        out.push_str(first);
        if segments.next().is_some() || url.query().is_some() {
            out.push_str("/…");
        }
    } else if url.query().is_some() {
        out.push_str("/…");
    }
    out
}

/// `key` if it is at most `max` bytes, else a stable digest of it (destinations cap the length
/// of dedup keys and aliases; the same key must always map to the same value).
pub fn bounded_key(key: &str, max: usize) -> String {
    use sha2::{Digest, Sha256};
    if key.len() <= max {
        key.to_string()
    } else {
        format!("sha256:{}", hex(&Sha256::digest(key.as_bytes())))
    }
}

/// Replaces CR, LF and other control characters by spaces (header values, SMS, subjects).
pub fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_counts_characters_and_never_splits_one() {
        assert_eq!(truncate("héllo", 5), "héllo");
        assert_eq!(truncate("héllo", 3), "hé…");
        assert_eq!(truncate("日本語テキスト", 4).chars().count(), 4);
        assert_eq!(truncate("abc", 0), "");
    }

    #[test]
    fn utc_formats_match_known_instants() {
        assert_eq!(amz_date(1_440_938_160), "20150830T123600Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(4_102_444_799_000), "2099-12-31T23:59:59.000Z");
    }

    #[test]
    fn urls_lose_their_secrets() {
        let u = reqwest::Url::parse("https://hooks.slack.com/services/T0/B0/SECRET").unwrap();
        assert_eq!(redact_url(&u), "https://hooks.slack.com/services/…");
        let u = reqwest::Url::parse("https://u:p@x.example:8443/workflows?sig=SECRET").unwrap();
        let shown = redact_url(&u);
        assert_eq!(shown, "https://x.example:8443/workflows/…");
        assert!(!shown.contains("SECRET") && !shown.contains("u:p@"));
        assert_eq!(mask("R0UTINGKEY0123456789abcdefabcdef"), "…cdef");
        assert_eq!(mask("short"), "****");
    }

    #[test]
    fn long_keys_become_a_stable_digest() {
        assert_eq!(bounded_key("k", 255), "k");
        let long = "x".repeat(300);
        assert_eq!(bounded_key(&long, 255), bounded_key(&long, 255));
        assert!(bounded_key(&long, 255).len() <= 255);
    }
}
