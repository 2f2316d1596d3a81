//! `tcp-pgbench`: a throwaway PostgreSQL cluster (initdb into a temporary
//! directory, a free port, trust authentication, `pgbench -i`), then
//! `pgbench -S` (select only) with 16 clients, transactions/s.
//!
//! PostgreSQL refuses to run as root: as root, initdb and pg_ctl run as
//! the `postgres` user through `runuser`, in a directory under /tmp handed
//! to that user (as `tests/tcp_postgres.rs` does).

use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::rc::Rc;

use super::{Case, Outcome, pgbench};
use crate::targets::free_port;

/// pgbench clients...
const CLIENTS: u32 = 16;
/// ...and the threads that drive them.
const THREADS: u32 = 2;
/// Seconds per pgbench run.
const SECONDS: u32 = 8;

/// The directory holding initdb, pg_ctl and pgbench: the newest
/// /usr/lib/postgresql/*/bin (Debian), else the PATH.
fn postgres_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|dir| dir.join("initdb").exists())
}

/// The apt package this scenario needs, if missing.
pub fn missing() -> Vec<&'static str> {
    match postgres_bin() {
        Some(bin) if bin.join("pgbench").exists() || crate::targets::has_tool("pgbench") => {
            Vec::new()
        }
        _ => vec!["postgresql"],
    }
}

/// A running throwaway cluster, stopped (and its files removed) on drop.
pub struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    as_postgres: bool,
    /// The port PostgreSQL listens on.
    pub port: u16,
}

impl Cluster {
    /// initdb, pg_ctl start on a free port, then `pgbench -i` directly.
    pub fn start() -> Result<Cluster> {
        let bin = postgres_bin().context("no initdb (apt-get install postgresql)")?;
        let as_postgres = is_root();
        // Under /tmp, not $TMPDIR: the `postgres` user must reach it.
        let dir = tempfile::Builder::new()
            .prefix("sluice-loadtest-pg-")
            .tempdir_in(if as_postgres {
                PathBuf::from("/tmp")
            } else {
                std::env::temp_dir()
            })?;
        if as_postgres {
            let out = Command::new("chown")
                .arg("postgres:postgres")
                .arg(dir.path())
                .output()?;
            if !out.status.success() {
                bail!(
                    "{}",
                    failure(&out, "chown postgres (running as root needs that user)")
                );
            }
        }
        let cluster = Cluster {
            bin,
            dir,
            as_postgres,
            port: free_port()?,
        };
        let data = cluster.data();
        let out = cluster.run(
            "initdb",
            &["-D", &data, "-A", "trust", "-U", "postgres"],
            &["-E", "UTF8", "--no-locale", "--no-sync"],
        )?;
        if !out.status.success() {
            bail!("{}", failure(&out, "initdb"));
        }
        let options = format!(
            "-k {} -p {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100",
            cluster.dir.path().display(),
            cluster.port
        );
        let log = cluster.dir.path().join("postgres.log");
        let log = log.display().to_string();
        let out = cluster.run(
            "pg_ctl",
            &["start", "-w", "-t", "60", "-D", &data],
            &["-l", &log, "-o", &options],
        )?;
        if !out.status.success() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            bail!("{}\n{text}", failure(&out, "pg_ctl start"));
        }
        let init = cluster.pgbench(cluster.port, &["-i", "-s", "1", "-q"])?;
        if !init.status.success() {
            bail!("{}", failure(&init, "pgbench -i"));
        }
        Ok(cluster)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// `bin/program args... more...`, as the `postgres` user when root.
    fn run(&self, program: &str, args: &[&str], more: &[&str]) -> Result<Output> {
        let program = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        command
            .args(args)
            .args(more)
            .current_dir(self.dir.path())
            .output()
            .with_context(|| format!("running {}", program.display()))
    }

    /// pgbench (the one beside initdb, else the PATH's) at `port` as the
    /// `postgres` database user.
    fn pgbench(&self, port: u16, args: &[&str]) -> Result<Output> {
        let beside = self.bin.join("pgbench");
        let program = if beside.exists() {
            beside
        } else {
            PathBuf::from("pgbench")
        };
        Command::new(program)
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
            .args(args)
            .arg("postgres")
            .output()
            .context("running pgbench")
    }

    /// `pgbench -S -n -c 16 -j 2 -T 8` at `port`.
    fn select_only(&self, port: u16) -> Result<Outcome> {
        let out = self.pgbench(
            port,
            &[
                "-S",
                "-n",
                "-c",
                &CLIENTS.to_string(),
                "-j",
                &THREADS.to_string(),
                "-T",
                &SECONDS.to_string(),
            ],
        )?;
        let text = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let report = pgbench::parse(&text, &stderr)
            .with_context(|| failure(&out, "pgbench -S (no result in its output)"))?;
        Ok(Outcome {
            throughput: report.tps,
            work: report.processed as f64 / 100_000.0,
            errors: Some(report.errors),
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self.run("pg_ctl", &["stop", "-D", &data], &["-m", "immediate", "-w"]);
    }
}

/// Whether this process runs as root.
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn failure(output: &Output, what: &str) -> String {
    format!(
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The one case of this scenario, run against `cluster`.
pub fn cases(cluster: &Rc<Cluster>) -> Vec<Case> {
    let cluster = Rc::clone(cluster);
    vec![Case {
        name: format!("tcp-pgbench -S -c{CLIENTS}"),
        unit: "tps",
        cpu_unit: "CPU-s/100k tx",
        run: Box::new(move |port| cluster.select_only(port)),
    }]
}
