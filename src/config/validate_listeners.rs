//! Validating listeners, their rules, headers and pools.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use strategies::StrategyKind;

use super::PublicFolders;
use super::model::{
    AdminConfig, HashKey, HeaderRule, HttpListenerConfig, ListenerConfig, ListenerMode, PoolConfig,
    ProxyProtocolVersion, RuleAction, RuleConfig, Settings, TcpListenerConfig,
};
use super::raw::{RawHeader, RawListener, RawRule, Scalar};
use super::suggest::did_you_mean;
use super::validate::Checker;
use super::values;
use super::yaml::{item, join};

/// The config name of the strategy that takes a `hash_key`. Compared by
/// name so the list of strategies stays the `strategies` crate's business.
const CONSISTENT_HASH: &str = "consistent-hash";

/// Validates every listener: unique names and addresses, mode-specific keys.
pub(super) fn listeners(
    ck: &mut Checker<'_>,
    raw: &[RawListener],
    ids: &HashSet<String>,
    defaults: Settings,
    admin: Option<&AdminConfig>,
) -> Vec<ListenerConfig> {
    let mut names: HashMap<String, String> = HashMap::new();
    let mut bound: Vec<(SocketAddr, String)> = Vec::new();
    if let Some(admin) = admin {
        bound.push((admin.listen, "the admin endpoint".to_owned()));
    }
    let mut out = Vec::new();
    for (i, listener) in raw.iter().enumerate() {
        let path = item("listeners", i);
        let key = |name: &str| join(&path, name);

        let name_path = key("name");
        let name = ck.string(&name_path, listener.name.as_ref());
        match &name {
            None if listener.name.is_none() => ck.at_value(&path, "listener needs a `name`"),
            Some(name) => {
                if let Some(first) = names.get(name) {
                    let line = ck.line_of(first);
                    ck.at_value(
                        &name_path,
                        format!("duplicate listener name `{name}` (first at line {line})"),
                    );
                } else {
                    names.insert(name.clone(), name_path.clone());
                }
            }
            None => {}
        }

        let listen_path = key("listen");
        let listen = ck.value(&listen_path, listener.listen.as_ref(), |ck, s| {
            values::listen(&ck.text(&listen_path, s)?, values::ANY_V4)
        });
        if listener.listen.is_none() {
            ck.at_value(
                &path,
                "listener needs a `listen` address (`IP:PORT` or a port)",
            );
        }
        if let Some(addr) = listen {
            let owner = match &name {
                Some(name) => format!("listener `{name}`"),
                None => format!("listener {}", i + 1),
            };
            if let Some((other, who)) = bound.iter().find(|(other, _)| clash(*other, addr)) {
                ck.at_value(
                    &listen_path,
                    format!("address `{addr}` clashes with `{other}` of {who}"),
                );
            }
            bound.push((addr, owner));
        }

        let mode_path = key("mode");
        let mode = ck.value(&mode_path, listener.mode.as_ref(), |ck, s| {
            match ck.text(&mode_path, s)?.as_ref() {
                "http" => Ok(true),
                "tcp" => Ok(false),
                other => match did_you_mean(other, ["http", "tcp"]) {
                    hint if hint.is_empty() => {
                        Err(format!("unknown mode `{other}`; use `http` or `tcp`"))
                    }
                    hint => Err(format!("unknown mode `{other}`{hint}")),
                },
            }
        });
        if listener.mode.is_some() && mode.is_none() {
            // The mode decides which keys apply: checking them would only
            // add noise to the error already reported.
            continue;
        }
        let mode = mode.unwrap_or(true);
        let settings = ck.settings(defaults, listener.settings(), &path);
        let mode = if mode {
            http_listener(ck, listener, &path, ids, settings).map(ListenerMode::Http)
        } else {
            tcp_listener(ck, listener, &path, ids).map(ListenerMode::Tcp)
        };
        if let (Some(name), Some(listen), Some(mode)) = (name, listen, mode) {
            out.push(ListenerConfig {
                name,
                listen,
                settings,
                mode,
            });
        }
    }
    out
}

/// Settings of a whole client connection, read before any rule is
/// chosen: they cannot be set per rule.
const CONNECTION_WIDE: [&str; 4] = [
    "header_timeout",
    "send_timeout",
    "max_header_size",
    "max_connections",
];

/// Settings about HTTP requests, with no meaning on a tcp listener.
const HTTP_ONLY: [&str; 5] = [
    "response_timeout",
    "body_timeout",
    "send_timeout",
    "max_header_size",
    "max_body_size",
];

