//! Shared pieces of the integration tests: real HTTP backends on
//! 127.0.0.1:0 that record what they receive, sluice started from YAML, and
//! a raw-socket client for exact bytes.

#![allow(dead_code)]

pub mod metrics;
pub mod processes;
#[path = "../sockets/mod.rs"]
pub mod sockets;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sluice::instance::Instance;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a backend saw of one request.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: HeaderMap,
    pub body_len: usize,
}

/// A real HTTP backend. Paths it understands:
/// - `/slow/<ms>`: answers after that many milliseconds;
/// - `/echo`: streams the request body back;
/// - `/download/<bytes>`: streams that many bytes;
/// - `/status/<code>`: answers that status;
/// - `/sink`: reads the body without keeping it, answers its length;
/// - `/ws`: WebSocket echo;
/// - anything else: 200 with body `<name> <method> <uri>`.
pub struct Backend {
    pub name: &'static str,
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Backend {
    pub async fn start(name: &'static str) -> Backend {
        Backend::start_with_delay(name, Duration::ZERO).await
    }

    /// A backend that waits `delay` before answering any request.
    pub async fn start_with_delay(name: &'static str, delay: Duration) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let log = Arc::clone(&log);
                        async move {
                            tokio::time::sleep(delay).await;
                            answer(name, log, req).await
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Backend {
            name,
            addr,
            seen,
            task: Some(task),
        }
    }

    /// A backend whose address refuses connections (bound, then closed).
    pub fn dead(name: &'static str) -> Backend {
        Backend {
            name,
            addr: sockets::refused_address(),
            seen: Arc::default(),
            task: None,
        }
    }

    /// Requests seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Stops accepting (the port then refuses connections).
    pub fn stop(self) {
        if let Some(task) = self.task {
            task.abort();
        }
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).boxed()
}

async fn answer(
    name: &'static str,
    log: Arc<Mutex<Vec<Seen>>>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let method = req.method().to_string();
    let uri = req.uri().to_string();
    let headers = req.headers().clone();
    let record = |body_len| {
        log.lock().unwrap().push(Seen {
            method: method.clone(),
            uri: uri.clone(),
            headers: headers.clone(),
            body_len,
        })
    };
    if path == "/ws" {
        record(0);
        return Ok(websocket(req));
    }
    if path == "/sink" {
        let mut body = req.into_body();
        let mut total = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            total += frame.data_ref().map_or(0, |d| d.len());
        }
        record(total);
        return Ok(with_name(name, Response::new(full(total.to_string()))));
    }
    if path == "/echo" {
        record(0);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
        let mut body = req.into_body();
        tokio::spawn(async move {
            while let Some(Ok(frame)) = body.frame().await {
                if let Ok(data) = frame.into_data()
                    && tx.send(Ok(Frame::data(data))).await.is_err()
                {
                    return;
                }
            }
        });
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        return Ok(with_name(
            name,
            Response::new(StreamBody::new(stream).boxed()),
        ));
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    record(body.len());
    if let Some(ms) = path.strip_prefix("/slow/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
    }
    if let Some(n) = path.strip_prefix("/download/") {
        let total: usize = n.parse().unwrap();
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let stream = futures_util::stream::unfold(total, move |left| {
            let chunk = chunk.clone();
            async move {
                if left == 0 {
                    return None;
                }
                let n = left.min(chunk.len());
                Some((Ok::<_, Infallible>(Frame::data(chunk.slice(..n))), left - n))
            }
        });
        let mut response = Response::new(StreamBody::new(stream).boxed());
        response
            .headers_mut()
            .insert("content-length", total.into());
        return Ok(with_name(name, response));
    }
    if let Some(code) = path.strip_prefix("/status/") {
        let mut response = Response::new(full(format!("{name} status {code}")));
        *response.status_mut() = StatusCode::from_u16(code.parse().unwrap()).unwrap();
        return Ok(with_name(name, response));
    }
    Ok(with_name(
        name,
        Response::new(full(format!("{name} {method} {uri}"))),
    ))
}

fn with_name(name: &'static str, mut response: Response<Body>) -> Response<Body> {
    response
        .headers_mut()
        .insert("x-backend", http::HeaderValue::from_static(name));
    response
}

fn websocket(mut req: Request<Incoming>) -> Response<Body> {
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    use tokio_tungstenite::tungstenite::protocol::Role;
    let key = req.headers().get("sec-websocket-key").cloned().unwrap();
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let upgraded = upgrade.await.unwrap();
        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            Role::Server,
            None,
        )
        .await;
        use futures_util::{SinkExt, StreamExt};
        while let Some(Ok(message)) = ws.next().await {
            if message.is_text() || message.is_binary() {
                ws.send(message).await.unwrap();
            }
        }
    });
    let mut response = Response::new(full(""));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    response
        .headers_mut()
        .insert("upgrade", "websocket".parse().unwrap());
    response
        .headers_mut()
        .insert("connection", "upgrade".parse().unwrap());
    response.headers_mut().insert(
        "sec-websocket-accept",
        derive_accept_key(key.as_bytes()).parse().unwrap(),
    );
    response
}

