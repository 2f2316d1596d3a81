//! `cargo run -p loadtest --release -- [scenarios] [--reps N] [--json FILE]`
//!
//! Starts a fast backend, then sluice, nginx and HAProxy in front of it
//! with equivalent configs (1 worker each, loopback, free ports), drives
//! the same wrk load at each in turn (and at the backend directly),
//! alternating the order over repetitions, and prints medians with ratios
//! to nginx from the same repetition. Installs and builds nothing: it runs
//! the sluice binary from the workspace's `target/release`.

mod cpu;
mod report;
mod soak;
mod targets;
mod tcp;
mod wrk;

use anyhow::{Context, Result, bail};
use report::Run;
use std::path::PathBuf;
use targets::Target;

/// The apt packages the full harness (issue 9) wants, and a binary each provides.
const PACKAGES: &[(&str, &str)] = &[
    ("nginx", "nginx"),
    ("haproxy", "haproxy"),
    ("wrk", "wrk"),
    ("nghttp2-client", "h2load"),
    ("redis-server", "redis-server"),
    ("redis-tools", "redis-benchmark"),
    ("iperf3", "iperf3"),
    ("postgresql", "pgbench"),
];

/// The scenarios this version runs.
const SCENARIOS: &[&str] = &["http-keepalive", "http-close"];

/// Seconds per wrk run.
const SECONDS: u32 = 4;
/// wrk connections.
const CONNECTIONS: u32 = 50;

/// Parsed command line.
struct Args {
    scenarios: Vec<String>,
    reps: u32,
    json: Option<PathBuf>,
    sluice: Option<PathBuf>,
}

fn usage() -> String {
    format!(
        "usage: loadtest [SCENARIO...] [--reps N] [--json FILE] [--sluice PATH]\n\
         scenarios: {}, {} (default: all)\n\
         the sluice binary: --sluice, else $SLUICE_BIN, else target/release/sluice\n\
         (under $CARGO_TARGET_DIR or the workspace); build it with `cargo build --release`",
        SCENARIOS.join(", "),
        tcp::SCENARIOS.join(", ")
    )
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        scenarios: Vec::new(),
        reps: 3,
        json: None,
        sluice: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--reps" => {
                args.reps = it
                    .next()
                    .context("--reps needs a number")?
                    .parse()
                    .context("--reps needs a number")?;
            }
            "--json" => args.json = Some(it.next().context("--json needs a file")?.into()),
            "--sluice" => args.sluice = Some(it.next().context("--sluice needs a path")?.into()),
            "-h" | "--help" => {
                println!("{}", usage());
                std::process::exit(0);
            }
            s if SCENARIOS.contains(&s) || tcp::SCENARIOS.contains(&s) => {
                args.scenarios.push(s.to_string())
            }
            other => bail!("unknown argument {other:?}\n{}", usage()),
        }
    }
    if args.scenarios.is_empty() {
        args.scenarios = SCENARIOS
            .iter()
            .chain(tcp::SCENARIOS)
            .map(|s| s.to_string())
            .collect();
    }
    if args.reps == 0 {
        bail!("--reps must be at least 1");
    }
    Ok(args)
}

