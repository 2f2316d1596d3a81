//! The validated, typed configuration.
//!
//! Everything here has been checked: ids resolve, durations are positive,
//! addresses parse. Nothing downstream re-validates. `defaults` have already
//! been folded in, so every listener, rule and upstream carries the settings
//! that apply to it.

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use http::Method;
use http::header::HeaderName;
use strategies::StrategyKind;

/// A whole validated config file.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The file this config was read from (error messages, relative paths).
    pub source: PathBuf,
    /// How many worker processes to run.
    pub workers: Workers,
    /// The admin endpoint, if configured.
    pub admin: Option<AdminConfig>,
    /// User the workers drop to after the supervisor has bound the sockets.
    pub user: Option<String>,
    /// How long removed listeners and a stop wait for open connections.
    pub drain_timeout: Duration,
    /// Every backend server, in file order.
    pub upstreams: Vec<UpstreamConfig>,
    /// Every listener, in file order.
    pub listeners: Vec<ListenerConfig>,
}

/// Number of worker processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workers {
    /// One per CPU core.
    Auto,
    /// Exactly this many.
    Count(NonZeroUsize),
}

/// The admin (metrics and status) listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminConfig {
    /// Address to bind.
    pub listen: SocketAddr,
}

/// Timeouts and limits that `defaults` provides and listeners, rules and
/// upstreams may override; already resolved for the place that holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Connecting to an upstream.
    pub connect_timeout: Duration,
    /// Waiting for an upstream's response head; 504 after.
    pub response_timeout: Duration,
    /// An idle keep-alive client, or an idle TCP tunnel.
    pub idle_timeout: Duration,
    /// Total time to read a request head; 408 after.
    pub header_timeout: Duration,
    /// Between reads of a request body; 408 after.
    pub body_timeout: Duration,
    /// Between writes to a client that does not read; close after.
    pub send_timeout: Duration,
    /// Other upstreams tried when connecting fails.
    pub retries: u32,
    /// Concurrent client connections per listener.
    pub max_connections: u32,
    /// Largest request head in bytes; 431 beyond.
    pub max_header_size: usize,
    /// Largest request body in bytes; `None` is unlimited; 413 beyond.
    pub max_body_size: Option<u64>,
}

impl Default for Settings {
    /// The values SPEC.md documents for `defaults`.
    fn default() -> Self {
        Settings {
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            send_timeout: Duration::from_secs(60),
            retries: 2,
            max_connections: 10_000,
            max_header_size: 32 * 1024,
            max_body_size: None,
        }
    }
}

/// One backend server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// Unique id, used by rules and listeners and in metrics.
    pub id: String,
    /// Where to connect.
    pub address: UpstreamAddress,
    /// Relative weight for the strategies.
    pub weight: NonZeroU32,
    /// Active health check (defaults merged field by field).
    pub health_check: HealthCheckConfig,
    /// Settings resolved from `defaults` and the upstream's own keys. Of
    /// these, `connect_timeout` and `response_timeout` are used for it; an
    /// upstream-level value beats the rule's.
    pub settings: Settings,
    /// Which of `settings` the upstream set itself (beats the rule's).
    pub overrides: UpstreamOverrides,
}

/// Settings an upstream set explicitly, so they beat a rule's value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UpstreamOverrides {
    /// `connect_timeout` set on the upstream.
    pub connect_timeout: Option<Duration>,
    /// `response_timeout` set on the upstream.
    pub response_timeout: Option<Duration>,
}

/// An upstream address: an IP address or a hostname, and a port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UpstreamAddress {
    /// IP literal or DNS name, as written.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl UpstreamAddress {
    /// The address as a `Host` header value: `host:port`, without the
    /// port when it is HTTP's own 80 (as clients, and nginx, send it).
    pub fn host_header(&self) -> String {
        match (self.port, self.host.contains(':')) {
            (80, true) => format!("[{}]", self.host),
            (80, false) => self.host.clone(),
            _ => self.to_string(),
        }
    }
}

impl std::fmt::Display for UpstreamAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// How an upstream is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheckConfig {
    /// What the probe does.
    pub kind: HealthCheckKind,
    /// `http`: the path to GET.
    pub path: String,
    /// `http`: the Host header to send (default: the upstream address).
    pub host: Option<String>,
    /// `http`: statuses that count as passing.
    pub expect_status: StatusSet,
    /// Time between probes.
    pub interval: Duration,
    /// Time a probe may take.
    pub timeout: Duration,
    /// Consecutive successes to mark up.
    pub rise: NonZeroU32,
    /// Consecutive failures to mark down.
    pub fall: NonZeroU32,
}

