//! `sluice status`: workers, listeners and upstreams as tables.

use std::fmt::Write;

use crate::counters::{ListenerCounter, UpstreamCounter};

use super::Supervisor;

/// The status tables, read from the supervisor's state and the counter
/// region.
pub(super) fn render(supervisor: &Supervisor) -> String {
    let mut out = String::new();
    let region = &supervisor.region;
    // Writing to a String cannot fail.
    writeln!(
        out,
        "sluice {} (pid {}), config {} (generation {}), reloads ok {} failed {}",
        env!("CARGO_PKG_VERSION"),
        std::process::id(),
        supervisor.config.source.display(),
        supervisor.generation,
        supervisor.reloads.0,
        supervisor.reloads.1
    )
    .expect("write to String");
    writeln!(out, "\nWORKER  PID      STATE     RESTARTS").expect("write to String");
    for (index, state) in supervisor.workers.iter().enumerate() {
        let (pid, label) = match state.pid {
            Some(pid) if state.applied == supervisor.generation => (pid.to_string(), "running"),
            Some(pid) => (pid.to_string(), "starting"),
            None => ("-".to_owned(), "restarting"),
        };
        writeln!(out, "{index:<7} {pid:<8} {label:<9} {}", state.restarts)
            .expect("write to String");
    }
    writeln!(
        out,
        "\nLISTENER             ADDRESS                 MODE  ACTIVE  TOTAL"
    )
    .expect("write to String");
    for listener in &supervisor.config.listeners {
        let address = supervisor
            .bound
            .iter()
            .find(|b| b.name == listener.name)
            .and_then(|b| b.socket.local_addr().ok())
            .map_or_else(|| listener.listen.to_string(), |a| a.to_string());
        let mode = match listener.mode {
            crate::config::ListenerMode::Http(_) => "http",
            crate::config::ListenerMode::Tcp(_) => "tcp",
        };
        let slot = supervisor.slots.listener(&listener.name);
        let active = slot.map_or(0, |slot| {
            region.listener_total(slot, ListenerCounter::ConnectionsActive)
        });
        let total = slot.map_or(0, |slot| {
            region.listener_total(slot, ListenerCounter::ConnectionsTotal)
        });
        writeln!(
            out,
            "{:<20} {address:<23} {mode:<5} {active:<7} {total}",
            listener.name
        )
        .expect("write to String");
    }
    writeln!(
        out,
        "\nUPSTREAM             ADDRESS                 HEALTH  ACTIVE  REQUESTS"
    )
    .expect("write to String");
    for upstream in &supervisor.config.upstreams {
        let address = upstream.address.to_string();
        let slot = supervisor.slots.upstream(&upstream.id, &address);
        let up = slot.is_some_and(|slot| region.is_up(slot));
        let active = slot.map_or(0, |slot| {
            region.upstream_total(slot, UpstreamCounter::Active)
        });
        let requests = slot.map_or(0, |slot| {
            region.upstream_total(slot, UpstreamCounter::Requests)
        });
        writeln!(
            out,
            "{:<20} {address:<23} {:<7} {active:<7} {requests}",
            upstream.id,
            if up { "up" } else { "down" }
        )
        .expect("write to String");
    }
    out
}
