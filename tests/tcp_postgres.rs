//! A real PostgreSQL behind a TCP listener: a throwaway cluster (initdb
//! into a temp dir, a free port, trust auth), then tokio-postgres queries
//! and transactions and a `pgbench -S` run, all through sluice.
//!
//! PostgreSQL refuses to run as root; when the tests run as root (CI
//! containers), initdb and pg_ctl run as the `postgres` user through
//! `runuser`, in a temp dir handed to that user.

mod tcp_support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output};

use sluice::counters::{ListenerCounter, UpstreamCounter};
use tcp_support::{Tcp, missing};

/// A directory holding initdb and pg_ctl: the newest
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
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .find(|dir| dir.join("initdb").exists() && dir.join("pg_ctl").exists())
    })
}

fn command_line(output: &Output, what: &str) -> String {
    format!(
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A throwaway cluster, stopped (and its files removed) on drop even when
/// the test fails.
struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    as_postgres: bool,
    addr: SocketAddr,
}

impl Cluster {
    /// `bin/program args...`, as the `postgres` user when we are root.
    fn run(&self, program: &str, args: &[&str]) -> Output {
        let program = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        command
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("cannot run a PostgreSQL program")
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// initdb, then pg_ctl start on a free port; `None` when PostgreSQL is
    /// not installed.
    fn start() -> Option<Cluster> {
        let bin = postgres_bin()?;
        let as_postgres = rustix::process::geteuid().is_root();
        // Under /tmp, not $TMPDIR: the `postgres` user must be able to reach
        // it, and a root-only TMPDIR (/root/tmp) would not let it.
        let dir = if as_postgres {
            tempfile::Builder::new()
                .prefix("sluice-pg-")
                .tempdir_in("/tmp")
                .unwrap()
        } else {
            tempfile::tempdir().unwrap()
        };
        if as_postgres {
            let user = Command::new("id")
                .args(["-u", "postgres"])
                .output()
                .unwrap();
            let gid = Command::new("id")
                .args(["-g", "postgres"])
                .output()
                .unwrap();
            assert!(
                user.status.success(),
                "running as root needs a `postgres` user"
            );
            let id = |o: &Output| {
                String::from_utf8_lossy(&o.stdout)
                    .trim()
                    .parse::<u32>()
                    .unwrap()
            };
            std::os::unix::fs::chown(dir.path(), Some(id(&user)), Some(id(&gid))).unwrap();
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = Cluster {
            bin,
            dir,
            as_postgres,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let data = cluster.data();
        let out = cluster.run(
            "initdb",
            &[
                "-D",
                &data,
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
        );
        assert!(out.status.success(), "{}", command_line(&out, "initdb"));
        let options = format!(
            "-k {} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50",
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
            &[
                "start", "-w", "-t", "60", "-D", &data, "-l", &log, "-o", &options,
            ],
        );
        if !out.status.success() {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("{}\n{log}", command_line(&out, "pg_ctl start"));
        }
        Some(cluster)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self.run("pg_ctl", &["stop", "-D", &data, "-m", "immediate", "-w"]);
    }
}

/// `pgbench` against sluice on `port`: the one next to initdb, else PATH's.
fn pgbench(cluster: &Cluster, port: u16, args: &[&str]) -> Output {
    let beside = cluster.bin.join("pgbench");
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
        .expect("cannot run pgbench")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_through_sluice() {
    let Some(cluster) = Cluster::start() else {
        return missing("PostgreSQL (initdb, pg_ctl)");
    };
    let tcp = Tcp::start(&[cluster.addr], "    strategy: least-connections\n", "");
    let port = tcp.addr().port();
    let (mut client, connection) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=postgres dbname=postgres"),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    let connection = tokio::spawn(connection);

    let row = client
        .query_one("SELECT 40 + $1::int4", &[&2i32])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    client
        .batch_execute("CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL)")
        .await
        .unwrap();
    let tx = client.transaction().await.unwrap();
    for (id, name) in [(1, "one"), (2, "two"), (3, "three")] {
        tx.execute("INSERT INTO items VALUES ($1, $2)", &[&id, &name])
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    let tx = client.transaction().await.unwrap();
    tx.execute("DELETE FROM items", &[]).await.unwrap();
    tx.rollback().await.unwrap();
    let rows = client
        .query("SELECT name FROM items ORDER BY id", &[])
        .await
        .unwrap();
    let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(names, ["one", "two", "three"]);
    let big: String = client
        .query_one("SELECT repeat('x', 1048576)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(big.len(), 1024 * 1024);
    drop(client);
    connection.await.unwrap().unwrap();

    let init = pgbench(&cluster, port, &["-i", "-s", "1", "-q"]);
    assert!(
        init.status.success(),
        "{}",
        command_line(&init, "pgbench -i")
    );
    let run = pgbench(&cluster, port, &["-S", "-T", "3", "-c", "4", "-j", "2"]);
    let report = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(run.status.success(), "{}", command_line(&run, "pgbench -S"));
    let processed = report
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|n| n.split('/').next()?.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no transaction count in:\n{report}"));
    assert!(processed > 0, "{report}");
    if let Some(failed) = report
        .lines()
        .find_map(|l| l.strip_prefix("number of failed transactions: "))
    {
        assert!(failed.starts_with("0 "), "{report}");
    }
    eprintln!("pgbench -S through sluice:\n{report}");
    assert!(tcp.listener(ListenerCounter::ConnectionsTotal) >= 6);
    assert_eq!(tcp.upstream(0, UpstreamCounter::ConnectErrors), 0);
}
