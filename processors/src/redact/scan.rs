//! The detector: finds the byte ranges of the secrets in one string. One Aho-Corasick pass over
//! the string finds every trigger (a secret-like key word, a token prefix, `://`, `eyJ`,
//! `Bearer`, a PEM header); only around a trigger does a rule look further, so a string with no
//! trigger (most paths, symbols, package names) costs that one pass.
use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};

use super::keys::{classify, KeyKind};
use super::tokens::{self, alnum, base64ish, url_safe, TOKENS};

/// Key words: a key holding one of them is classified by [`classify`].
const KEY_WORDS: &[&str] = &[
    "pass", "pwd", "secret", "token", "key", "cred", "sig", "auth", "jwt", "cookie", "session",
    "nonce", "code",
];

/// MySQL and MariaDB client programs (`mysql`, `mysqldump`, `mariadb-dump`, ...): they take the
/// password attached to `-p` (`-pS3cret`); a lone `-p` asks for it.
const DB_CLIENTS: &[&str] = &["mysql", "mariadb"];

/// Whether `word` (a path or a program name) is a MySQL or MariaDB client program.
pub fn is_db_client(word: &str) -> bool {
    let name = word.rsplit('/').next().unwrap_or(word).as_bytes();
    let starts =
        |p: &str| name.len() >= p.len() && name[..p.len()].eq_ignore_ascii_case(p.as_bytes());
    // The servers (`mysqld`, `mysqld_safe`, `mariadbd`) take no password.
    let server = ["mysqld", "mariadbd"]
        .iter()
        .any(|d| starts(d) && matches!(name.get(d.len()), None | Some(b'_' | b'-')));
    // Program names are lower case: `MYSQL_PWD` or `MySQL` in prose are not programs.
    DB_CLIENTS.iter().any(|c| starts(c))
        && !server
        && name
            .iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_')
}

/// After a client program's name at `s..e`, the value of every `-p<password>` of the same
/// command (up to `;`, `|`, `&` or a line end).
fn attached_passwords(b: &[u8], s: usize, e: usize, spans: &mut Vec<(usize, usize)>) {
    // The name must be a whole word in command position: `mysqld` or `my-mysql-notes` are not
    // clients, `/usr/bin/mysql` and `mysqldump` are.
    if s > 0
        && !matches!(
            b[s - 1],
            b' ' | b'\t' | b'/' | b'"' | b'\'' | b'=' | b'(' | b';' | b'|' | b'&'
        )
    {
        return;
    }
    let mut p = e;
    while p < b.len() && (b[p].is_ascii_alphanumeric() || b[p] == b'-' || b[p] == b'_') {
        p += 1;
    }
    if std::str::from_utf8(&b[s..p]).map_or(true, |w| !is_db_client(w)) {
        return;
    }
    while p < b.len() {
        match b[p] {
            b';' | b'|' | b'&' | b'\n' => return,
            b' ' | b'\t' => p += 1,
            _ => {
                let token = p;
                if b[p..].starts_with(b"-p")
                    && b.get(p + 2).is_some_and(|&c| c != b' ' && c != b'\t')
                {
                    let vs = p + 2;
                    let ve = match b[vs] {
                        q @ (b'"' | b'\'') => closing_quote(b, vs + 1, q),
                        _ => {
                            vs + b[vs..]
                                .iter()
                                .take_while(|&&c| {
                                    !matches!(c, b' ' | b'\t' | b'\n' | b';' | b'|' | b'&')
                                })
                                .count()
                        }
                    };
                    let (vs, ve) = if matches!(b[vs], b'"' | b'\'') {
                        (vs + 1, ve)
                    } else {
                        (vs, ve)
                    };
                    if ve > vs {
                        spans.push((vs, ve));
                    }
                    p = ve.max(token + 1);
                    continue;
                }
                while p < b.len() && !matches!(b[p], b' ' | b'\t' | b'\n' | b';' | b'|' | b'&') {
                    p += 1;
                }
            }
        }
    }
}

