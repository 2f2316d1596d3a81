//! The validating layer: raw structs in, [`Config`] out, every problem
//! recorded with its position.
//!
//! This file holds the [`Checker`] (scalar conversions that know where each
//! value is), the top level, `defaults`, settings, health checks and
//! upstreams; listeners and rules are in [`super::validate_listeners`].

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::Path;
use std::time::Duration;

use super::model::{
    AdminConfig, Config, HealthCheckConfig, HealthCheckKind, ListenerConfig, ListenerMode,
    RuleAction, Settings, StatusSet, UpstreamConfig, UpstreamOverrides, Workers,
};
use super::raw::{RawConfig, RawHealthCheck, RawSettings, RawUpstream, Scalar};
use super::suggest::did_you_mean;
use super::yaml::{Index, item, join};
use super::{ConfigError, validate_listeners, values};

/// Scalars YAML 1.1 reads as booleans; ambiguous where a string is meant.
const YAML11_BOOLS: [&str; 10] = [
    "yes", "no", "on", "off", "y", "n", "true", "false", "~", "null",
];

/// Turns raw scalars into typed values, recording each failure at the
/// position of the offending key or value.
pub(super) struct Checker<'a> {
    /// Where every node is.
    index: &'a Index,
    /// The config file, for messages and relative paths.
    pub source: &'a Path,
    /// How `public` folders are checked.
    pub folders: super::PublicFolders,
    /// Where problems go.
    errors: &'a mut Vec<ConfigError>,
}

