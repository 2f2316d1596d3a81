//! The HTTP router: picks, for each request, the rule of its listener that
//! handles it (SPEC §3).
//!
//! [`Router::new`] compiles the validated rules once per config load: paths
//! are split into segments, host patterns lower-cased, and the rules sorted
//! into the order in which they must be tried. [`Router::route`] then runs on
//! every request and never allocates. Paths are matched in the canonical form
//! produced by [`normalize_path`].

use std::cmp::Reverse;

use ::http::Method;

mod normalize;
#[cfg(test)]
mod tests;

pub use normalize::{BadPath, normalize_path};

/// One rule as the router sees it, borrowed from the validated config, so the
/// router does not depend on the config model (and the config validator can
/// compile a router to check the patterns).
#[derive(Clone, Copy, Debug)]
pub struct RouteSpec<'a> {
    /// Path pattern: `/api`, `/users/*/avatar`, `/assets/*`, `/*`.
    pub path: &'a str,
    /// Host pattern: `example.com` or `*.example.com`; `None` = any host.
    pub host: Option<&'a str>,
    /// Methods the rule accepts; empty = any.
    pub methods: &'a [Method],
    /// Explicit priority, higher first; `None` counts as 0.
    pub priority: Option<i32>,
}

/// Why a rule's pattern cannot be compiled. Each variant names the rule (its
/// index in the specs given to [`Router::new`]) so the config validator can
/// point at the line; the message itself is the one-line reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// The path pattern does not start with `/`.
    #[error("path `{path}` must start with '/'")]
    NotAbsolute {
        /// Index of the rule.
        rule: usize,
        /// The pattern as written.
        path: String,
    },
    /// A `*` that is not a whole segment (`/a*`, `/*.js`): wildcards match
    /// whole segments only.
    #[error(
        "in path `{path}`, '*' must be a whole segment (like `/users/*/avatar` or `/assets/*`)"
    )]
    PartialWildcard {
        /// Index of the rule.
        rule: usize,
        /// The pattern as written.
        path: String,
    },
    /// A `.` or `..` segment, a `?` or a `#`: request paths are normalised
    /// and stripped of their query before matching, so such a pattern could
    /// never match.
    #[error("path `{path}` can never match: {reason}")]
    Unmatchable {
        /// Index of the rule.
        rule: usize,
        /// The pattern as written.
        path: String,
        /// What makes it unmatchable.
        reason: &'static str,
    },
    /// The path pattern's percent-encoding is malformed, decodes to NUL or
    /// to invalid UTF-8.
    #[error("path `{path}`: {source}")]
    BadEncoding {
        /// Index of the rule.
        rule: usize,
        /// The pattern as written.
        path: String,
        /// What is wrong with it.
        source: BadPath,
    },
    /// An empty host pattern (write no `host` to match any host).
    #[error("empty host (leave `host` out to match any host)")]
    EmptyHost {
        /// Index of the rule.
        rule: usize,
    },
    /// A host pattern that is not a host name, an IP address or
    /// `*.` followed by a host name.
    #[error("invalid host `{host}`: {reason}")]
    InvalidHost {
        /// Index of the rule.
        rule: usize,
        /// The host pattern as written.
        host: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl PatternError {
    /// Index (in the specs given to [`Router::new`]) of the faulty rule.
    pub fn rule(&self) -> usize {
        match self {
            PatternError::NotAbsolute { rule, .. }
            | PatternError::PartialWildcard { rule, .. }
            | PatternError::Unmatchable { rule, .. }
            | PatternError::BadEncoding { rule, .. }
            | PatternError::EmptyHost { rule }
            | PatternError::InvalidHost { rule, .. } => *rule,
        }
    }
}

/// The rule a request matched, as returned by [`Router::route`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteMatch {
    /// Index of the rule in the specs given to [`Router::new`].
    pub rule: usize,
    /// Bytes of the routed path covered by the rule's literal leading
    /// segments: 7 for `/assets/*` matching `/assets/app.js` (`/assets`), 0
    /// for `/*`. A `public` rule serves `path[prefix_len..]` from its folder.
    pub prefix_len: usize,
}

