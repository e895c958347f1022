use super::corpus::{Shape, LEAKS, LOOK_ALIKES};
use super::*;

fn redactor() -> Redactor {
    Redactor::new("k")
}

fn redact(s: &str) -> (String, usize) {
    let mut s = s.to_string();
    let n = redactor().redact_text(&mut s);
    (s, n)
}

/// The shape redacted, as one string (arguments joined by spaces), and how many were replaced.
fn redact_shape(r: &Redactor, shape: Shape) -> (String, usize) {
    match shape {
        Shape::Text(t) => {
            let mut t = t.to_string();
            let n = r.redact_text(&mut t);
            (t, n)
        }
        Shape::Env(name, value) => {
            let mut v = value.to_string();
            let n = r.redact_env(name, &mut v);
            (format!("{name}={v}"), n)
        }
        Shape::Args(args) => {
            let mut a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            let n = r.redact_arguments(&mut a);
            (a.join(" "), n)
        }
    }
}

#[test]
fn the_corpus_has_enough_shapes() {
    assert!(LEAKS.len() >= 60, "{}", LEAKS.len());
    assert!(LOOK_ALIKES.len() >= 30, "{}", LOOK_ALIKES.len());
}

#[test]
fn every_leak_of_the_corpus_is_redacted_and_stays_redacted() {
    let r = redactor();
    for leak in LEAKS {
        let (out, n) = redact_shape(&r, leak.shape);
        assert!(
            n >= 1,
            "{}: nothing redacted in {:?}",
            leak.rule,
            leak.shape
        );
        assert!(
            !out.contains(leak.secret),
            "{}: {} survived in {out}",
            leak.rule,
            leak.secret
        );
        assert!(out.contains(PREFIX), "{out}");
        // Idempotent: the redacted form has nothing left to redact.
        let again = match leak.shape {
            Shape::Env(name, _) => {
                let mut v = out[name.len() + 1..].to_string();
                r.redact_env(name, &mut v)
            }
            _ => {
                let mut o = out.clone();
                r.redact_text(&mut o)
            }
        };
        assert_eq!(again, 0, "{}: not idempotent: {out}", leak.rule);
    }
}

#[test]
fn every_look_alike_survives_byte_for_byte() {
    let r = redactor();
    for &(name, value) in LOOK_ALIKES {
        let mut v = value.to_string();
        let n = match name {
            Some(name) => r.redact_env(name, &mut v),
            None => r.redact_text(&mut v),
        };
        assert_eq!((n, v.as_str()), (0, value), "{name:?}");
    }
}

#[test]
fn keys_and_schemes_stay_readable_around_the_fingerprint() {
    for (input, kept) in [
        (
            "--password=hunter2 --db-host=db",
            &["--password=redacted:", " --db-host=db"][..],
        ),
        (
            "postgresql://orders:pw@orders-db:5432/orders",
            &["postgresql://orders:redacted:", "@orders-db:5432/orders"],
        ),
        (
            "Authorization: Basic dXNlcjpwYXNzd29yZA==",
            &["Authorization: Basic redacted:"],
        ),
        (
            "/login?user=bob&access_token=s3cr3t&page=2",
            &["user=bob", "&access_token=redacted:", "&page=2"],
        ),
        (
            "{\"user\":\"app\",\"password\":\"x1\"}",
            &["{\"user\":\"app\",\"password\":\"redacted:"],
        ),
        (
            "-Djavax.net.ssl.keyStorePassword=changeit -Dx=1",
            &["-Djavax.net.ssl.keyStorePassword=redacted:", " -Dx=1"],
        ),
    ] {
        let (out, n) = redact(input);
        assert_eq!(n, 1, "{input} -> {out}");
        for k in kept {
            assert!(out.contains(k), "{input} -> {out} lacks {k}");
        }
    }
}

#[test]
fn a_whole_flag_value_is_the_secret_even_after_a_hash_or_semicolon() {
    let (out, n) = redact("--password=abc#def;ghi,jkl next");
    assert_eq!(n, 1);
    assert!(
        out.starts_with("--password=redacted:") && out.ends_with(" next"),
        "{out}"
    );
    assert_eq!(
        out.len(),
        "--password=".len() + FINGERPRINT_LEN + " next".len()
    );
}

