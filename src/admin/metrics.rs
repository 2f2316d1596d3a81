//! `GET /metrics`: Prometheus text exposition (format 0.0.4) rendered from
//! the counter region, the current config and its slots.
//!
//! Every metric name is a [`Family`] constant here, with its type and HELP
//! text; [`FAMILIES`] lists them all (the dashboard test checks its
//! queries against it). Counters are sums over the worker rows plus the
//! retired row, so they never go backwards when a worker dies. Every
//! configured listener, upstream and rule has its series from the start,
//! at zero. Label values come from the config only (names, ids, rule
//! labels), never from traffic, so cardinality stays bounded.

use std::collections::BTreeMap;
use std::fmt::{Display, Write};

use crate::config::{ListenerMode, RuleAction};
use crate::counters::{
    CheckResult, Histogram, ListenerCounter, STATUS_CLASSES, UpstreamCounter,
    histogram::HistogramTotals,
};
use crate::runtime::slots::rule_label;

use super::Snapshot;

/// The Prometheus metric types sluice uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (resets only when sluice restarts).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Bucketed durations (`_bucket`, `_sum`, `_count`).
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One metric family: its name, type and HELP text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Family {
    /// The metric name.
    pub name: &'static str,
    /// Its type.
    pub kind: Kind,
    /// The HELP line.
    pub help: &'static str,
}