/// Whether two listen addresses cannot both be bound. Port 0 picks a free
/// port, so it never clashes; a wildcard IP clashes with any IP of its
/// family on the same port.
fn clash(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip()
            || (a.is_ipv4() == b.is_ipv4() && (a.ip().is_unspecified() || b.ip().is_unspecified())))
}

/// Validates the HTTP side of a listener: rules and headers, and no pool keys.
fn http_listener(
    ck: &mut Checker<'_>,
    listener: &RawListener,
    path: &str,
    ids: &HashSet<String>,
    settings: Settings,
) -> Option<HttpListenerConfig> {
    let misplaced = [
        (
            "upstreams",
            listener.upstreams.is_some(),
            "pools are set on its rules (or use `mode: tcp`)",
        ),
        (
            "strategy",
            listener.strategy.is_some(),
            "set it on a rule (or use `mode: tcp`)",
        ),
        (
            "hash_key",
            listener.hash_key.is_some(),
            "set it on a rule (or use `mode: tcp`)",
        ),
        (
            "proxy_protocol",
            listener.proxy_protocol.is_some(),
            "it applies to tcp listeners only",
        ),
        (
            "accept_proxy_protocol",
            listener.accept_proxy_protocol.is_some(),
            "it applies to tcp listeners only",
        ),
    ];
    for (key, set, why) in misplaced {
        if set {
            ck.at_key(
                &join(path, key),
                format!("`{key}` does not apply to an http listener: {why}"),
            );
        }
    }
    let headers = headers(ck, listener.headers.as_deref().unwrap_or_default(), path);
    let rules = match listener.rules.as_deref() {
        None => {
            ck.at_value(path, "an http listener needs `rules` (or set `mode: tcp`)");
            return None;
        }
        Some([]) => {
            ck.at_key(
                &join(path, "rules"),
                "`rules` is empty: add at least one rule",
            );
            return None;
        }
        Some(rules) => rules,
    };
    // Validate every rule before giving up on any, so all errors are reported.
    let rules: Vec<Option<RuleConfig>> = rules
        .iter()
        .enumerate()
        .map(|(i, rule)| rule_config(ck, rule, &item(&join(path, "rules"), i), ids, settings))
        .collect();
    let rules = rules.into_iter().collect::<Option<Vec<_>>>()?;
    Some(HttpListenerConfig { headers, rules })
}

/// Validates the TCP side of a listener: its pool and PROXY protocol
/// options, and no HTTP keys.
fn tcp_listener(
    ck: &mut Checker<'_>,
    listener: &RawListener,
    path: &str,
    ids: &HashSet<String>,
) -> Option<TcpListenerConfig> {
    if listener.rules.is_some() {
        ck.at_key(
            &join(path, "rules"),
            "a tcp listener has no `rules`: it forwards to its `upstreams` (or use `mode: http`)",
        );
    }
    if listener.headers.is_some() {
        ck.at_key(
            &join(path, "headers"),
            "a tcp listener cannot set `headers`: it does not parse HTTP",
        );
    }
    let key = |name: &str| join(path, name);
    for name in listener.settings().present() {
        if HTTP_ONLY.contains(&name) {
            ck.at_key(
                &key(name),
                format!("`{name}` does not apply to a tcp listener: it is about HTTP requests"),
            );
        }
    }
    let proxy_path = key("proxy_protocol");
    let proxy_protocol = ck.value(
        &proxy_path,
        listener.proxy_protocol.as_ref(),
        |ck, s| match ck.text(&proxy_path, s)?.as_ref() {
            "v1" => Ok(ProxyProtocolVersion::V1),
            "v2" => Ok(ProxyProtocolVersion::V2),
            other => Err(format!(
                "unknown proxy_protocol `{other}`; use `v1` or `v2`"
            )),
        },
    );
    let accept_proxy_protocol = ck
        .boolean(
            &key("accept_proxy_protocol"),
            listener.accept_proxy_protocol.as_ref(),
        )
        .unwrap_or(false);
    let pool = pool(
        ck,
        path,
        listener.upstreams.as_deref(),
        listener.strategy.as_ref(),
        listener.hash_key.as_ref(),
        ids,
        "a tcp listener needs `upstreams`",
    )?;
    if pool
        .hash_key
        .as_ref()
        .is_some_and(|key| *key != HashKey::ClientIp)
    {
        // Headers, cookies, paths and queries are HTTP; a tunnel has none.
        ck.at_value(
            &key("hash_key"),
            "a tcp listener can hash only on `client-ip`",
        );
        return None;
    }
    Some(TcpListenerConfig {
        pool,
        proxy_protocol,
        accept_proxy_protocol,
    })
}