impl Checker<'_> {
    /// Records `message` at the value of node `path`.
    pub fn at_value(&mut self, path: &str, message: impl Into<String>) {
        self.push(self.index.value(path), message.into());
    }

    /// Records `message` at the key of node `path`.
    pub fn at_key(&mut self, path: &str, message: impl Into<String>) {
        self.push(self.index.key(path), message.into());
    }

    /// Records `message` at `pos`.
    fn push(&mut self, pos: super::yaml::Pos, message: String) {
        self.errors.push(ConfigError {
            file: self.source.to_owned(),
            line: pos.line,
            column: pos.column,
            message,
        });
    }

    /// The line where the value of `path` starts (for "first defined at").
    pub fn line_of(&self, path: &str) -> usize {
        self.index.value(path).line
    }

    /// Converts the scalar at `path` with `parse`; a failure is recorded and
    /// gives `None`, as does an absent scalar.
    pub fn value<T>(
        &mut self,
        path: &str,
        scalar: Option<&Scalar>,
        parse: impl FnOnce(&Self, &Scalar) -> Result<T, String>,
    ) -> Option<T> {
        let scalar = scalar?;
        match parse(self, scalar) {
            Ok(value) => Some(value),
            Err(message) => {
                self.at_value(path, message);
                None
            }
        }
    }

    /// The scalar at `path` as text. Numbers are taken as written; booleans
    /// and unquoted YAML 1.1 booleans (`yes`, `off`) are refused, since a
    /// string was meant and other YAML tools would read a boolean.
    pub fn text<'s>(&self, path: &str, scalar: &'s Scalar) -> Result<Cow<'s, str>, String> {
        match scalar {
            Scalar::Str(s) => {
                if self.index.is_plain(path)
                    && YAML11_BOOLS.contains(&s.to_ascii_lowercase().as_str())
                {
                    Err(format!(
                        "`{s}` is a boolean in YAML 1.1; quote it (\"{s}\") if you mean the text"
                    ))
                } else {
                    Ok(Cow::Borrowed(s))
                }
            }
            Scalar::Int(n) => Ok(Cow::Owned(n.to_string())),
            Scalar::Bool(b) => Err(format!("expected text, found the boolean `{b}`")),
            Scalar::Float(x) => Err(format!("expected text, found the number `{x}`; quote it")),
        }
    }

    /// A non-empty string at `path`.
    pub fn string(&mut self, path: &str, scalar: Option<&Scalar>) -> Option<String> {
        self.value(path, scalar, |ck, s| {
            let text = ck.text(path, s)?;
            if text.trim().is_empty() {
                return Err(format!("`{}` must not be empty", last_key(path)));
            }
            Ok(text.into_owned())
        })
    }

    /// A positive duration at `path` (unit required).
    pub fn duration(&mut self, path: &str, scalar: Option<&Scalar>) -> Option<Duration> {
        self.value(path, scalar, |_, s| {
            let value = match s {
                Scalar::Bool(b) => {
                    return Err(format!("expected a duration like `2s`, found `{b}`"));
                }
                other => values::duration(&other.to_string())?,
            };
            if value.is_zero() {
                return Err(format!("`{}` must be more than 0", last_key(path)));
            }
            Ok(value)
        })
    }

    /// `true` or `false` at `path`.
    pub fn boolean(&mut self, path: &str, scalar: Option<&Scalar>) -> Option<bool> {
        self.value(path, scalar, |_, s| match s {
            Scalar::Bool(b) => Ok(*b),
            // Quoted, but unambiguous.
            Scalar::Str(s) if s == "true" => Ok(true),
            Scalar::Str(s) if s == "false" => Ok(false),
            other => Err(format!("expected `true` or `false`, found `{other}`")),
        })
    }

    /// A whole number within `min..=max` at `path`.
    pub fn count(
        &mut self,
        path: &str,
        scalar: Option<&Scalar>,
        min: i128,
        max: i128,
    ) -> Option<i128> {
        self.value(path, scalar, |_, s| {
            let n = match s {
                Scalar::Int(n) => *n,
                Scalar::Str(t) => t
                    .trim()
                    .parse::<i128>()
                    .map_err(|_| format!("expected a whole number, found `{t}`"))?,
                // YAML reads `1e10`, and integers too large for i128, as floats.
                Scalar::Float(x) if x.fract() == 0.0 && x.abs() < 1e30 => *x as i128,
                Scalar::Float(x) if x.is_finite() && x.fract() == 0.0 => {
                    return Err(format!("`{}` is too large (at most {max})", last_key(path)));
                }
                other => return Err(format!("expected a whole number, found `{other}`")),
            };
            let key = last_key(path);
            if n < min {
                return Err(if min == 1 {
                    format!("`{key}` must be more than 0, found `{n}`")
                } else {
                    format!("`{key}` must be at least {min}, found `{n}`")
                });
            }
            if n > max {
                return Err(format!("`{key}` is too large (at most {max})"));
            }
            Ok(n)
        })
    }

    /// A positive `u32` at `path`, at most `max`.
    pub fn nonzero(&mut self, path: &str, scalar: Option<&Scalar>, max: u32) -> Option<NonZeroU32> {
        let n = self.count(path, scalar, 1, max.into())?;
        NonZeroU32::new(u32::try_from(n).ok()?)
    }

    /// Folds the settings keys set at `path` over `base`.
    pub fn settings(&mut self, mut base: Settings, raw: RawSettings<'_>, path: &str) -> Settings {
        let key = |name: &str| join(path, name);
        let durations = [
            (
                "connect_timeout",
                raw.connect_timeout,
                &mut base.connect_timeout,
            ),
            (
                "response_timeout",
                raw.response_timeout,
                &mut base.response_timeout,
            ),
            ("idle_timeout", raw.idle_timeout, &mut base.idle_timeout),
            (
                "header_timeout",
                raw.header_timeout,
                &mut base.header_timeout,
            ),
            ("body_timeout", raw.body_timeout, &mut base.body_timeout),
            ("send_timeout", raw.send_timeout, &mut base.send_timeout),
        ];
        for (name, scalar, slot) in durations {
            if let Some(value) = self.duration(&key(name), scalar) {
                *slot = value;
            }
        }
        if let Some(n) = self.count(&key("retries"), raw.retries, 0, 100) {
            base.retries = n as u32; // within 0..=100
        }
        if let Some(n) = self.count(
            &key("max_connections"),
            raw.max_connections,
            1,
            u32::MAX.into(),
        ) {
            base.max_connections = n as u32; // within 1..=u32::MAX
        }
        let header_path = key("max_header_size");
        if let Some(n) = self.value(&header_path, raw.max_header_size, |_, s| size(s)) {
            match usize::try_from(n) {
                Ok(0) => self.at_value(&header_path, "`max_header_size` must be more than 0"),
                Ok(n) => base.max_header_size = n,
                Err(_) => self.at_value(&header_path, "`max_header_size` is too large"),
            }
        }
        if let Some(n) = self.value(&key("max_body_size"), raw.max_body_size, |_, s| size(s)) {
            base.max_body_size = (n > 0).then_some(n);
        }
        base
    }

    /// Folds a `health_check` block at `path` over `base`, field by field.
    pub fn health_check(
        &mut self,
        base: &HealthCheckConfig,
        raw: Option<&RawHealthCheck>,
        path: &str,
    ) -> HealthCheckConfig {
        let mut check = base.clone();
        let Some(raw) = raw else { return check };
        let key = |name: &str| join(path, name);
        let kind_path = key("kind");
        if let Some(kind) = self.value(&kind_path, raw.kind.as_ref(), |ck, s| {
            health_check_kind(&ck.text(&kind_path, s)?)
        }) {
            check.kind = kind;
        }
        let path_path = key("path");
        if let Some(p) = self.value(&path_path, raw.path.as_ref(), |ck, s| {
            let p = ck.text(&path_path, s)?;
            if !p.starts_with('/') || p.contains(char::is_whitespace) {
                return Err(format!(
                    "health check path `{p}` must start with `/` and have no spaces"
                ));
            }
            Ok(p.into_owned())
        }) {
            check.path = p;
        }
        let host_path = key("host");
        if let Some(host) = self.value(&host_path, raw.host.as_ref(), |ck, s| {
            let host = ck.text(&host_path, s)?;
            if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c.is_control()) {
                return Err(format!("`{host}` is not a valid Host header value"));
            }
            Ok(host.into_owned())
        }) {
            check.host = Some(host);
        }
        if let Some(set) = self.value(&key("expect_status"), raw.expect_status.as_ref(), |_, s| {
            status_set(s)
        }) {
            check.expect_status = set;
        }
        if let Some(d) = self.duration(&key("interval"), raw.interval.as_ref()) {
            check.interval = d;
        }
        if let Some(d) = self.duration(&key("timeout"), raw.timeout.as_ref()) {
            check.timeout = d;
        }
        if let Some(n) = self.nonzero(&key("rise"), raw.rise.as_ref(), 1000) {
            check.rise = n;
        }
        if let Some(n) = self.nonzero(&key("fall"), raw.fall.as_ref(), 1000) {
            check.fall = n;
        }
        if check.kind != HealthCheckKind::Http {
            // Set in this very block yet unused: most likely a mistake.
            for (name, set) in [
                ("path", raw.path.is_some()),
                ("host", raw.host.is_some()),
                ("expect_status", raw.expect_status.is_some()),
            ] {
                if set {
                    self.at_key(
                        &key(name),
                        format!(
                            "`{name}` applies only to `kind: http` health checks (this one is `{}`)",
                            kind_name(check.kind)
                        ),
                    );
                }
            }
        }
        check
    }
}

