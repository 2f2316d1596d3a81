//! The idle-memory scenario: 10,000 keep-alive client connections held
//! idle through each proxy after one request each, and what they cost in
//! the proxy's memory.

use crate::columns::ERRORS;
use crate::configs::Workers;
use crate::idle_client;
use crate::limits;
use crate::mem::{self, Memory};
use crate::report::{Column, Values};
use crate::reps;
use crate::scenario::{Ctx, Outcome, Scenario};
use crate::targets::{Kind, Target};
use anyhow::{Context, Result};
use std::time::Duration;

/// Idle connections held through each proxy.
pub const CONNECTIONS: usize = 10_000;
/// Connections being opened at once (and so at most this many upstream
/// connections opened by the proxy for them).
const BATCH: usize = 100;
/// Time for one connection to connect and get its response.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Pause before reading memory, so the proxy is done with the last batch.
const SETTLE: Duration = Duration::from_secs(1);

/// The idle-memory scenario.
pub const IDLE: Scenario = Scenario {
    name: "http-idle",
    about: "10,000 idle keep-alive connections (one request each) through each proxy, started fresh per repetition: memory (Pss) before and after, KiB per connection",
    needs: &[],
    columns: &[
        Column {
            key: "pss_before_kib",
            header: "Pss before KiB",
            decimals: 0,
            total: false,
        },
        Column {
            key: "pss_after_kib",
            header: "Pss after KiB",
            decimals: 0,
            total: false,
        },
        Column {
            key: "kib_per_conn",
            header: "KiB/conn (Pss)",
            decimals: 2,
            total: false,
        },
        Column {
            key: "rss_kib_per_conn",
            header: "KiB/conn (RSS)",
            decimals: 2,
            total: false,
        },
        ERRORS,
    ],
    run,
};

/// Starts the backend, then each proxy afresh for each repetition (so
/// memory freed by an earlier repetition cannot hide growth).
fn run(ctx: &Ctx) -> Result<Outcome> {
    limits::raise_open_files(CONNECTIONS as u64 + 1024)?;
    let launch = ctx.launch(Workers::One, ctx.pinning);
    let backend = launch.backend()?;
    let kinds: Vec<Kind> = Kind::ALL.into_iter().filter(|k| k.installed()).collect();
    let runs = reps::measure_all(
        IDLE.name,
        &kinds,
        |k| k.name(),
        ctx.reps,
        |k| {
            let proxy = launch.proxy(*k, backend.port)?;
            measure(&proxy).map_err(|e| proxy.explain(e))
        },
    );
    Ok(Outcome {
        mode: format!("{CONNECTIONS} connections; {}", ctx.pinning.describe()),
        runs,
    })
}

/// Memory before and after holding the idle connections. A warm-up batch
/// first, so the upstream connections the proxy keeps are in "before".
fn measure(proxy: &Target) -> Result<Values> {
    let root = proxy.cpu_root.context("no proxy process to measure")?;
    drop(idle_client::open(proxy.port, BATCH, BATCH, TIMEOUT)?);
    std::thread::sleep(SETTLE);
    let before = mem::tree_memory(root);
    let held = idle_client::open(proxy.port, CONNECTIONS, BATCH, TIMEOUT)?;
    std::thread::sleep(SETTLE);
    let after = mem::tree_memory(root);
    let open = held.still_open();
    Ok(values(before, after, held.len(), open, held.failed))
}

/// The figures from memory `before` and `after`, the connections answered
/// and still `open` at the end, and those that `failed`.
fn values(before: Memory, after: Memory, answered: usize, open: usize, failed: usize) -> Values {
    let per_conn = |a: u64, b: u64| (b as f64 - a as f64) / answered.max(1) as f64;
    Values::from([
        ("pss_before_kib".to_string(), before.pss_kib as f64),
        ("pss_after_kib".to_string(), after.pss_kib as f64),
        ("rss_before_kib".to_string(), before.rss_kib as f64),
        ("rss_after_kib".to_string(), after.rss_kib as f64),
        (
            "kib_per_conn".to_string(),
            per_conn(before.pss_kib, after.pss_kib),
        ),
        (
            "rss_kib_per_conn".to_string(),
            per_conn(before.rss_kib, after.rss_kib),
        ),
        ("connections_open".to_string(), open as f64),
        ("errors".to_string(), (failed + answered - open) as f64),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_per_connection_and_lost_connections() {
        let before = Memory {
            rss_kib: 10_000,
            pss_kib: 8_000,
        };
        let after = Memory {
            rss_kib: 20_000,
            pss_kib: 13_000,
        };
        let v = values(before, after, 10_000, 9_990, 0);
        assert_eq!(v["kib_per_conn"], 0.5);
        assert_eq!(v["rss_kib_per_conn"], 1.0);
        assert_eq!(v["errors"], 10.0);
    }
}