/// Validates a listener's `headers:` list.
fn headers(ck: &mut Checker<'_>, raw: &[RawHeader], listener: &str) -> Vec<HeaderRule> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, header) in raw.iter().enumerate() {
        let path = item(&join(listener, "headers"), i);
        let key_path = join(&path, "key");
        let name = ck.value(&key_path, header.key.as_ref(), |ck, s| {
            values::header_name(&ck.text(&key_path, s)?)
        });
        if header.key.is_none() {
            ck.at_value(&path, "header needs a `key` (its name)");
        }
        let value_path = join(&path, "value");
        let value = ck.value(&value_path, header.value.as_ref(), |ck, s| {
            values::header_value(&ck.text(&value_path, s)?)
        });
        if header.value.is_none() {
            ck.at_value(&path, "header needs a `value`");
        }
        if let Some(name) = &name
            && !seen.insert(name.clone())
        {
            ck.at_value(&key_path, format!("header `{name}` is set twice"));
        }
        if let (Some(name), Some(value)) = (name, value) {
            out.push(HeaderRule { name, value });
        }
    }
    out
}

/// Validates one rule: its match, its action and its settings.
fn rule_config(
    ck: &mut Checker<'_>,
    rule: &RawRule,
    path: &str,
    ids: &HashSet<String>,
    listener: Settings,
) -> Option<RuleConfig> {
    let key = |name: &str| join(path, name);
    let name = ck.string(&key("name"), rule.name.as_ref());
    let path_path = key("path");
    let pattern = ck.value(&path_path, rule.path.as_ref(), |ck, s| {
        values::path_pattern(&ck.text(&path_path, s)?)
    });
    let host_path = key("host");
    let host = ck.value(&host_path, rule.host.as_ref(), |ck, s| {
        values::host_pattern(&ck.text(&host_path, s)?)
    });
    let mut methods = Vec::new();
    for (i, method) in rule.methods.iter().flatten().enumerate() {
        let method_path = item(&key("methods"), i);
        if let Some(method) = ck.value(&method_path, Some(method), |ck, s| {
            values::method(&ck.text(&method_path, s)?)
        }) {
            if methods.contains(&method) {
                ck.at_value(&method_path, format!("method `{method}` is listed twice"));
            } else {
                methods.push(method);
            }
        }
    }
    if rule.methods.as_ref().is_some_and(Vec::is_empty) {
        ck.at_key(
            &key("methods"),
            "`methods` is empty: leave it out to match every method",
        );
    }
    let priority = ck
        .count(
            &key("priority"),
            rule.priority.as_ref(),
            i32::MIN.into(),
            i32::MAX.into(),
        )
        .map(|n| n as i32); // within i32's range
    for name in rule.settings().present() {
        if CONNECTION_WIDE.contains(&name) {
            ck.at_key(
                &key(name),
                format!(
                    "`{name}` applies to a whole client connection, before a rule is chosen: set it on the listener or in `defaults`"
                ),
            );
        }
    }
    let settings = ck.settings(listener, rule.settings(), path);

    let action = match (&rule.upstreams, &rule.public) {
        (Some(_), Some(_)) => {
            ck.at_key(
                &key("public"),
                "a rule has `upstreams` or `public`, not both",
            );
            None
        }
        (None, None) => {
            ck.at_value(
                path,
                "a rule needs `upstreams` (to proxy) or `public` (to serve files)",
            );
            None
        }
        (None, Some(public)) => {
            for (name, set) in [
                ("strategy", rule.strategy.is_some()),
                ("hash_key", rule.hash_key.is_some()),
                ("pass_host", rule.pass_host.is_some()),
            ] {
                if set {
                    ck.at_key(
                        &key(name),
                        format!("`{name}` applies only to rules with `upstreams`, not `public`"),
                    );
                }
            }
            let public_path = key("public");
            let (source, folders) = (ck.source, ck.folders);
            ck.value(&public_path, Some(public), |ck, s| {
                public_root(source, &ck.text(&public_path, s)?, folders)
            })
            .map(|root| RuleAction::Static { root })
        }
        (Some(upstreams), None) => {
            let pass_host = ck
                .boolean(&key("pass_host"), rule.pass_host.as_ref())
                .unwrap_or(true);
            pool(
                ck,
                path,
                Some(upstreams),
                rule.strategy.as_ref(),
                rule.hash_key.as_ref(),
                ids,
                "",
            )
            .map(|pool| RuleAction::Proxy { pool, pass_host })
        }
    };
    Some(RuleConfig {
        name,
        path: match (&rule.path, pattern) {
            (None, _) => "/*".to_owned(),
            (Some(_), pattern) => pattern?,
        },
        host,
        methods,
        priority,
        settings,
        action: action?,
    })
}