/// Webhook URLs whose path is the credential: the rest of the path after the literal is secret.
const SECRET_PATHS: &[&str] = &[
    "hooks.slack.com/services/",
    "hooks.slack.com/workflows/",
    "discord.com/api/webhooks/",
    "discordapp.com/api/webhooks/",
    "outlook.office.com/webhook/",
];

#[derive(Debug, Clone, Copy)]
enum Trigger {
    Key,
    Token(usize),
    Bearer,
    Basic,
    Url,
    Jwt,
    Pem,
    SecretPath,
}

/// The compiled detector.
pub struct Scanner {
    /// Every trigger, case-insensitive.
    automaton: AhoCorasick,
    triggers: Vec<Trigger>,
    /// The triggers that need no separator around them (token prefixes, `eyJ`, webhook URLs),
    /// case-sensitive: all a string without `=`, `:`, a blank or a quote can hold.
    bare: Bare,
    bare_triggers: Vec<Trigger>,
    /// The first three bytes of every bare trigger, hashed into a 65,536-bit set: a bare
    /// string with none of them holds no trigger, and is not searched.
    bare_starts: Vec<u64>,
    extra_keys: Vec<String>,
}

/// The searcher of the bare triggers: SIMD (Teddy) where the CPU has it, an automaton
/// otherwise. Bare strings are the long ones (symbols, module paths), so this is where bytes go.
enum Bare {
    Packed(aho_corasick::packed::Searcher),
    Automaton(AhoCorasick),
}

/// Bare strings shorter than this are checked with the trigram table before any search.
const BARE_FILTER_BELOW: usize = 256;

/// A hash of three bytes into 0..65536.
fn trigram(a: u8, b: u8, c: u8) -> usize {
    let x = u32::from(a) | u32::from(b) << 8 | u32::from(c) << 16;
    (x.wrapping_mul(0x9E37_79B1) >> 16) as usize
}

/// The bytes around which a key's value, a URL's password or a header's credentials sit.
const SEPARATORS: [bool; 256] = {
    let mut t = [false; 256];
    t[b'=' as usize] = true;
    t[b':' as usize] = true;
    t[b' ' as usize] = true;
    t[b'"' as usize] = true;
    t[b'\'' as usize] = true;
    t[b'\t' as usize] = true;
    t
};

/// The shortest secret a string without separators can hold: a JWT (`eyJ` + 7, `.`, 2, `.`)
/// or a token (`xoxb-` + 10).
const SHORTEST_BARE_SECRET: usize = 14;

impl Scanner {
    /// `extra_keys`: configured key endings (lower case, separators removed) that name secrets.
    pub fn new(extra_keys: &[String]) -> Self {
        let mut patterns: Vec<String> = Vec::new();
        let mut triggers = Vec::new();
        let mut add = |p: &str, t: Trigger| {
            patterns.push(p.to_string());
            triggers.push(t);
        };
        for k in KEY_WORDS {
            add(k, Trigger::Key);
        }
        for (i, t) in TOKENS.iter().enumerate() {
            add(t.prefix, Trigger::Token(i));
        }
        add("bearer", Trigger::Bearer);
        add("basic", Trigger::Basic);
        add("://", Trigger::Url);
        add("eyJ", Trigger::Jwt);
        add("-----BEGIN", Trigger::Pem);
        for p in SECRET_PATHS {
            add(p, Trigger::SecretPath);
        }
        // A configured key is recognised by its last word (`license_blob` by `blob`, which
        // any spelling of it holds) and decided by its words run together.
        let mut compact_keys = Vec::new();
        for k in extra_keys {
            let words = super::keys::words(k);
            if let Some(last) = words.last() {
                add(last, Trigger::Key);
                compact_keys.push(words.concat());
            }
        }
        let extra_keys = compact_keys;
        let build = |patterns: &[String], case_insensitive: bool| {
            AhoCorasick::builder()
                .ascii_case_insensitive(case_insensitive)
                .match_kind(MatchKind::Standard)
                .kind(Some(AhoCorasickKind::DFA))
                .build(patterns)
                .expect("the trigger patterns are plain literals")
        };
        let (bare_patterns, bare_triggers): (Vec<String>, Vec<Trigger>) = patterns
            .iter()
            .zip(&triggers)
            .filter(|(_, t)| matches!(t, Trigger::Token(_) | Trigger::Jwt | Trigger::SecretPath))
            .map(|(p, t)| (p.clone(), *t))
            .unzip();
        let packed = aho_corasick::packed::Config::new()
            .match_kind(aho_corasick::packed::MatchKind::LeftmostFirst)
            .builder()
            .extend(&bare_patterns)
            .build();
        let mut bare_starts = vec![0u64; 1024];
        for p in &bare_patterns {
            if let [a, b, c, ..] = p.as_bytes() {
                let i = trigram(*a, *b, *c);
                bare_starts[i / 64] |= 1 << (i % 64);
            }
        }
        let bare = match packed {
            Some(searcher) => Bare::Packed(searcher),
            None => Bare::Automaton(build(&bare_patterns, false)),
        };
        Self {
            automaton: build(&patterns, true),
            triggers,
            bare,
            bare_triggers,
            bare_starts,
            extra_keys,
        }
    }