macro_rules! families {
    ($($(#[$doc:meta])* $id:ident = $name:literal, $kind:ident, $help:literal;)*) => {
        $(
            $(#[$doc])*
            pub const $id: Family = Family { name: $name, kind: Kind::$kind, help: $help };
        )*
        /// Every metric family sluice exposes, in exposition order.
        pub const FAMILIES: &[Family] = &[$($id),*];
    };
}

families! {
    /// HTTP responses by listener, rule, upstream and status class.
    HTTP_REQUESTS = "sluice_http_requests_total", Counter,
        "HTTP requests answered, by listener, rule, upstream (empty when sluice answered itself) and status class.";
    /// Request latency per rule.
    HTTP_REQUEST_DURATION = "sluice_http_request_duration_seconds", Histogram,
        "Time from receiving an HTTP request to its response head, by listener and rule.";
    /// Attempt latency per upstream.
    UPSTREAM_REQUEST_DURATION = "sluice_upstream_request_duration_seconds", Histogram,
        "Time of each attempt at an upstream (connect and response head, failures included).";
    /// HTTP retries on another upstream.
    HTTP_RETRIES = "sluice_http_retries_total", Counter,
        "HTTP requests moved to another upstream after a failed connect, by rule.";
    /// Accepted client connections.
    LISTENER_CONNECTIONS = "sluice_listener_connections_total", Counter,
        "Client connections accepted, by listener.";
    /// Open client connections.
    LISTENER_CONNECTIONS_ACTIVE = "sluice_listener_connections_active", Gauge,
        "Client connections open now, by listener.";
    /// Refused client connections.
    LISTENER_CONNECTIONS_REFUSED = "sluice_listener_connections_refused_total", Counter,
        "Client connections closed at once because the listener's max_connections was reached.";
    /// Bytes from clients.
    LISTENER_RECEIVED_BYTES = "sluice_listener_received_bytes_total", Counter,
        "Bytes received from clients, by listener.";
    /// Bytes to clients.
    LISTENER_SENT_BYTES = "sluice_listener_sent_bytes_total", Counter,
        "Bytes sent to clients, by listener.";
    /// Listener mode, to select TCP or HTTP listeners in queries.
    LISTENER_INFO = "sluice_listener_info", Gauge,
        "Always 1: a listener and its mode (http or tcp).";
    /// In-flight requests or open tunnels per upstream.
    UPSTREAM_CONNECTIONS_ACTIVE = "sluice_upstream_connections_active", Gauge,
        "Requests in flight (HTTP) or open tunnels (TCP), by upstream.";
    /// Requests sent or tunnels opened per upstream.
    UPSTREAM_REQUESTS = "sluice_upstream_requests_total", Counter,
        "HTTP requests sent or TCP tunnels opened, by upstream.";
    /// Failed connects per upstream.
    UPSTREAM_CONNECT_ERRORS = "sluice_upstream_connect_errors_total", Counter,
        "Failed connection attempts, by upstream.";
    /// Bytes to upstreams.
    UPSTREAM_SENT_BYTES = "sluice_upstream_sent_bytes_total", Counter,
        "Bytes sent to upstreams over TCP tunnels, by upstream.";
    /// Bytes from upstreams.
    UPSTREAM_RECEIVED_BYTES = "sluice_upstream_received_bytes_total", Counter,
        "Bytes received from upstreams over TCP tunnels, by upstream.";
    /// Upstream health.
    UPSTREAM_UP = "sluice_upstream_up", Gauge,
        "1 when the upstream takes traffic, 0 when health checks marked it down.";
    /// Active health check outcomes.
    HEALTH_CHECKS = "sluice_health_checks_total", Counter,
        "Active health checks, by upstream and result (success, failure, timeout).";
    /// Pools with every upstream down.
    POOL_PANIC = "sluice_pool_panic", Gauge,
        "1 when every upstream of the pool of a rule (or a TCP listener, rule=\"\") is down.";
    /// Running worker processes.
    WORKERS = "sluice_workers", Gauge,
        "Worker processes running now.";
    /// Worker replacements.
    WORKER_RESTARTS = "sluice_worker_restarts_total", Counter,
        "Worker processes that exited and were replaced.";
    /// Config reloads by outcome.
    CONFIG_RELOADS = "sluice_config_reloads_total", Counter,
        "Config reloads, by result (success, failure).";
    /// The running version.
    BUILD_INFO = "sluice_build_info", Gauge,
        "Always 1: the version of sluice running.";
}

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders every family from `snapshot`.
pub fn render(snapshot: &Snapshot<'_>) -> String {
    let mut out = Exposition(String::with_capacity(16 * 1024));
    let region = snapshot.region;
    let slots = snapshot.slots;
    let config = snapshot.config;

    out.family(&HTTP_REQUESTS);
    for (pair, key) in slots.pair_table().iter().enumerate() {
        let Some((listener, rule, upstream)) = key else {
            continue;
        };
        for (class, code) in STATUS_CLASSES.iter().enumerate() {
            let labels = [
                ("listener", listener.as_str()),
                ("rule", rule.as_str()),
                ("upstream", upstream.as_str()),
                ("code", code),
            ];
            out.sample(HTTP_REQUESTS.name, &labels, region.pair_total(pair, class));
        }
    }

    out.family(&HTTP_REQUEST_DURATION);
    for (route, key) in slots.route_table().iter().enumerate() {
        if let Some((listener, rule)) = key {
            let totals = region.histogram(Histogram::Route(route));
            let labels = [("listener", listener.as_str()), ("rule", rule.as_str())];
            out.histogram(HTTP_REQUEST_DURATION.name, &labels, &totals);
        }
    }

    out.family(&UPSTREAM_REQUEST_DURATION);
    for (slot, key) in slots.upstream_table().iter().enumerate() {
        if let Some((id, _)) = key {
            let totals = region.histogram(Histogram::Upstream(slot));
            out.histogram(UPSTREAM_REQUEST_DURATION.name, &[("upstream", id)], &totals);
        }
    }

    out.family(&HTTP_RETRIES);
    let mut retries: BTreeMap<&str, u64> = BTreeMap::new();
    for (route, key) in slots.route_table().iter().enumerate() {
        if let Some((_, rule)) = key {
            *retries.entry(rule).or_default() += region.retries_total(route);
        }
    }
    for (rule, count) in retries {
        out.sample(HTTP_RETRIES.name, &[("rule", rule)], count);
    }

    let listener_counters = [
        (&LISTENER_CONNECTIONS, ListenerCounter::ConnectionsTotal),
        (
            &LISTENER_CONNECTIONS_ACTIVE,
            ListenerCounter::ConnectionsActive,
        ),
        (
            &LISTENER_CONNECTIONS_REFUSED,
            ListenerCounter::ConnectionsRefused,
        ),
        (&LISTENER_RECEIVED_BYTES, ListenerCounter::ReceivedBytes),
        (&LISTENER_SENT_BYTES, ListenerCounter::SentBytes),
    ];
    for (family, counter) in listener_counters {
        out.family(family);
        for (slot, name) in slots.listener_table().iter().enumerate() {
            if let Some(name) = name {
                let value = region.listener_total(slot, counter);
                out.sample(family.name, &[("listener", name)], value);
            }
        }
    }
    out.family(&LISTENER_INFO);
    for listener in &config.listeners {
        let mode = match listener.mode {
            ListenerMode::Http(_) => "http",
            ListenerMode::Tcp(_) => "tcp",
        };
        let labels = [("listener", listener.name.as_str()), ("mode", mode)];
        out.sample(LISTENER_INFO.name, &labels, 1);
    }

    let upstream_counters = [
        (&UPSTREAM_CONNECTIONS_ACTIVE, UpstreamCounter::Active),
        (&UPSTREAM_REQUESTS, UpstreamCounter::Requests),
        (&UPSTREAM_CONNECT_ERRORS, UpstreamCounter::ConnectErrors),
        (&UPSTREAM_SENT_BYTES, UpstreamCounter::SentBytes),
        (&UPSTREAM_RECEIVED_BYTES, UpstreamCounter::ReceivedBytes),
    ];
    for (family, counter) in upstream_counters {
        out.family(family);
        for (slot, key) in slots.upstream_table().iter().enumerate() {
            if let Some((id, _)) = key {
                let value = region.upstream_total(slot, counter);
                out.sample(family.name, &[("upstream", id)], value);
            }
        }
    }
    out.family(&UPSTREAM_UP);
    for (slot, key) in slots.upstream_table().iter().enumerate() {
        if let Some((id, _)) = key {
            let up = u8::from(region.is_up(slot));
            out.sample(UPSTREAM_UP.name, &[("upstream", id)], up);
        }
    }
    out.family(&HEALTH_CHECKS);
    for (slot, key) in slots.upstream_table().iter().enumerate() {
        if let Some((id, _)) = key {
            for (result, label) in [
                (CheckResult::Success, "success"),
                (CheckResult::Failure, "failure"),
                (CheckResult::Timeout, "timeout"),
            ] {
                let labels = [("upstream", id.as_str()), ("result", label)];
                out.sample(HEALTH_CHECKS.name, &labels, region.checks(slot, result));
            }
        }
    }

    out.family(&POOL_PANIC);
    for PoolSeries {
        listener,
        rule,
        members,
    } in pools(snapshot)
    {
        let down = members.iter().all(|(id, address)| {
            slots
                .upstream(id, address)
                .is_some_and(|slot| !region.is_up(slot))
        });
        let panic = u8::from(down && !members.is_empty());
        let labels = [("listener", listener), ("rule", rule.as_str())];
        out.sample(POOL_PANIC.name, &labels, panic);
    }

    out.family(&WORKERS);
    let running = snapshot.workers.iter().filter(|w| w.pid.is_some()).count();
    out.sample(WORKERS.name, &[], running);
    out.family(&WORKER_RESTARTS);
    let restarts: u64 = snapshot.workers.iter().map(|w| w.restarts).sum();
    out.sample(WORKER_RESTARTS.name, &[], restarts);
    out.family(&CONFIG_RELOADS);
    out.sample(
        CONFIG_RELOADS.name,
        &[("result", "success")],
        snapshot.reloads.0,
    );
    out.sample(
        CONFIG_RELOADS.name,
        &[("result", "failure")],
        snapshot.reloads.1,
    );
    out.family(&BUILD_INFO);
    out.sample(
        BUILD_INFO.name,
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    out.0
}

/// One `sluice_pool_panic` series: the union of the pools of one
/// listener's rules sharing a label, or a TCP listener's pool (rule `""`).
struct PoolSeries<'a> {
    listener: &'a str,
    rule: String,
    /// (id, address) of every member.
    members: Vec<(&'a str, String)>,
}

/// Every pool series of the config.
fn pools<'a>(snapshot: &Snapshot<'a>) -> Vec<PoolSeries<'a>> {
    let config = snapshot.config;
    let member = |id: &'a String| {
        config
            .upstreams
            .iter()
            .find(|u| &u.id == id)
            .map(|u| (u.id.as_str(), u.address.to_string()))
    };
    let mut pools: Vec<PoolSeries<'a>> = Vec::new();
    for listener in &config.listeners {
        match &listener.mode {
            ListenerMode::Tcp(tcp) => {
                let members = tcp.pool.upstreams.iter().filter_map(member).collect();
                pools.push(PoolSeries {
                    listener: &listener.name,
                    rule: String::new(),
                    members,
                });
            }
            ListenerMode::Http(http) => {
                for rule in &http.rules {
                    let RuleAction::Proxy { pool, .. } = &rule.action else {
                        continue;
                    };
                    let label = rule_label(rule);
                    let members = pool.upstreams.iter().filter_map(member);
                    match pools
                        .iter_mut()
                        .find(|p| p.listener == listener.name && p.rule == label)
                    {
                        Some(existing) => {
                            for m in members {
                                if !existing.members.contains(&m) {
                                    existing.members.push(m);
                                }
                            }
                        }
                        None => pools.push(PoolSeries {
                            listener: &listener.name,
                            rule: label,
                            members: members.collect(),
                        }),
                    }
                }
            }
        }
    }
    pools
}

/// The exposition being written.
struct Exposition(String);

impl Exposition {
    fn family(&mut self, family: &Family) {
        // Writing to a String cannot fail.
        writeln!(self.0, "# HELP {} {}", family.name, family.help).expect("write to String");
        writeln!(self.0, "# TYPE {} {}", family.name, family.kind.as_str())
            .expect("write to String");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (index, (key, value)) in labels.iter().enumerate() {
                if index > 0 {
                    self.0.push(',');
                }
                self.0.push_str(key);
                self.0.push_str("=\"");
                escape_label(&mut self.0, value);
                self.0.push('"');
            }
            self.0.push('}');
        }
        // Writing to a String cannot fail.
        writeln!(self.0, " {value}").expect("write to String");
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], totals: &HistogramTotals) {
        let bucket = format!("{name}_bucket");
        let bounds: Vec<(String, u64)> = totals
            .cumulative()
            .map(|(le, count)| (le.to_string(), count))
            .chain(std::iter::once(("+Inf".to_owned(), totals.count())))
            .collect();
        for (le, count) in &bounds {
            let mut with_le: Vec<(&str, &str)> = labels.to_vec();
            with_le.push(("le", le));
            self.sample(&bucket, &with_le, count);
        }
        self.sample(&format!("{name}_sum"), labels, totals.sum_seconds());
        self.sample(&format!("{name}_count"), labels, totals.count());
    }
}

