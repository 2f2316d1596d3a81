//! A throwaway PostgreSQL cluster, for sluice's tests and its load test:
//! `initdb` into a temporary folder with trust authentication, `pg_ctl
//! start` on a free port of 127.0.0.1; stopped and removed on drop.
//!
//! PostgreSQL refuses to run as root: as root, its programs run as the
//! `postgres` user through `runuser`, in a folder under /tmp handed to
//! that user.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Why a cluster did not start.
#[derive(Debug)]
pub enum StartError {
    /// No `initdb` and `pg_ctl` on this machine (apt package `postgresql`).
    NotInstalled,
    /// A step failed; the text says which, with its output.
    Failed(String),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::NotInstalled => f.write_str("PostgreSQL (initdb, pg_ctl) is not installed"),
            StartError::Failed(text) => f.write_str(text),
        }
    }
}

impl std::error::Error for StartError {}

/// A running cluster.
pub struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    as_postgres: bool,
    /// The port PostgreSQL listens on (127.0.0.1).
    pub port: u16,
}

impl Cluster {
    /// initdb, then pg_ctl start on a free port, allowing
    /// `max_connections` clients.
    pub fn start(max_connections: u32) -> Result<Cluster, StartError> {
        let bin = postgres_bin().ok_or(StartError::NotInstalled)?;
        let failed =
            |what: &str, error: std::io::Error| StartError::Failed(format!("{what}: {error}"));
        let as_postgres = is_root();
        // Under /tmp, not $TMPDIR: the `postgres` user must be able to reach
        // it, and a root-only TMPDIR (/root/tmp) would not let it.
        let dir = if as_postgres {
            tempfile::Builder::new()
                .prefix("sluice-pg-")
                .tempdir_in("/tmp")
        } else {
            tempfile::tempdir()
        }
        .map_err(|e| failed("temporary folder", e))?;
        if as_postgres {
            hand_to_postgres(dir.path())?;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|e| failed("free port", e))?
            .port();
        let cluster = Cluster {
            bin,
            dir,
            as_postgres,
            port,
        };
        let data = cluster.data();
        let out = cluster.run(
            "initdb",
            &["-D", &data, "-A", "trust", "-U", "postgres", "-E", "UTF8"],
            &["--no-locale", "--no-sync"],
        )?;
        if !out.status.success() {
            return Err(StartError::Failed(failure(&out, "initdb")));
        }
        let options = format!(
            "-k {} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections={max_connections}",
            cluster.dir.path().display()
        );
        let log = cluster
            .dir
            .path()
            .join("postgres.log")
            .display()
            .to_string();
        let out = cluster.run(
            "pg_ctl",
            &["start", "-w", "-t", "60", "-D", &data],
            &["-l", &log, "-o", &options],
        )?;
        if !out.status.success() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(StartError::Failed(format!(
                "{}\n{text}",
                failure(&out, "pg_ctl start")
            )));
        }
        Ok(cluster)
    }

    /// The folder of `initdb`, `pg_ctl` and (on Debian) `pgbench`.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// `pgbench` (the one beside initdb, else the PATH's) against port
    /// `port` of 127.0.0.1 as the `postgres` user, on the `postgres`
    /// database.
    pub fn pgbench(&self, port: u16, args: &[&str]) -> std::io::Result<Output> {
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
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// `bin/program args... more...`, as the `postgres` user when root.
    fn run(&self, program: &str, args: &[&str], more: &[&str]) -> Result<Output, StartError> {
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
            .map_err(|e| StartError::Failed(format!("running {}: {e}", program.display())))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self.run("pg_ctl", &["stop", "-D", &data], &["-m", "immediate", "-w"]);
    }
}

/// The folder holding initdb and pg_ctl: the newest
/// /usr/lib/postgresql/*/bin (Debian), else one on the PATH.
pub fn postgres_bin() -> Option<PathBuf> {
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
    std::env::split_paths(&path)
        .find(|dir| dir.join("initdb").exists() && dir.join("pg_ctl").exists())
}

/// A failed command's status and output, under `what`.
pub fn failure(output: &Output, what: &str) -> String {
    format!(
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Whether this process runs as root.
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Gives `dir` to the `postgres` user and group.
fn hand_to_postgres(dir: &Path) -> Result<(), StartError> {
    let out = Command::new("chown")
        .arg("postgres:postgres")
        .arg(dir)
        .output()
        .map_err(|e| StartError::Failed(format!("chown: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(StartError::Failed(failure(
            &out,
            "chown postgres (running as root needs that user)",
        )))
    }
}