/// A compiled, immutable set of routing rules for one listener; shared by
/// every connection of the listener.
///
/// Rules are kept sorted in the order they must be tried (see
/// [`Router::new`]) and [`Router::route`] returns the first that matches. A
/// linear scan is deliberate: a listener has a handful to a few dozen rules,
/// each check is a few byte comparisons over contiguous memory that stop at
/// the first difference, and the order mixes priority, host and path
/// specificity in ways a trie would not keep without being far more complex.
#[derive(Debug)]
pub struct Router {
    rules: Box<[Rule]>,
    /// Whether any rule has a host pattern: if none has, the request's
    /// host is never looked at.
    matches_hosts: bool,
}

#[derive(Debug)]
struct Rule {
    /// Index in the specs.
    index: usize,
    host: HostPattern,
    /// Empty = any method.
    methods: Box<[Method]>,
    /// The pattern's leading literal segments, joined: `/users` for
    /// `/users/*/avatar`, empty for `/*`. Most patterns are nothing else, and
    /// are then matched with one comparison.
    prefix: Box<str>,
    /// The segments after `prefix`, starting with a `*`; without a trailing
    /// `*` (which matches any remainder, including none, exactly like the
    /// end of a pattern without it: `/api` and `/api/*` match the same paths).
    rest: Box<[Segment]>,
}

/// What [`compile_path`] makes of a path pattern.
struct CompiledPath {
    prefix: Box<str>,
    rest: Box<[Segment]>,
    /// Literal segments in the whole pattern, for the order.
    literals: usize,
}

#[derive(Debug)]
enum Segment {
    /// Must equal the path segment (case-sensitive, percent-decoded).
    Literal(Box<str>),
    /// Any one non-empty segment.
    Star,
}

#[derive(Debug)]
enum HostPattern {
    Any,
    /// Lower-case, without trailing dot.
    Exact(Box<str>),
    /// The suffix including its leading dot (`.example.com`), lower-case.
    Subdomains(Box<str>),
}