#[test]
fn the_argument_after_a_secret_flag_is_its_value() {
    let r = redactor();
    let mut args: Vec<String> = [
        "psql",
        "--password",
        "pw1",
        "--host",
        "db",
        "-storepass",
        "pw2",
        "--token",
        "--verbose",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(r.redact_arguments(&mut args), 2);
    assert!(is_redacted(&args[2]) && is_redacted(&args[6]), "{args:?}");
    assert_eq!((args[4].as_str(), args[8].as_str()), ("db", "--verbose"));
    // `--key` is a secret only when its value looks random.
    let mut args: Vec<String> = ["--key", "/etc/tls/a.key", "--key", "Zx81kQ2mP0aR7tY5uW3e"]
        .map(String::from)
        .to_vec();
    assert_eq!(r.redact_arguments(&mut args), 1);
    assert_eq!(args[1], "/etc/tls/a.key");
    assert!(is_redacted(&args[3]));
}

#[test]
fn environment_values_are_redacted_for_their_name_or_their_shape_only() {
    let r = redactor();
    let env = |name: &str, value: &str| {
        let mut v = value.to_string();
        let n = r.redact_env(name, &mut v);
        (v, n)
    };
    assert_eq!(env("SERVER_PORT", "8080"), ("8080".into(), 0));
    assert_eq!(env("PATH", "/usr/bin:/bin"), ("/usr/bin:/bin".into(), 0));
    let (v, n) = env("DB_PASSWORD", "x");
    assert!(is_redacted(&v) && n == 1);
    let (v, n) = env(
        "OTEL_HEADERS",
        "x-honeycomb-team=abc, Authorization=Bearer Zk29aQ81mMx0",
    );
    assert_eq!(n, 1, "{v}");
    assert!(
        v.starts_with("x-honeycomb-team=abc, Authorization=Bearer redacted:"),
        "{v}"
    );
    // Allow-listed names keep their value, unless it has a secret's shape.
    let (v, n) = env("PWD", "/srv/app");
    assert_eq!((v.as_str(), n), ("/srv/app", 0));
    let (v, _) = env("PWD", "/srv/eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln");
    assert!(!v.contains("eyJzdWIiOiIxIn0"), "{v}");
}

#[test]
fn the_policy_adds_allowed_names_keys_and_rules() {
    let policy = RedactionConfig {
        allow_env_names: vec!["LEGACY_TOKEN".into()],
        extra_keys: vec!["license_blob".into()],
        extra_rules: vec![ExtraRule {
            name: "acme".into(),
            pattern: r"acme_(?P<secret>[0-9a-f]{12})\b".into(),
        }],
    };
    let r = Redactor::with_policy("k", &policy).unwrap();
    let mut v = "not-a-secret".to_string();
    assert_eq!(r.redact_env("LEGACY_TOKEN", &mut v), 0);
    // The default allow-list is replaced, not extended.
    let mut v = "/srv".to_string();
    assert_eq!(r.redact_env("PWD", &mut v), 1);
    let mut v = "--license-blob=abc ACME_LICENSE_BLOB=def id acme_0123456789ab!".to_string();
    assert_eq!(r.redact_text(&mut v), 3, "{v}");
    assert!(
        !v.contains("abc") && !v.contains("def") && !v.contains("0123456789ab"),
        "{v}"
    );
    assert!(v.contains("acme_redacted:"), "{v}");
    let mut again = v.clone();
    assert_eq!(r.redact_text(&mut again), 0, "{v}");
    for (pattern, why) in [("(", "unclosed"), ("x*", "matches the empty string")] {
        let bad = RedactionConfig {
            extra_rules: vec![ExtraRule {
                name: "bad".into(),
                pattern: pattern.into(),
            }],
            ..RedactionConfig::default()
        };
        let e = Redactor::with_policy("k", &bad).err().expect(why);
        assert!(e.to_string().starts_with("redaction rule 'bad'"), "{e}");
        assert!(bad.validate().is_err());
    }
}

#[test]
fn text_without_secrets_is_untouched() {
    for t in [
        "/usr/lib/libssl.so.3",
        "GET /api/v1/users?page=2",
        "host: db:5432",
        "",
        "é",
        "password",
        "--password",
    ] {
        assert_eq!(redact(t), (t.to_string(), 0));
    }
}

#[test]
fn token_formats_need_their_length_and_a_boundary() {
    for t in [
        "AKIAEXAMPLE",
        "AKIA0123456789ABCDEF0123",
        "xAKIA0123456789ABCDEF",
        "ghp_short",
        "sk_live_",
        "glpat-short",
    ] {
        assert_eq!(redact(t).1, 0, "{t}");
    }
    for t in [
        "AKIA0123456789ABCDEF",
        "(AKIA0123456789ABCDEF)",
        "key: ghp_0123456789abcdefghijklmnopqrstuvwxyz",
    ] {
        assert_eq!(redact(t).1, 1, "{t}");
    }
}

#[test]
fn a_redacted_looking_prefix_cut_inside_a_multibyte_character_does_not_panic() {
    let text = format!("token={PREFIX}{}é tail", "a".repeat(31));
    let (s, n) = redact(&text);
    assert_eq!(n, 1, "{s}");
    assert!(
        s.starts_with("token=redacted:") && s.ends_with(" tail"),
        "{s}"
    );
    let (s, _) = redact(&format!("Bearer {PREFIX}{}ü", "0".repeat(31)));
    assert_eq!(redact(&s).1, 0, "{s}");
}

#[test]
fn any_mix_of_secret_shapes_and_multibyte_text_redacts_without_panicking() {
    // Every 3-piece text over fragments that start or end the rules' scans, next to multi-byte
    // characters: no slice of the scanner may land inside one.
    const PIECES: [&str; 22] = [
        "é",
        "ü€",
        "token=",
        "Authorization: ",
        "Bearer ",
        "Basic ",
        "eyJ",
        "a.b.c",
        "redacted:",
        "redacted:0123456789abcdef0123456789abcde",
        "=",
        ":",
        " ",
        "--password",
        "://u:",
        "@",
        "-----BEGIN RSA PRIVATE KEY-----",
        "-----END",
        "AKIA0123456789ABCDE",
        "\"",
        "ghp_",
        "hooks.slack.com/services/",
    ];
    let r = redactor();
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
fn redaction_is_idempotent_and_keyed_and_fingerprints_have_one_length() {
    let (once, _) = redact("Bearer abcDEF123");
    let (twice, n) = redact(&once);
    assert_eq!((once.as_str(), n), (twice.as_str(), 0));
    let a = Redactor::new("k1").fingerprint("secret");
    let b = Redactor::new("k2").fingerprint("secret");
    assert_ne!(a, b);
    assert_eq!(a, Redactor::new("k1").fingerprint("secret"));
    assert!(is_redacted(&a));
    assert_eq!(a.len(), FINGERPRINT_LEN);
    assert_eq!(FINGERPRINT_LEN, 41);
}

#[test]
fn every_string_of_every_event_type_is_scanned() {
    use secpipe_schemas::telemetry::sample;
    let r = redactor();
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJldmVyeSJ9.ZXZlcnk";
    for mut event in sample::one_of_each(3) {
        let mut json = serde_json::to_value(&event).unwrap();
        plant(&mut json, jwt);
        event = serde_json::from_value(json).unwrap();
        r.redact_event(&mut event);
        let out = serde_json::to_string(&event).unwrap();
        assert!(
            !out.contains("eyJzdWIiOiJldmVyeSJ9"),
            "{}: {out}",
            event.kind()
        );
        // Nothing but strings changed: numbers and structure are as they were.
        let mut again = event.clone();
        assert_eq!(r.redact_event(&mut again), 0);
        assert_eq!(again, event);
    }
}

/// Appends ` <jwt>` to every string of a JSON value but the `type` tag.
fn plant(v: &mut serde_json::Value, jwt: &str) {
    match v {
        serde_json::Value::String(s) => {
            s.push(' ');
            s.push_str(jwt);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(|v| plant(v, jwt)),
        serde_json::Value::Object(o) => {
            for (k, v) in o.iter_mut() {
                if k != "type" {
                    plant(v, jwt);
                }
            }
        }
        _ => {}
    }
}

#[test]
fn frames_remembered_clean_by_one_policy_are_scanned_again_by_another() {
    use secpipe_schemas::telemetry::{sample, TelemetryKind};
    let plain = redactor();
    let strict = Redactor::with_policy(
        "k",
        &RedactionConfig {
            extra_rules: vec![ExtraRule {
                name: "acme".into(),
                pattern: r"acme_[0-9a-f]{12}".into(),
            }],
            ..RedactionConfig::default()
        },
    )
    .unwrap();
    let mut event = sample::one_of_each(4)
        .into_iter()
        .find(|e| e.kind() == TelemetryKind::File)
        .unwrap();
    let TelemetryEvent::File(f) = &mut event else {
        unreachable!()
    };
    f.stack[0].symbol = Some("Java_acme_0123456789ab_native".into());
    for _ in 0..2 {
        assert_eq!(plain.redact_event(&mut event.clone()), 0);
    }
    let mut e = event.clone();
    assert_eq!(strict.redact_event(&mut e), 1);
    assert!(!serde_json::to_string(&e).unwrap().contains("0123456789ab"));
    // A frame holding a token is never remembered as clean.
    let TelemetryEvent::File(f) = &mut event else {
        unreachable!()
    };
    f.stack[1].symbol = Some("ghp_0123456789abcdefghijklmnopqrstuvwxyz".into());
    for _ in 0..2 {
        let mut e = event.clone();
        assert_eq!(plain.redact_event(&mut e), 1);
    }
}

#[test]
fn random_text_of_trigger_fragments_and_multibyte_characters_never_panics() {
    // A fixed xorshift sequence: the same 20,000 strings every run.
    const PARTS: [&str; 24] = [
        "é",
        "ü€",
        "日本",
        "🔑",
        " ",
        "=",
        ":",
        "\"",
        "'",
        "\t",
        "&",
        "#",
        "--",
        "-D",
        "password",
        "Key",
        "token",
        "Bearer ",
        "Basic ",
        "eyJ",
        "AKIA",
        "ghp_",
        "://u:p@",
        "-----BEGIN ",
    ];
    let r = redactor();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..20_000 {
        let mut text = String::new();
        for _ in 0..(next() % 12) {
            match next() % 3 {
                0 => text.push_str(PARTS[(next() % PARTS.len() as u64) as usize]),
                1 => text.push_str(&"aZ9._/+".repeat((next() % 4) as usize)),
                _ => text.push(char::from_u32((next() % 0x2FFF) as u32).unwrap_or('x')),
            }
        }
        let mut once = text.clone();
        r.redact_text(&mut once);
        let mut twice = once.clone();
        assert_eq!(
            r.redact_text(&mut twice),
            0,
            "not idempotent: {text:?} -> {once:?}"
        );
    }
}

#[test]
fn a_mysql_password_attached_to_p_loses_its_value_and_keeps_the_flag() {
    let r = redactor();
    let (out, n) = redact("mysql -h db -uroot -pS3cret-attached orders; ls -p /tmp");
    assert_eq!(n, 1, "{out}");
    assert!(out.starts_with("mysql -h db -uroot -predacted:"), "{out}");
    assert!(out.ends_with(" orders; ls -p /tmp"), "{out}");
    // In an argument list, after the client program; a lone -p (a prompt) and -P (the port)
    // stay, and so does everything of a program that is not a client.
    let mut args: Vec<String> = ["mysqldump", "-P3306", "-p", "-pArgvS3cret", "shop"]
        .map(String::from)
        .to_vec();
    assert_eq!(r.redact_arguments(&mut args), 1);
    assert_eq!(args[..3], ["mysqldump", "-P3306", "-p"]);
    assert!(
        args[3].starts_with("-predacted:") && args[4] == "shop",
        "{args:?}"
    );
    let mut args: Vec<String> = ["cp", "-pr", "a", "b"].map(String::from).to_vec();
    assert_eq!(r.redact_arguments(&mut args), 0);
    let mut args: Vec<String> = ["/usr/sbin/mysqld", "-pidfile"].map(String::from).to_vec();
    assert_eq!(r.redact_arguments(&mut args), 0);
}