/// Kinds of active health check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthCheckKind {
    /// Never checked; always up.
    None,
    /// A TCP connect succeeds.
    Tcp,
    /// GET `path` answers a status in `expect_status`.
    Http,
    /// `PING` answers `+PONG`.
    Redis,
    /// A startup message is answered with anything but "not taking
    /// connections now" (see `health::probe`).
    Postgres,
}

/// A set of HTTP status codes, from `200`, `200-399` or `200,204,300-399`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusSet(pub Vec<RangeInclusive<u16>>);

impl StatusSet {
    /// Whether `status` is in the set.
    pub fn contains(&self, status: u16) -> bool {
        self.0.iter().any(|range| range.contains(&status))
    }
}

/// One listener.
#[derive(Clone, Debug, PartialEq)]
pub struct ListenerConfig {
    /// Unique name, used in logs and metrics.
    pub name: String,
    /// Address to bind.
    pub listen: SocketAddr,
    /// Settings resolved from `defaults` and the listener's own keys.
    pub settings: Settings,
    /// HTTP or TCP, with what each needs.
    pub mode: ListenerMode,
}

impl ListenerConfig {
    /// Whether clients always send the first bytes (HTTP), so the kernel
    /// can hold a new connection until they arrive
    /// ([`crate::listener::set_deferred_accept`]). Not for TCP: in some
    /// protocols the server speaks first.
    pub fn client_speaks_first(&self) -> bool {
        matches!(self.mode, ListenerMode::Http(_))
    }
}

/// What a listener does with its connections.
#[derive(Clone, Debug, PartialEq)]
pub enum ListenerMode {
    /// HTTP reverse proxy with routing rules.
    Http(HttpListenerConfig),
    /// Raw TCP passthrough to a pool.
    Tcp(TcpListenerConfig),
}

/// An HTTP listener's routing.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpListenerConfig {
    /// Headers set on every proxied request.
    pub headers: Vec<HeaderRule>,
    /// Routing rules in file order.
    pub rules: Vec<RuleConfig>,
}

/// A TCP listener's pool and PROXY protocol options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpListenerConfig {
    /// The upstreams and how to balance over them.
    pub pool: PoolConfig,
    /// Send a PROXY protocol header to upstreams.
    pub proxy_protocol: Option<ProxyProtocolVersion>,
    /// Expect a PROXY protocol header from clients.
    pub accept_proxy_protocol: bool,
}

/// PROXY protocol versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyProtocolVersion {
    /// Text format.
    V1,
    /// Binary format.
    V2,
}

/// A header set on proxied requests; `value` may contain `$ip`, `$port`,
/// `$host`, `$scheme`, `$request_id` (kept as written; the runtime compiles
/// it into a template).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderRule {
    /// Header name.
    pub name: HeaderName,
    /// Value template.
    pub value: String,
}

/// One routing rule of an HTTP listener.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleConfig {
    /// Optional name for logs and metrics.
    pub name: Option<String>,
    /// Path pattern as written (`/api`, `/users/*/avatar`, `/assets/*`).
    pub path: String,
    /// Host pattern, lower-cased (`example.com` or `*.example.com`).
    pub host: Option<String>,
    /// Methods matched; empty matches every method.
    pub methods: Vec<Method>,
    /// Explicit priority (higher first).
    pub priority: Option<i32>,
    /// Settings resolved from the listener and the rule's own keys.
    pub settings: Settings,
    /// Where matching requests go.
    pub action: RuleAction,
}

/// What a rule does with a request.
#[derive(Clone, Debug, PartialEq)]
pub enum RuleAction {
    /// Proxy to a pool.
    Proxy {
        /// The upstreams and how to balance over them.
        pool: PoolConfig,
        /// Forward the client's Host (true) or the upstream address (false).
        pass_host: bool,
    },
    /// Serve static files from a folder (absolute, existing).
    Static {
        /// The folder.
        root: PathBuf,
    },
}

/// A pool: upstream ids, a strategy and its hash key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    /// Upstream ids, each naming an entry of [`Config::upstreams`].
    pub upstreams: Vec<String>,
    /// Balancing strategy.
    pub strategy: StrategyKind,
    /// Hash key for `consistent-hash` (`None` for other strategies).
    pub hash_key: Option<HashKey>,
}

/// Where `consistent-hash` takes its key from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashKey {
    /// The client IP address (the default).
    ClientIp,
    /// A request header's value.
    Header(HeaderName),
    /// A cookie's value.
    Cookie(String),
    /// The request path without the query.
    Path,
    /// A query parameter's value.
    Query(String),
}
