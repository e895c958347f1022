//! Image references normalised the way container registries and tools resolve them, so that
//! `nginx:1` and `docker.io/library/nginx:1` name one image (and fold into one admin event).
//!
//! The rules are those of the distribution reference grammar: the first path component is a
//! registry host when it contains `.` or `:`, is `localhost`, or has an upper-case letter;
//! otherwise the image is on Docker Hub. Docker Hub's aliases become `docker.io`, a single-name
//! Hub image gets the `library/` namespace, a reference with neither tag nor digest gets the
//! tag `latest`, host names are case-insensitive (lowercased), repository paths must be
//! lowercase.

/// The registry of references that name none, and the name Docker Hub's aliases fold into.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// The tag of references that name neither a tag nor a digest.
pub const DEFAULT_TAG: &str = "latest";
const HUB_ALIASES: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Lowercase host, with its port if any: `docker.io`, `quay.io`, `localhost:5000`.
    pub registry: String,
    /// Path inside the registry: `library/nginx`, `team/app`.
    pub repository: String,
    /// `None` only for a digest-only reference.
    pub tag: Option<String>,
    /// `algorithm:hex`, lowercase.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses and normalises `reference`; the error says what is wrong with it.
    pub fn parse(reference: &str) -> Result<Self, String> {
        let r = reference.trim();
        if r.is_empty() || r.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("'{reference}' is not an image reference"));
        }
        let (name_tag, digest) = match r.split_once('@') {
            Some((n, d)) => (n, Some(parse_digest(reference, d)?)),
            None => (r, None),
        };
        // The tag is after the last ':' that follows the last '/': a ':' before it is a port.
        let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => {
                let (n, t) = name_tag.split_at(last_slash + i);
                (n, Some(parse_tag(reference, &t[1..])?))
            }
            None => (name_tag, None),
        };
        let (registry, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains(['.', ':'])
                    || first == "localhost"
                    || first.chars().any(|c| c.is_ascii_uppercase()) =>
            {
                (first.to_ascii_lowercase(), rest)
            }
            _ => (DEFAULT_REGISTRY.to_string(), name),
        };
        if registry.is_empty() || registry.starts_with(':') || registry.ends_with(':') {
            return Err(format!("'{reference}' has an empty registry host or port"));
        }
        if let Some((_, port)) = registry.split_once(':') {
            if port.parse::<u16>().is_err() {
                return Err(format!(
                    "'{reference}': registry port '{port}' is not a number"
                ));
            }
        }
        let registry = if HUB_ALIASES.contains(&registry.as_str()) {
            DEFAULT_REGISTRY.to_string()
        } else {
            registry
        };
        check_path(reference, path)?;
        let repository = if registry == DEFAULT_REGISTRY && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_string()
        };
        let tag = match (tag, &digest) {
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (tag, _) => tag,
        };
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The canonical text: `registry/repository[:tag][@digest]`, e.g.
    /// `docker.io/library/nginx:1`. Two references to the same image have the same text.
    pub fn canonical(&self) -> String {
        let mut s = format!("{}/{}", self.registry, self.repository);
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }
}

/// The canonical text of `reference`, or `reference` itself (trimmed) when it does not parse:
/// for records written before references were normalised.
pub fn canonical_or_given(reference: &str) -> String {
    ImageRef::parse(reference).map_or_else(|_| reference.trim().to_string(), |r| r.canonical())
}

fn parse_digest(reference: &str, d: &str) -> Result<String, String> {
    let bad = || {
        format!("'{reference}': the digest must be algorithm:hex, e.g. sha256: and 64 hex digits")
    };
    let (alg, hex) = d.split_once(':').ok_or_else(bad)?;
    let alg = alg.to_ascii_lowercase();
    let hex = hex.to_ascii_lowercase();
    let alg_ok = !alg.is_empty()
        && alg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+._-".contains(c));
    // Lenient on length (registries want 64 hex digits for sha256; reports seen in the wild
    // carry abbreviated ones, which still identify the image within a report's context).
    let hex_ok = !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit());
    if !alg_ok || !hex_ok {
        return Err(bad());
    }
    Ok(format!("{alg}:{hex}"))
}

