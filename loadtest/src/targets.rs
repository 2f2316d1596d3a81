//! Starting the backend and the targets under test, each on its own free
//! loopback port with its config in its own temporary folder, pinned or
//! not, and stopping them again.

use crate::configs::{self, Workers};
use crate::pin::{Pinning, Role};
use anyhow::{Context, Result, bail};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server the harness sends load to.
pub struct Target {
    /// Short name used in the table: `direct`, `sluice`, `nginx`, `haproxy`.
    pub name: &'static str,
    /// Where it listens.
    pub port: u16,
    /// PID whose process tree's CPU time and memory are measured; `None`
    /// for the direct backend (no proxy to measure).
    pub cpu_root: Option<u32>,
    /// The child process, killed on drop; `None` for the in-process backend.
    child: Option<Child>,
    /// Where the child's stderr goes.
    log: Option<PathBuf>,
}

impl Target {
    /// A target the caller started and saw ready (`child`, stopped on
    /// drop), or one it does not own (`None`, e.g. a backend reached
    /// directly): the TCP scenarios start and probe servers their own way.
    pub fn new(name: &'static str, port: u16, child: Option<Child>, measure: bool) -> Target {
        Target {
            name,
            port,
            cpu_root: child.as_ref().filter(|_| measure).map(Child::id),
            child,
            log: None,
        }
    }

    /// The URL the load generator loads.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Adds to a failed measurement's error whether the server has exited,
    /// and the end of its stderr, so a crash is not mistaken for load.
    pub fn explain(&self, error: anyhow::Error) -> anyhow::Error {
        let Some(pid) = self.cpu_root else {
            return error;
        };
        let running = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| Some(s[s.rfind(')')? + 2..].starts_with(|c| c != 'Z')))
            .unwrap_or(false);
        let log = self
            .log
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        error.context(format!(
            "{} (pid {pid}) is {}; its stderr ends: {}",
            self.name,
            if running {
                "running"
            } else {
                "no longer running"
            },
            tail.join(" / ")
        ))
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            stop(child, Duration::from_secs(3));
        }
    }
}

/// Stops a server: SIGTERM first, so nginx and sluice take their workers
/// with them, then SIGKILL if it is still running after `grace`.
pub fn stop(child: &mut Child, grace: Duration) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Whether `tool` is on the PATH (or in /usr/sbin, where nginx and haproxy live).
pub fn has_tool(tool: &str) -> bool {
    find_tool(tool).is_some()
}

/// The full path of `tool`, searching PATH plus the sbin directories.
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"])
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
}

/// A free loopback port (bound, read, released; racy but fine on a quiet box).
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(l.local_addr()?.port())
}

/// Waits until `GET /` on `port` answers `200`, or fails after 10 s
/// (including whatever `child` wrote to `log` if it exited).
fn wait_ready(name: &str, port: u16, child: &mut Child, log: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let err = std::fs::read_to_string(log).unwrap_or_default();
            bail!("{name} exited at start-up ({status}): {err}");
        }
        if probe(addr) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{name} did not answer 200 on port {port} within 10 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One `GET /` with `Connection: close`; true if the status line says 200.
fn probe(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        match s.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    buf[..n].starts_with(b"HTTP/1.1 200")
}

/// Spawns `cmd` with stdout discarded and stderr to `stderr.log` in
/// folder `d`, waits until it serves, and wraps it as a target whose CPU
/// and memory are measured.
fn spawn(name: &'static str, port: u16, d: &Path, mut cmd: Command) -> Result<Target> {
    let log = d.join("stderr.log");
    let file =
        std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(file));
    let mut child = cmd.spawn().with_context(|| format!("starting {name}"))?;
    if let Err(e) = wait_ready(name, port, &mut child, &log) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e);
    }
    Ok(Target {
        name,
        port,
        cpu_root: Some(child.id()),
        child: Some(child),
        log: Some(log),
    })
}

/// The proxies under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The release binary of this workspace.
    Sluice,
    /// nginx as a reverse proxy.
    Nginx,
    /// HAProxy in HTTP mode.
    Haproxy,
}

impl Kind {
    /// Every proxy, in table order.
    pub const ALL: [Kind; 3] = [Kind::Sluice, Kind::Nginx, Kind::Haproxy];

    /// The target's name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Sluice => "sluice",
            Kind::Nginx => "nginx",
            Kind::Haproxy => "haproxy",
        }
    }

    /// Whether the tool it needs is installed (sluice's binary is checked at start).
    pub fn installed(self) -> bool {
        match self {
            Kind::Sluice => true,
            Kind::Nginx => has_tool("nginx"),
            Kind::Haproxy => has_tool("haproxy"),
        }
    }
}

