//! Query strings of the admin read APIs: every pair as sent, so that a repeated scalar
//! parameter (`image=a&image=b`) is a 400 rather than "the last one wins", and an empty filter
//! value (`cluster=`) is a 400 rather than a filter that matches nothing useful.
use axum::extract::{rejection::QueryRejection, Query};

use super::Rejection;

/// The parameters of one request, in order.
#[derive(Debug, Default)]
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    /// From axum's extractor; an undecodable query string is a 400 with a JSON reason.
    pub(crate) fn from_query(
        q: Result<Query<Vec<(String, String)>>, QueryRejection>,
    ) -> Result<Self, Rejection> {
        let Query(pairs) = q.map_err(|e| Rejection::invalid("query", e.body_text()))?;
        // Percent-decoding is lossy: bytes that are not UTF-8 (`image=%FF`) come out as U+FFFD,
        // which no image, command or time holds.
        if let Some((k, _)) = pairs
            .iter()
            .find(|(k, v)| k.contains('\u{FFFD}') || v.contains('\u{FFFD}'))
        {
            return Err(Rejection::invalid(
                k.clone(),
                "not valid UTF-8 once percent-decoded",
            ));
        }
        Ok(Self(pairs))
    }

    #[cfg(test)]
    pub(crate) fn of(pairs: &[(&str, &str)]) -> Self {
        Self(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// Refuses a parameter not in `known`, naming it and the known ones.
    pub(crate) fn only(&self, known: &[&str]) -> Result<(), Rejection> {
        match self.0.iter().find(|(k, _)| !known.contains(&k.as_str())) {
            Some((k, _)) => Err(Rejection::invalid(
                k.clone(),
                format!("unknown parameter; known: {}", known.join(", ")),
            )),
            None => Ok(()),
        }
    }

    /// The value of a scalar parameter; given twice is a 400.
    pub(crate) fn one(&self, key: &str) -> Result<Option<&str>, Rejection> {
        let mut values = self.all(key);
        let first = values.next();
        if values.next().is_some() {
            return Err(Rejection::invalid(
                key,
                "given more than once; this parameter takes one value",
            ));
        }
        Ok(first)
    }

    /// The value of a scalar filter; given twice or empty is a 400 (omit it to match any).
    pub(crate) fn filter(&self, key: &str) -> Result<Option<String>, Rejection> {
        match self.one(key)? {
            Some(v) if v.trim().is_empty() => Err(Rejection::invalid(
                key,
                "empty; omit the parameter to match any value",
            )),
            v => Ok(v.map(str::to_string)),
        }
    }

    /// Every value of a repeated parameter (`filter.level=A&filter.level=B`); empty ones are a
    /// 400.
    pub(crate) fn many(&self, key: &str) -> Result<Vec<&str>, Rejection> {
        let values: Vec<&str> = self.all(key).collect();
        if values.iter().any(|v| v.trim().is_empty()) {
            return Err(Rejection::invalid(
                key,
                "empty; omit the parameter to match any value",
            ));
        }
        Ok(values)
    }

    /// A non-negative integer.
    pub(crate) fn number(&self, key: &str) -> Result<Option<u32>, Rejection> {
        self.one(key)?
            .map(|v| {
                v.parse().map_err(|_| {
                    Rejection::invalid(key, format!("'{v}' is not a non-negative integer"))
                })
            })
            .transpose()
    }

    /// The same pairs with every key passed through `rename`.
    pub(crate) fn renamed(self, rename: impl Fn(&str) -> String) -> Self {
        Self(self.0.into_iter().map(|(k, v)| (rename(&k), v)).collect())
    }

    /// Every key, in order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_str())
    }

    fn all<'a, 'k>(&'a self, key: &'k str) -> impl Iterator<Item = &'a str> + use<'a, 'k> {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn undecodable_bytes_are_refused_naming_the_parameter() {
        let q = axum::extract::Query(vec![("image".to_string(), "a\u{FFFD}".to_string())]);
        match super::Params::from_query(Ok(q)) {
            Err(super::Rejection::Invalid { field, .. }) => assert_eq!(field, "image"),
            other => panic!("{other:?}"),
        }
    }

    use super::*;

    fn field(r: Rejection) -> String {
        match r {
            Rejection::Invalid { field, .. } => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_repeated_scalar_or_an_empty_filter_is_refused_naming_the_parameter() {
        let p = Params::of(&[("image", "a"), ("image", "b"), ("cluster", "")]);
        assert_eq!(field(p.filter("image").unwrap_err()), "image");
        assert_eq!(field(p.filter("cluster").unwrap_err()), "cluster");
        let p = Params::of(&[("filter.level", "A"), ("filter.level", "B")]);
        assert_eq!(p.many("filter.level").unwrap(), vec!["A", "B"]);
        assert_eq!(field(p.one("filter.level").unwrap_err()), "filter.level");
        assert_eq!(field(p.only(&["image"]).unwrap_err()), "filter.level");
        let p = Params::of(&[("limit", "-1")]);
        assert_eq!(field(p.number("limit").unwrap_err()), "limit");
        assert_eq!(Params::of(&[]).filter("image").unwrap(), None);
    }
}