impl Router {
    /// Compiles `specs` (one listener's rules, in file order).
    ///
    /// The rules are tried in this order, fixed here once:
    /// 1. higher `priority` first (`None` = 0);
    /// 2. a rule with a host before one without; an exact host before a
    ///    wildcard host; a longer wildcard suffix (`*.a.example.com`) before
    ///    a shorter one (`*.example.com`);
    /// 3. more literal path segments first;
    /// 4. more one-segment `*` first (so `/a/*/*`, which needs a segment
    ///    after `/a`, beats `/a/*`, which does not);
    /// 5. a rule restricted to some methods before one accepting any;
    /// 6. file order.
    ///
    /// A trailing `*` (`/assets/*`) matches the same paths as the pattern
    /// without it (`/assets`), and empty segments in a pattern are ignored
    /// (`/api/` is `/api`). Literal segments are percent-decoded like request
    /// paths, so `/caf%C3%A9` and `/café` are the same pattern.
    pub fn new(specs: &[RouteSpec<'_>]) -> Result<Router, PatternError> {
        let mut keyed = Vec::with_capacity(specs.len());
        for (index, spec) in specs.iter().enumerate() {
            let CompiledPath {
                prefix,
                rest,
                literals,
            } = compile_path(index, spec.path)?;
            let host = compile_host(index, spec.host)?;
            let stars = rest.iter().filter(|s| matches!(s, Segment::Star)).count();
            let host_rank = match &host {
                HostPattern::Any => (0, 0),
                HostPattern::Subdomains(suffix) => (1, suffix.len()),
                HostPattern::Exact(_) => (2, 0),
            };
            let key = (
                Reverse(spec.priority.unwrap_or(0)),
                Reverse(host_rank),
                Reverse(literals),
                Reverse(stars),
                Reverse(!spec.methods.is_empty()),
                index,
            );
            let rule = Rule {
                index,
                host,
                methods: spec.methods.into(),
                prefix,
                rest,
            };
            keyed.push((key, rule));
        }
        keyed.sort_by_key(|(key, _)| *key);
        let rules: Box<[Rule]> = keyed.into_iter().map(|(_, rule)| rule).collect();
        Ok(Router {
            matches_hosts: rules.iter().any(|r| !matches!(r.host, HostPattern::Any)),
            rules,
        })
    }

    /// Finds the rule that handles a request, or `None` (the proxy answers
    /// `404`).
    ///
    /// `host` is the request's host (Host header or URI authority), with or
    /// without a port, in any case, with or without a trailing dot; `None`
    /// or empty when the request has none, which only rules without a host
    /// match. `path` is the output of [`normalize_path`]; a path not starting
    /// with `/` matches nothing. Does not allocate.
    pub fn route(&self, host: Option<&str>, method: &Method, path: &str) -> Option<RouteMatch> {
        if !path.starts_with('/') {
            return None;
        }
        let host = host.filter(|_| self.matches_hosts).map(bare_host);
        self.rules.iter().find_map(|rule| {
            if !rule.host_matches(host) {
                return None;
            }
            if !rule.methods.is_empty() && !rule.methods.contains(method) {
                return None;
            }
            let prefix_len = rule.match_path(path)?;
            Some(RouteMatch {
                rule: rule.index,
                prefix_len,
            })
        })
    }
}

impl Rule {
    fn host_matches(&self, host: Option<&str>) -> bool {
        match (&self.host, host) {
            (HostPattern::Any, _) => true,
            (_, None) => false,
            (HostPattern::Exact(want), Some(host)) => host.eq_ignore_ascii_case(want),
            (HostPattern::Subdomains(suffix), Some(host)) => {
                let (host, suffix) = (host.as_bytes(), suffix.as_bytes());
                // At least one non-empty label before the suffix.
                host.len() > suffix.len()
                    && host[..host.len() - suffix.len()].last() != Some(&b'.')
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
        }
    }

    /// Matches the path: the literal prefix with one comparison, then the
    /// remaining segments one by one, without splitting the path into a
    /// vector. Returns the length of the literal prefix.
    fn match_path(&self, path: &str) -> Option<usize> {
        let bytes = path.as_bytes();
        let prefix_len = self.prefix.len();
        // Segment-aware: `/api` covers `/api` and `/api/...`, not `/apix`.
        if !bytes.starts_with(self.prefix.as_bytes())
            || bytes.get(prefix_len).is_some_and(|&b| b != b'/')
        {
            return None;
        }
        // `pos` is at the '/' opening the next path segment, or at the end.
        let mut pos = prefix_len;
        for segment in self.rest.iter() {
            if pos >= bytes.len() {
                return None;
            }
            let start = pos + 1;
            let end = bytes[start..]
                .iter()
                .position(|&b| b == b'/')
                .map_or(bytes.len(), |p| start + p);
            let got = &bytes[start..end];
            let ok = match segment {
                Segment::Literal(want) => got == want.as_bytes(),
                Segment::Star => !got.is_empty(),
            };
            if !ok {
                return None;
            }
            pos = end;
        }
        // Whatever remains starts at a '/' (or is empty): segment-aware.
        Some(prefix_len)
    }
}

/// The request host without userinfo (an absolute-form URI's authority may
/// carry one), port and trailing dot, as a slice: what routing compares
/// and `$host` shows.
pub fn bare_host(host: &str) -> &str {
    let host = host.rsplit_once('@').map_or(host, |(_, host)| host);
    let host = if host.starts_with('[') {
        // `[v6]` or `[v6]:port`.
        host.find(']').map_or(host, |end| &host[..=end])
    } else {
        match host.find(':') {
            // One colon: `name:port`. More: a bare IPv6 address, kept whole.
            Some(colon) if !host[colon + 1..].contains(':') => &host[..colon],
            _ => host,
        }
    };
    host.strip_suffix('.').unwrap_or(host)
}

/// Compiles a path pattern into its literal prefix, the segments after it and
/// its number of literal segments.
fn compile_path(rule: usize, path: &str) -> Result<CompiledPath, PatternError> {
    let err_path = || path.to_owned();
    if !path.starts_with('/') {
        return Err(PatternError::NotAbsolute {
            rule,
            path: err_path(),
        });
    }
    let unmatchable = |reason| PatternError::Unmatchable {
        rule,
        path: err_path(),
        reason,
    };
    if path.contains('?') {
        return Err(unmatchable(
            "request paths are matched without their query ('?')",
        ));
    }
    if path.contains('#') {
        return Err(unmatchable("request paths have no fragment ('#')"));
    }
    let raw: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let mut segments = Vec::with_capacity(raw.len());
    for (i, seg) in raw.iter().enumerate() {
        if *seg == "*" {
            // A trailing `*` matches any remainder: same as no segment.
            if i + 1 < raw.len() {
                segments.push(Segment::Star);
            }
            continue;
        }
        if seg.contains('*') {
            return Err(PatternError::PartialWildcard {
                rule,
                path: err_path(),
            });
        }
        // Decode the segment exactly as request paths are decoded (`/x` in
        // front makes it a path; the result is one segment, as an encoded
        // slash stays "%2F").
        let as_path = format!("/{seg}");
        let decoded = normalize_path(&as_path).map_err(|source| PatternError::BadEncoding {
            rule,
            path: err_path(),
            source,
        })?;
        let decoded = &decoded[1..];
        if decoded.is_empty() {
            // `.` and `..` (raw or encoded) normalise to nothing.
            return Err(unmatchable(
                "'.' and '..' segments are removed from request paths",
            ));
        }
        segments.push(Segment::Literal(decoded.into()));
    }
    let leading = segments
        .iter()
        .take_while(|s| matches!(s, Segment::Literal(_)))
        .count();
    let mut prefix = String::new();
    let mut literals = 0;
    for segment in &segments {
        if let Segment::Literal(text) = segment {
            if literals < leading {
                prefix.push('/');
                prefix.push_str(text);
            }
            literals += 1;
        }
    }
    segments.drain(..leading);
    Ok(CompiledPath {
        prefix: prefix.into(),
        rest: segments.into_boxed_slice(),
        literals,
    })
}

fn compile_host(rule: usize, host: Option<&str>) -> Result<HostPattern, PatternError> {
    let Some(written) = host else {
        return Ok(HostPattern::Any);
    };
    let invalid = |reason| PatternError::InvalidHost {
        rule,
        host: written.to_owned(),
        reason,
    };
    let host = written.trim();
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    if host.is_empty() {
        return Err(PatternError::EmptyHost { rule });
    }
    if !host.is_ascii() {
        return Err(invalid(
            "write an international name in its ASCII (xn--) form",
        ));
    }
    if let Some(inner) = host.strip_prefix('[') {
        let Some(inner) = inner.strip_suffix(']') else {
            return Err(invalid(
                "a bracketed IPv6 address must end with ']' and has no port (ports are not compared)",
            ));
        };
        if inner.is_empty()
            || !inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(invalid("not an IPv6 address"));
        }
        return Ok(HostPattern::Exact(host.into()));
    }
    if host.contains(':') {
        return Err(invalid(
            "a host has no port here (ports are not compared); write IPv6 addresses in brackets",
        ));
    }
    let (name, wildcard) = match host.strip_prefix("*.") {
        Some(name) => (name, true),
        None => (host.as_str(), false),
    };
    if name.contains('*') {
        return Err(invalid(
            "'*' is only allowed as the whole first label, as in `*.example.com`",
        ));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(invalid("empty label (two dots in a row, or a leading dot)"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid(
                "only letters, digits, '-', '_' and '.' are allowed in a host name",
            ));
        }
    }
    Ok(if wildcard {
        HostPattern::Subdomains(format!(".{name}").into())
    } else {
        HostPattern::Exact(host.into())
    })
}
