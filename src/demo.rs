//! `sluice demo`: three built-in HTTP backends on loopback and a balancer
//! in front of them, so a new user can see sluice work with one command.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::instance::Instance;

/// Names of the demo backends.
const BACKENDS: [&str; 3] = ["demo-1", "demo-2", "demo-3"];

/// Starts the backends and the balancer on `port`, prints what to try,
/// and serves until Ctrl-C.
pub fn run(port: u16) -> anyhow::Result<()> {
    let addresses = start_backends()?;
    let dir = DemoDir::create()?;
    let path = dir.0.join("demo.yaml");
    std::fs::write(&path, demo_config(port, &addresses))?;
    let config =
        crate::config::load(&path).map_err(|errors| anyhow::anyhow!("demo config: {errors}"))?;
    let instance = Instance::start(&config)
        .map_err(|error| anyhow::anyhow!("{error:#}\n(another port: `sluice demo --port N`)"))?;
    let web = instance.address("web");
    println!("sluice demo: a balancer on http://{web} in front of three backends");
    for (name, addr) in BACKENDS.iter().zip(&addresses) {
        println!("  backend {name} on http://{addr}");
    }
    println!("config used: {}\n", path.display());
    println!("Try:");
    println!("  curl http://{web}/                       # round-robin: run it a few times");
    println!(
        "  curl -H 'x-user: ann' http://{web}/sticky/  # consistent-hash on x-user: same backend every time"
    );
    println!("  curl http://{web}/api/hello              # least-connections");
    println!("  curl --path-as-is http://{web}/x/../api/  # paths are normalised before routing");
    println!("\nCtrl-C to stop.");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let mut terminate =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                interrupted = tokio::signal::ctrl_c() => interrupted,
                _ = terminate.recv() => Ok(()),
            }
        })?;
    instance.stop();
    Ok(())
}

/// The demo's config folder in the temp dir, removed however the demo
/// ends (stopped, or failed to start).
struct DemoDir(std::path::PathBuf);

impl DemoDir {
    fn create() -> std::io::Result<DemoDir> {
        let dir = std::env::temp_dir().join(format!("sluice-demo-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(DemoDir(dir))
    }
}

impl Drop for DemoDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts the demo backends on their own thread (they must answer health
/// checks while the balancer starts) and returns their addresses.
fn start_backends() -> anyhow::Result<Vec<SocketAddr>> {
    let (ready, addresses) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("sluice-demo-backends".into())
        .spawn(move || {
            let serve = async {
                let mut bound = Vec::new();
                for name in BACKENDS {
                    let listener = TcpListener::bind("127.0.0.1:0").await?;
                    bound.push(listener.local_addr()?);
                    tokio::spawn(serve_backend(listener, name));
                }
                anyhow::Ok(bound)
            };
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(error) => {
                    let _ = ready.send(Err(error.into()));
                    return;
                }
            };
            rt.block_on(async {
                let _ = ready.send(serve.await);
                std::future::pending::<()>().await;
            });
        })?;
    addresses.recv()?
}

/// The balancer config for the demo, in the same YAML a user writes.
pub fn demo_config(port: u16, backends: &[SocketAddr]) -> String {
    let mut yaml = String::from("upstreams:\n");
    for (name, addr) in BACKENDS.iter().zip(backends) {
        yaml.push_str(&format!("  - id: {name}\n    address: {addr}\n    health_check: {{ kind: http, path: /healthz }}\n"));
    }
    let ids = BACKENDS.join(", ");
    yaml.push_str(&format!(
        "listeners:\n  - name: web\n    listen: 127.0.0.1:{port}\n    mode: http\n    headers:\n      - key: x-request-id\n        value: $request_id\n    rules:\n      - path: /api\n        upstreams: [{ids}]\n        strategy: least-connections\n      - path: /sticky/*\n        upstreams: [{ids}]\n        strategy: consistent-hash\n        hash_key: header:x-user\n      - path: /*\n        upstreams: [{ids}]\n"
    ));
    yaml
}

async fn serve_backend(listener: TcpListener, name: &'static str) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| async move {
                Ok::<_, Infallible>(answer(name, &req))
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer(name: &str, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let forwarded = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let body = format!(
        "{name} answered {} {} (x-forwarded-for: {forwarded}, x-request-id: {id})\n",
        req.method(),
        req.uri()
    );
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(
        "x-backend",
        http::HeaderValue::from_static(match name {
            "demo-1" => "demo-1",
            "demo-2" => "demo-2",
            _ => "demo-3",
        }),
    );
    response
}
