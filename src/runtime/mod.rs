//! The config compiled into its hot-path form.
//!
//! [`compile`] runs once per config generation, off the hot path: it builds
//! each HTTP listener's router, each pool's strategy and each header
//! template, and gives every listener and upstream its counter slot. The
//! result is immutable; a request only reads it.

pub mod headers;
pub mod pool;
pub mod router;
pub mod slots;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::HeaderValue;

use crate::config::{
    self, Config, ListenerMode, PoolConfig, ProxyProtocolVersion, RuleAction, Settings,
};
use headers::{HeaderTemplate, UnknownVariable};
use pool::Pool;
use router::{RouteSpec, Router};
use slots::{SlotIndex, Slots};

/// A compiled config generation.
#[derive(Debug)]
pub struct Runtime {
    /// The slot assignment this generation was compiled with.
    pub slots: Slots,
    /// How long connections of a stopped or removed listener may finish.
    pub drain_timeout: std::time::Duration,
    /// Every upstream; index = counter slot.
    pub upstreams: Vec<Upstream>,
    /// Every listener; index = counter slot.
    pub listeners: Vec<Listener>,
}

/// A compiled upstream.
#[derive(Debug)]
pub struct Upstream {
    /// Configured id (logs, metrics).
    pub id: String,
    /// `host:port`, the Host header when `pass_host: false` (made once:
    /// cloning a header value is a reference count).
    pub host_header: HeaderValue,
    /// Counter slot.
    pub slot: usize,
    /// Connect timeout set on the upstream itself (beats the rule's).
    pub connect_timeout: Option<Duration>,
    /// Response timeout set on the upstream itself (beats the rule's).
    pub response_timeout: Option<Duration>,
    /// Where to connect: host and port as configured.
    pub address: config::UpstreamAddress,
}

/// A compiled listener.
#[derive(Debug)]
pub struct Listener {
    /// Configured name.
    pub name: String,
    /// Configured address (the bound socket may differ for port 0).
    pub listen: SocketAddr,
    /// Counter slot.
    pub slot: usize,
    /// Resolved settings.
    pub settings: Settings,
    /// What it serves.
    pub kind: ListenerKind,
}

/// HTTP routes or a TCP pool.
#[derive(Debug)]
pub enum ListenerKind {
    /// An HTTP reverse proxy.
    Http(HttpRoutes),
    /// A TCP passthrough.
    Tcp(TcpRoute),
}

/// An HTTP listener's compiled routing.
#[derive(Debug)]
pub struct HttpRoutes {
    /// Finds the rule for a request.
    pub router: Router,
    /// Rules, indexed like the router's specs.
    pub rules: Vec<Rule>,
    /// Headers set on every proxied request.
    pub headers: Vec<HeaderTemplate>,
    /// Whether any of `headers` uses `$request_id`.
    pub needs_request_id: bool,
    /// Where requests no rule matched are counted.
    pub no_rule: Metered,
}

/// The counter slots a request's outcome is recorded in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metered {
    /// Route slot (duration histogram, retries).
    pub route: usize,
    /// Pair slot (responses by status class).
    pub pair: usize,
}

impl Metered {
    /// (route, pair), as the counter row takes them.
    pub fn slots(self) -> (usize, usize) {
        (self.route, self.pair)
    }
}

/// A compiled routing rule.
#[derive(Debug)]
pub struct Rule {
    /// Name for logs and metrics: the rule's `name`, else its path pattern.
    pub label: String,
    /// Counter slots for responses sluice makes itself (upstream `""`).
    pub metered: Metered,
    /// Pair slot per pool member (parallel to the pool's `members`); empty
    /// for a static rule.
    pub pairs: Vec<usize>,
    /// Resolved settings.
    pub settings: Settings,
    /// What to do with a match.
    pub action: Action,
}

/// Proxy to a pool or serve files.
#[derive(Debug)]
pub enum Action {
    /// Proxy to a pool.
    Proxy {
        /// The pool.
        pool: Pool,
        /// Forward the client's Host header (else the upstream's address).
        pass_host: bool,
    },
    /// Serve static files.
    Static {
        /// Canonical folder.
        root: PathBuf,
    },
}

/// A TCP listener's pool and PROXY protocol options.
#[derive(Debug)]
pub struct TcpRoute {
    /// The pool.
    pub pool: Pool,
    /// PROXY header to send upstream.
    pub proxy_protocol: Option<ProxyProtocolVersion>,
    /// Expect a PROXY header from clients.
    pub accept_proxy_protocol: bool,
}

/// A validated config that still cannot be compiled.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// A header template names an unknown variable.
    #[error("listener `{listener}`: {source}")]
    Header {
        /// The listener.
        listener: String,
        /// What is wrong.
        source: UnknownVariable,
    },
    /// A rule's path or host pattern is malformed.
    #[error("listener `{listener}`: {source}")]
    Pattern {
        /// The listener.
        listener: String,
        /// What is wrong.
        source: router::PatternError,
    },
    /// Counter slots could not be assigned.
    #[error("{0}")]
    Slots(String),
}

/// Compiles a validated config with slots assigned afresh (a first
/// generation; tests and `sluice check`).
pub fn compile(config: &Config) -> Result<Runtime, CompileError> {
    let slots =
        Slots::assign(config, &Slots::default()).map_err(|e| CompileError::Slots(e.to_string()))?;
    compile_with(config, &slots)
}

