//! The admin endpoint stays responsive while a data port is flooded, and
//! the in-process balancer (tests, `sluice demo`) serves it too.

mod common;

use std::time::{Duration, Instant};

use common::metrics::{get, samples, value};
use common::processes::Supervisor;
use common::{Backend, Proxy, upstreams_yaml};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_endpoint_answers_while_the_data_port_is_flooded() {
    let app = Backend::start("app").await;
    let yaml = format!(
        "workers: 1\nadmin: {{ listen: 127.0.0.1:0 }}\n{}listeners:
  - name: web
    listen: 127.0.0.1:0
    max_connections: 50
    header_timeout: 30s
    rules: [{{ path: /*, upstreams: [app] }}]
",
        upstreams_yaml(&[&app])
    );
    let sluice = Supervisor::run(&yaml);
    let admin = sluice.admin.unwrap();
    // Idle connections that never send a request: past max_connections,
    // the worker refuses them, and the accept queue fills up.
    let mut flood = Vec::new();
    for _ in 0..300 {
        if let Ok(Ok(stream)) = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(sluice.addr("web")),
        )
        .await
        {
            flood.push(stream);
        }
    }
    assert!(flood.len() >= 50, "only {} connections opened", flood.len());
    for path in ["/healthz", "/metrics", "/status"] {
        let started = Instant::now();
        assert_eq!(get(admin, path).await.0, 200, "{path}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{path} took {:?} under a flood",
            started.elapsed()
        );
    }
    let (_, _, text) = get(admin, "/metrics").await;
    let s = samples(&text);
    let web = [("listener", "web")];
    assert!(value(&s, "sluice_listener_connections_active", &web) <= 50.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_process_balancer_serves_the_admin_endpoint() {
    let app = Backend::start("app").await;
    let proxy = Proxy::start(&format!(
        "admin: {{ listen: 127.0.0.1:0 }}\n{}listeners:
  - name: web
    listen: 127.0.0.1:0
    rules: [{{ path: /*, upstreams: [app] }}]
",
        upstreams_yaml(&[&app])
    ));
    let admin = proxy.instance.admin.unwrap();
    let response = common::client()
        .get(proxy.url("web", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap();
    let (status, _, text) = get(admin, "/metrics").await;
    assert_eq!(status, 200);
    let s = samples(&text);
    let labels = [
        ("listener", "web"),
        ("rule", "/*"),
        ("upstream", "app"),
        ("code", "2xx"),
    ];
    assert_eq!(value(&s, "sluice_http_requests_total", &labels), 1.0);
    assert_eq!(value(&s, "sluice_workers", &[]), 1.0);
    assert_eq!(get(admin, "/healthz").await.0, 200);
}
