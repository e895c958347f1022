//! Well-known token formats: a fixed prefix that names the issuer and a tail whose alphabet and
//! length keep look-alikes out, after the public rule sets' descriptions (gitleaks,
//! detect-secrets, trufflehog).

/// A well-known token format: a fixed prefix (case-sensitive) and a tail.
pub(super) struct TokenFormat {
    pub(super) prefix: &'static str,
    tail: fn(u8) -> bool,
    min: usize,
    max: usize,
}

pub(super) fn upper_digit(c: u8) -> bool {
    c.is_ascii_uppercase() || c.is_ascii_digit()
}
pub(super) fn alnum(c: u8) -> bool {
    c.is_ascii_alphanumeric()
}
pub(super) fn alnum_underscore(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}
pub(super) fn url_safe(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}
pub(super) fn hex(c: u8) -> bool {
    c.is_ascii_hexdigit()
}
pub(super) fn base64ish(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'=' | b'+' | b'/' | b'.')
}

/// The formats; the prefix identifies the issuer, the tail length keeps look-alikes out.
#[rustfmt::skip]
pub(super) const TOKENS: &[TokenFormat] = &[
    // AWS access key ids: AKIA (long-term), ASIA (temporary), ABIA and ACCA.
    TokenFormat { prefix: "AKIA", tail: upper_digit, min: 16, max: 16 },
    TokenFormat { prefix: "ASIA", tail: upper_digit, min: 16, max: 16 },
    TokenFormat { prefix: "ABIA", tail: upper_digit, min: 16, max: 16 },
    TokenFormat { prefix: "ACCA", tail: upper_digit, min: 16, max: 16 },
    // GitHub: personal, OAuth, user-to-server, server-to-server, refresh; fine-grained PATs.
    TokenFormat { prefix: "ghp_", tail: alnum, min: 36, max: 255 },
    TokenFormat { prefix: "gho_", tail: alnum, min: 36, max: 255 },
    TokenFormat { prefix: "ghu_", tail: alnum, min: 36, max: 255 },
    TokenFormat { prefix: "ghs_", tail: alnum, min: 36, max: 255 },
    TokenFormat { prefix: "ghr_", tail: alnum, min: 36, max: 255 },
    TokenFormat { prefix: "github_pat_", tail: alnum_underscore, min: 22, max: 255 },
    // GitLab: personal, deploy, runner, pipeline trigger tokens.
    TokenFormat { prefix: "glpat-", tail: url_safe, min: 20, max: 255 },
    TokenFormat { prefix: "gldt-", tail: url_safe, min: 20, max: 255 },
    TokenFormat { prefix: "glrt-", tail: url_safe, min: 20, max: 255 },
    TokenFormat { prefix: "glptt-", tail: url_safe, min: 20, max: 255 },
    // Slack: bot, user, app-level, refresh and configuration tokens.
    TokenFormat { prefix: "xoxb-", tail: url_safe, min: 10, max: 255 },
    TokenFormat { prefix: "xoxa-", tail: url_safe, min: 10, max: 255 },
    TokenFormat { prefix: "xoxp-", tail: url_safe, min: 10, max: 255 },
    TokenFormat { prefix: "xoxr-", tail: url_safe, min: 10, max: 255 },
    TokenFormat { prefix: "xoxs-", tail: url_safe, min: 10, max: 255 },
    TokenFormat { prefix: "xoxe-", tail: url_safe, min: 10, max: 255 },
    TokenFormat { prefix: "xapp-", tail: url_safe, min: 10, max: 255 },
    // Stripe secret and restricted keys, live and test, and webhook secrets.
    TokenFormat { prefix: "sk_live_", tail: alnum, min: 10, max: 255 },
    TokenFormat { prefix: "rk_live_", tail: alnum, min: 10, max: 255 },
    TokenFormat { prefix: "sk_test_", tail: alnum, min: 10, max: 255 },
    TokenFormat { prefix: "rk_test_", tail: alnum, min: 10, max: 255 },
    TokenFormat { prefix: "whsec_", tail: alnum, min: 24, max: 255 },
    // Google API keys, OAuth client secrets and access tokens.
    TokenFormat { prefix: "AIza", tail: url_safe, min: 35, max: 35 },
    TokenFormat { prefix: "GOCSPX-", tail: url_safe, min: 20, max: 64 },
    TokenFormat { prefix: "ya29.", tail: url_safe, min: 20, max: 4096 },
    // npm, PyPI, Docker Hub, Hugging Face, DigitalOcean, Shopify, Databricks, Vault, Grafana,
    // Postman, Pulumi, Linear, New Relic, Atlassian, Anthropic, OpenAI, SendGrid, age.
    TokenFormat { prefix: "npm_", tail: alnum, min: 36, max: 36 },
    TokenFormat { prefix: "pypi-AgE", tail: url_safe, min: 50, max: 4096 },
    TokenFormat { prefix: "dckr_pat_", tail: url_safe, min: 20, max: 255 },
    TokenFormat { prefix: "hf_", tail: alnum, min: 34, max: 34 },
    TokenFormat { prefix: "dop_v1_", tail: hex, min: 64, max: 64 },
    TokenFormat { prefix: "doo_v1_", tail: hex, min: 64, max: 64 },
    TokenFormat { prefix: "dor_v1_", tail: hex, min: 64, max: 64 },
    TokenFormat { prefix: "shpat_", tail: hex, min: 32, max: 32 },
    TokenFormat { prefix: "shpss_", tail: hex, min: 32, max: 32 },
    TokenFormat { prefix: "shpca_", tail: hex, min: 32, max: 32 },
    TokenFormat { prefix: "dapi", tail: hex, min: 32, max: 32 },
    TokenFormat { prefix: "hvs.", tail: url_safe, min: 24, max: 255 },
    TokenFormat { prefix: "hvb.", tail: url_safe, min: 24, max: 255 },
    TokenFormat { prefix: "glsa_", tail: alnum_underscore, min: 32, max: 255 },
    TokenFormat { prefix: "glc_", tail: base64ish, min: 32, max: 4096 },
    TokenFormat { prefix: "PMAK-", tail: url_safe, min: 40, max: 255 },
    TokenFormat { prefix: "pul-", tail: hex, min: 40, max: 40 },
    TokenFormat { prefix: "lin_api_", tail: alnum, min: 40, max: 40 },
    TokenFormat { prefix: "NRAK-", tail: upper_digit, min: 27, max: 27 },
    TokenFormat { prefix: "ATATT3", tail: base64ish, min: 50, max: 4096 },
    TokenFormat { prefix: "sk-ant-", tail: url_safe, min: 32, max: 4096 },
    TokenFormat { prefix: "sk-proj-", tail: url_safe, min: 32, max: 4096 },
    TokenFormat { prefix: "sk-svcacct-", tail: url_safe, min: 32, max: 4096 },
    TokenFormat { prefix: "SG.", tail: base64ish, min: 60, max: 80 },
    TokenFormat { prefix: "AGE-SECRET-KEY-1", tail: upper_digit, min: 58, max: 58 },
];

/// The token of format `t` starting at `s`, when the text there is one.
pub(super) fn find(b: &[u8], s: usize, t: &TokenFormat, spans: &mut Vec<(usize, usize)>) {
    let p = t.prefix.as_bytes();
    if !b[s..].starts_with(p) || (s > 0 && alnum(b[s - 1])) {
        return;
    }
    let tail_start = s + p.len();
    let tail = b[tail_start..]
        .iter()
        .take(t.max + 1)
        .take_while(|&&c| (t.tail)(c))
        .count();
    if tail < t.min || tail > t.max {
        return;
    }
    let end = tail_start + tail;
    // A fixed-length format must end there (`AKIA` + 16, not + 20).
    if t.min == t.max && b.get(end).is_some_and(|&c| alnum(c)) {
        return;
    }
    spans.push((s, end));
}
