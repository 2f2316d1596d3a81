//! The real `sluice` binary as a supervisor with worker processes, each
//! test with its own state directory (so control sockets never collide).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A `sluice run` under test.
pub struct Supervisor {
    pub child: Child,
    pub state: tempfile::TempDir,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub addresses: Vec<(String, SocketAddr)>,
    /// The admin endpoint's bound address, from the ready line.
    pub admin: Option<SocketAddr>,
}

/// `sluice` with the given state directory.
pub fn command(state: &std::path::Path) -> Command {
    command_of(std::path::Path::new(env!("CARGO_BIN_EXE_sluice")), state)
}

/// The sluice binary at `binary` with the given state directory.
pub fn command_of(binary: &std::path::Path, state: &std::path::Path) -> Command {
    let mut command = Command::new(binary);
    command
        .env("XDG_RUNTIME_DIR", state)
        .env("SLUICE_LOG", "info")
        .env_remove("SLUICE_CONFIG");
    command
}

impl Supervisor {
    /// Writes `yaml` and runs `sluice run` on it until the ready line.
    pub fn run(yaml: &str) -> Supervisor {
        Supervisor::start(yaml, true)
    }

    /// As [`Supervisor::run`], but with its stderr pipe closed once it is
    /// ready (as when the terminal or log collector that started it went
    /// away) unless `keep_stderr`.
    pub fn start(yaml: &str, keep_stderr: bool) -> Supervisor {
        let binary = std::path::Path::new(env!("CARGO_BIN_EXE_sluice"));
        Supervisor::start_binary(binary, yaml, keep_stderr)
    }

    /// As [`Supervisor::start`], with the sluice binary at `binary`.
    pub fn start_binary(binary: &std::path::Path, yaml: &str, keep_stderr: bool) -> Supervisor {
        let state = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("sluice.yaml");
        std::fs::write(&config, yaml).unwrap();
        let mut child = command_of(binary, state.path())
            .args(["run", "-c"])
            .arg(&config)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let mut addresses = Vec::new();
        let mut admin = None;
        for line in lines.by_ref() {
            let line = line.unwrap();
            if line.contains("sluice ready") {
                let list = line.split("listeners=").nth(1).unwrap();
                let list = list.split(" admin=").next().unwrap().trim_matches('"');
                for item in list.split_whitespace() {
                    let (name, addr) = item.split_once('=').unwrap();
                    addresses.push((name.to_owned(), addr.parse().unwrap()));
                }
                admin = line
                    .split(" admin=")
                    .nth(1)
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|addr| addr.trim_matches('"').parse().ok());
                break;
            }
        }
        assert!(!addresses.is_empty(), "sluice exited before it was ready");
        if keep_stderr {
            std::thread::spawn(move || lines.for_each(drop));
        }
        Supervisor {
            child,
            state,
            dir,
            config,
            addresses,
            admin,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn addr(&self, name: &str) -> SocketAddr {
        self.addresses.iter().find(|(n, _)| n == name).unwrap().1
    }

    /// Runs a `sluice` command against this instance's state directory.
    pub fn cli(&self, args: &[&str]) -> Output {
        command(self.state.path()).args(args).output().unwrap()
    }

    pub fn status(&self) -> String {
        let output = self.cli(&["status", "-p", &self.pid().to_string()]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// (pid, state) of every worker, from `status`.
    pub fn workers(&self) -> Vec<(Option<u32>, String)> {
        table(&self.status(), "WORKER")
            .into_iter()
            .map(|cols| (cols[1].parse().ok(), cols[2].clone()))
            .collect()
    }

    /// A column of a row of a `status` table.
    pub fn status_value(&self, table_name: &str, row: &str, column: usize) -> String {
        table(&self.status(), table_name)
            .into_iter()
            .find(|cols| cols[0] == row)
            .unwrap()[column]
            .clone()
    }

    /// Asserts that listener `name` answers `GET /` with 200.
    pub async fn assert_serves(&self, name: &str) {
        let response = super::client()
            .get(format!("http://{}/", self.addr(name)))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "listener {name} does not serve");
    }

    /// Rewrites the config file (for reloads).
    pub fn rewrite(&self, yaml: &str) {
        std::fs::write(&self.config, yaml).unwrap();
    }

    /// Kills worker 0 with SIGKILL and waits up to `limit` until every
    /// worker runs again, none of them the killed one.
    pub fn kill_a_worker_and_wait_for_its_replacement(&self, limit: Duration) -> bool {
        let victim = self.workers()[0].0.unwrap();
        signal(victim, rustix::process::Signal::KILL);
        self.wait_for(limit, || {
            self.workers()
                .iter()
                .all(|(pid, state)| pid.is_some() && *pid != Some(victim) && state == "running")
        })
    }

    /// Waits for `condition` for up to `limit`.
    pub fn wait_for(&self, limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if condition() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        condition()
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        for (pid, _) in table(&status_or_empty(self), "WORKER")
            .into_iter()
            .map(|c| (c[1].parse::<u32>().ok(), ()))
        {
            if let Some(pid) = pid {
                signal(pid, rustix::process::Signal::KILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn status_or_empty(s: &Supervisor) -> String {
    let output = s.cli(&["status", "-p", &s.pid().to_string()]);
    String::from_utf8(output.stdout).unwrap_or_default()
}

/// Rows of a `status` table, split into columns.
pub fn table(status: &str, header: &str) -> Vec<Vec<String>> {
    status
        .lines()
        .skip_while(|l| !l.starts_with(header))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

pub fn signal(pid: u32, signal: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

pub fn alive(pid: u32) -> bool {
    rustix::process::Pid::from_raw(pid as i32)
        .is_some_and(|p| rustix::process::test_kill_process(p).is_ok())
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

/// Open descriptors of a process.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Counts of a client load: served and failed requests.
#[derive(Clone, Default)]
pub struct Load {
    pub stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub ok: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    pub failed: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Load {
    /// Four client loops on `url` (two keep-alive, two with a new connection
    /// per request) until [`Load::finish`].
    pub fn start(url: String) -> (Load, Vec<tokio::task::JoinHandle<()>>) {
        use std::sync::atomic::Ordering;
        let load = Load::default();
        let loops = (0..4)
            .map(|i| {
                let (url, load) = (url.clone(), load.clone());
                tokio::spawn(async move {
                    let http = if i % 2 == 0 {
                        super::client()
                    } else {
                        reqwest::Client::builder()
                            .no_proxy()
                            .pool_max_idle_per_host(0)
                            .build()
                            .unwrap()
                    };
                    while !load.stop.load(Ordering::Relaxed) {
                        let served = match http.get(&url).send().await {
                            Ok(r) => r.status() == 200 && r.text().await.is_ok(),
                            Err(_) => false,
                        };
                        let counter = if served { &load.ok } else { &load.failed };
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        (load, loops)
    }

    pub fn ok(&self) -> usize {
        self.ok.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn failed(&self) -> usize {
        self.failed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops the loops and waits for them.
    pub async fn finish(&self, loops: Vec<tokio::task::JoinHandle<()>>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for l in loops {
            l.await.unwrap();
        }
    }
}