fn parse_tag(reference: &str, t: &str) -> Result<String, String> {
    let ok = !t.is_empty()
        && t.len() <= 128
        && t.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(t.to_string())
    } else {
        Err(format!(
            "'{reference}': tag '{t}' must be 1 to 128 letters, digits, '_', '.' or '-'"
        ))
    }
}

fn check_path(reference: &str, path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err(format!("'{reference}' has no repository"));
    }
    for component in path.split('/') {
        let ok = !component.is_empty()
            && component
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
            && component.starts_with(|c: char| c.is_ascii_alphanumeric())
            && component.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !ok {
            return Err(format!(
                "'{reference}': repository path '{path}' must be lowercase letters, digits and \
                 '.', '_', '-' separators between '/'"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(r: &str) -> String {
        ImageRef::parse(r).unwrap().canonical()
    }

    const SHA: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn docker_hub_short_names_get_the_default_registry_and_library_namespace() {
        assert_eq!(canon("nginx:1"), "docker.io/library/nginx:1");
        assert_eq!(
            canon("docker.io/library/nginx:1"),
            "docker.io/library/nginx:1"
        );
        assert_eq!(canon("library/nginx:1"), "docker.io/library/nginx:1");
        assert_eq!(canon("bitnami/redis:7"), "docker.io/bitnami/redis:7");
    }

    #[test]
    fn a_reference_without_tag_or_digest_means_latest() {
        assert_eq!(canon("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(canon("nginx"), canon("docker.io/library/nginx:latest"));
        assert_eq!(canon("quay.io/acme/api"), "quay.io/acme/api:latest");
    }

    #[test]
    fn digests_are_kept_and_a_digest_alone_gets_no_default_tag() {
        let r = ImageRef::parse(&format!("nginx@{SHA}")).unwrap();
        assert_eq!((r.tag, r.digest.as_deref()), (None, Some(SHA)));
        assert_eq!(
            canon(&format!(
                "nginx:1.25@{}",
                SHA.to_uppercase().replace("SHA", "sha")
            )),
            format!("docker.io/library/nginx:1.25@{SHA}"),
            "hex is lowercased"
        );
        assert_ne!(canon(&format!("nginx@{SHA}")), canon("nginx"));
        assert!(ImageRef::parse("nginx@sha256:xyz").is_err(), "not hex");
        assert!(ImageRef::parse("nginx@abcd").is_err(), "no algorithm");
    }

    #[test]
    fn docker_hub_aliases_fold_into_docker_io() {
        for alias in ["index.docker.io", "registry-1.docker.io", "DOCKER.IO"] {
            assert_eq!(
                canon(&format!("{alias}/nginx:1")),
                "docker.io/library/nginx:1",
                "{alias}"
            );
        }
    }

    #[test]
    fn registry_hosts_are_lowercased_and_ports_are_not_tags() {
        assert_eq!(canon("Quay.IO/acme/api:1"), "quay.io/acme/api:1");
        let r = ImageRef::parse("localhost:5000/x").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("localhost:5000", "x", Some("latest"))
        );
        assert_eq!(
            canon("localhost:5000/team/app:dev"),
            "localhost:5000/team/app:dev"
        );
        assert_eq!(canon("localhost/app"), "localhost/app:latest");
        assert_eq!(canon("10.0.0.7:5000/app:2"), "10.0.0.7:5000/app:2");
    }

    #[test]
    fn malformed_references_are_refused_with_a_reason() {
        for bad in [
            "",
            "bad ref",
            "nginx:",
            "nginx:bad/tag:x",
            "Nginx:1",
            "quay.io/",
            "quay.io//app",
            ":5000/app",
            "nginx:-1",
        ] {
            let e = ImageRef::parse(bad).unwrap_err();
            assert!(!e.is_empty(), "{bad}");
        }
        assert_eq!(canonical_or_given(" Bad Ref "), "Bad Ref");
    }
}