/// Finds the sluice release binary: `--sluice`, `$SLUICE_BIN`,
/// `$CARGO_TARGET_DIR/release/sluice`, then `<workspace>/target/release/sluice`.
/// A path given explicitly (flag or variable) must exist: no silent fallback.
fn find_sluice(explicit: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = explicit.or_else(|| std::env::var_os("SLUICE_BIN").map(PathBuf::from)) {
        if p.is_file() {
            return Ok(p);
        }
        bail!(
            "no sluice binary at {} (from --sluice or $SLUICE_BIN)",
            p.display()
        );
    }
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let candidates: Vec<PathBuf> = std::env::var_os("CARGO_TARGET_DIR")
        .map(|d| PathBuf::from(d).join("release").join("sluice"))
        .into_iter()
        .chain([workspace.join("target").join("release").join("sluice")])
        .collect();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .with_context(|| {
            format!(
                "no sluice release binary; looked at {}.\n\
                 Build it first: `cargo build --release` (same CARGO_TARGET_DIR), or pass --sluice PATH.",
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

/// Prints which wanted apt packages are missing; returns whether wrk exists.
fn check_tools() -> bool {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(_, bin)| !targets::has_tool(bin))
        .map(|(pkg, _)| *pkg)
        .chain(tcp::missing_packages())
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "missing tools; install with: sudo apt-get install {}\n\
             (targets and scenarios needing them are skipped)",
            missing.join(" ")
        );
    }
    targets::has_tool("wrk")
}

/// Starts a target, printing and skipping it if it fails.
fn try_start(name: &str, r: Result<Target>) -> Option<Target> {
    match r {
        Ok(t) => {
            eprintln!("started {name} on 127.0.0.1:{}", t.port);
            Some(t)
        }
        Err(e) => {
            eprintln!("skipping {name}: {e:#}");
            None
        }
    }
}

/// One wrk run at `target`, with the proxy's CPU time and the machine's busy
/// time read before and after.
fn measure(scenario: &str, target: &Target, rep: u32, ticks: u64) -> Result<Run> {
    let cpu_now = || target.cpu_root.map(|pid| cpu::tree_cpu_seconds(pid, ticks));
    let (cpu0, busy0) = (cpu_now(), cpu::machine_busy_seconds(ticks));
    let w = wrk::run(
        &target.url(),
        CONNECTIONS,
        SECONDS,
        scenario == "http-close",
    )?;
    let (cpu1, busy1) = (cpu_now(), cpu::machine_busy_seconds(ticks));
    let proxy_cpu = cpu0.zip(cpu1).map(|(a, b)| b - a);
    let cpu_per_100k = proxy_cpu
        .filter(|_| w.requests > 0)
        .map(|c| c * 100_000.0 / w.requests as f64);
    let machine_busy_s = busy0
        .zip(busy1)
        .map(|(a, b)| b - a - proxy_cpu.unwrap_or(0.0));
    Ok(Run {
        scenario: scenario.to_string(),
        target: target.name.to_string(),
        rep,
        rps: w.rps,
        p50_ms: w.p50_ms,
        p99_ms: w.p99_ms,
        errors: w.errors,
        cpu_per_100k,
        machine_busy_s,
    })
}

fn main() -> Result<()> {
    if std::env::args().nth(1).as_deref() == Some("soak") {
        return soak::run(std::env::args().skip(2));
    }
    let mut args = parse_args()?;
    let (tcp_scenarios, http): (Vec<String>, Vec<String>) = args
        .scenarios
        .into_iter()
        .partition(|s| tcp::SCENARIOS.contains(&s.as_str()));
    args.scenarios = http;
    if !check_tools() && !args.scenarios.is_empty() {
        bail!("wrk is required for the HTTP scenarios: sudo apt-get install wrk");
    }
    let sluice = find_sluice(args.sluice)?;
    eprintln!("sluice binary: {}", sluice.display());
    let dir = tempfile::Builder::new()
        .prefix("sluice-loadtest-")
        .tempdir()
        .context("creating a temp dir")?;

    let backend = targets::start_backend(dir.path())?;
    eprintln!("backend on 127.0.0.1:{}", backend.port);
    let mut list: Vec<Target> = vec![targets::direct(&backend)];
    list.extend(try_start(
        "sluice",
        targets::start_sluice(&sluice, dir.path(), backend.port),
    ));
    if targets::has_tool("nginx") {
        list.extend(try_start(
            "nginx",
            targets::start_nginx(dir.path(), backend.port),
        ));
    }
    if targets::has_tool("haproxy") {
        list.extend(try_start(
            "haproxy",
            targets::start_haproxy(dir.path(), backend.port),
        ));
    }

    let ticks = cpu::clock_ticks();
    let mut runs = Vec::new();
    for scenario in &args.scenarios {
        for rep in 0..args.reps {
            // Rotate the order each repetition so no target always runs first or last.
            let n = list.len();
            for i in 0..n {
                let t = &list[(i + rep as usize) % n];
                match measure(scenario, t, rep, ticks) {
                    Ok(r) => {
                        eprintln!(
                            "{scenario} rep {rep} {:<8} {:>8.0} req/s p50 {:.2} ms p99 {:.2} ms errors {} cpu/100k {}",
                            r.target,
                            r.rps,
                            r.p50_ms,
                            r.p99_ms,
                            r.errors,
                            r.cpu_per_100k.map_or("-".into(), |c| format!("{c:.2}")),
                        );
                        runs.push(r);
                    }
                    Err(e) => eprintln!("{scenario} rep {rep} {}: {e:#}", t.name),
                }
            }
        }
    }

    let tcp_runs = tcp::run(&tcp_scenarios, args.reps, &sluice, dir.path());

    let summaries = report::summarise(&runs);
    if !runs.is_empty() {
        println!("{}", report::table(&summaries));
    }
    let tcp_summaries = tcp::report::summarise(&tcp_runs);
    if !tcp_runs.is_empty() {
        println!("{}", tcp::report::table(&tcp_summaries));
    }
    if let Some(path) = args.json {
        let json = serde_json::json!({
            "seconds_per_run": SECONDS,
            "connections": CONNECTIONS,
            "reps": args.reps,
            "summaries": summaries,
            "runs": runs,
            "tcp_summaries": tcp_summaries,
            "tcp_runs": tcp_runs,
        });
        std::fs::write(&path, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    // Targets stop (SIGTERM) as `list` and `backend` drop here.
    drop(list);
    drop(backend);
    Ok(())
}
