//! The soak's backend: a hyper HTTP/1.1 server on a thread of the harness,
//! with the endpoints the connection mix needs. It closes keep-alive
//! connections idle for [`IDLE`], so that sluice's pooled upstream
//! connections go away once the load stops and descriptor counts can be
//! compared.
//!
//! - `GET /bytes/N`: N bytes (a response to abort in the middle);
//! - `POST /upload`: reads the whole body, answers its length;
//! - anything else: `ok`.

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use anyhow::{Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};

/// How long an idle keep-alive connection to the backend stays open.
pub const IDLE: Duration = Duration::from_secs(1);

/// Largest `/bytes/N` served.
const MAX_BYTES: usize = 16 << 20;

/// Starts the backend on a free loopback port; it lives until the harness
/// exits.
pub fn start() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding the soak backend")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let payload = Bytes::from(vec![b'x'; MAX_BYTES]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("backend runtime")?;
    std::thread::spawn(move || {
        runtime.block_on(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let payload = payload.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| answer(req, payload.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(IDLE)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    Ok(addr)
}

async fn answer(
    req: Request<Incoming>,
    payload: Bytes,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    if path == "/upload" {
        let mut body = req.into_body();
        let mut total = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            total += frame.data_ref().map_or(0, Bytes::len);
        }
        return Ok(Response::new(Full::new(Bytes::from(total.to_string()))));
    }
    let body = match path
        .strip_prefix("/bytes/")
        .and_then(|n| n.parse::<usize>().ok())
    {
        Some(n) => payload.slice(..n.min(MAX_BYTES)),
        None => Bytes::from_static(b"ok"),
    };
    Ok(Response::new(Full::new(body)))
}
