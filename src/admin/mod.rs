//! The admin endpoint: `GET /metrics` (Prometheus), `GET /status` (JSON)
//! and `GET /healthz`, served by the supervisor (never by a worker).
//!
//! - [`metrics`]: metric names, HELP texts, the Prometheus exposition.
//! - [`status`]: the `/status` JSON document.
//!
//! Both render from a [`Snapshot`]: the current config, its counter slots,
//! the counter region and the supervisor's view of its workers. The server
//! itself ([`AdminHandle::start`]) is a small hyper HTTP/1 server on the
//! supervisor's thread with its own connection limit and timeouts, so a
//! flood on the data ports (served by the workers) or on the admin port
//! itself cannot take the supervisor down; it asks a [`Renderer`] for each
//! page, which in the supervisor goes through its event loop.

pub mod metrics;
pub mod status;

use std::cell::Cell;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::watch;

use crate::config::Config;
use crate::counters::Region;
use crate::runtime::slots::Slots;

/// Admin connections served at once; more are closed at once.
pub const MAX_CONNECTIONS: usize = 32;
/// Time to read a request head (also bounds an idle keep-alive wait).
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest life of one admin connection.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// Everything the admin pages are rendered from.
#[derive(Debug)]
pub struct Snapshot<'a> {
    /// The running config.
    pub config: &'a Config,
    /// Its counter slots.
    pub slots: &'a Slots,
    /// The shared counters.
    pub region: &'a Region,
    /// Bound address of each listener, by name (port 0 resolved).
    pub bound: Vec<(&'a str, SocketAddr)>,
    /// Every worker index.
    pub workers: Vec<WorkerInfo>,
    /// Config reloads (succeeded, failed).
    pub reloads: (u64, u64),
    /// The config generation.
    pub generation: u64,
}

/// One worker as the admin pages show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkerInfo {
    /// Its process id, if it is running.
    pub pid: Option<u32>,
    /// `running`, `starting` or `restarting`.
    pub state: &'static str,
    /// How often this worker index was replaced.
    pub restarts: u64,
}

/// A page the admin endpoint renders on request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Page {
    /// `/metrics`.
    Metrics,
    /// `/status`.
    Status,
}

impl Snapshot<'_> {
    /// Renders `page`.
    pub fn render(&self, page: Page) -> String {
        match page {
            Page::Metrics => metrics::render(self),
            Page::Status => status::render(self),
        }
    }
}

/// Produces a rendered page (`None`: the owner is shutting down).
pub type Renderer = Rc<dyn Fn(Page) -> Pin<Box<dyn Future<Output = Option<String>>>>>;

/// Why the admin endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The address could not be bound.
    /// (The cause is in the message, not a `source`: error reports that
    /// print the chain would say it twice.)
    #[error("admin endpoint: cannot bind {address}: {cause}")]
    Bind {
        /// The configured address.
        address: SocketAddr,
        /// The cause.
        cause: std::io::Error,
    },
}

/// A running admin endpoint; dropping it stops accepting.
#[derive(Debug)]
pub struct AdminHandle {
    /// The configured address.
    pub configured: SocketAddr,
    /// The bound address (port 0 resolved).
    pub local: SocketAddr,
    _stop: watch::Sender<bool>,
}

/// Binds the admin address (warning when it is not loopback).
pub fn bind(address: SocketAddr) -> Result<std::net::TcpListener, AdminError> {
    if !address.ip().is_loopback() {
        tracing::warn!(%address, "the admin endpoint listens beyond loopback; metrics and status are readable by anyone who can reach it");
    }
    crate::listener::bind(address, false).map_err(|cause| AdminError::Bind { address, cause })
}

impl AdminHandle {
    /// Serves `socket` (bound for `configured`) on the current `LocalSet`
    /// until the handle is dropped.
    pub fn start(
        configured: SocketAddr,
        socket: std::net::TcpListener,
        renderer: Renderer,
    ) -> std::io::Result<AdminHandle> {
        let local = socket.local_addr()?;
        socket.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(socket)?;
        let (stop, stopped) = watch::channel(false);
        tokio::task::spawn_local(serve(listener, renderer, stopped));
        Ok(AdminHandle {
            configured,
            local,
            _stop: stop,
        })
    }
}

/// Accepts admin connections until the handle's sender is dropped.
async fn serve(
    listener: tokio::net::TcpListener,
    renderer: Renderer,
    mut stopped: watch::Receiver<bool>,
) {
    let open = Rc::new(Cell::new(0usize));
    loop {
        let stop = async {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let Some((stream, _)) = crate::http::next_connection(&listener, stop).await else {
            break;
        };
        if open.get() >= MAX_CONNECTIONS {
            tracing::debug!("admin connection limit reached; closing a new connection");
            continue;
        }
        open.set(open.get() + 1);
        let _ = stream.set_nodelay(true);
        let renderer = Rc::clone(&renderer);
        let open = Rc::clone(&open);
        let mut stopped = stopped.clone();
        tokio::task::spawn_local(async move {
            let service = service_fn(move |req| respond(Rc::clone(&renderer), req));
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(16 * 1024)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = tokio::time::timeout(CONNECTION_LIFETIME, connection) => {}
                _ = stopped.changed() => {}
            }
            open.set(open.get() - 1);
        });
    }
}

/// Answers one admin request.
async fn respond(
    renderer: Renderer,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n"));
    }
    let (page, content_type) = match req.uri().path() {
        "/metrics" => (Page::Metrics, metrics::CONTENT_TYPE),
        "/status" => (Page::Status, "application/json"),
        "/healthz" => return Ok(plain(StatusCode::OK, "ok\n")),
        _ => {
            return Ok(plain(
                StatusCode::NOT_FOUND,
                "not found: try /metrics, /status or /healthz\n",
            ));
        }
    };
    Ok(match renderer(page).await {
        Some(body) => response(StatusCode::OK, content_type, body),
        None => plain(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n"),
    })
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = response(status, "text/plain; charset=utf-8", body.to_owned());
    if status == StatusCode::METHOD_NOT_ALLOWED {
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
    }
    response
}

fn response(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}
