//! `GET /status`: the live state as JSON: workers, listeners and
//! upstreams with health, active connections and counters.
//!
//! The document is small and flat, so it is written by hand (with string
//! escaping) rather than pulling in a serializer.

use std::fmt::Write;

use crate::config::ListenerMode;
use crate::counters::{CheckResult, ListenerCounter, STATUS_CLASSES, UpstreamCounter};

use super::Snapshot;

/// Renders the status document.
pub fn render(snapshot: &Snapshot<'_>) -> String {
    let region = snapshot.region;
    let slots = snapshot.slots;
    let mut out = String::with_capacity(4096);
    // Writing to a String cannot fail (every `write!` below).
    write!(
        out,
        "{{\"version\":{},\"pid\":{},\"config\":{},\"generation\":{},\
         \"reloads\":{{\"success\":{},\"failure\":{}}},\"workers\":[",
        string(env!("CARGO_PKG_VERSION")),
        std::process::id(),
        string(&snapshot.config.source.to_string_lossy()),
        snapshot.generation,
        snapshot.reloads.0,
        snapshot.reloads.1,
    )
    .expect("write to String");
    for (index, worker) in snapshot.workers.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        let pid = worker
            .pid
            .map_or_else(|| "null".to_owned(), |p| p.to_string());
        write!(
            out,
            "{{\"index\":{index},\"pid\":{pid},\"state\":{},\"restarts\":{}}}",
            string(worker.state),
            worker.restarts
        )
        .expect("write to String");
    }
    out.push_str("],\"listeners\":[");
    for (index, listener) in snapshot.config.listeners.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        let slot = slots.listener(&listener.name);
        let total = |counter| slot.map_or(0, |slot| region.listener_total(slot, counter));
        let mode = match listener.mode {
            ListenerMode::Http(_) => "http",
            ListenerMode::Tcp(_) => "tcp",
        };
        let listen = snapshot
            .bound
            .iter()
            .find(|(name, _)| *name == listener.name)
            .map_or(listener.listen, |(_, address)| *address);
        write!(
            out,
            "{{\"name\":{},\"listen\":{},\"mode\":\"{mode}\",\"connections_active\":{},\
             \"connections_total\":{},\"connections_refused\":{},\"received_bytes\":{},\
             \"sent_bytes\":{},\"responses\":{{",
            string(&listener.name),
            string(&listen.to_string()),
            total(ListenerCounter::ConnectionsActive),
            total(ListenerCounter::ConnectionsTotal),
            total(ListenerCounter::ConnectionsRefused),
            total(ListenerCounter::ReceivedBytes),
            total(ListenerCounter::SentBytes),
        )
        .expect("write to String");
        let classes = [
            ListenerCounter::Responses1xx,
            ListenerCounter::Responses2xx,
            ListenerCounter::Responses3xx,
            ListenerCounter::Responses4xx,
            ListenerCounter::Responses5xx,
        ];
        for (i, (label, counter)) in STATUS_CLASSES.iter().zip(classes).enumerate() {
            let comma = if i > 0 { "," } else { "" };
            write!(out, "{comma}\"{label}\":{}", total(counter)).expect("write to String");
        }
        out.push_str("}}");
    }
    out.push_str("],\"upstreams\":[");
    for (index, upstream) in snapshot.config.upstreams.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        let address = upstream.address.to_string();
        let slot = slots.upstream(&upstream.id, &address);
        let total = |counter| slot.map_or(0, |slot| region.upstream_total(slot, counter));
        let checks = |result| slot.map_or(0, |slot| region.checks(slot, result));
        write!(
            out,
            "{{\"id\":{},\"address\":{},\"up\":{},\"connections_active\":{},\"requests\":{},\
             \"connect_errors\":{},\"sent_bytes\":{},\"received_bytes\":{},\
             \"health_checks\":{{\"success\":{},\"failure\":{},\"timeout\":{}}}}}",
            string(&upstream.id),
            string(&address),
            slot.is_some_and(|slot| region.is_up(slot)),
            total(UpstreamCounter::Active),
            total(UpstreamCounter::Requests),
            total(UpstreamCounter::ConnectErrors),
            total(UpstreamCounter::SentBytes),
            total(UpstreamCounter::ReceivedBytes),
            checks(CheckResult::Success),
            checks(CheckResult::Failure),
            checks(CheckResult::Timeout),
        )
        .expect("write to String");
    }
    out.push_str("]}\n");
    out
}

/// A JSON string literal.
fn string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                // Writing to a String cannot fail.
                write!(out, "\\u{:04x}", u32::from(c)).expect("write to String");
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::string;

    #[test]
    fn strings_are_escaped() {
        assert_eq!(string("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\u0001é\"");
    }
}