/// Compiles a validated config with the supervisor's slot assignment.
pub fn compile_with(config: &Config, slots: &Slots) -> Result<Runtime, CompileError> {
    let index = slots.index();
    let upstreams: Vec<Upstream> = config
        .upstreams
        .iter()
        .map(|u| {
            let address = u.address.to_string();
            let slot = slots.upstream(&u.id, &address).ok_or_else(|| {
                CompileError::Slots(format!("upstream `{}` has no counter slot", u.id))
            })?;
            Ok(Upstream {
                id: u.id.clone(),
                // A validated host:port is always a valid header value.
                host_header: HeaderValue::from_str(&u.address.host_header())
                    .expect("validated address is a header value"),
                slot,
                connect_timeout: u.overrides.connect_timeout,
                response_timeout: u.overrides.response_timeout,
                address: u.address.clone(),
            })
        })
        .collect::<Result<_, CompileError>>()?;
    let listeners = config
        .listeners
        .iter()
        .map(|l| {
            let slot = slots.listener(&l.name).ok_or_else(|| {
                CompileError::Slots(format!("listener `{}` has no counter slot", l.name))
            })?;
            let kind = match &l.mode {
                ListenerMode::Http(http) => {
                    ListenerKind::Http(compile_http(config, &upstreams, &index, &l.name, http)?)
                }
                ListenerMode::Tcp(tcp) => ListenerKind::Tcp(TcpRoute {
                    pool: compile_pool(config, &upstreams, &tcp.pool),
                    proxy_protocol: tcp.proxy_protocol,
                    accept_proxy_protocol: tcp.accept_proxy_protocol,
                }),
            };
            Ok(Listener {
                name: l.name.clone(),
                listen: l.listen,
                slot,
                settings: l.settings,
                kind,
            })
        })
        .collect::<Result<_, CompileError>>()?;
    Ok(Runtime {
        slots: slots.clone(),
        drain_timeout: config.drain_timeout,
        upstreams,
        listeners,
    })
}

impl Runtime {
    /// The index of listener `name` in this generation.
    pub fn listener_index(&self, name: &str) -> Option<usize> {
        self.listeners.iter().position(|l| l.name == name)
    }
}

fn compile_http(
    config: &Config,
    upstreams: &[Upstream],
    index: &SlotIndex,
    listener: &str,
    http: &config::HttpListenerConfig,
) -> Result<HttpRoutes, CompileError> {
    let specs: Vec<RouteSpec<'_>> = http
        .rules
        .iter()
        .map(|r| RouteSpec {
            path: &r.path,
            host: r.host.as_deref(),
            methods: &r.methods,
            priority: r.priority,
        })
        .collect();
    let router = Router::new(&specs).map_err(|source| CompileError::Pattern {
        listener: listener.to_owned(),
        source,
    })?;
    let no_slot = |what: String| CompileError::Slots(format!("{what} has no counter slot"));
    let metered = |label: &str| -> Result<Metered, CompileError> {
        Ok(Metered {
            route: index
                .route(listener, label)
                .ok_or_else(|| no_slot(format!("rule `{label}` of `{listener}`")))?,
            pair: index
                .pair(listener, label, "")
                .ok_or_else(|| no_slot(format!("rule `{label}` of `{listener}`")))?,
        })
    };
    let no_rule = metered("")?;
    let rules = http
        .rules
        .iter()
        .map(|r| {
            let label = slots::rule_label(r);
            let (action, pairs) = match &r.action {
                RuleAction::Proxy { pool, pass_host } => {
                    let pool = compile_pool(config, upstreams, pool);
                    let pairs = pool
                        .members
                        .iter()
                        .map(|&member| {
                            let id = &upstreams[member].id;
                            index.pair(listener, &label, id).ok_or_else(|| {
                                no_slot(format!("upstream `{id}` of rule `{label}`"))
                            })
                        })
                        .collect::<Result<_, _>>()?;
                    let action = Action::Proxy {
                        pool,
                        pass_host: *pass_host,
                    };
                    (action, pairs)
                }
                RuleAction::Static { root } => (Action::Static { root: root.clone() }, Vec::new()),
            };
            Ok(Rule {
                metered: metered(&label)?,
                label,
                pairs,
                settings: r.settings,
                action,
            })
        })
        .collect::<Result<_, CompileError>>()?;
    let headers: Vec<HeaderTemplate> = http
        .headers
        .iter()
        .map(|h| HeaderTemplate::compile(h.name.clone(), &h.value))
        .collect::<Result<_, _>>()
        .map_err(|source| CompileError::Header {
            listener: listener.to_owned(),
            source,
        })?;
    let needs_request_id = headers.iter().any(HeaderTemplate::uses_request_id);
    Ok(HttpRoutes {
        router,
        rules,
        headers,
        needs_request_id,
        no_rule,
    })
}

fn compile_pool(config: &Config, upstreams: &[Upstream], pool: &PoolConfig) -> Pool {
    let members: Vec<(usize, usize, &str, u32)> = pool
        .upstreams
        .iter()
        .filter_map(|id| config.upstreams.iter().position(|u| &u.id == id))
        .map(|index| {
            let u = &config.upstreams[index];
            (index, upstreams[index].slot, u.id.as_str(), u.weight.get())
        })
        .collect();
    Pool::new(&members, pool.strategy, pool.hash_key.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upstream_host_header_leaves_out_port_80() {
        let yaml = "upstreams:\n  - { id: plain, address: 'app.example:80' }\n  - { id: other, address: 'app.example:8080' }\n  - { id: v6, address: '[::1]:80' }\n\
                    listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    rules: [{ upstreams: [plain, other, v6] }]\n";
        let config = crate::config::parse(yaml, std::path::Path::new("t.yaml"))
            .unwrap_or_else(|e| panic!("{e}"));
        let runtime = compile(&config).unwrap();
        let hosts: Vec<&HeaderValue> = runtime.upstreams.iter().map(|u| &u.host_header).collect();
        assert_eq!(hosts, ["app.example", "app.example:8080", "[::1]"]);
    }
}
