//! The wrk scenarios: as many requests as one wrk thread with 50
//! connections gets through in 4 s, keep-alive or a new connection per
//! request, per core (one worker, pinned) or with every core (`auto`).

use crate::columns::{CPU, ERRORS, OTHER_CPU, P50, P99, RPS};
use crate::configs::Workers;
use crate::cpu::Sample;
use crate::pin::{Pinning, Role};
use crate::report::{Column, Values};
use crate::scenario::{Ctx, Outcome, Scenario};
use crate::targets::Target;
use crate::{reps, wrk};
use anyhow::Result;

/// Seconds per wrk run.
pub const SECONDS: u32 = 4;
/// wrk connections.
pub const CONNECTIONS: u32 = 50;

/// The wrk scenarios' columns.
const COLUMNS: &[Column] = &[RPS, P50, P99, ERRORS, CPU, OTHER_CPU];

/// Keep-alive capacity of one worker (pinned by default).
pub const KEEPALIVE: Scenario = Scenario {
    name: "http-keepalive",
    about: "wrk, 50 keep-alive connections, 4 s; one worker per server, pinned unless --no-pin",
    needs: &["wrk"],
    columns: COLUMNS,
    run: |ctx| run(ctx, "http-keepalive", Workers::One, ctx.pinning, false),
};

/// A new connection per request, one worker (pinned by default).
pub const CLOSE: Scenario = Scenario {
    name: "http-close",
    about: "wrk with `Connection: close` (a new connection per request); one worker, pinned unless --no-pin",
    needs: &["wrk"],
    columns: COLUMNS,
    run: |ctx| run(ctx, "http-close", Workers::One, ctx.pinning, true),
};

/// Keep-alive with each server's default worker count, unpinned.
pub const KEEPALIVE_AUTO: Scenario = Scenario {
    name: "http-keepalive-auto",
    about: "as http-keepalive, but sluice `workers: auto`, nginx `worker_processes auto`, HAProxy's default threads; unpinned",
    needs: &["wrk"],
    columns: COLUMNS,
    run: |ctx| {
        run(
            ctx,
            "http-keepalive-auto",
            Workers::Auto,
            Pinning::Off,
            false,
        )
    },
};

/// Starts the backend and the proxies, measures them all, stops them.
fn run(ctx: &Ctx, name: &str, workers: Workers, pinning: Pinning, close: bool) -> Result<Outcome> {
    let launch = ctx.launch(workers, pinning);
    let (_backend, targets) = launch.all()?;
    let runs = reps::measure_all(
        name,
        &targets,
        |t| t.name,
        ctx.reps,
        |t| measure(ctx.ticks, pinning, t, close).map_err(|e| t.explain(e)),
    );
    Ok(Outcome {
        mode: pinning.describe(),
        runs,
    })
}

/// One wrk run at `target`, with CPU counters read before and after.
fn measure(ticks: u64, pinning: Pinning, target: &Target, close: bool) -> Result<Values> {
    let start = Sample::now(target.cpu_root, ticks);
    let w = wrk::run(
        pinning.command(Role::Load, "wrk"),
        &target.url(),
        CONNECTIONS,
        SECONDS,
        close,
    )?;
    let end = Sample::now(target.cpu_root, ticks);
    let mut v = Values::from([
        ("rps".to_string(), w.rps),
        ("p50_ms".to_string(), w.p50_ms),
        ("p99_ms".to_string(), w.p99_ms),
        ("errors".to_string(), w.errors as f64),
        ("requests".to_string(), w.requests as f64),
    ]);
    start.record(&end, w.requests, &mut v);
    Ok(v)
}