    /// Pushes the byte range of every secret in `text` onto `spans` (unsorted, may overlap).
    /// Ranges start and end on ASCII bytes or the ends of `text`, so they are char boundaries.
    pub fn find(&self, text: &str, spans: &mut Vec<(usize, usize)>) {
        let b = text.as_bytes();
        // Most strings (symbols, module paths, package names, ids) have no separator: only a
        // token or a JWT can hide there, and a short one holds neither.
        let separated = if b.len() < 64 {
            // Short strings, the most common: one pass over a table beats two SIMD searches.
            b.iter().any(|&c| SEPARATORS[usize::from(c)])
        } else {
            memchr::memchr3(b'=', b':', b' ', b).is_some()
                || memchr::memchr3(b'"', b'\'', b'\t', b).is_some()
        };
        if !separated {
            if b.len() < SHORTEST_BARE_SECRET {
                return;
            }
            // Short and medium strings: a table look-up per 3 bytes is cheaper than starting a
            // search (which, under Teddy's minimum length, is a Rabin-Karp loop).
            if b.len() < BARE_FILTER_BELOW
                && !b.windows(3).any(|w| {
                    let i = trigram(w[0], w[1], w[2]);
                    self.bare_starts[i / 64] & (1 << (i % 64)) != 0
                })
            {
                return;
            }
            // Bare triggers never overlap one another: leftmost matches find them all.
            match &self.bare {
                Bare::Packed(p) => {
                    for m in p.find_iter(b) {
                        self.on_trigger(
                            b,
                            text,
                            self.bare_triggers[m.pattern().as_usize()],
                            m.start(),
                            m.end(),
                            &mut 0,
                            spans,
                        );
                    }
                }
                Bare::Automaton(a) => {
                    for m in a.find_overlapping_iter(text) {
                        self.on_trigger(
                            b,
                            text,
                            self.bare_triggers[m.pattern().as_usize()],
                            m.start(),
                            m.end(),
                            &mut 0,
                            spans,
                        );
                    }
                }
            }
            return;
        }
        let mut key_done = 0;
        for m in self.automaton.find_overlapping_iter(text) {
            let t = self.triggers[m.pattern().as_usize()];
            self.on_trigger(b, text, t, m.start(), m.end(), &mut key_done, spans);
        }
        // A MySQL client's `-p<password>`: looked for only in text holding ` -p` (one SIMD
        // search), not through the automaton, whose prefilter a frequent first letter would
        // slow for every string.
        if memchr::memmem::find(b, b" -p").is_some() {
            for client in DB_CLIENTS {
                for s in memchr::memmem::find_iter(b, client.as_bytes()) {
                    attached_passwords(b, s, s + client.len(), spans);
                }
            }
        }
    }

