//! The TCP passthrough scenarios of SPEC §9: a real backend (redis-server,
//! a PostgreSQL cluster, an iperf3 server) behind sluice (`mode: tcp`),
//! nginx (`stream {}`) and HAProxy (`mode tcp`), and reached directly,
//! each measured in an order rotated every repetition.
//!
//! - [`process`]: starting a server and waiting until it listens.
//! - [`proxies`]: the three proxies' TCP configs.
//! - [`redis`], [`postgres`], [`iperf`]: one tool each: its backend, its
//!   client run, and (redis, iperf) the parser of the client's output.
//! - [`pgbench`]: the parser of pgbench's output.
//! - [`report`]: medians, ratios to nginx and to the better peer, the table.

mod iperf;
mod pgbench;
mod postgres;
mod process;
mod proxies;
mod redis;
pub mod report;

use anyhow::{Result, anyhow, bail};
use std::path::Path;
use std::rc::Rc;

use crate::cpu;
use crate::targets::{Target, has_tool};
use report::Run;

/// The TCP scenarios, as named on the command line.
pub const SCENARIOS: &[&str] = &["tcp-redis", "tcp-pgbench", "tcp-iperf3"];

/// What one client run measured.
pub struct Outcome {
    /// ops/s, transactions/s or Gbit/s.
    pub throughput: f64,
    /// The work done, in the unit the proxy's CPU is divided by (100k
    /// operations, GiB).
    pub work: f64,
    /// Failed operations, where the tool counts them.
    pub errors: Option<u64>,
}

/// One measured client run, as named in the table: how to run it against
/// a port, and its units.
pub struct Case {
    /// The table's scenario column, e.g. `tcp-redis -P16 GET`.
    pub name: String,
    /// Throughput unit.
    pub unit: &'static str,
    /// CPU unit, matching [`Outcome::work`].
    pub cpu_unit: &'static str,
    /// Runs the client against a port.
    pub run: Box<dyn Fn(u16) -> Result<Outcome>>,
}

/// The apt packages the TCP scenarios need that are missing, beyond the
/// harness's list of binaries: nginx's stream module.
pub fn missing_packages() -> Vec<&'static str> {
    let mut missing = Vec::new();
    if has_tool("nginx") && proxies::nginx_stream_module().is_none() {
        missing.push("libnginx-mod-stream");
    }
    missing
}

/// A scenario's backend, kept running while its cases are measured.
enum Backend {
    /// redis-server or an iperf3 server.
    Process(Target),
    /// A PostgreSQL cluster (also referenced by its cases).
    Postgres(Rc<postgres::Cluster>),
}

impl Backend {
    fn port(&self) -> u16 {
        match self {
            Backend::Process(t) => t.port,
            Backend::Postgres(c) => c.port(),
        }
    }
}

/// Starts `scenario`'s backend and lists its cases, or says why it cannot.
fn prepare(scenario: &str, dir: &Path) -> Result<(Backend, Vec<Case>)> {
    let missing = match scenario {
        "tcp-redis" => redis::missing(),
        "tcp-pgbench" => postgres::missing(),
        "tcp-iperf3" if !has_tool("iperf3") => vec!["iperf3"],
        _ => Vec::new(),
    };
    if !missing.is_empty() {
        bail!("missing: apt-get install {}", missing.join(" "));
    }
    Ok(match scenario {
        "tcp-redis" => (Backend::Process(redis::start_server(dir)?), redis::cases()),
        "tcp-pgbench" => {
            let cluster = Rc::new(postgres::Cluster::start()?);
            let cases = postgres::cases(&cluster);
            (Backend::Postgres(cluster), cases)
        }
        "tcp-iperf3" => (Backend::Process(iperf::start_server(dir)?), iperf::cases()),
        other => bail!("no TCP scenario {other:?}"),
    })
}

/// The targets in front of `backend`: direct, then every proxy that starts.
fn targets(sluice: &Path, dir: &Path, backend: u16) -> Vec<Target> {
    let mut list = vec![Target::new("direct", backend, None, false)];
    let started = [
        ("sluice", proxies::start_sluice(sluice, dir, backend)),
        (
            "nginx",
            if has_tool("nginx") {
                proxies::start_nginx(dir, backend)
            } else {
                Err(anyhow!("nginx is not installed"))
            },
        ),
        (
            "haproxy",
            if has_tool("haproxy") {
                proxies::start_haproxy(dir, backend)
            } else {
                Err(anyhow!("haproxy is not installed"))
            },
        ),
    ];
    for (name, result) in started {
        match result {
            Ok(t) => list.push(t),
            Err(e) => eprintln!("skipping {name}: {e:#}"),
        }
    }
    list
}

/// One client run at `target`, with the proxy's CPU time and the machine's
/// busy time read before and after.
fn measure(case: &Case, target: &Target, rep: u32, ticks: u64) -> Result<Run> {
    let cpu_now = || target.cpu_root.map(|pid| cpu::tree_cpu_seconds(pid, ticks));
    let (cpu0, busy0) = (cpu_now(), cpu::machine_busy_seconds(ticks));
    let outcome = (case.run)(target.port)?;
    let (cpu1, busy1) = (cpu_now(), cpu::machine_busy_seconds(ticks));
    let proxy_cpu = cpu0.zip(cpu1).map(|(a, b)| b - a);
    Ok(Run {
        scenario: case.name.clone(),
        target: target.name.to_string(),
        rep,
        throughput: outcome.throughput,
        unit: case.unit,
        errors: outcome.errors,
        cpu_per_work: proxy_cpu
            .filter(|_| outcome.work > 0.0)
            .map(|c| c / outcome.work),
        cpu_unit: case.cpu_unit,
        machine_busy_s: busy0
            .zip(busy1)
            .map(|(a, b)| b - a - proxy_cpu.unwrap_or(0.0)),
    })
}

/// Runs `scenarios` (names from [`SCENARIOS`]) `reps` times each, with
/// the servers' configs and files in `dir`; a scenario whose tools are
/// missing is skipped with a note.
pub fn run(scenarios: &[String], reps: u32, sluice: &Path, dir: &Path) -> Vec<Run> {
    let ticks = cpu::clock_ticks();
    let mut runs = Vec::new();
    for scenario in scenarios {
        let (backend, cases) = match prepare(scenario, dir) {
            Ok(prepared) => prepared,
            Err(e) => {
                eprintln!("skipping {scenario}: {e:#}");
                continue;
            }
        };
        let list = targets(sluice, dir, backend.port());
        for case in &cases {
            for rep in 0..reps {
                // Rotated each repetition: no target always runs first or last.
                for i in 0..list.len() {
                    let t = &list[(i + rep as usize) % list.len()];
                    match measure(case, t, rep, ticks) {
                        Ok(r) => {
                            eprintln!(
                                "{} rep {rep} {:<8} {:>10.2} {} errors {} cpu {} {}",
                                r.scenario,
                                r.target,
                                r.throughput,
                                r.unit,
                                r.errors.map_or("-".into(), |e| e.to_string()),
                                r.cpu_per_work.map_or("-".into(), |c| format!("{c:.3}")),
                                r.cpu_unit,
                            );
                            runs.push(r);
                        }
                        Err(e) => eprintln!("{} rep {rep} {}: {e:#}", case.name, t.name),
                    }
                }
            }
        }
        // Proxies stop before the backend they point at.
        drop(list);
        drop(cases);
        drop(backend);
    }
    runs
}