/// sluice started from a YAML config (written to a temp dir so relative
/// paths work), with its listeners on the ports they bound.
pub struct Proxy {
    pub instance: Instance,
    pub dir: tempfile::TempDir,
}

impl Proxy {
    /// Waits until the first listener has no open connection, failing
    /// with `what` after 5 s.
    pub async fn wait_until_no_connection_is_open(&self, what: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let active = || {
            self.instance
                .region
                .listener_total(0, sluice::counters::ListenerCounter::ConnectionsActive)
        };
        while active() > 0 {
            assert!(std::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn start(yaml: &str) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        Proxy::start_in(yaml, dir)
    }

    /// Starts with the config in `dir` (which may hold `public` folders).
    pub fn start_in(yaml: &str, dir: tempfile::TempDir) -> Proxy {
        let path = dir.path().join("sluice.yaml");
        std::fs::write(&path, yaml).unwrap();
        let config = sluice::config::load(&path).unwrap_or_else(|e| panic!("config invalid:\n{e}"));
        let instance = Instance::start(&config).unwrap();
        Proxy { instance, dir }
    }

    pub fn addr(&self, listener: &str) -> SocketAddr {
        self.instance.address(listener)
    }

    pub fn url(&self, listener: &str, path: &str) -> String {
        format!("http://{}{}", self.addr(listener), path)
    }
}

/// A YAML `upstreams:` section for these backends, ids = backend names,
/// with health checks off (these tests are not about health).
pub fn upstreams_yaml(backends: &[&Backend]) -> String {
    let mut yaml = String::from("upstreams:\n");
    for b in backends {
        yaml.push_str(&format!(
            "  - id: {}\n    address: {}\n    health_check: {{ kind: none }}\n",
            b.name, b.addr
        ));
    }
    yaml
}

/// An HTTP client that never uses a proxy from the environment.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// Sends exact bytes and reads until the server closes or goes quiet for
/// `quiet`; returns what came back.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8], quiet: Duration) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    read_until_quiet(&mut stream, quiet).await
}

/// Reads until close or `quiet` without data.
pub async fn read_until_quiet(stream: &mut TcpStream, quiet: Duration) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match tokio::time::timeout(quiet, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of the first response in raw text.
pub fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"))
}

/// Peak resident memory of this process so far, in bytes.
pub fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

/// For scripted backends: reads exactly one request head from `stream`,
/// byte by byte, so no byte of a body that follows is taken with it;
/// panics if the peer closes first.
pub async fn read_request_head(stream: &mut TcpStream) {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let byte = stream.read_u8().await;
        head.push(byte.expect("closed before the request head ended"));
    }
}

/// Sends exact bytes and reads one response: its head, then
/// `Content-Length` bytes (or until close when there is none).
pub async fn raw_response(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    exchange(&mut stream, request).await
}

/// Sends exact bytes on an open connection and reads one response (see
/// [`raw_response`]).
pub async fn exchange(stream: &mut TcpStream, request: &[u8]) -> String {
    stream.write_all(request).await.unwrap();
    read_response(stream).await
}

/// Reads one response from `stream` (see [`raw_response`]); gives up after
/// 10 s of silence.
pub async fn read_response(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&out[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if let Some(length) = length
                && out.len() >= end + 4 + length
            {
                out.truncate(end + 4 + length);
                break;
            }
        }
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
