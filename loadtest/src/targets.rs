//! Starting the backend and the targets under test, each on its own free
//! loopback port with its config in a temporary directory.

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
    /// PID whose process tree's CPU time is measured; `None` for the direct
    /// backend (no proxy to measure).
    pub cpu_root: Option<u32>,
    /// The child process, killed on drop; `None` for the in-process backend.
    child: Option<Child>,
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
        }
    }

    /// The URL wrk loads.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            // SIGTERM first so nginx and sluice take their workers with them.
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
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
/// (including whatever `child` printed if it exited).
fn wait_ready(name: &str, port: u16, child: &mut Child) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(e) = child.stderr.as_mut() {
                let _ = e.read_to_string(&mut err);
            }
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

/// Spawns `cmd` with stdout discarded and stderr piped, waits until it
/// serves, and wraps it as a target whose CPU is measured.
fn spawn(name: &'static str, port: u16, mut cmd: Command, measure: bool) -> Result<Target> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("starting {name}"))?;
    if let Err(e) = wait_ready(name, port, &mut child) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e);
    }
    // Stop piping stderr once it is up, so a chatty server cannot block on a full pipe.
    drop(child.stderr.take());
    let pid = child.id();
    Ok(Target {
        name,
        port,
        cpu_root: measure.then_some(pid),
        child: Some(child),
    })
}

/// The backend: nginx answering `200 ok` if installed, else a small hyper
/// server on a thread of this process.
pub fn start_backend(dir: &Path) -> Result<Target> {
    let port = free_port()?;
    if has_tool("nginx") {
        let servers = format!(
            "  server {{\n    listen 127.0.0.1:{port} reuseport;\n\
               location / {{ return 200 \"ok\"; }}\n  }}\n"
        );
        // The backend's CPU is not a figure, but record it for the direct row.
        start_nginx_with(&dir.join("backend"), "backend", port, &servers)
    } else {
        start_hyper_backend(port)
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
    })
}

/// The backend itself as a target (no proxy in between).
pub fn direct(backend: &Target) -> Target {
    Target {
        name: "direct",
        port: backend.port,
        cpu_root: None,
        child: None,
    }
}

/// sluice with one worker, no health checks, one HTTP listener routing
/// everything to the backend.
pub fn start_sluice(bin: &Path, dir: &Path, backend: u16) -> Result<Target> {
    let port = free_port()?;
    let conf = format!(
        "workers: 1\n\
         defaults:\n  health_check:\n    kind: none\n\
         upstreams:\n  - id: backend\n    address: 127.0.0.1:{backend}\n\
         listeners:\n  - name: http\n    listen: 127.0.0.1:{port}\n    mode: http\n\
         \x20   rules:\n      - name: all\n        path: /*\n        upstreams: [backend]\n"
    );
    let path = dir.join("sluice.yaml");
    std::fs::write(&path, conf)?;
    let mut cmd = Command::new(bin);
    cmd.arg("run").arg("-c").arg(&path);
    cmd.env("RUST_LOG", "warn");
    spawn("sluice", port, cmd, true)
}

/// nginx as a reverse proxy: 1 worker, upstream keep-alive 64, HTTP/1.1 to
/// the backend, no access log.
pub fn start_nginx(dir: &Path, backend: u16) -> Result<Target> {
    let port = free_port()?;
    let servers = format!(
        "  upstream backend {{\n    server 127.0.0.1:{backend};\n    keepalive 64;\n\
           keepalive_requests 1000000;\n  }}\n\
         server {{\n    listen 127.0.0.1:{port};\n\
           location / {{\n      proxy_pass http://backend;\n\
             proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n    }}\n  }}\n"
    );
    start_nginx_with(&dir.join("nginx-proxy"), "nginx", port, &servers)
}

/// Runs nginx in the foreground from its own folder `d`, with one worker,
/// no access log, and `servers` (upstream and server blocks) in `http`.
fn start_nginx_with(d: &Path, name: &'static str, port: u16, servers: &str) -> Result<Target> {
    std::fs::create_dir_all(d)?;
    let conf = format!(
        "daemon off;\nworker_processes 1;\npid {pid};\nerror_log {err} warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/tmp;\n\
           proxy_temp_path {d}/tmp;\n  fastcgi_temp_path {d}/tmp;\n\
           uwsgi_temp_path {d}/tmp;\n  scgi_temp_path {d}/tmp;\n\
           keepalive_requests 1000000;\n{servers}}}\n",
        pid = d.join("nginx.pid").display(),
        err = d.join("error.log").display(),
        d = d.display(),
    );
    let conf_path = d.join("nginx.conf");
    std::fs::write(&conf_path, conf)?;
    let mut cmd = Command::new(find_tool("nginx").context("nginx")?);
    cmd.arg("-p").arg(d).arg("-c").arg(&conf_path);
    spawn(name, port, cmd, true)
}

/// HAProxy in HTTP mode: 1 thread, `http-reuse always`, in the foreground.
pub fn start_haproxy(dir: &Path, backend: u16) -> Result<Target> {
    let port = free_port()?;
    let conf = format!(
        "global\n  nbthread 1\n  maxconn 4000\n\n\
         defaults\n  mode http\n  timeout connect 2s\n  timeout client 60s\n\
         \x20 timeout server 60s\n  option http-keep-alive\n  http-reuse always\n\n\
         frontend fe\n  bind 127.0.0.1:{port}\n  default_backend be\n\n\
         backend be\n  server s1 127.0.0.1:{backend}\n"
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, conf)?;
    let mut cmd = Command::new(find_tool("haproxy").context("haproxy")?);
    cmd.arg("-db").arg("-f").arg(&path);
    spawn("haproxy", port, cmd, true)
}
