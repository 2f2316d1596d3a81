//! `tcp-pgbench`: a throwaway PostgreSQL cluster (initdb into a temporary
//! directory, a free port, trust authentication, `pgbench -i`), then
//! `pgbench -S` (select only) with 16 clients, transactions/s.
//!
//! The cluster is `pgcluster`'s (shared with `tests/tcp_postgres.rs`): as
//! root, PostgreSQL runs as the `postgres` user.

use anyhow::{Context, Result, bail};
use pgcluster::failure;
use std::rc::Rc;

use super::{Case, Outcome, pgbench};

/// pgbench clients...
const CLIENTS: u32 = 16;
/// ...and the threads that drive them.
const THREADS: u32 = 2;
/// Seconds per pgbench run.
const SECONDS: u32 = 8;

/// The apt package this scenario needs, if missing.
pub fn missing() -> Vec<&'static str> {
    match pgcluster::postgres_bin() {
        Some(bin) if bin.join("pgbench").exists() || crate::targets::has_tool("pgbench") => {
            Vec::new()
        }
        _ => vec!["postgresql"],
    }
}

/// A running throwaway cluster with pgbench's tables.
pub struct Cluster {
    postgres: pgcluster::Cluster,
}

impl Cluster {
    /// Starts the cluster on a free port, then `pgbench -i` directly.
    pub fn start() -> Result<Cluster> {
        let postgres = pgcluster::Cluster::start(100)?;
        let init = postgres
            .pgbench(postgres.port, &["-i", "-s", "1", "-q"])
            .context("running pgbench")?;
        if !init.status.success() {
            bail!("{}", failure(&init, "pgbench -i"));
        }
        Ok(Cluster { postgres })
    }

    /// The port PostgreSQL listens on.
    pub fn port(&self) -> u16 {
        self.postgres.port
    }

    /// `pgbench -S -n -c 16 -j 2 -T 8` at `port`.
    fn select_only(&self, port: u16) -> Result<Outcome> {
        let out = self
            .postgres
            .pgbench(
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
            )
            .context("running pgbench")?;
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
