//! Interim router (replaced by the full one): literal prefix matching only.

use std::borrow::Cow;

/// One rule as the router sees it.
pub struct RouteSpec<'a> {
    /// Path pattern.
    pub path: &'a str,
    /// Host pattern.
    pub host: Option<&'a str>,
    /// Methods.
    pub methods: &'a [http::Method],
    /// Priority.
    pub priority: Option<i32>,
}

/// Compiled rules.
#[derive(Debug)]
pub struct Router {
    prefixes: Vec<String>,
}

/// A match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteMatch {
    /// Rule index.
    pub rule: usize,
    /// Bytes of literal prefix.
    pub prefix_len: usize,
}

/// Bad pattern.
#[derive(Debug, thiserror::Error)]
#[error("bad pattern")]
pub struct PatternError;

/// Bad path.
#[derive(Debug, thiserror::Error)]
#[error("bad path")]
pub struct BadPath;

impl Router {
    /// Compiles.
    pub fn new(specs: &[RouteSpec<'_>]) -> Result<Router, PatternError> {
        Ok(Router { prefixes: specs.iter().map(|s| s.path.trim_end_matches("/*").to_owned()).collect() })
    }

    /// Routes.
    pub fn route(&self, _host: Option<&str>, _method: &http::Method, path: &str) -> Option<RouteMatch> {
        self.prefixes
            .iter()
            .enumerate()
            .filter(|(_, p)| path.starts_with(p.as_str()))
            .max_by_key(|(_, p)| p.len())
            .map(|(rule, p)| RouteMatch { rule, prefix_len: p.len() })
    }
}

/// Normalises.
pub fn normalize_path(raw: &str) -> Result<Cow<'_, str>, BadPath> {
    Ok(Cow::Borrowed(raw.split('?').next().unwrap_or(raw)))
}