    /// Runs the rule of trigger `t` found at `s..e`.
    #[allow(clippy::too_many_arguments)]
    fn on_trigger(
        &self,
        b: &[u8],
        text: &str,
        t: Trigger,
        s: usize,
        e: usize,
        key_done: &mut usize,
        spans: &mut Vec<(usize, usize)>,
    ) {
        {
            match t {
                Trigger::Key => {
                    if e > *key_done {
                        *key_done = self.key_value(b, s, e, spans);
                    }
                }
                Trigger::Token(i) => tokens::find(b, s, &TOKENS[i], spans),
                Trigger::Bearer => scheme(b, s, e, false, spans),
                Trigger::Basic => scheme(b, s, e, true, spans),
                Trigger::Url => userinfo(b, e, spans),
                Trigger::Jwt => jwt(b, s, spans),
                Trigger::Pem => pem(text, s, spans),
                Trigger::SecretPath => {
                    let end = e + b[e..].iter().take_while(|&&c| base64ish(c)).count();
                    if end > e {
                        spans.push((e, end));
                    }
                }
            }
        }
    }

    /// Whether `arg` is a flag naming a secret with its value in the next argument
    /// (`--password`, `-storepass`); `Some(kind)` then.
    pub fn bare_flag(&self, arg: &str) -> Option<KeyKind> {
        let name = arg.strip_prefix('-')?;
        let name = name.strip_prefix('-').unwrap_or(name);
        if name.is_empty() || !name.bytes().all(is_key_char) {
            return None;
        }
        match classify(name, &self.extra_keys) {
            KeyKind::Plain => None,
            kind => Some(kind),
        }
    }

    /// What an environment variable's name says about its value.
    pub fn classify_name(&self, name: &str) -> KeyKind {
        classify(name, &self.extra_keys)
    }

    /// The key word found at `s..e`: reads the whole key around it and, when it names a secret,
    /// the value after `=`, `:` or (for a flag) a space. Returns where the key ends.
    fn key_value(&self, b: &[u8], s: usize, e: usize, spans: &mut Vec<(usize, usize)>) -> usize {
        let mut ks = s;
        while ks > 0 && is_key_char(b[ks - 1]) {
            ks -= 1;
        }
        let mut ke = e;
        while ke < b.len() && is_key_char(b[ke]) {
            ke += 1;
        }
        let Ok(raw_key) = std::str::from_utf8(&b[ks..ke]) else {
            return ke;
        };
        let dashes = raw_key.len() - raw_key.trim_start_matches('-').len();
        let kind = classify(raw_key, &self.extra_keys);
        if kind == KeyKind::Plain {
            return ke;
        }
        // A quoted key (`"password": "x"`, `'token': 'y'`) closes its quote first.
        let mut p = ke;
        if ks > 0 && matches!(b[ks - 1], b'"' | b'\'') && b.get(p) == Some(&b[ks - 1]) {
            p += 1;
        }
        let after_key = p;
        p = skip_blanks(b, p);
        let value_start;
        if p < b.len() && (b[p] == b'=' || b[p] == b':') {
            // `scheme://` is a URL, not a key.
            if b[p] == b':' && b.get(p + 1) == Some(&b'/') && b.get(p + 2) == Some(&b'/') {
                return ke;
            }
            p += 1;
            if b.get(p) == Some(&b'=') || b.get(p) == Some(&b'>') {
                p += 1; // `:=`, `=>`
            }
            value_start = skip_blanks(b, p);
        } else if dashes > 0 && after_key < b.len() && p > after_key {
            // `--password hunter2`: the next word, unless it is another flag.
            if b.get(p) == Some(&b'-') {
                return ke;
            }
            value_start = p;
        } else {
            return ke;
        }
        if value_start >= b.len() {
            return ke;
        }
        let (vs, ve) = match b[value_start] {
            q @ (b'"' | b'\'') => {
                let start = value_start + 1;
                (start, closing_quote(b, start, q))
            }
            b'{' | b'[' => return ke, // a nested object: its own keys are scanned
            _ if kind == KeyKind::Header => (value_start, line_end(b, value_start)),
            _ => {
                let flag = dashes > 0;
                let len = b[value_start..]
                    .iter()
                    .take_while(|&&c| !ends_value(c, flag))
                    .count();
                (value_start, value_start + len)
            }
        };
        if ve <= vs {
            return ke;
        }
        let value = &b[vs..ve];
        match kind {
            KeyKind::Header => {
                // Keep the scheme word (`Basic`, `Bearer`) for context.
                let word = value
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == b'-')
                    .count();
                let rest = skip_blanks(value, word);
                let vs =
                    if word > 0 && rest > word && rest < value.len() && is_scheme(&value[..word]) {
                        vs + rest
                    } else {
                        vs
                    };
                let mut ve = ve;
                while ve > vs && b[ve - 1].is_ascii_whitespace() {
                    ve -= 1;
                }
                if ve > vs {
                    spans.push((vs, ve));
                }
            }
            KeyKind::SecretIfRandom if !looks_random(value) => {}
            _ if is_reference(value) => {}
            _ => spans.push((vs, ve)),
        }
        ke.max(ve.min(b.len()))
    }
}

