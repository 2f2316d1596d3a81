//! sluice, nginx and HAProxy as plain TCP proxies in front of one backend:
//! one worker or thread each, no health checks, everything else at its
//! defaults, each on a free loopback port with its config in `dir`.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::process::spawn;
use crate::targets::{Target, find_tool, free_port};

/// Where Debian's `libnginx-mod-stream` puts nginx's `stream {}` module.
const STREAM_MODULES: &[&str] = &[
    "/usr/lib/nginx/modules/ngx_stream_module.so",
    "/usr/share/nginx/modules/ngx_stream_module.so",
];

/// The nginx `stream` module, if installed as a loadable module.
pub fn nginx_stream_module() -> Option<PathBuf> {
    STREAM_MODULES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// sluice: `workers: 1`, `health_check: none`, one `mode: tcp` listener.
pub fn start_sluice(bin: &Path, dir: &Path, backend: u16) -> Result<Target> {
    let port = free_port()?;
    let conf = format!(
        "workers: 1\n\
         defaults:\n  health_check:\n    kind: none\n\
         upstreams:\n  - id: backend\n    address: 127.0.0.1:{backend}\n\
         listeners:\n  - name: tcp\n    listen: 127.0.0.1:{port}\n    mode: tcp\n\
         \x20   upstreams: [backend]\n"
    );
    let path = dir.join("sluice-tcp.yaml");
    std::fs::write(&path, conf)?;
    let mut cmd = Command::new(bin);
    cmd.arg("run").arg("-c").arg(&path).env("RUST_LOG", "warn");
    spawn("sluice", port, cmd, dir, true)
}

/// nginx: 1 worker, `stream { server { proxy_pass backend; } }` with the
/// stream module loaded (its defaults: 16 KiB buffer, `tcp_nodelay on`).
pub fn start_nginx(dir: &Path, backend: u16) -> Result<Target> {
    let module = nginx_stream_module()
        .context("no nginx stream module (apt-get install libnginx-mod-stream)")?;
    let port = free_port()?;
    let d = dir.join("nginx-stream");
    std::fs::create_dir_all(&d)?;
    let conf = format!(
        "load_module {module};\n\
         daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 4096; }}\n\
         stream {{\n  upstream backend {{ server 127.0.0.1:{backend}; }}\n\
           server {{ listen 127.0.0.1:{port}; proxy_pass backend; }}\n}}\n",
        module = module.display(),
        d = d.display(),
    );
    let path = d.join("nginx.conf");
    std::fs::write(&path, conf)?;
    let mut cmd = Command::new(find_tool("nginx").context("nginx")?);
    cmd.arg("-p")
        .arg(&d)
        .arg("-e")
        .arg(d.join("error.log"))
        .arg("-c")
        .arg(&path);
    spawn("nginx", port, cmd, dir, true)
}

/// HAProxy: `nbthread 1`, `mode tcp`, in the foreground (`-db`).
pub fn start_haproxy(dir: &Path, backend: u16) -> Result<Target> {
    let port = free_port()?;
    let conf = format!(
        "global\n  nbthread 1\n  maxconn 4000\n\n\
         defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 60s\n\
         \x20 timeout server 60s\n\n\
         frontend fe\n  bind 127.0.0.1:{port}\n  default_backend be\n\n\
         backend be\n  server s1 127.0.0.1:{backend}\n"
    );
    let path = dir.join("haproxy-tcp.cfg");
    std::fs::write(&path, conf)?;
    let mut cmd = Command::new(find_tool("haproxy").context("haproxy")?);
    cmd.arg("-db").arg("-f").arg(&path);
    spawn("haproxy", port, cmd, dir, true)
}
