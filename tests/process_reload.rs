//! Reload in place with worker processes: no failed request, new config
//! at once, open tunnels and WebSockets kept, broken configs refused.

mod common;

use common::processes::{Load, Supervisor, fd_count, signal};
use common::{Backend, client, upstreams_yaml};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

fn config(backend: &Backend, echo: std::net::SocketAddr, generation: usize) -> String {
    format!(
        "workers: 2\ndrain_timeout: 5s\n{}  - id: echo\n    address: {echo}\n    health_check: {{ kind: none }}\nlisteners:\n  - name: web\n    listen: 127.0.0.1:0\n    headers:\n      - key: x-gen\n        value: \"{generation}\"\n    rules:\n      - path: /*\n        upstreams: [app]\n  - name: tunnel\n    listen: 127.0.0.1:0\n    mode: tcp\n    upstreams: [echo]\n",
        upstreams_yaml(&[backend])
    )
}

fn gen_seen(backend: &Backend, uri: &str) -> String {
    let seen = backend.seen();
    let request = seen
        .iter()
        .rev()
        .find(|s| s.uri == uri)
        .unwrap_or_else(|| panic!("{uri} not seen"));
    request.headers["x-gen"].to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_reloads_under_load_lose_nothing() {
    let backend = Backend::start("app").await;
    let echo = common::sockets::echo_server().await;
    let sluice = Supervisor::run(&config(&backend, echo, 0));
    let web = sluice.addr("web");
    let fds_before = fd_count(sluice.pid());

    let mut tunnel = tokio::net::TcpStream::connect(sluice.addr("tunnel"))
        .await
        .unwrap();
    tunnel.write_all(b"before").await.unwrap();
    let mut buf = [0u8; 6];
    tunnel.read_exact(&mut buf).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{web}/ws"))
        .await
        .unwrap();
    let keep_alive = client();
    keep_alive
        .get(format!("http://{web}/warm"))
        .send()
        .await
        .unwrap();

    let (load, loops) = Load::start(format!("http://{web}/load"));

    let fresh = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    for generation in 1..=20 {
        sluice.rewrite(&config(&backend, echo, generation));
        let output = sluice.cli(&["reload", "-p", &sluice.pid().to_string()]);
        assert!(
            output.status.success(),
            "reload {generation}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(String::from_utf8_lossy(&output.stdout).contains("~ listener web"));
        for (http, label) in [(&keep_alive, "ka"), (&fresh, "new")] {
            let uri = format!("/check/{generation}/{label}");
            assert_eq!(
                http.get(format!("http://{web}{uri}"))
                    .send()
                    .await
                    .unwrap()
                    .status(),
                200
            );
            assert_eq!(
                gen_seen(&backend, &uri),
                generation.to_string(),
                "{uri} served by an old config"
            );
        }
    }
    load.finish(loops).await;
    assert_eq!(
        load.failed(),
        0,
        "failed requests during reloads ({} served)",
        load.ok()
    );
    assert!(load.ok() > 100);

    tunnel.write_all(b"after!").await.unwrap();
    tunnel.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"after!");
    ws.send(Message::text("still here")).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text("still here")
    );

    let workers = sluice.workers();
    assert_eq!(workers.len(), 2);
    assert!(workers.iter().all(|(_, state)| state == "running"));
    assert!(sluice.status().contains("generation 21"));
    let fds_after = fd_count(sluice.pid());
    assert!(
        fds_after <= fds_before + 2,
        "supervisor descriptors grew from {fds_before} to {fds_after}"
    );
}

