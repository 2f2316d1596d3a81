//! `cargo run -p loadtest --release -- [SCENARIO...] [--reps N] [--json FILE] [--no-pin]`
//!
//! Starts a fast backend, then sluice, nginx and HAProxy in front of it
//! with equivalent configs (loopback, free ports), drives the same load at
//! each in turn (and at the backend directly), alternating the order over
//! repetitions, and prints one table per scenario with medians and ratios
//! to nginx from the same repetition, then issue 9's targets for sluice.
//! Installs and builds nothing: it runs the workspace's sluice release binary.

mod columns;
mod configs;
mod cpu;
mod disturb;
mod goals;
mod h2load;
mod http_idle;
mod http_rate;
mod http_wrk;
mod idle_client;
mod limits;
mod mem;
mod pin;
mod proc_tree;
mod report;
mod reps;
mod scenario;
mod soak;
mod targets;
mod tcp;
mod wrk;

use anyhow::{Context, Result, bail};
use pin::Pinning;
use scenario::{Ctx, Outcome, Scenario};
use std::path::PathBuf;
use std::time::Instant;

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
    ("util-linux", "taskset"),
];

/// Every scenario, in the order they run. A new scenario is one line here.
const SCENARIOS: &[Scenario] = &[
    http_wrk::KEEPALIVE,
    http_wrk::CLOSE,
    http_rate::RATE,
    http_wrk::KEEPALIVE_AUTO,
    http_idle::IDLE,
];

/// Repetitions per target unless `--reps` says otherwise.
const DEFAULT_REPS: u32 = 5;

/// Parsed command line.
struct Args {
    scenarios: Vec<&'static Scenario>,
    /// TCP scenarios ([`tcp::SCENARIOS`]): they run after the HTTP ones,
    /// with their own backends, cases and table.
    tcp_scenarios: Vec<String>,
    reps: u32,
    json: Option<PathBuf>,
    sluice: Option<PathBuf>,
    no_pin: bool,
}

fn usage() -> String {
    let list: Vec<String> = SCENARIOS
        .iter()
        .map(|s| format!("  {:<20} {}", s.name, s.about))
        .chain(
            tcp::SCENARIOS
                .iter()
                .map(|s| format!("  {s:<20} TCP passthrough (see loadtest/README.md)")),
        )
        .chain([format!(
            "  {:<20} alone, as `loadtest soak [--quick]`: RSS and descriptors after 1M requests",
            "soak"
        )])
        .collect();
    format!(
        "usage: loadtest [SCENARIO...] [--reps N] [--json FILE] [--sluice PATH] [--no-pin]\n\
         scenarios (default: all):\n{}\n\
         --reps N     repetitions per target (default {DEFAULT_REPS})\n\
         --no-pin     do not pin the proxy to one CPU and the load to another\n\
         the sluice binary: --sluice, else $SLUICE_BIN, else target/release/sluice\n\
         (under $CARGO_TARGET_DIR or the workspace); build it with `cargo build --release`",
        list.join("\n")
    )
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        scenarios: Vec::new(),
        tcp_scenarios: Vec::new(),
        reps: DEFAULT_REPS,
        json: None,
        sluice: None,
        no_pin: false,
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
            "--no-pin" => args.no_pin = true,
            "-h" | "--help" => {
                println!("{}", usage());
                std::process::exit(0);
            }
            name if tcp::SCENARIOS.contains(&name) => args.tcp_scenarios.push(name.into()),
            name => match SCENARIOS.iter().find(|s| s.name == name) {
                Some(s) => args.scenarios.push(s),
                None => bail!("unknown argument {name:?}\n{}", usage()),
            },
        }
    }
    if args.scenarios.is_empty() && args.tcp_scenarios.is_empty() {
        args.scenarios = SCENARIOS.iter().collect();
        args.tcp_scenarios = tcp::SCENARIOS.iter().map(|s| s.to_string()).collect();
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

/// Prints which wanted apt packages are missing.
fn report_missing_tools() {
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
}

fn main() -> Result<()> {
    if std::env::args().nth(1).as_deref() == Some("soak") {
        return soak::run(std::env::args().skip(2));
    }
    let started = Instant::now();
    let args = parse_args()?;
    report_missing_tools();
    let open_files = limits::raise_open_files(configs::OPEN_FILES).unwrap_or_else(|e| {
        eprintln!("{e:#}");
        limits::open_files()
    });
    eprintln!(
        "open files limit {open_files}: HAProxy gets maxconn {}",
        configs::haproxy_maxconn(open_files)
    );
    let sluice = find_sluice(args.sluice)?;
    eprintln!("sluice binary: {}", sluice.display());
    let dir = tempfile::Builder::new()
        .prefix("sluice-loadtest-")
        .tempdir()
        .context("creating a temp dir")?;
    let cpus = pin::allowed_cpus();
    let pinning = Pinning::choose(&cpus, args.no_pin || !pin::has_taskset());
    eprintln!(
        "CPUs {cpus:?}; per-core scenarios run {}",
        pinning.describe()
    );
    let ctx = Ctx {
        sluice: &sluice,
        dir: dir.path(),
        reps: args.reps,
        pinning,
        ticks: cpu::clock_ticks(),
        open_files,
    };

    let mut done: Vec<(&Scenario, Outcome)> = Vec::new();
    for s in &args.scenarios {
        if let Some(tool) = s.needs.iter().find(|t| !targets::has_tool(t)) {
            eprintln!("skipping {}: {tool} is not installed", s.name);
            continue;
        }
        eprintln!("== {}", s.name);
        match (s.run)(&ctx) {
            Ok(outcome) => done.push((s, outcome)),
            Err(e) => eprintln!("{}: {e:#}", s.name),
        }
    }

    let tcp_runs = tcp::run(&args.tcp_scenarios, args.reps, &sluice, dir.path());

    let all_runs: Vec<report::Run> = done.iter().flat_map(|(_, o)| o.runs.clone()).collect();
    let goals = goals::evaluate(&all_runs);
    let mut scenarios_json = Vec::new();
    for (s, o) in &done {
        let summaries = report::summarise(&o.runs, s.columns);
        println!("{}", report::table(s.name, &o.mode, s.columns, &summaries));
        scenarios_json.push(serde_json::json!({
            "name": s.name,
            "about": s.about,
            "mode": o.mode,
            "columns": s.columns,
            "summaries": summaries,
            "runs": o.runs,
        }));
    }
    let mode = |name: &str| {
        done.iter()
            .find(|(s, _)| s.name == name)
            .map(|(_, o)| o.mode.clone())
    };
    let tcp_summaries = tcp::report::summarise(&tcp_runs);
    if !tcp_runs.is_empty() {
        println!("{}", tcp::report::table(&tcp_summaries));
    }
    println!("{}", goals::table(&goals, mode));
    let seconds = started.elapsed().as_secs_f64();
    eprintln!("total time {seconds:.0} s");
    if let Some(path) = args.json {
        let json = serde_json::json!({
            "reps": args.reps,
            "cpus": cpus,
            "pinning": pinning,
            "open_files": open_files,
            "seconds": seconds,
            "scenarios": scenarios_json,
            "goals": goals,
            "tcp_summaries": tcp_summaries,
            "tcp_runs": tcp_runs,
        });
        std::fs::write(&path, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