/// How a scenario's servers are started: where their files go, how many
/// workers they run and on which CPUs.
#[derive(Debug, Clone, Copy)]
pub struct Launch<'a> {
    /// The sluice binary.
    pub sluice: &'a Path,
    /// The folder under which each server gets its own.
    pub dir: &'a Path,
    /// One worker each, or each server's default.
    pub workers: Workers,
    /// CPUs of the proxy and of the backend.
    pub pinning: Pinning,
    /// The open-files limit the servers inherit.
    pub open_files: u64,
}

impl Launch<'_> {
    /// A fresh folder for one server.
    fn folder(&self, name: &str, port: u16) -> Result<PathBuf> {
        let d = self.dir.join(format!("{name}-{port}"));
        std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        Ok(d)
    }

    /// The backend: nginx answering `200 ok` if installed (on the load CPU
    /// when pinned), else a small hyper server on a thread of this process.
    pub fn backend(&self) -> Result<Target> {
        let port = free_port()?;
        if has_tool("nginx") {
            let d = self.folder("backend", port)?;
            self.nginx(
                Role::Load,
                "backend",
                port,
                &d,
                &configs::backend_servers(port),
            )
        } else {
            start_hyper_backend(port)
        }
    }

    /// Starts one proxy in front of the backend on port `backend`.
    pub fn proxy(&self, kind: Kind, backend: u16) -> Result<Target> {
        let port = free_port()?;
        let d = self.folder(kind.name(), port)?;
        match kind {
            Kind::Sluice => {
                let path = d.join("sluice.yaml");
                std::fs::write(&path, configs::sluice(self.workers, port, backend))?;
                let mut cmd = self.pinning.command(Role::Proxy, self.sluice);
                cmd.arg("run").arg("-c").arg(&path).env("RUST_LOG", "warn");
                spawn("sluice", port, &d, cmd)
            }
            Kind::Nginx => {
                let servers = configs::nginx_proxy_servers(port, backend);
                self.nginx(Role::Proxy, "nginx", port, &d, &servers)
            }
            Kind::Haproxy => {
                let path = d.join("haproxy.cfg");
                std::fs::write(
                    &path,
                    configs::haproxy(self.workers, self.open_files, port, backend),
                )?;
                let bin = find_tool("haproxy").context("haproxy")?;
                let mut cmd = self.pinning.command(Role::Proxy, bin);
                cmd.arg("-db").arg("-f").arg(&path);
                spawn("haproxy", port, &d, cmd)
            }
        }
    }

    /// The backend, then the targets: the backend directly and every
    /// installed proxy in front of it. The backend is returned so it lives
    /// (and is stopped) with the targets.
    pub fn all(&self) -> Result<(Target, Vec<Target>)> {
        let backend = self.backend()?;
        let mut targets = vec![direct(&backend)];
        targets.extend(self.proxies(backend.port));
        Ok((backend, targets))
    }

    /// Every installed proxy that starts, printing and skipping the others.
    pub fn proxies(&self, backend: u16) -> Vec<Target> {
        Kind::ALL
            .into_iter()
            .filter(|k| k.installed())
            .filter_map(|k| match self.proxy(k, backend) {
                Ok(t) => Some(t),
                Err(e) => {
                    eprintln!("skipping {}: {e:#}", k.name());
                    None
                }
            })
            .collect()
    }

    /// nginx in the foreground from folder `d` with `servers` in `http`.
    fn nginx(
        &self,
        role: Role,
        name: &'static str,
        port: u16,
        d: &Path,
        servers: &str,
    ) -> Result<Target> {
        let conf_path = d.join("nginx.conf");
        std::fs::write(
            &conf_path,
            configs::nginx(self.workers, self.open_files, d, servers),
        )?;
        let mut cmd = self
            .pinning
            .command(role, find_tool("nginx").context("nginx")?);
        cmd.arg("-p").arg(d).arg("-c").arg(&conf_path);
        spawn(name, port, d, cmd)
    }
}

/// A hyper HTTP/1.1 server answering `200 ok` on a current-thread runtime
/// in a background thread (lives until the harness exits).
fn start_hyper_backend(port: u16) -> Result<Target> {
    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    let listener = TcpListener::bind(("127.0.0.1", port)).context("binding the backend")?;
    listener.set_nonblocking(true)?;
    std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("backend runtime: {e}");
                return;
            }
        };
        rt.block_on(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let svc = service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from_static(b"ok"),
                        )))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
    });
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !probe(addr) {
        if Instant::now() > deadline {
            bail!("the built-in backend did not answer on port {port}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Target {
        name: "backend",
        port,
        cpu_root: None,
        child: None,
        log: None,
    })
}

/// The backend itself as a target (no proxy in between).
pub fn direct(backend: &Target) -> Target {
    Target {
        name: "direct",
        port: backend.port,
        cpu_root: None,
        child: None,
        log: None,
    }
}