/// Health check kinds by config name.
const KINDS: [(&str, HealthCheckKind); 5] = [
    ("tcp", HealthCheckKind::Tcp),
    ("http", HealthCheckKind::Http),
    ("redis", HealthCheckKind::Redis),
    ("postgres", HealthCheckKind::Postgres),
    ("none", HealthCheckKind::None),
];

/// The config name of a health check kind.
fn kind_name(kind: HealthCheckKind) -> &'static str {
    KINDS
        .iter()
        .find(|(_, k)| *k == kind)
        .map_or("none", |(name, _)| *name)
}

/// The last key of a node path, for messages (`defaults.retries` → `retries`).
pub(super) fn last_key(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

/// A size scalar: a plain byte count (number) or text with a unit.
fn size(scalar: &Scalar) -> Result<u64, String> {
    match scalar {
        Scalar::Bool(b) => Err(format!("expected a size like `64k`, found `{b}`")),
        other => values::size(&other.to_string()),
    }
}

/// A status-set scalar: `200` as a number, or text.
fn status_set(scalar: &Scalar) -> Result<StatusSet, String> {
    match scalar {
        Scalar::Bool(b) => Err(format!("expected a status like `200-399`, found `{b}`")),
        other => values::status_set(&other.to_string()),
    }
}

/// Parses a health check kind by name.
fn health_check_kind(name: &str) -> Result<HealthCheckKind, String> {
    match KINDS.iter().find(|(n, _)| *n == name) {
        Some((_, kind)) => Ok(*kind),
        None => match did_you_mean(name, KINDS.iter().map(|(n, _)| *n)) {
            hint if hint.is_empty() => Err(format!(
                "unknown health check kind `{name}`; use tcp, http, redis, postgres or none"
            )),
            hint => Err(format!("unknown health check kind `{name}`{hint}")),
        },
    }
}

/// The health check an upstream gets when neither `defaults` nor the
/// upstream sets one (SPEC.md §2's values).
pub(super) fn builtin_health_check() -> HealthCheckConfig {
    HealthCheckConfig {
        kind: HealthCheckKind::Http,
        path: "/healthz".to_owned(),
        host: None,
        expect_status: StatusSet(vec![200..=399]),
        interval: Duration::from_secs(2),
        timeout: Duration::from_secs(1),
        // 2 and 3 are non-zero.
        rise: NonZeroU32::new(2).expect("2 is not zero"),
        fall: NonZeroU32::new(3).expect("3 is not zero"),
    }
}

/// Validates a whole raw config; problems go to `errors`. The returned
/// config is meaningful only when no error was recorded.
pub(super) fn validate(
    raw: &RawConfig,
    index: &Index,
    source: &Path,
    folders: super::PublicFolders,
    errors: &mut Vec<ConfigError>,
) -> Config {
    let mut ck = Checker {
        index,
        source,
        folders,
        errors,
    };

    // A quoted number (`"2"`) is taken as the number, as other counts are.
    let quoted_count = match raw.workers.as_ref() {
        Some(Scalar::Str(text)) => text.trim().parse::<i128>().ok().map(Scalar::Int),
        _ => None,
    };
    let workers = ck
        .value(
            "workers",
            quoted_count.as_ref().or(raw.workers.as_ref()),
            |ck, s| match s {
                Scalar::Int(n) if (1..=1024).contains(n) => {
                    // Within 1..=1024, so both conversions succeed.
                    Ok(Workers::Count(
                        NonZeroUsize::new(*n as usize).expect("checked non-zero"),
                    ))
                }
                Scalar::Int(n) if *n > 1024 => {
                    Err("`workers` is too large (at most 1024)".to_owned())
                }
                Scalar::Int(n) => Err(format!(
                    "`workers` must be `auto` or more than 0, found `{n}`"
                )),
                Scalar::Float(_) => Err(
                    "`workers` must be `auto` or a number of processes (at most 1024)".to_owned(),
                ),
                other => match ck.text("workers", other)?.as_ref() {
                    "auto" => Ok(Workers::Auto),
                    text => Err(format!(
                        "`workers` must be `auto` or a number of processes, found `{text}`"
                    )),
                },
            },
        )
        .unwrap_or(Workers::Auto);

    let admin = raw.admin.as_ref().map(|admin| {
        let listen = ck
            .value("admin.listen", admin.listen.as_ref(), |ck, s| {
                values::listen(&ck.text("admin.listen", s)?, values::LOOPBACK_V4)
            })
            .unwrap_or(std::net::SocketAddr::new(values::LOOPBACK_V4, 9901));
        AdminConfig { listen }
    });

    let user = ck.value("user", raw.user.as_ref(), |ck, s| {
        let user = ck.text("user", s)?;
        if user.is_empty() || user.contains(|c: char| c.is_whitespace() || c == ':' || c == '/') {
            return Err(format!("`{user}` is not a valid user name"));
        }
        Ok(user.into_owned())
    });

    let drain_timeout = ck
        .duration("drain_timeout", raw.drain_timeout.as_ref())
        .unwrap_or(Duration::from_secs(30));

    let defaults = raw.defaults.as_ref();
    let settings = match defaults {
        Some(d) => ck.settings(Settings::default(), d.settings(), "defaults"),
        None => Settings::default(),
    };
    let health = ck.health_check(
        &builtin_health_check(),
        defaults.and_then(|d| d.health_check.as_ref()),
        "defaults.health_check",
    );

    let mut upstreams = upstreams(
        &mut ck,
        raw.upstreams.as_deref().unwrap_or_default(),
        settings,
        &health,
    );
    // Every id written, valid or not: an upstream with a bad address is
    // reported once, not again by every pool that names it.
    let ids: HashSet<String> = raw
        .upstreams
        .iter()
        .flatten()
        .filter_map(|u| u.id.as_ref().map(Scalar::to_string))
        .collect();

    let listeners = match raw.listeners.as_deref() {
        None => {
            ck.at_key("listeners", "no `listeners`: add at least one listener");
            Vec::new()
        }
        Some([]) => {
            ck.at_key(
                "listeners",
                "`listeners` is empty: add at least one listener",
            );
            Vec::new()
        }
        Some(list) => validate_listeners::listeners(&mut ck, list, &ids, settings, admin.as_ref()),
    };

    let http_in_defaults = defaults
        .and_then(|d| d.health_check.as_ref())
        .is_some_and(says_http);
    if !http_in_defaults {
        check_databases_by_connecting(raw, &mut upstreams, &listeners);
    }

    Config {
        source: source.to_owned(),
        workers,
        admin,
        user,
        drain_timeout,
        upstreams,
        listeners,
    }
}

/// Whether a `health_check` block chooses its check: a `kind`, or a field
/// only an HTTP check has.
fn says_http(check: &RawHealthCheck) -> bool {
    check.kind.is_some()
        || check.path.is_some()
        || check.host.is_some()
        || check.expect_status.is_some()
}

/// Gives `kind: tcp` to the upstreams only tcp listeners use whose check
/// kind is written nowhere: the built-in check (`GET /healthz`) means
/// nothing to a database, which would read down from the start (and
/// Redis logs each probe as an attack). A `defaults` or upstream check
/// that sets `kind` or an HTTP check's `path`, `host` or `expect_status`
/// keeps what it says.
fn check_databases_by_connecting(
    raw: &RawConfig,
    upstreams: &mut [UpstreamConfig],
    listeners: &[ListenerConfig],
) {
    let mut by_tcp = HashSet::new();
    let mut by_http = HashSet::new();
    for listener in listeners {
        match &listener.mode {
            ListenerMode::Tcp(tcp) => by_tcp.extend(tcp.pool.upstreams.iter()),
            ListenerMode::Http(http) => {
                for rule in &http.rules {
                    if let RuleAction::Proxy { pool, .. } = &rule.action {
                        by_http.extend(pool.upstreams.iter());
                    }
                }
            }
        }
    }
    let says_http: HashSet<String> = raw
        .upstreams
        .iter()
        .flatten()
        .filter(|u| u.health_check.as_ref().is_some_and(says_http))
        .filter_map(|u| u.id.as_ref().map(Scalar::to_string))
        .collect();
    for upstream in upstreams {
        if by_tcp.contains(&upstream.id)
            && !by_http.contains(&upstream.id)
            && !says_http.contains(&upstream.id)
        {
            upstream.health_check.kind = HealthCheckKind::Tcp;
        }
    }
}

/// Validates `upstreams:`: ids unique, addresses valid, settings and health
/// checks folded over the defaults.
fn upstreams(
    ck: &mut Checker<'_>,
    raw: &[RawUpstream],
    defaults: Settings,
    health: &HealthCheckConfig,
) -> Vec<UpstreamConfig> {
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut out = Vec::new();
    for (i, upstream) in raw.iter().enumerate() {
        let path = item("upstreams", i);
        let key = |name: &str| join(&path, name);
        let id_path = key("id");
        let id = ck.value(&id_path, upstream.id.as_ref(), |ck, s| {
            let id = ck.text(&id_path, s)?;
            if id.is_empty()
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return Err(format!(
                    "upstream id `{id}` may use only letters, digits, `-`, `_` and `.`"
                ));
            }
            Ok(id.into_owned())
        });
        if upstream.id.is_none() {
            ck.at_value(&path, "upstream needs an `id`");
        }
        if let Some(id) = &id {
            if let Some(first) = seen.get(id) {
                let line = ck.line_of(first);
                ck.at_value(
                    &id_path,
                    format!("duplicate upstream id `{id}` (first at line {line})"),
                );
            } else {
                seen.insert(id.clone(), id_path.clone());
            }
        }
        let address_path = key("address");
        let address = ck.value(&address_path, upstream.address.as_ref(), |ck, s| {
            values::upstream_address(&ck.text(&address_path, s)?)
        });
        if upstream.address.is_none() {
            ck.at_value(&path, "upstream needs an `address` (`host:port`)");
        }
        let weight = ck.nonzero(&key("weight"), upstream.weight.as_ref(), 1_000_000);
        let overrides = UpstreamOverrides {
            connect_timeout: ck
                .duration(&key("connect_timeout"), upstream.connect_timeout.as_ref()),
            response_timeout: ck
                .duration(&key("response_timeout"), upstream.response_timeout.as_ref()),
        };
        let mut settings = defaults;
        settings.connect_timeout = overrides
            .connect_timeout
            .unwrap_or(settings.connect_timeout);
        settings.response_timeout = overrides
            .response_timeout
            .unwrap_or(settings.response_timeout);
        let health_check =
            ck.health_check(health, upstream.health_check.as_ref(), &key("health_check"));
        if let (Some(id), Some(address)) = (id, address) {
            out.push(UpstreamConfig {
                id,
                address,
                weight: weight.unwrap_or(NonZeroU32::MIN),
                health_check,
                settings,
                overrides,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_health_check_matches_the_spec() {
        let check = builtin_health_check();
        assert_eq!(check.kind, HealthCheckKind::Http);
        assert_eq!(check.path, "/healthz");
        assert!(check.expect_status.contains(200) && check.expect_status.contains(399));
        assert!(!check.expect_status.contains(400));
        assert_eq!((check.rise.get(), check.fall.get()), (2, 3));
    }

    #[test]
    fn kinds_parse_and_suggest() {
        assert_eq!(health_check_kind("postgres"), Ok(HealthCheckKind::Postgres));
        assert!(
            health_check_kind("postgress")
                .unwrap_err()
                .contains("did you mean `postgres`?")
        );
    }
}