#[tokio::test]
async fn a_broken_config_is_refused_and_the_old_one_keeps_serving() {
    let backend = Backend::start("app").await;
    let echo = common::sockets::echo_server().await;
    let sluice = Supervisor::run(&config(&backend, echo, 1));
    let web = sluice.addr("web");
    sluice.rewrite(&config(&backend, echo, 2).replace("    rules:\n", "    rulez:\n"));
    let output = sluice.cli(&["reload", "-p", &sluice.pid().to_string()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("sluice.yaml:16:5: unknown key `rulez` in listener; did you mean `rules`?"),
        "{stderr}"
    );
    client()
        .get(format!("http://{web}/after-broken"))
        .send()
        .await
        .unwrap();
    assert_eq!(gen_seen(&backend, "/after-broken"), "1");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let yaml = config(&backend, echo, 3).replace(
        "  - name: tunnel\n    listen: 127.0.0.1:0",
        &format!(
            "  - name: tunnel\n    listen: {}",
            taken.local_addr().unwrap()
        ),
    );
    sluice.rewrite(&yaml);
    let output = sluice.cli(&["reload", "-p", &sluice.pid().to_string()]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "a listener that cannot bind rejects the whole reload"
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot bind"));
    client()
        .get(format!("http://{web}/after-taken"))
        .send()
        .await
        .unwrap();
    assert_eq!(gen_seen(&backend, "/after-taken"), "1");
    assert!(sluice.status().contains("reloads ok 0 failed 2"));
}

#[tokio::test]
async fn a_removed_listener_stops_accepting_and_its_tunnels_end_at_drain_timeout() {
    let backend = Backend::start("app").await;
    let echo = common::sockets::echo_server().await;
    let with_drain = |generation| {
        config(&backend, echo, generation).replace("drain_timeout: 5s", "drain_timeout: 1s")
    };
    let sluice = Supervisor::run(&with_drain(1));
    let tunnel_addr = sluice.addr("tunnel");
    let mut tunnel = tokio::net::TcpStream::connect(tunnel_addr).await.unwrap();
    let mut buf = [0u8; 4];
    tunnel.write_all(b"ping").await.unwrap();
    tunnel.read_exact(&mut buf).await.unwrap();

    let without_tunnel = with_drain(2);
    let cut = without_tunnel.find("  - name: tunnel").unwrap();
    sluice.rewrite(&without_tunnel[..cut]);
    let output = sluice.cli(&["reload", "-p", &sluice.pid().to_string()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("- listener tunnel"));
    let removed_at = std::time::Instant::now();
    assert!(
        tokio::net::TcpStream::connect(tunnel_addr).await.is_err(),
        "a removed listener still accepts"
    );

    tunnel.write_all(b"pong").await.unwrap();
    tunnel.read_exact(&mut buf).await.unwrap();
    assert_eq!(
        &buf, b"pong",
        "an open tunnel keeps working during the drain"
    );
    let closed =
        tokio::time::timeout(std::time::Duration::from_secs(5), tunnel.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "tunnel not closed: {closed:?}"
    );
    assert!(
        removed_at.elapsed() >= std::time::Duration::from_millis(900),
        "cut before drain_timeout"
    );
}

#[tokio::test]
async fn an_http_listener_defers_accepting_until_turned_into_tcp_by_a_reload() {
    let backend = Backend::start("app").await;
    let greeter_addr = common::sockets::greeting_server().await;
    let sluice = Supervisor::run(&config(&backend, greeter_addr, 1));
    let web = sluice.addr("web");
    // As HTTP, a connection is handed over with its first bytes.
    let silent = tokio::net::TcpStream::connect(web).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        sluice.status_value("LISTENER", "web", 4),
        "0",
        "a silent connection was accepted"
    );
    drop(silent);
    let http_rules = "    headers:\n      - key: x-gen\n        value: \"2\"\n    rules:\n      - path: /*\n        upstreams: [app]\n";
    let as_tcp = config(&backend, greeter_addr, 2);
    assert!(as_tcp.contains(http_rules));
    sluice.rewrite(&as_tcp.replace(http_rules, "    mode: tcp\n    upstreams: [echo]\n"));
    let output = sluice.cli(&["reload", "-p", &sluice.pid().to_string()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        sluice.addr("web"),
        web,
        "the listener's socket was not kept"
    );

    let mut client = tokio::net::TcpStream::connect(web).await.unwrap();
    let mut greeting = [0u8; 11];
    // Well under the second a deferred accept would hold the connection.
    let heard = tokio::time::timeout(
        std::time::Duration::from_millis(900),
        client.read_exact(&mut greeting),
    )
    .await;
    assert!(
        matches!(heard, Ok(Ok(_))),
        "no greeting while the client was silent: {heard:?}"
    );
    assert_eq!(&greeting, b"220 ready\r\n");
}

/// An address on 127.0.0.1 whose port was free a moment ago.
fn free_address() -> std::net::SocketAddr {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap()
}

#[tokio::test]
async fn a_reload_refused_for_a_taken_port_leaves_the_listeners_as_they_were() {
    let backend = Backend::start("app").await;
    let (fixed, fresh) = (free_address(), free_address());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listener = |name: &str, address: std::net::SocketAddr| {
        format!(
            "  - name: {name}\n    listen: {address}\n    rules:\n      - path: /*\n        upstreams: [app]\n"
        )
    };
    let base = format!("workers: 1\n{}listeners:\n", upstreams_yaml(&[&backend]));
    let sluice = Supervisor::run(&format!("{base}{}", listener("web", fixed)));
    sluice.assert_serves("web").await;

    // `web` renamed on its fixed address, one listener that binds and one
    // that cannot.
    sluice.rewrite(&format!(
        "{base}{}{}{}",
        listener("www", fixed),
        listener("api", fresh),
        listener("bad", taken.local_addr().unwrap())
    ));
    let output = sluice.cli(&["reload", "-p", &sluice.pid().to_string()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot bind"));
    assert!(
        tokio::net::TcpStream::connect(fresh).await.is_err(),
        "the refused config's new listener still listens"
    );

    // A replacement worker gets the sockets under the running config's
    // names.
    let replaced =
        sluice.kill_a_worker_and_wait_for_its_replacement(std::time::Duration::from_secs(5));
    assert!(replaced, "no replacement: {:?}", sluice.workers());
    sluice.assert_serves("web").await;
}

#[tokio::test]
async fn a_reload_signal_during_a_reload_is_applied_after_it() {
    let backend = Backend::start("app").await;
    let (hole, _fillers, _listener) = common::sockets::blackhole();
    let web = "listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    rules:\n      - path: /*\n        upstreams: [app]\n";
    let base = format!("workers: 1\n{}", upstreams_yaml(&[&backend]));
    let sluice = Supervisor::run(&format!("{base}{web}"));
    // The next generation waits for its new upstream's first check, which
    // hangs until its timeout.
    let slow = format!(
        "  - id: slow\n    address: {hole}\n    health_check: {{ kind: tcp, timeout: 2s }}\n"
    );
    sluice.rewrite(&format!("{base}{slow}{web}"));
    signal(sluice.pid(), rustix::process::Signal::HUP);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let late = "  - name: late\n    listen: 127.0.0.1:0\n    rules:\n      - path: /*\n        upstreams: [app]\n";
    sluice.rewrite(&format!("{base}{slow}{web}{late}"));
    signal(sluice.pid(), rustix::process::Signal::HUP);
    let applied = sluice.wait_for(std::time::Duration::from_secs(10), || {
        sluice.status().contains("late")
    });
    assert!(applied, "the second reload was lost:\n{}", sluice.status());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_connection_takes_the_listeners_new_settings() {
    let backend = Backend::start("app").await;
    let config = |header_timeout: &str| {
        format!(
            "workers: 1\n{}listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    header_timeout: {header_timeout}\n    rules: [{{ upstreams: [app] }}]\n",
            upstreams_yaml(&[&backend])
        )
    };
    let sluice = Supervisor::run(&config("30s"));
    let mut stream = tokio::net::TcpStream::connect(sluice.addr("web"))
        .await
        .unwrap();
    let answer = common::exchange(&mut stream, b"GET / HTTP/1.1\r\nhost: a\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Idle long enough to be parked, then the reload shortens the head's
    // deadline.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    sluice.rewrite(&config("300ms"));
    let reload = sluice.cli(&["reload", "-p", &sluice.pid().to_string()]);
    assert!(
        reload.status.success(),
        "{}",
        String::from_utf8_lossy(&reload.stderr)
    );
    stream.write_all(b"GET / HTTP/1.1\r\nho").await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut answer),
    )
    .await;
    assert!(read.is_ok(), "still waiting on the old 30 s deadline");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}
