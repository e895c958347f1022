//! Whether a key names a secret: a command-line flag, a query parameter, an environment
//! variable, a JSON member or a header. Keys are read as words (`keyStorePassword`,
//! `AWS_SECRET_ACCESS_KEY`, `x-api-key`, `-Djavax.net.ssl.trustStorePassword`), and what decides is
//! the last word: `DB_PASSWORD` holds a secret, `DB_PASSWORD_FILE` and `PASSWORD_MIN_LENGTH` do not.

/// What the value of a key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// Not named as a secret: the value is only scanned for secret shapes.
    Plain,
    /// A secret whatever it looks like (`password`, `api_key`, `client_secret`, `X-Amz-Signature`).
    Secret,
    /// A secret when it looks random (`key`, `sig`, `session`): a bare `key=` names a map key or
    /// a file as often as a credential.
    SecretIfRandom,
    /// A header whose whole value is a credential, its scheme word (`Basic`, `Bearer`) kept:
    /// `Authorization`, `Proxy-Authorization`, `Cookie`.
    Header,
}

/// Last words that make a key a secret's name.
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "pass",
    "passphrase",
    "passcode",
    "secret",
    "token",
    "credential",
    "credentials",
    "creds",
    "signature",
    "apikey",
    "jwt",
    "auth",
    "privatekey",
    "secretkey",
    "accesskey",
    "storepass",
    "keypass",
];

/// Endings of the whole key, words run together (`keyStorePassword` → `keystorepassword`), that
/// make it a secret's name even when written as one word (`PGPASSWORD`, `apikey`).
const SECRET_ENDINGS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "credential",
    "credentials",
    "signature",
    "apikey",
    "accesskey",
    "privatekey",
    "secretkey",
    "storepass",
    "keypass",
    "secretkeybase",
];

/// Words before a final `key` that make it a secret (`api key`, `signing key`); any other `key`
/// is a secret only when its value looks random.
const KEY_QUALIFIERS: &[&str] = &[
    "api",
    "access",
    "private",
    "secret",
    "signing",
    "sign",
    "encryption",
    "encrypt",
    "master",
    "account",
    "client",
    "app",
    "auth",
    "sas",
    "storage",
    "shared",
    "service",
    "license",
    "licence",
    "hmac",
    "ssh",
    "gpg",
    "pgp",
    "session",
    "subscription",
    "consumer",
    "webhook",
    "deploy",
    "admin",
];

/// Last words whose values are secrets when they look random.
const RANDOM_WORDS: &[&str] = &["key", "sig", "session", "sessionid", "sid", "code", "nonce"];

/// Keys (words run together) whose whole value is a credential after a scheme word.
const HEADERS: &[&str] = &["authorization", "proxyauthorization", "cookie", "setcookie"];

/// The words of `key`, lower-cased: split at anything but letters and digits, and where
/// `camelCase` turns (`keyStorePassword` → key, store, password; `APIKey` → api, key).
pub fn words(key: &str) -> Vec<String> {
    let b = key.as_bytes();
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    for (i, &c) in b.iter().enumerate() {
        if !c.is_ascii_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        let boundary = c.is_ascii_uppercase()
            && i > 0
            && (b[i - 1].is_ascii_lowercase()
                || (b[i - 1].is_ascii_uppercase()
                    && b.get(i + 1).is_some_and(u8::is_ascii_lowercase)));
        if boundary && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        cur.push(c.to_ascii_lowercase() as char);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// What `key` names; `extra` are configured endings (lower case, no separators) that name
/// secrets too.
pub fn classify(key: &str, extra: &[String]) -> KeyKind {
    let words = words(key);
    let Some(last) = words.last() else {
        return KeyKind::Plain;
    };
    let compact: String = words.concat();
    if HEADERS.contains(&compact.as_str()) {
        return KeyKind::Header;
    }
    if SECRET_WORDS.contains(&last.as_str())
        || SECRET_ENDINGS.iter().any(|e| compact.ends_with(e))
        || extra
            .iter()
            .any(|e| !e.is_empty() && compact.ends_with(e.as_str()))
    {
        return KeyKind::Secret;
    }
    if last == "key" {
        let qualified =
            words.len() >= 2 && KEY_QUALIFIERS.contains(&words[words.len() - 2].as_str());
        return if qualified {
            KeyKind::Secret
        } else {
            KeyKind::SecretIfRandom
        };
    }
    if RANDOM_WORDS.contains(&last.as_str()) {
        return KeyKind::SecretIfRandom;
    }
    KeyKind::Plain
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_as_words_and_the_last_one_decides() {
        for key in [
            "password",
            "--password",
            "DB_PASSWORD",
            "PGPASSWORD",
            "db.password",
            "Djavax.net.ssl.keyStorePassword",
            "AWS_SECRET_ACCESS_KEY",
            "aws_session_token",
            "api-key",
            "apikey",
            "X-API-Key",
            "APIKey",
            "client_secret",
            "access_token",
            "X-Amz-Signature",
            "X-Amz-Credential",
            "X-Amz-Security-Token",
            "private-key",
            "AccountKey",
            "SharedAccessKey",
            "jwt",
            "auth",
            "pwd",
            "storepass",
            "SECRET_KEY_BASE",
            "GITHUB_TOKEN",
            "REDIS_PASS",
        ] {
            assert_eq!(classify(key, &[]), KeyKind::Secret, "{key}");
        }
        for key in [
            "PATH",
            "SERVER_PORT",
            "HOME",
            "DB_PASSWORD_FILE",
            "password-file",
            "PASSWORD_MIN_LENGTH",
            "keyStore",
            "Djavax.net.ssl.keyStore",
            "AUTH_TYPE",
            "author",
            "TOKEN_TTL",
            "SSH_AUTH_SOCK",
            "XAUTHORITY",
            "monkey",
            "AWS_ACCESS_KEY_ID",
            "secretsmanager_endpoint",
            "GIT_ASKPASS",
            "",
            "--",
        ] {
            assert_eq!(classify(key, &[]), KeyKind::Plain, "{key}");
        }
        for key in ["key", "sig", "session", "X-Session", "tls-key", "keyId-key"] {
            assert_eq!(classify(key, &[]), KeyKind::SecretIfRandom, "{key}");
        }
        for key in [
            "Authorization",
            "Proxy-Authorization",
            "cookie",
            "Set-Cookie",
        ] {
            assert_eq!(classify(key, &[]), KeyKind::Header, "{key}");
        }
        assert_eq!(
            classify("ACME_LICENSE_BLOB", &["licenseblob".into()]),
            KeyKind::Secret
        );
    }
}
