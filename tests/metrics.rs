//! The admin endpoint of the real binary: `/metrics` passes `promtool check
//! metrics` after every kind of traffic, counts are exact across two
//! worker processes, and no counter goes back when a worker is killed.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::metrics::{get, promtool_check, samples, scrape, tool, value};
use common::processes::{Supervisor, command, signal};
use common::{Backend, client, raw_exchange, status_of, upstreams_yaml};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One TCP connection through a passthrough listener to an HTTP backend.
async fn tcp_exchange(addr: SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /tcp HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

/// A client that opens a new connection per request (spreads requests
/// over the workers).
fn fresh_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_after_every_kind_of_traffic() {
    let app = Backend::start("app").await;
    let dead = Backend::dead("dead");
    let public = tempfile::tempdir().unwrap();
    std::fs::write(public.path().join("hello.txt"), "hello").unwrap();
    let yaml = format!(
        "workers: 1\nadmin:\n  listen: 127.0.0.1:0\n{}listeners:
  - name: web
    listen: 127.0.0.1:0
    rules:
      - path: /api
        name: 'api \"v1\"'
        upstreams: [dead, app]
        strategy: round-robin
      - path: /assets/*
        public: {}
      - path: /status/*
        upstreams: [app]
      - path: /down
        upstreams: [dead]
  - name: db
    listen: 127.0.0.1:0
    mode: tcp
    upstreams: [app]
",
        upstreams_yaml(&[&app, &dead]),
        public.path().display()
    );
    let sluice = Supervisor::run(&yaml);
    let admin = sluice
        .admin
        .expect("the ready line names the admin address");
    let web = sluice.addr("web");
    let http = client();
    for (path, status) in [
        ("/status/200", 200),
        ("/status/404", 404),
        ("/status/500", 500),
        ("/nothing", 404),
        ("/down", 502),
        ("/assets/hello.txt", 200),
        ("/api", 200),
        ("/api", 200),
        ("/api", 200),
        ("/api", 200),
    ] {
        let response = http
            .get(format!("http://{web}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{path}");
        response.bytes().await.unwrap();
    }
    assert!(
        tcp_exchange(sluice.addr("db"))
            .await
            .contains("app GET /tcp")
    );

    let (status, content_type, text) = get(admin, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let s = samples(&text);
    let requests = |rule, upstream, code| {
        let labels = [
            ("listener", "web"),
            ("rule", rule),
            ("upstream", upstream),
            ("code", code),
        ];
        value(&s, "sluice_http_requests_total", &labels)
    };
    assert_eq!(requests("/status/*", "app", "2xx"), 1.0);
    assert_eq!(requests("/status/*", "app", "4xx"), 1.0);
    assert_eq!(requests("/status/*", "app", "5xx"), 1.0);
    assert_eq!(requests("", "", "4xx"), 1.0, "404 without a rule");
    assert_eq!(
        requests("/down", "dead", "5xx"),
        1.0,
        "502 of a dead upstream"
    );
    assert_eq!(requests("/assets/*", "", "2xx"), 1.0, "static file");
    assert_eq!(requests("/status/*", "", "5xx"), 0.0);
    let retries = s["sluice_http_retries_total{rule=\"api \\\"v1\\\"\"}"];
    assert!(retries >= 1.0, "round robin over [dead, app] retried");
    let app_route = [("listener", "web"), ("rule", "/status/*")];
    let count = value(&s, "sluice_http_request_duration_seconds_count", &app_route);
    assert_eq!(count, 3.0);
    let mut inf = app_route.to_vec();
    inf.push(("le", "+Inf"));
    assert_eq!(
        value(&s, "sluice_http_request_duration_seconds_bucket", &inf),
        3.0
    );
    let db = [("listener", "db")];
    assert_eq!(value(&s, "sluice_listener_connections_total", &db), 1.0);
    let dead_errors = value(
        &s,
        "sluice_upstream_connect_errors_total",
        &[("upstream", "dead")],
    );
    assert!(dead_errors >= 2.0);
    let dead_attempts = value(
        &s,
        "sluice_upstream_request_duration_seconds_count",
        &[("upstream", "dead")],
    );
    assert_eq!(dead_attempts, dead_errors, "failed connects are attempts");
    assert_eq!(value(&s, "sluice_upstream_up", &[("upstream", "app")]), 1.0);
    assert_eq!(value(&s, "sluice_workers", &[]), 1.0);
    let version = [("version", env!("CARGO_PKG_VERSION"))];
    assert_eq!(value(&s, "sluice_build_info", &version), 1.0);
    assert_eq!(
        value(&s, "sluice_pool_panic", &[("listener", "db"), ("rule", "")]),
        0.0
    );
    if let Some(promtool) = tool("promtool") {
        promtool_check(&promtool, &text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_endpoint_serves_status_and_healthz_and_only_get() {
    let app = Backend::start("app").await;
    let yaml = format!(
        "workers: 2\nadmin: {{ listen: 127.0.0.1:0 }}\n{}listeners:
  - name: web
    listen: 127.0.0.1:0
    rules: [{{ path: /*, upstreams: [app] }}]
",
        upstreams_yaml(&[&app])
    );
    let sluice = Supervisor::run(&yaml);
    let admin = sluice.admin.unwrap();
    assert_eq!(
        get(admin, "/healthz").await,
        (200, "text/plain; charset=utf-8".into(), "ok\n".into())
    );
    let (status, content_type, body) = get(admin, "/status").await;
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let workers = json["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2);
    for worker in workers {
        assert!(worker["pid"].as_u64().is_some(), "{worker}");
        assert_eq!(worker["state"], "running");
    }
    let listener = &json["listeners"][0];
    assert_eq!(listener["name"], "web");
    assert_eq!(listener["listen"], sluice.addr("web").to_string());
    assert_eq!(listener["mode"], "http");
    assert_eq!(listener["connections_active"], 0);
    let upstream = &json["upstreams"][0];
    assert_eq!(upstream["id"], "app");
    assert_eq!(upstream["address"], app.addr.to_string());
    assert_eq!(upstream["up"], true);
    assert_eq!(upstream["connections_active"], 0);

    let http = client();
    let head = http
        .head(format!("http://{admin}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert!(head.bytes().await.unwrap().is_empty());
    let post = http
        .post(format!("http://{admin}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 405);
    assert_eq!(post.headers()["allow"], "GET, HEAD");
    assert_eq!(get(admin, "/nope").await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_are_exact_over_two_workers_and_survive_a_killed_worker() {
    const N: usize = 40;
    const M: usize = 15;
    let app = Backend::start("app").await;
    let tcp_app = Backend::start("tcp-app").await;
    let yaml = format!(
        "workers: 2\nadmin: {{ listen: 127.0.0.1:0 }}\n{}listeners:
  - name: web
    listen: 127.0.0.1:0
    rules: [{{ path: /*, upstreams: [app] }}]
  - name: db
    listen: 127.0.0.1:0
    mode: tcp
    upstreams: [tcp-app]
",
        upstreams_yaml(&[&app, &tcp_app])
    );
    let sluice = Supervisor::run(&yaml);
    let admin = sluice.admin.unwrap();
    let http = fresh_client();
    for i in 0..N {
        let url = format!("http://{}/n/{i}", sluice.addr("web"));
        let response = http.get(url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap();
    }
    for _ in 0..M {
        assert!(tcp_exchange(sluice.addr("db")).await.contains("tcp-app"));
    }
    let exact = |text: &str| {
        let s = samples(text);
        let http = [
            ("listener", "web"),
            ("rule", "/*"),
            ("upstream", "app"),
            ("code", "2xx"),
        ];
        let route = [("listener", "web"), ("rule", "/*")];
        [
            value(&s, "sluice_http_requests_total", &http) == N as f64,
            value(&s, "sluice_http_request_duration_seconds_count", &route) == N as f64,
            value(
                &s,
                "sluice_listener_connections_total",
                &[("listener", "web")],
            ) == N as f64,
            value(&s, "sluice_upstream_requests_total", &[("upstream", "app")]) == N as f64,
            value(
                &s,
                "sluice_listener_connections_total",
                &[("listener", "db")],
            ) == M as f64,
            value(
                &s,
                "sluice_upstream_requests_total",
                &[("upstream", "tcp-app")],
            ) == M as f64,
        ]
    };
    let mut before = String::new();
    for _ in 0..250 {
        before = scrape(admin).await;
        if exact(&before).iter().all(|ok| *ok) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        exact(&before),
        [true; 6],
        "counters after traffic:\n{before}"
    );

    let status: serde_json::Value = serde_json::from_str(&get(admin, "/status").await.2).unwrap();
    let victim = status["workers"][0]["pid"].as_u64().unwrap() as u32;
    signal(victim, rustix::process::Signal::KILL);
    let mut after = String::new();
    for _ in 0..500 {
        let status: serde_json::Value =
            serde_json::from_str(&get(admin, "/status").await.2).unwrap();
        after = scrape(admin).await;
        let s = samples(&after);
        let worker = &status["workers"][0];
        if value(&s, "sluice_worker_restarts_total", &[]) == 1.0
            && value(&s, "sluice_workers", &[]) == 2.0
            && worker["state"] == "running"
            && worker["pid"]
                .as_u64()
                .is_some_and(|pid| pid != u64::from(victim))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after_samples = samples(&after);
    assert_eq!(
        value(&after_samples, "sluice_worker_restarts_total", &[]),
        1.0
    );
    assert_eq!(value(&after_samples, "sluice_workers", &[]), 2.0);
    assert_eq!(
        exact(&after),
        [true; 6],
        "counters after the kill:\n{after}"
    );
    for (key, old) in samples(&before) {
        let name = key.split('{').next().unwrap();
        let monotonic = ["_total", "_bucket", "_count", "_sum"]
            .iter()
            .any(|suffix| name.ends_with(suffix));
        if monotonic {
            let new = after_samples[&key];
            assert!(new >= old, "{key} went from {old} to {new}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_moves_the_admin_endpoint_or_is_rejected_when_it_cannot_bind() {
    let app = Backend::start("app").await;
    let config = |admin: &str| {
        format!(
            "workers: 1\nadmin: {{ listen: {admin} }}\n{}listeners:
  - name: web
    listen: 127.0.0.1:0
    rules: [{{ path: /*, upstreams: [app] }}]
",
            upstreams_yaml(&[&app])
        )
    };
    let sluice = Supervisor::run(&config("127.0.0.1:0"));
    let old = sluice.admin.unwrap();
    let pid = sluice.pid().to_string();

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    sluice.rewrite(&config(&taken.local_addr().unwrap().to_string()));
    let refused = sluice.cli(&["reload", "-p", &pid]);
    assert!(
        !refused.status.success(),
        "a taken admin port rejects the reload"
    );
    let message = String::from_utf8_lossy(&refused.stderr).into_owned()
        + &String::from_utf8_lossy(&refused.stdout);
    assert!(message.contains("admin endpoint"), "{message}");
    assert!(
        message.ends_with("reload refused; the running config stays\n"),
        "{message}"
    );
    let s = samples(&scrape(old).await);
    let failure = [("result", "failure")];
    assert_eq!(value(&s, "sluice_config_reloads_total", &failure), 1.0);

    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    sluice.rewrite(&config(&free.to_string()));
    let moved = sluice.cli(&["reload", "-p", &pid]);
    assert!(
        moved.status.success(),
        "{}",
        String::from_utf8_lossy(&moved.stdout)
    );
    assert_eq!(get(free, "/healthz").await.0, 200);
    let s = samples(&scrape(free).await);
    let success = [("result", "success")];
    assert_eq!(value(&s, "sluice_config_reloads_total", &success), 1.0);
    assert!(
        client()
            .get(format!("http://{old}/healthz"))
            .send()
            .await
            .is_err(),
        "the old admin address is closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_moved_by_a_reload_counts_on_from_where_it_was() {
    let old = Backend::start("old").await;
    let new = Backend::start("new").await;
    // The new address's first check takes a second: the reload waits for
    // it, and requests meanwhile still go to the old address.
    let config = |backend: &Backend, check: &str| {
        format!(
            "workers: 1\nadmin: {{ listen: 127.0.0.1:0 }}
upstreams:
  - id: app
    address: {}
    health_check: {check}
listeners:
  - name: web
    listen: 127.0.0.1:0
    rules: [{{ path: /*, upstreams: [app] }}]
",
            backend.addr
        )
    };
    let sluice = Supervisor::run(&config(&old, "{ kind: none }"));
    let admin = sluice.admin.unwrap();
    let http = fresh_client();
    let url = format!("http://{}/", sluice.addr("web"));
    let app = [("upstream", "app")];
    let counted = |text: &str| {
        let s = samples(text);
        (
            value(&s, "sluice_upstream_requests_total", &app),
            value(&s, "sluice_upstream_request_duration_seconds_count", &app),
        )
    };
    let send = |expected: &'static str| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let body = http.get(url).send().await.unwrap().text().await.unwrap();
            assert!(body.starts_with(expected), "{body}");
        }
    };
    let settle = |n: f64| async move {
        let mut text = String::new();
        for _ in 0..250 {
            text = scrape(admin).await;
            if counted(&text) == (n, n) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        text
    };
    for _ in 0..3 {
        send("old").await;
    }
    let before = settle(3.0).await;
    assert_eq!(counted(&before), (3.0, 3.0), "{before}");

    sluice.rewrite(&config(
        &new,
        "{ kind: http, path: /slow/1000, timeout: 5s }",
    ));
    let reload = {
        let mut command = command(sluice.state.path());
        command.args(["reload", "-p", &sluice.pid().to_string()]);
        tokio::task::spawn_blocking(move || command.output().unwrap())
    };
    // The reload is under way once the new address's first check arrives
    // (its slot was set up before that check was started).
    for _ in 0..250 {
        if !new.seen().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !new.seen().is_empty(),
        "the reload never checked the new address"
    );
    let during = scrape(admin).await;
    assert_eq!(
        counted(&during),
        (3.0, 3.0),
        "the moved upstream's series do not drop:\n{during}"
    );
    for _ in 0..2 {
        send("old").await;
    }
    let reload = reload.await.unwrap();
    assert!(
        reload.status.success(),
        "{}",
        String::from_utf8_lossy(&reload.stdout)
    );
    for _ in 0..2 {
        send("new").await;
    }
    let later = settle(7.0).await;
    assert_eq!(
        counted(&later),
        (7.0, 7.0),
        "requests to the old address during the reload count too:\n{later}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_to_requests_that_never_reached_a_rule_are_counted() {
    let app = Backend::start("app").await;
    let yaml = format!(
        "workers: 1\nadmin: {{ listen: 127.0.0.1:0 }}\n{}listeners:
  - name: web
    listen: 127.0.0.1:0
    header_timeout: 300ms
    rules: [{{ path: /*, upstreams: [app] }}]
",
        upstreams_yaml(&[&app])
    );
    let sluice = Supervisor::run(&yaml);
    let web = sluice.addr("web");
    let quiet = Duration::from_secs(2);
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(40_000)
    );
    let cases: [(&[u8], u16); 4] = [
        (b"GARBAGE\r\n\r\n", 400),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            400,
        ),
        (big.as_bytes(), 431),
        (b"GET / HTTP/1.1\r\nHost: x\r\n", 408),
    ];
    for (request, status) in cases {
        let answer = raw_exchange(web, request, quiet).await;
        assert_eq!(status_of(&answer), status, "{answer}");
    }
    let own = [
        ("listener", "web"),
        ("rule", ""),
        ("upstream", ""),
        ("code", "4xx"),
    ];
    let route = [("listener", "web"), ("rule", "")];
    let counted = |text: &str| {
        let s = samples(text);
        (
            value(&s, "sluice_http_requests_total", &own),
            value(&s, "sluice_http_request_duration_seconds_count", &route),
        )
    };
    let mut text = String::new();
    for _ in 0..250 {
        text = scrape(sluice.admin.unwrap()).await;
        if counted(&text) == (4.0, 4.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(counted(&text), (4.0, 4.0), "{text}");
}