/// Resolves a `public` folder against the config file's folder; it must
/// exist and be a folder (unless `folders` says the supervisor checked
/// it). Stored canonical, so the static file server can check that every
/// file it serves stays inside.
fn public_root(source: &Path, public: &str, folders: PublicFolders) -> Result<PathBuf, String> {
    let base = match source.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let written = base.join(public);
    let root = match (written.canonicalize(), folders) {
        (Ok(root), _) => root,
        (Err(error), PublicFolders::AsValidated) => {
            tracing::warn!(folder = %written.display(), %error, "this worker cannot reach a public folder; its files answer 404");
            return Ok(written);
        }
        (Err(_), PublicFolders::MustExist) => {
            return Err(format!(
                "public folder `{public}` does not exist (relative to the config file's folder)"
            ));
        }
    };
    if folders == PublicFolders::MustExist && !root.is_dir() {
        return Err(format!("public `{public}` is not a folder"));
    }
    Ok(root)
}

/// Validates a pool (`upstreams`, `strategy`, `hash_key`) of a rule or TCP
/// listener at `path`. `missing` is the message when `upstreams` is absent.
fn pool(
    ck: &mut Checker<'_>,
    path: &str,
    upstreams: Option<&[Scalar]>,
    strategy: Option<&Scalar>,
    hash_key: Option<&Scalar>,
    ids: &HashSet<String>,
    missing: &str,
) -> Option<PoolConfig> {
    let key = |name: &str| join(path, name);
    let list_path = key("upstreams");
    let Some(upstreams) = upstreams else {
        ck.at_value(path, missing);
        return None;
    };
    if upstreams.is_empty() {
        ck.at_key(
            &list_path,
            "`upstreams` is empty: name at least one upstream id",
        );
    }
    let mut names: Vec<String> = Vec::new();
    let mut complete = !upstreams.is_empty();
    for (i, id) in upstreams.iter().enumerate() {
        let id_path = item(&list_path, i);
        let Some(id) = ck.value(&id_path, Some(id), |ck, s| {
            Ok(ck.text(&id_path, s)?.into_owned())
        }) else {
            complete = false;
            continue;
        };
        if !ids.contains(&id) {
            let hint = did_you_mean(&id, ids.iter().map(String::as_str));
            ck.at_value(&id_path, format!("unknown upstream `{id}`{hint}"));
            complete = false;
        } else if names.contains(&id) {
            ck.at_value(&id_path, format!("upstream `{id}` is listed twice"));
        } else {
            names.push(id);
        }
    }
    let strategy_path = key("strategy");
    let kind = ck.value(&strategy_path, strategy, |ck, s| {
        let name = ck.text(&strategy_path, s)?;
        StrategyKind::from_str(&name).map_err(|_| {
            let known = StrategyKind::ALL.iter().map(|(n, _)| *n);
            match did_you_mean(&name, known.clone()) {
                hint if hint.is_empty() => {
                    let list: Vec<&str> = known.collect();
                    format!("unknown strategy `{name}`; use one of: {}", list.join(", "))
                }
                hint => format!("unknown strategy `{name}`{hint}"),
            }
        })
    });
    let strategy_invalid = strategy.is_some() && kind.is_none();
    if strategy_invalid {
        complete = false;
    }
    let kind = kind.unwrap_or_default();
    let hash_path = key("hash_key");
    let hash = match hash_key {
        // An unknown strategy was reported already; the hash key may be fine.
        Some(_) if strategy_invalid => None,
        Some(_) if kind.name() != CONSISTENT_HASH => {
            ck.at_key(
                &hash_path,
                format!(
                    "`hash_key` needs `strategy: {CONSISTENT_HASH}` (the strategy is `{}`)",
                    kind.name()
                ),
            );
            None
        }
        Some(_) => ck.value(&hash_path, hash_key, |ck, s| {
            values::hash_key(&ck.text(&hash_path, s)?)
        }),
        None if kind.name() == CONSISTENT_HASH => Some(HashKey::ClientIp),
        None => None,
    };
    if hash_key.is_some() && hash.is_none() {
        complete = false;
    }
    complete.then_some(PoolConfig {
        upstreams: names,
        strategy: kind,
        hash_key: hash,
    })
}
