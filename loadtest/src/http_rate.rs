//! The fixed-rate scenario, the main efficiency figure: h2load over
//! HTTP/1.1 offering 10k requests/s for 10 s, so every proxy does the same
//! work and CPU per request and tail latency compare like for like.

use crate::columns::{CPU, ERRORS, OTHER_CPU, P50, P99, P999, RPS};
use crate::configs::Workers;
use crate::cpu::Sample;
use crate::h2load::{self, Load};
use crate::pin::Role;
use crate::report::Values;
use crate::reps;
use crate::scenario::{Ctx, Outcome, Scenario};
use crate::targets::Target;
use anyhow::Result;
use std::time::Duration;

/// 50 connections × 200 req/s = 10k req/s, 10 s measured after 1 s.
pub const LOAD: Load = Load {
    clients: 50,
    rps_per_client: 200,
    seconds: 10,
    warmup_seconds: 1,
};

/// The fixed-rate scenario.
pub const RATE: Scenario = Scenario {
    name: "http-rate",
    about: "h2load --h1, 50 keep-alive connections × 200 req/s = 10k req/s for 10 s (after 1 s warm-up); one worker, pinned unless --no-pin",
    needs: &["h2load"],
    columns: &[RPS, P50, P99, P999, ERRORS, CPU, OTHER_CPU],
    run,
};

/// Starts the backend and the proxies, measures them all, stops them.
fn run(ctx: &Ctx) -> Result<Outcome> {
    let launch = ctx.launch(Workers::One, ctx.pinning);
    let (_backend, targets) = launch.all()?;
    let runs = reps::measure_all(
        RATE.name,
        &targets,
        |t| t.name,
        ctx.reps,
        |t| measure(ctx, t).map_err(|e| t.explain(e)),
    );
    Ok(Outcome {
        mode: format!(
            "{} req/s offered; {}",
            LOAD.total_rps(),
            ctx.pinning.describe()
        ),
        runs,
    })
}

/// One h2load run at `target`. CPU counters are read when the warm-up
/// ends and after h2load exits, so they cover the measured requests.
fn measure(ctx: &Ctx, target: &Target) -> Result<Values> {
    let log = ctx.dir.join(format!("h2load-{}.tsv", target.name));
    let child = h2load::spawn(
        ctx.pinning.command(Role::Load, "h2load"),
        &LOAD,
        &target.url(),
        &log,
    )?;
    std::thread::sleep(Duration::from_secs(LOAD.warmup_seconds.into()));
    let start = Sample::now(target.cpu_root, ctx.ticks);
    let result = h2load::finish(child, &log);
    let end = Sample::now(target.cpu_root, ctx.ticks);
    let _ = std::fs::remove_file(&log);
    let r = result?;
    let mut v = Values::from([
        ("rps".to_string(), r.summary.rps),
        ("errors".to_string(), r.summary.failed as f64),
        ("requests".to_string(), r.summary.done as f64),
        ("offered_rps".to_string(), LOAD.total_rps().into()),
    ]);
    for (key, value) in [
        ("p50_ms", r.p50_ms),
        ("p99_ms", r.p99_ms),
        ("p999_ms", r.p999_ms),
    ] {
        v.extend(value.map(|x| (key.to_string(), x)));
    }
    start.record(&end, r.summary.done, &mut v);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_ten_thousand_requests_per_second() {
        assert_eq!(LOAD.total_rps(), 10_000);
    }
}
