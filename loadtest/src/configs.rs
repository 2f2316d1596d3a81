//! The equivalent configs of the backend, sluice, nginx and HAProxy, as
//! text, so what each target runs is in one place and testable.

use std::path::Path;

/// Connections every target must accept at once: the idle scenario holds
/// 10,000 client connections plus the proxies' upstream connections.
pub const MAX_CONNECTIONS: u32 = 20_000;
const _: () = assert!(MAX_CONNECTIONS as usize >= 2 * crate::http_idle::CONNECTIONS);
/// The open-files limit the harness asks for, which the servers inherit:
/// a proxy holds two descriptors per proxied connection.
pub const OPEN_FILES: u64 = 2 * MAX_CONNECTIONS as u64 + 1024;

/// How many worker processes (or threads) each server runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workers {
    /// One: the per-core efficiency figures.
    One,
    /// Each server's own default for the machine (`workers: auto`,
    /// `worker_processes auto`, HAProxy's default thread count).
    Auto,
}

/// sluice: no health checks, one HTTP listener routing everything to the backend.
pub fn sluice(workers: Workers, port: u16, backend: u16) -> String {
    let workers = match workers {
        Workers::One => "1",
        Workers::Auto => "auto",
    };
    format!(
        "workers: {workers}\n\
         defaults:\n  max_connections: {MAX_CONNECTIONS}\n  health_check:\n    kind: none\n\
         upstreams:\n  - id: backend\n    address: 127.0.0.1:{backend}\n\
         listeners:\n  - name: http\n    listen: 127.0.0.1:{port}\n    mode: http\n\
         \x20   rules:\n      - name: all\n        path: /*\n        upstreams: [backend]\n"
    )
}

/// The `server` block of the backend: `200 ok` to everything.
pub fn backend_servers(port: u16) -> String {
    format!(
        "  server {{\n    listen 127.0.0.1:{port} reuseport;\n\
           location / {{ return 200 \"ok\"; }}\n  }}\n"
    )
}

/// The `upstream` and `server` blocks of nginx as a reverse proxy:
/// upstream keep-alive 64, HTTP/1.1 to the backend.
pub fn nginx_proxy_servers(port: u16, backend: u16) -> String {
    format!(
        "  upstream backend {{\n    server 127.0.0.1:{backend};\n    keepalive 64;\n\
           keepalive_requests 1000000;\n  }}\n\
         server {{\n    listen 127.0.0.1:{port};\n\
           location / {{\n      proxy_pass http://backend;\n\
             proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n    }}\n  }}\n"
    )
}

/// A whole nginx config in the foreground, running from folder `d`, with no
/// access log and `servers` in `http`; its workers may open `open_files`.
pub fn nginx(workers: Workers, open_files: u64, d: &Path, servers: &str) -> String {
    let workers = match workers {
        Workers::One => "1",
        Workers::Auto => "auto",
    };
    format!(
        "daemon off;\nworker_processes {workers};\nworker_rlimit_nofile {open_files};\n\
         pid {pid};\nerror_log {err} warn;\n\
         events {{ worker_connections {MAX_CONNECTIONS}; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/tmp;\n\
           proxy_temp_path {d}/tmp;\n  fastcgi_temp_path {d}/tmp;\n\
           uwsgi_temp_path {d}/tmp;\n  scgi_temp_path {d}/tmp;\n\
           keepalive_requests 1000000;\n{servers}}}\n",
        pid = d.join("nginx.pid").display(),
        err = d.join("error.log").display(),
        d = d.display(),
    )
}

/// HAProxy in HTTP mode with `http-reuse always`: one thread, or its
/// default. It refuses to start unless it has two descriptors per
/// `maxconn` (client and server side), so with `open_files` below
/// [`OPEN_FILES`] its `maxconn` is what that limit allows.
pub fn haproxy(workers: Workers, open_files: u64, port: u16, backend: u16) -> String {
    let threads = match workers {
        Workers::One => "  nbthread 1\n",
        Workers::Auto => "",
    };
    let maxconn = haproxy_maxconn(open_files);
    format!(
        "global\n{threads}  maxconn {maxconn}\n\n\
         defaults\n  mode http\n  maxconn {MAX_CONNECTIONS}\n  timeout connect 2s\n\
         \x20 timeout client 60s\n  timeout server 60s\n  option http-keep-alive\n\
         \x20 http-reuse always\n\n\
         frontend fe\n  bind 127.0.0.1:{port}\n  default_backend be\n\n\
         backend be\n  server s1 127.0.0.1:{backend}\n"
    )
}

/// The most connections HAProxy starts with under `open_files`
/// descriptors, at most [`MAX_CONNECTIONS`]: it needs two per connection
/// plus its own (14 with one thread, more per thread), for which 256 are
/// left.
pub fn haproxy_maxconn(open_files: u64) -> u64 {
    (open_files.saturating_sub(256) / 2).min(MAX_CONNECTIONS.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_counts_follow_the_profile() {
        assert!(sluice(Workers::One, 1, 2).starts_with("workers: 1\n"));
        assert!(sluice(Workers::Auto, 1, 2).starts_with("workers: auto\n"));
        let d = Path::new("/tmp/x");
        assert!(nginx(Workers::One, OPEN_FILES, d, "").contains("worker_processes 1;"));
        assert!(nginx(Workers::Auto, OPEN_FILES, d, "").contains("worker_processes auto;"));
        assert!(haproxy(Workers::One, OPEN_FILES, 1, 2).contains("nbthread 1"));
        assert!(!haproxy(Workers::Auto, OPEN_FILES, 1, 2).contains("nbthread"));
    }

    #[test]
    fn every_target_allows_ten_thousand_idle_connections() {
        let limit = format!("{MAX_CONNECTIONS}");
        assert!(sluice(Workers::One, 1, 2).contains(&format!("max_connections: {limit}")));
        let n = nginx(Workers::One, OPEN_FILES, Path::new("/tmp/x"), "");
        assert!(n.contains(&format!("worker_connections {limit};")));
        assert!(n.contains(&format!("worker_rlimit_nofile {OPEN_FILES};")));
        let h = haproxy(Workers::One, OPEN_FILES, 1, 2);
        assert!(h.contains(&format!("global\n  nbthread 1\n  maxconn {limit}\n")));
    }

    #[test]
    fn haproxy_maxconn_fits_the_open_files_limit() {
        assert_eq!(haproxy_maxconn(OPEN_FILES), u64::from(MAX_CONNECTIONS));
        assert_eq!(haproxy_maxconn(20_000), 9_872);
        assert_eq!(haproxy_maxconn(10), 0);
    }
}
