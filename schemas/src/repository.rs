//! Identity of scanned repositories and of scan statuses, shared by the producers (partition
//! keys, teams), the scan-results processor (rollups, statuses) and the loader (the `repository`
//! column), so every stage names a repository the same way.
//!
//! A repository is identified by its **normalised URI** (`host/path`), never by its name alone:
//! `github.com/acme/web` and `github.com/other/web` are two repositories. Normalisation makes the
//! spellings of one remote equal: scheme, credentials, port, `.git`, trailing slashes, query and
//! fragment are dropped; `git@host:org/repo` and `ssh://git@host/org/repo` become `host/org/repo`;
//! Azure DevOps' SSH and `*.visualstudio.com` forms become `dev.azure.com/org/project/_git/repo`;
//! the result is lower-cased (the hosting services compare names without case).

/// The status a scanner reports when it failed its build-break rules, as stored.
pub const FAILED: &str = "❌";
/// The status a scanner reports when it passed, as stored.
pub const PASSED: &str = "✅";

/// The stored form of a scanner status. Scan tools send the emoji itself (`❌`, `✅`), their
/// short codes (`:cross_mark:`, `:x:`, `:white_heavy_check_mark:`, `:white_check_mark:`,
/// `:heavy_check_mark:`) or words (`fail`, `failed`, `pass`, `passed`, `ok`); each becomes
/// [`FAILED`] or [`PASSED`]. Anything else is kept as sent (trimmed) and counts as not failed.
pub fn normalize_status(status: &str) -> String {
    let s = status.trim();
    let bare = s.trim_matches(':').trim_end_matches('\u{fe0f}');
    let lower = bare.to_ascii_lowercase();
    match lower.as_str() {
        "❌"
        | "✖"
        | "✗"
        | "cross_mark"
        | "x"
        | "heavy_multiplication_x"
        | "fail"
        | "failed"
        | "failure"
        | "error" => FAILED.to_string(),
        "✅"
        | "✔"
        | "✓"
        | "white_heavy_check_mark"
        | "white_check_mark"
        | "heavy_check_mark"
        | "check_mark"
        | "pass"
        | "passed"
        | "success"
        | "ok" => PASSED.to_string(),
        _ => s.to_string(),
    }
}

/// True when `status` (stored or as sent) says the scanner failed.
pub fn is_failed(status: &str) -> bool {
    status == FAILED || normalize_status(status) == FAILED
}

/// The normalised form of a repository URI (see the module docs); `None` when `uri` has no
/// host and path, e.g. an empty string or a bare name.
pub fn normalize_uri(uri: &str) -> Option<String> {
    let mut s = uri.trim();
    // Query and fragment never name the repository.
    if let Some(i) = s.find(['?', '#']) {
        s = &s[..i];
    }
    let (host, path) = if let Some((_, rest)) = s.split_once("://") {
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        (authority, path)
    } else if let Some((authority, path)) = s.split_once(':') {
        // scp-like syntax: [user@]host:path. A Windows drive or a bare name is no remote.
        if authority.contains('/') || authority.len() <= 1 {
            return None;
        }
        (authority, path)
    } else {
        return None;
    };
    // Drop user-info and port.
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let mut segments: Vec<String> = path
        .split('/')
        .filter(|seg| !seg.is_empty() && *seg != ".")
        .map(|seg| seg.to_ascii_lowercase())
        .collect();
    if let Some(last) = segments.last_mut() {
        if let Some(stripped) = last.strip_suffix(".git") {
            *last = stripped.to_string();
        }
        if last.is_empty() {
            segments.pop();
        }
    }
    if host.is_empty() || segments.is_empty() {
        return None;
    }
    // Azure DevOps spells one repository three ways.
    let (host, segments) = match host.as_str() {
        "ssh.dev.azure.com" | "vs-ssh.visualstudio.com" if segments.len() == 4 => {
            // v3/org/project/repo
            let s = &segments;
            (
                "dev.azure.com".to_string(),
                vec![s[1].clone(), s[2].clone(), "_git".into(), s[3].clone()],
            )
        }
        h if h.ends_with(".visualstudio.com") => {
            let org = h.trim_end_matches(".visualstudio.com").to_string();
            let mut s = vec![org];
            s.extend(
                segments
                    .into_iter()
                    .filter(|seg| seg != "defaultcollection"),
            );
            ("dev.azure.com".to_string(), s)
        }
        _ => (host, segments),
    };
    Some(format!("{host}/{}", segments.join("/")))
}

/// The key a repository is known by in every table: its normalised URI when the URI is a remote,
/// else its name (trimmed, lower-cased); `None` when neither says anything.
pub fn key(uri: Option<&str>, name: Option<&str>) -> Option<String> {
    if let Some(k) = uri.and_then(normalize_uri) {
        return Some(k);
    }
    let fallback = uri
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .or(name.map(str::trim).filter(|n| !n.is_empty()))?;
    Some(fallback.trim_end_matches('/').to_ascii_lowercase())
}

