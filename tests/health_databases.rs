//! `redis` and `postgres` checks against the real servers (issue 6).
//!
//! The binaries come from the Debian packages (`redis-server` on PATH;
//! `initdb`/`pg_ctl` under /usr/lib/postgresql/*/bin). A missing binary
//! skips the test with a note, except under `CI=true`, where it fails.
//! PostgreSQL refuses to run as root, so as root it runs through
//! `runuser -u postgres --` in a temp dir owned by that user; it is stopped
//! by a guard, even when the test fails.

mod health_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use health_support::{checker, config, results, upstream, wait_for};
use sluice::counters::Region;
use sluice::health::HealthHandle;

/// The binary `name` from PATH or a PostgreSQL bin folder; `None` (after a
/// note) when missing, a panic when missing under `CI=true`.
fn require(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Ok(versions) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut found: Vec<PathBuf> = versions.flatten().map(|v| v.path().join("bin")).collect();
        found.sort();
        dirs.extend(found.into_iter().rev());
    }
    dirs.push("/usr/local/bin".into());
    let path = dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file());
    if path.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "`{name}` is not installed and CI=true: this test must run in CI"
        );
        eprintln!("note: `{name}` not found; skipping this test (install it to run it)");
    }
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts on `port`.
fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start listening");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_check_passes_against_redis_server_and_fails_once_it_stops() {
    let Some(redis) = require("redis-server") else {
        return;
    };
    // With a password, as production Redis has: PING is answered -NOAUTH,
    // which shows a server taking commands.
    let port = free_port();
    let server = Killed(
        Command::new(redis)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--requirepass", "secret"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_listening(port, "redis-server");
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let cfg = config(&[upstream(
        "cache",
        addr,
        "kind: redis, interval: 100ms, timeout: 500ms, rise: 1, fall: 1",
    )]);
    let (handle, region) = checker(&cfg);
    assert!(handle.wait_first_round());
    assert!(
        region.is_up(0),
        "PING answered -NOAUTH: {:?}",
        results(&region, 0)
    );
    drop(server);
    wait_for(Duration::from_secs(3), "down once redis stops", || {
        !region.is_up(0)
    })
    .await;
    assert!(results(&region, 0).1 > 0, "counted as a failure");
    handle.stop();
}

/// A PostgreSQL cluster in a temp dir, stopped on drop.
struct Postgres {
    pg_ctl: PathBuf,
    data: PathBuf,
    _dir: tempfile::TempDir,
}

impl Postgres {
    fn start(initdb: &Path, pg_ctl: &Path, port: u16) -> Postgres {
        let dir = tempfile::tempdir().unwrap();
        if rustix::process::getuid().is_root() {
            run(Command::new("chown")
                .arg("-R")
                .arg("postgres:")
                .arg(dir.path()));
        }
        let data = dir.path().join("data");
        run(as_postgres(initdb).arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
        ]));
        let server = Postgres {
            pg_ctl: pg_ctl.to_owned(),
            data: data.clone(),
            _dir: dir,
        };
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            server._dir.path().display()
        );
        run(as_postgres(pg_ctl)
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(server._dir.path().join("log"))
            .args(["-w", "-t", "30", "-o", &options, "start"]));
        server
    }

    /// A smart shutdown: open sessions go on, new connections are refused
    /// until they end. Returns at once.
    fn begin_smart_stop(&self) {
        run(as_postgres(&self.pg_ctl)
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "smart", "-W", "stop"]));
    }

    fn stop(&self) {
        let _ = as_postgres(&self.pg_ctl)
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `program` as the postgres user when we are root, else as ourselves.
fn as_postgres(program: &Path) -> Command {
    if rustix::process::getuid().is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn run(command: &mut Command) {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A fresh cluster (`None` when PostgreSQL is not installed and this is
/// not CI) with a fast postgres check on it, which passed its first round.
fn checked_postgres() -> Option<(Postgres, u16, HealthHandle, Arc<Region>)> {
    let (initdb, pg_ctl) = (require("initdb")?, require("pg_ctl")?);
    let port = free_port();
    let server = Postgres::start(&initdb, &pg_ctl, port);
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let cfg = config(&[upstream(
        "db",
        addr,
        "kind: postgres, interval: 100ms, timeout: 500ms, rise: 1, fall: 1",
    )]);
    let (handle, region) = checker(&cfg);
    assert!(handle.wait_first_round());
    assert!(region.is_up(0), "logged in: {:?}", results(&region, 0));
    Some((server, port, handle, region))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_check_passes_against_postgresql_and_fails_once_it_stops() {
    let Some((server, _, handle, region)) = checked_postgres() else {
        return;
    };
    server.stop();
    wait_for(Duration::from_secs(5), "down once postgres stops", || {
        !region.is_up(0)
    })
    .await;
    handle.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_check_fails_while_the_server_refuses_new_connections() {
    let Some((server, port, handle, region)) = checked_postgres() else {
        return;
    };
    // An open session keeps a smart shutdown waiting, and the server
    // refusing every new connection meanwhile.
    let (session, connection) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=postgres"),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    let connection = tokio::spawn(connection);
    server.begin_smart_stop();
    wait_for(
        Duration::from_secs(5),
        "down while postgres shuts down",
        || !region.is_up(0),
    )
    .await;
    drop(session);
    let _ = connection.await;
    handle.stop();
}