/// Characters of a key: `DB_PASSWORD`, `x-api-key`, `javax.net.ssl.keyStorePassword`, `--token`.
pub fn is_key_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.')
}

fn skip_blanks(b: &[u8], mut p: usize) -> usize {
    while p < b.len() && (b[p] == b' ' || b[p] == b'\t') {
        p += 1;
    }
    p
}

/// Where a value ends. A flag's value (`--password=a#b;c`) is the whole word: a secret may
/// hold any character but a space; other values (query strings, `k=v; k=v` lists) also end at
/// `&`, `;` and `,`.
fn ends_value(c: u8, flag: bool) -> bool {
    c.is_ascii_whitespace()
        || matches!(c, b'"' | b'\'')
        || (!flag && matches!(c, b'&' | b';' | b','))
}

fn closing_quote(b: &[u8], start: usize, q: u8) -> usize {
    let mut i = start;
    while i < b.len() {
        if b[i] == b'\\' {
            i += 2;
            continue;
        }
        if b[i] == q {
            return i;
        }
        i += 1;
    }
    b.len()
}

fn line_end(b: &[u8], start: usize) -> usize {
    start
        + b[start..]
            .iter()
            .take_while(|&&c| c != b'\n' && c != b'\r' && c != b'"' && c != b'\'')
            .count()
}

fn is_scheme(word: &[u8]) -> bool {
    const SCHEMES: [&[u8]; 9] = [
        b"basic",
        b"bearer",
        b"token",
        b"digest",
        b"negotiate",
        b"ntlm",
        b"apikey",
        b"sso-key",
        b"aws4-hmac-sha256",
    ];
    SCHEMES.iter().any(|s| s.eq_ignore_ascii_case(word))
}

/// `$VAR`, `${VAR}`, `%VAR%`: a reference to where the secret is, not the secret.
fn is_reference(v: &[u8]) -> bool {
    let name =
        |n: &[u8]| !n.is_empty() && n.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_');
    match v {
        [b'$', b'{', inner @ .., b'}'] => name(inner),
        [b'$', inner @ ..] => name(inner),
        [b'%', inner @ .., b'%'] => name(inner),
        _ => false,
    }
}

/// Whether a value looks machine-made rather than a word, number or path: at least 16
/// characters, letters and digits mixed, not a path, and at least 3 bits of entropy per
/// character.
pub fn looks_random(v: &[u8]) -> bool {
    if v.len() < 16 || matches!(v[0], b'/' | b'.' | b'~') {
        return false;
    }
    let letters = v.iter().filter(|c| c.is_ascii_alphabetic()).count();
    let digits = v.iter().filter(|c| c.is_ascii_digit()).count();
    if letters == 0 || digits == 0 {
        return false;
    }
    entropy_bits(v) >= 3.0
}