/// The repository's name: the last path segment of its key.
pub fn name_of(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

/// The organisation that owns a repository, from its normalised key: the first path segment
/// after the host (a GitHub organisation or user, a GitLab top-level group however deep its
/// subgroups go, a Bitbucket workspace, an Azure DevOps organisation). `None` for a key without
/// an owner segment (a bare name, or `host/repo`).
pub fn organisation(key: &str) -> Option<&str> {
    let mut parts = key.split('/');
    let _host = parts.next()?;
    let owner = parts.next()?;
    // The owner must be followed by at least the repository.
    parts.next()?;
    Some(owner)
}

/// A `*` glob over a repository key: `*` matches any run of characters, `/` included; the rest
/// must match exactly (case-insensitively: keys are lower-case).
pub fn glob_matches(pattern: &str, key: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == key;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !key.starts_with(first) || key.len() < first.len() + last.len() || !key.ends_with(last) {
        return false;
    }
    let mut rest = &key[first.len()..key.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(i) => rest = &rest[i + middle.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_remote_spelled_many_ways_has_one_key() {
        for uri in [
            "https://github.com/Acme/Web",
            "https://github.com/acme/web.git",
            "https://github.com/acme/web/",
            "http://github.com:443/acme/web",
            "https://x-access-token:ghs_abc@github.com/acme/web.git",
            "git@github.com:acme/web.git",
            "ssh://git@github.com:22/acme/web",
            "git+ssh://git@GitHub.com/acme/web.git?ref=main#readme",
        ] {
            assert_eq!(
                normalize_uri(uri).as_deref(),
                Some("github.com/acme/web"),
                "{uri}"
            );
        }
    }

    #[test]
    fn same_name_in_two_organisations_stays_two_repositories() {
        let a = key(Some("https://github.com/acme/web"), Some("web"));
        let b = key(Some("https://github.com/other/web"), Some("web"));
        assert_ne!(a, b);
        assert_eq!(key(None, Some(" Web ")).as_deref(), Some("web"));
        assert_eq!(key(Some(""), Some("web")).as_deref(), Some("web"));
        assert_eq!(key(None, None), None);
        assert_eq!(name_of("github.com/acme/web"), "web");
    }

    #[test]
    fn azure_devops_and_nested_gitlab_groups_give_the_organisation() {
        let forms = [
            "https://dev.azure.com/contoso/payments/_git/api",
            "https://contoso@dev.azure.com/contoso/payments/_git/api",
            "git@ssh.dev.azure.com:v3/contoso/payments/api",
            "https://contoso.visualstudio.com/payments/_git/api",
            "https://contoso.visualstudio.com/DefaultCollection/payments/_git/api",
        ];
        for uri in forms {
            let k = normalize_uri(uri).unwrap();
            assert_eq!(k, "dev.azure.com/contoso/payments/_git/api", "{uri}");
            assert_eq!(organisation(&k), Some("contoso"));
        }
        let k = normalize_uri("https://gitlab.com/platform/infra/tools/deployer").unwrap();
        assert_eq!(organisation(&k), Some("platform"));
        assert_eq!(organisation("gitlab.com/solo"), None);
        assert_eq!(organisation("web"), None);
    }

    #[test]
    fn non_remotes_have_no_normalised_uri() {
        for uri in [
            "",
            "web",
            "C:\\src\\web",
            "/srv/git/web",
            "https://host.example.com",
        ] {
            assert_eq!(normalize_uri(uri), None, "{uri}");
        }
    }

    #[test]
    fn statuses_in_every_spelling_scan_tools_use() {
        for s in ["❌", ":cross_mark:", ":x:", "FAILED", " fail ", "✖️"] {
            assert_eq!(normalize_status(s), FAILED, "{s}");
            assert!(is_failed(s));
        }
        for s in [
            "✅",
            ":white_heavy_check_mark:",
            ":white_check_mark:",
            "✔️",
            "pass",
            "OK",
        ] {
            assert_eq!(normalize_status(s), PASSED, "{s}");
            assert!(!is_failed(s));
        }
        assert_eq!(normalize_status(" skipped "), "skipped");
        assert!(!is_failed(""));
    }

    #[test]
    fn globs_match_keys() {
        assert!(glob_matches("github.com/acme/*", "github.com/acme/web"));
        assert!(glob_matches(
            "*/payments/*",
            "dev.azure.com/contoso/payments/_git/api"
        ));
        assert!(glob_matches("GitHub.com/acme/web", "github.com/acme/web"));
        assert!(!glob_matches("github.com/acme/*", "github.com/other/web"));
        assert!(!glob_matches(
            "github.com/acme/w*b*x",
            "github.com/acme/web"
        ));
        assert!(glob_matches("*", "anything"));
        assert!(!glob_matches("a*a", "a"));
    }
}
