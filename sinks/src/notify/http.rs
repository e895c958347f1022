//! One HTTP attempt, the same for every HTTP integration: send, read the answer, and sort a
//! failure into retryable (429, 5xx, connection, timeout) or final, with `Retry-After`.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::Url;

use super::{SendError, Sent};

/// How much of an error body an attempt keeps.
const BODY_SNIPPET_CHARS: usize = 512;

/// Sends `request` and classifies the answer.
pub async fn send(request: reqwest::RequestBuilder) -> Result<Sent, SendError> {
    let response = request.send().await.map_err(classify)?;
    let status = response.status().as_u16();
    let retry_after = retry_after(response.headers(), SystemTime::now());
    // Read the body either way: the connection goes back to the pool only when it is drained.
    let body = response.bytes().await.map_err(classify)?;
    if (200..300).contains(&status) {
        return Ok(Sent { status });
    }
    let body = String::from_utf8_lossy(&body);
    Err(SendError::Status {
        status,
        retry_after,
        body: super::text::truncate(body.trim(), BODY_SNIPPET_CHARS).into_owned(),
        retryable: status == 429 || status >= 500,
    })
}

fn classify(e: reqwest::Error) -> SendError {
    // reqwest's Display omits the cause ("error sending request"); keep the whole chain.
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    // Timeouts are the notifier's (one per attempt); reqwest only times out connecting, which is
    // a connection error like any other.
    if e.is_builder() {
        SendError::Invalid(message)
    } else {
        SendError::Connect(message)
    }
}

/// `Retry-After` as a delay: delta-seconds or an HTTP date (a date in the past is no delay).
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// An endpoint URL from the config: absolute, http or https, with a host.
pub fn parse_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s.trim()).map_err(|e| format!("invalid URL {:?}: {e}", redact_raw(s)))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "{} is not an http(s) URL with a host",
            super::text::redact_url(&url)
        ));
    }
    Ok(url)
}

/// A base URL with `path` appended (keeping any path prefix the base has).
pub fn join(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let joined = format!(
        "{}/{}",
        base.path().trim_end_matches('/'),
        path.trim_start_matches('/')
    );
    url.set_path(&joined);
    url
}

/// What can be shown of a string that did not even parse as a URL: its scheme and host part.
fn redact_raw(s: &str) -> String {
    match s.find("://") {
        Some(i) => {
            let rest = &s[i + 3..];
            let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let host = rest[..host_end].rsplit('@').next().unwrap_or("");
            format!("{}://{host}/…", &s[..i])
        }
        None => "(not shown)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        h.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(30)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        h.insert(RETRY_AFTER, HeaderValue::from_str(&past).unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h, now), None);
    }

    #[test]
    fn endpoint_urls_must_be_http_with_a_host() {
        assert!(parse_url("https://hooks.slack.com/services/a/b/c").is_ok());
        assert!(parse_url("ftp://x/y").is_err());
        let e = parse_url("not a url/with/SECRET").unwrap_err();
        assert!(!e.contains("SECRET"), "{e}");
        let base = parse_url("http://127.0.0.1:8088/prefix/").unwrap();
        assert_eq!(
            join(&base, "/services/collector/event").path(),
            "/prefix/services/collector/event"
        );
    }
}