/// Shannon entropy of `v` in bits per byte.
pub fn entropy_bits(v: &[u8]) -> f64 {
    let mut counts = [0u32; 256];
    for &c in v {
        counts[usize::from(c)] += 1;
    }
    let n = v.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// `Bearer <token>` / `Basic <credentials>` in free text: the credentials when they look like
/// one (8+ characters with a digit, capital or symbol: not "Basic authentication").
fn scheme(b: &[u8], s: usize, e: usize, basic: bool, spans: &mut Vec<(usize, usize)>) {
    if (s > 0 && alnum(b[s - 1])) || b.get(e) != Some(&b' ') {
        return;
    }
    let start = skip_blanks(b, e);
    // RFC 6750's b64token and RFC 7617's base64: `=` only as trailing padding.
    let ok = |c: u8| {
        c.is_ascii_alphanumeric()
            || matches!(c, b'+' | b'/')
            || (!basic && matches!(c, b'-' | b'.' | b'_' | b'~'))
    };
    let body = b[start..].iter().take_while(|&&c| ok(c)).count();
    let len = body + b[start + body..].iter().take_while(|&&c| c == b'=').count();
    let tok = &b[start..start + len];
    let marked = tok
        .iter()
        .any(|c| c.is_ascii_digit() || c.is_ascii_uppercase() || !c.is_ascii_alphanumeric());
    if len >= 8 && marked {
        spans.push((start, start + len));
    }
}

/// `scheme://user:password@host`: the password; a user alone when it looks like a token
/// (`https://ghp_...@github.com`).
fn userinfo(b: &[u8], authority: usize, spans: &mut Vec<(usize, usize)>) {
    let len = b[authority..]
        .iter()
        .take_while(|&&c| {
            !(c.is_ascii_whitespace()
                || matches!(c, b'/' | b'?' | b'#' | b'"' | b'\'' | b'<' | b'>' | b'\\'))
        })
        .count();
    let auth = &b[authority..authority + len];
    let Some(at) = auth.iter().rposition(|&c| c == b'@') else {
        return;
    };
    match auth[..at].iter().position(|&c| c == b':') {
        Some(colon) if colon + 1 < at => spans.push((authority + colon + 1, authority + at)),
        Some(_) => {}
        None if looks_random(&auth[..at]) => spans.push((authority, authority + at)),
        None => {}
    }
}

/// A JSON Web Token (`eyJ<header>.<payload>.<signature>`, or five parts when encrypted),
/// wherever it is: an argument, a URI path, a query value.
fn jwt(b: &[u8], s: usize, spans: &mut Vec<(usize, usize)>) {
    if s > 0 && url_safe(b[s - 1]) {
        return;
    }
    let mut end = s;
    let mut parts = Vec::with_capacity(5);
    loop {
        let n = b[end..].iter().take_while(|&&c| url_safe(c)).count();
        parts.push(n);
        end += n;
        if parts.len() < 5 && b.get(end) == Some(&b'.') {
            end += 1;
        } else {
            break;
        }
    }
    if parts.len() >= 3 && parts[0] >= 10 && parts[1] >= 2 {
        spans.push((s, end));
    }
}

/// The body of a private key block, from after its `-----BEGIN ... PRIVATE KEY-----` line
/// to the end of its `-----END ...-----` line (or of the text, when cut).
fn pem(text: &str, s: usize, spans: &mut Vec<(usize, usize)>) {
    let rest = &text[s + "-----BEGIN".len()..];
    let Some(label_end) = rest.find("-----") else {
        return;
    };
    if !rest[..label_end].contains("PRIVATE KEY") || label_end > 64 {
        return;
    }
    let body = s + "-----BEGIN".len() + label_end + "-----".len();
    let end = match text[body..].find("-----END") {
        Some(i) => {
            let after = body + i + "-----END".len();
            match text[after..].find("-----") {
                Some(j) if j <= 64 => after + j + "-----".len(),
                _ => text.len(),
            }
        }
        None => text.len(),
    };
    if end > body {
        spans.push((body, end));
    }
}