/// Escapes a label value as the text format requires: backslash, double
/// quote and newline.
fn escape_label(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut out = Exposition(String::new());
        out.sample("m", &[("rule", "a\"b\\c\nd")], 1);
        assert_eq!(out.0, "m{rule=\"a\\\"b\\\\c\\nd\"} 1\n");
    }

    #[test]
    fn histograms_are_cumulative_and_end_with_inf() {
        let mut totals = HistogramTotals::default();
        totals.buckets[1] = 2;
        totals.buckets[15] = 1;
        totals.sum_micros = 31_001_500;
        let mut out = Exposition(String::new());
        out.histogram("h", &[("upstream", "a")], &totals);
        let text = out.0;
        assert!(text.contains("h_bucket{upstream=\"a\",le=\"0.0005\"} 0\n"));
        assert!(text.contains("h_bucket{upstream=\"a\",le=\"0.001\"} 2\n"));
        assert!(text.contains("h_bucket{upstream=\"a\",le=\"30\"} 2\n"));
        assert!(text.contains("h_bucket{upstream=\"a\",le=\"+Inf\"} 3\n"));
        assert!(text.contains("h_sum{upstream=\"a\"} 31.0015\n"));
        assert!(text.contains("h_count{upstream=\"a\"} 3\n"));
    }

    #[test]
    fn names_are_unique_and_counters_end_in_total() {
        for (index, family) in FAMILIES.iter().enumerate() {
            assert!(family.name.starts_with("sluice_"));
            assert_eq!(
                family.kind == Kind::Counter,
                family.name.ends_with("_total"),
                "{}",
                family.name
            );
            assert!(FAMILIES[index + 1..].iter().all(|f| f.name != family.name));
        }
    }
}
