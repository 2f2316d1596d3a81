//! The supervisor and its worker processes: crash recovery, no orphans,
//! global least-connections, the start/status/reload/stop commands with
//! two instances, and a worker out of descriptors.

mod common;

use std::time::{Duration, Instant};

use common::processes::{Load, Supervisor, alive, command, signal};
use common::{Backend, client, upstreams_yaml};
use rustix::process::Signal;

fn config(backends: &[&Backend], workers: usize, pool_extra: &str) -> String {
    let ids: Vec<&str> = backends.iter().map(|b| b.name).collect();
    format!(
        "workers: {workers}\ndrain_timeout: 5s\n{}listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    rules:\n      - path: /*\n        upstreams: [{}]\n{pool_extra}",
        upstreams_yaml(backends),
        ids.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_is_replaced_and_counters_do_not_go_back() {
    let backend = Backend::start("app").await;
    let sluice = Supervisor::run(&config(&[&backend], 2, ""));
    let url = format!("http://{}/", sluice.addr("web"));
    let (load, loops) = Load::start(url);
    while load.ok() < 200 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before: u64 = sluice.status_value("LISTENER", "web", 4).parse().unwrap();
    let killed_at = Instant::now();
    let replaced = sluice.kill_a_worker_and_wait_for_its_replacement(Duration::from_secs(3));
    let took = killed_at.elapsed();
    assert!(replaced, "no replacement: {:?}", sluice.workers());
    assert!(took < Duration::from_secs(1), "replacement took {took:?}");
    let served_before = load.ok();
    while load.ok() < served_before + 200 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    load.finish(loops).await;
    let after: u64 = sluice.status_value("LISTENER", "web", 4).parse().unwrap();
    assert!(
        after >= before,
        "connections total went back: {before} -> {after}"
    );
    assert!(
        load.failed() <= 4,
        "{} failures for 4 clients in flight",
        load.failed()
    );
    assert!(
        sluice.status_value("WORKER", "0", 3) == "1"
            || sluice.status_value("WORKER", "1", 3) == "1"
    );
}

#[tokio::test]
async fn workers_do_not_outlive_a_killed_supervisor() {
    let backend = Backend::start("app").await;
    let sluice = Supervisor::run(&config(&[&backend], 2, ""));
    let workers: Vec<u32> = sluice
        .workers()
        .into_iter()
        .filter_map(|(pid, _)| pid)
        .collect();
    assert_eq!(workers.len(), 2);
    signal(sluice.pid(), Signal::KILL);
    let gone = sluice.wait_for(Duration::from_secs(2), || {
        workers.iter().all(|&pid| !alive(pid))
    });
    assert!(gone, "workers still alive 2 s after the supervisor died");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_connections_counts_across_workers() {
    let slow = Backend::start_with_delay("slow", Duration::from_millis(2000)).await;
    let (f1, f2) = (Backend::start("fast1").await, Backend::start("fast2").await);
    let sluice = Supervisor::run(&config(
        &[&slow, &f1, &f2],
        2,
        "        strategy: least-connections\n",
    ));
    let url = format!("http://{}/", sluice.addr("web"));
    // Send single requests until one is held by the slow backend.
    let mut held = None;
    for _ in 0..30 {
        let pending = tokio::spawn(client().get(url.clone()).send());
        // Answered by a fast backend, or in flight on the slow one.
        let picked_slow = || sluice.status_value("UPSTREAM", "slow", 3) != "0";
        sluice.wait_for(Duration::from_secs(5), || {
            pending.is_finished() || picked_slow()
        });
        if !pending.is_finished() {
            held = Some(pending);
            break;
        }
    }
    let held = held.expect("no request ever reached the slow backend");
    let fresh = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    for _ in 0..30 {
        let response = fresh.get(&url).send().await.unwrap();
        assert_ne!(
            response.headers()["x-backend"],
            "slow",
            "picked the upstream another worker has a request in flight on"
        );
    }
    assert_eq!(held.await.unwrap().unwrap().headers()["x-backend"], "slow");
}

#[tokio::test]
async fn start_status_reload_stop_with_two_instances() {
    let backend = Backend::start("app").await;
    let state = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sluice = |args: &[&str]| command(state.path()).args(args).output().unwrap();
    let mut pids = Vec::new();
    for name in ["a", "b"] {
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, config(&[&backend], 1, "")).unwrap();
        let output = sluice(&["start", "-c", path.to_str().unwrap()]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        pids.push(
            String::from_utf8(output.stdout)
                .unwrap()
                .trim()
                .parse::<u32>()
                .unwrap(),
        );
    }
    std::fs::write(state.path().join("sluice").join("sluice-999999.sock"), "").unwrap();
    let output = sluice(&["status"]);
    assert_eq!(output.status.code(), Some(2), "several instances need -p");
    let listed = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        pids.iter().all(|pid| listed.contains(&pid.to_string())) && !listed.contains("999999"),
        "{listed}"
    );
    assert!(
        !state
            .path()
            .join("sluice")
            .join("sluice-999999.sock")
            .exists(),
        "stale socket cleaned"
    );

    let (a, b) = (pids[0].to_string(), pids[1].to_string());
    let status = sluice(&["status", "-p", &a]);
    assert!(status.status.success());
    let text = String::from_utf8(status.stdout).unwrap();
    assert!(
        text.contains(&format!("pid {a}")) && text.contains("running"),
        "{text}"
    );
    let reload = sluice(&["reload", "-p", &b]);
    assert!(reload.status.success());
    assert_eq!(String::from_utf8_lossy(&reload.stdout), "no changes\n");
    assert!(sluice(&["stop", "-p", &a]).status.success());
    assert!(!alive(pids[0]));
    let output = sluice(&["status"]);
    assert!(
        output.status.success(),
        "one instance left: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains(&format!("pid {b}")));
    assert!(sluice(&["stop"]).status.success());
    assert!(!alive(pids[1]));
    assert_eq!(
        sluice(&["status"]).status.code(),
        Some(1),
        "nothing running"
    );
}

/// Whether this test process is root and so can run sluice with `user:`;
/// says so when it skips (never in CI, which runs as root).
fn can_drop_privileges() -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    assert_ne!(
        std::env::var("CI").as_deref(),
        Ok("true"),
        "CI runs as root and must run this test"
    );
    eprintln!("skipped: dropping privileges needs root");
    false
}

#[tokio::test]
async fn workers_drop_to_the_configured_user() {
    if !can_drop_privileges() {
        return;
    }
    let backend = Backend::start("app").await;
    let sluice = Supervisor::run(&format!("user: nobody\n{}", config(&[&backend], 1, "")));
    let worker = sluice.workers()[0].0.unwrap();
    let status = std::fs::read_to_string(format!("/proc/{worker}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .unwrap()
        .uid
        .as_raw()
        .to_string();
    assert!(
        uid_line.split_whitespace().skip(1).all(|uid| uid == nobody),
        "{uid_line}"
    );
    let supervisor = std::fs::read_to_string(format!("/proc/{}/status", sluice.pid())).unwrap();
    assert!(
        supervisor
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    );
    sluice.assert_serves("web").await;
}

/// A `public` folder inside one only root can enter: the supervisor
/// (root) validates it, the workers (`nobody`) cannot even resolve it. Neither the start nor a
/// reload may fail in some workers and not others; requests for those
/// files get an error, the rest is served.
#[tokio::test]
async fn a_public_folder_the_workers_cannot_read_fails_its_requests_not_the_config() {
    if !can_drop_privileges() {
        return;
    }
    let backend = Backend::start("app").await;
    let private = tempfile::tempdir().unwrap();
    let public = private.path().join("www");
    std::fs::create_dir(&public).unwrap();
    std::fs::write(public.join("hello.txt"), "hello").unwrap();
    let root_only = std::os::unix::fs::PermissionsExt::from_mode(0o700);
    std::fs::set_permissions(private.path(), root_only).unwrap();
    let yaml = |prefix: &str| {
        format!(
            "user: nobody\nworkers: 2\n{}listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    rules:\n      - path: {prefix}/*\n        public: {}\n      - path: /*\n        upstreams: [app]\n",
            upstreams_yaml(&[&backend]),
            public.display()
        )
    };
    let sluice = Supervisor::run(&yaml("/files"));
    let http = client();
    let get = |path: &str| {
        let url = format!("http://{}{path}", sluice.addr("web"));
        let http = http.clone();
        async move { http.get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(get("/").await, 200);
    assert_eq!(get("/files/hello.txt").await, 404);

    sluice.rewrite(&yaml("/other"));
    let output = sluice.cli(&["reload", "-p", &sluice.pid().to_string()]);
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(get("/other/hello.txt").await, 404);
    assert_eq!(get("/files/hello.txt").await, 200, "now proxied to the app");
    assert_eq!(sluice.workers().len(), 2);
}

#[tokio::test]
async fn a_hung_worker_is_killed_and_replaced_by_the_watchdog() {
    let backend = Backend::start("app").await;
    let sluice = Supervisor::run(&config(&[&backend], 2, ""));
    let hung = sluice.workers()[1].0.unwrap();
    signal(hung, Signal::STOP);
    let replaced = sluice.wait_for(Duration::from_secs(10), || {
        let workers = sluice.workers();
        workers[1].0.is_some_and(|pid| pid != hung) && workers[1].1 == "running"
    });
    assert!(replaced, "hung worker not replaced: {:?}", sluice.workers());
    assert!(
        sluice.wait_for(Duration::from_secs(2), || !alive(hung)),
        "hung worker still exists"
    );
    sluice.assert_serves("web").await;
}

#[tokio::test]
async fn four_workers_mean_one_prober_not_four() {
    let backend = Backend::start("app").await;
    let yaml = format!(
        "workers: 4\nupstreams:\n  - id: app\n    address: {}\n    health_check: {{ kind: http, path: /healthz, interval: 200ms, timeout: 100ms, rise: 1, fall: 1 }}\nlisteners:\n  - name: web\n    listen: 127.0.0.1:0\n    rules:\n      - path: /*\n        upstreams: [app]\n",
        backend.addr
    );
    let sluice = Supervisor::run(&yaml);
    assert_eq!(sluice.workers().len(), 4);
    let probes = || {
        backend
            .seen()
            .iter()
            .filter(|s| s.uri == "/healthz")
            .count()
    };
    let before = probes();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let per_interval = (probes() - before) as f64 / (started.elapsed().as_millis() as f64 / 200.0);
    assert!(
        (0.7..=1.5).contains(&per_interval),
        "{per_interval:.2} probes per interval with 4 workers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stderr_does_not_stop_requests_that_log() {
    let dead = Backend::dead("gone");
    let live = Backend::start("app").await;
    let yaml = format!(
        "workers: 1\n{}listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    rules:\n      - path: /gone/*\n        upstreams: [gone]\n      - path: /*\n        upstreams: [app]\n",
        upstreams_yaml(&[&dead, &live])
    );
    let sluice = Supervisor::start(&yaml, false);
    let addr = sluice.addr("web");
    for _ in 0..5 {
        let response = common::raw_response(
            addr,
            b"GET /gone/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(response.starts_with("HTTP/1.1 502"), "got {response:?}");
    }
    let response = client()
        .get(format!("http://{addr}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "app GET /");
    assert!(alive(sluice.pid()));
}

/// One worker, one TCP listener `db` in front of `echo`, and `top` keys.
fn tunnel_config(echo: std::net::SocketAddr, top: &str) -> String {
    format!(
        "workers: 1\n{top}upstreams:\n  - id: echo\n    address: {echo}\n    health_check: {{ kind: none }}\nlisteners:\n  - name: db\n    listen: 127.0.0.1:0\n    mode: tcp\n    upstreams: [echo]\n"
    )
}

#[tokio::test]
async fn a_stop_drains_for_the_whole_drain_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sluice = Supervisor::run(&tunnel_config(
        common::sockets::echo_server().await,
        "drain_timeout: 10s\n",
    ));
    let mut tunnel = tokio::net::TcpStream::connect(sluice.addr("db"))
        .await
        .unwrap();
    signal(sluice.pid(), Signal::TERM);
    // Past the supervisor's 5 s watchdog for silent workers.
    tokio::time::sleep(Duration::from_millis(6500)).await;
    let mut echoed = [0u8; 5];
    let round_trip = async {
        tunnel.write_all(b"still").await?;
        tunnel.read_exact(&mut echoed).await
    };
    let answered = tokio::time::timeout(Duration::from_secs(2), round_trip).await;
    assert!(
        matches!(answered, Ok(Ok(_))),
        "the tunnel was cut before drain_timeout: {answered:?}"
    );
    assert_eq!(&echoed, b"still");
}

/// The lowest descriptor number `pid` does not use: with its open-files
/// limit set to this, the process can open nothing more.
fn lowest_free_descriptor(pid: u32) -> u64 {
    let used: std::collections::HashSet<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    (0..).find(|fd| !used.contains(fd)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_keeps_moving_bulk_data_when_its_worker_is_out_of_descriptors() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sluice = Supervisor::run(&tunnel_config(common::sockets::echo_server().await, ""));
    let tunnel = tokio::net::TcpStream::connect(sluice.addr("db"))
        .await
        .unwrap();
    let (mut from_tunnel, mut to_tunnel) = tunnel.into_split();
    to_tunnel.write_all(b"hello").await.unwrap();
    let mut hello = [0u8; 5];
    from_tunnel.read_exact(&mut hello).await.unwrap();

    let worker = sluice.workers()[0].0.unwrap();
    let limit = lowest_free_descriptor(worker);
    let none_left = rustix::process::Rlimit {
        current: Some(limit),
        maximum: Some(limit),
    };
    let pid = rustix::process::Pid::from_raw(worker as i32).unwrap();
    rustix::process::prlimit(Some(pid), rustix::process::Resource::Nofile, none_left).unwrap();

    // Reads that fill the copy buffer move a tunnel to splice, which needs
    // a pipe the worker cannot open now.
    let sent: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let expected = sent.clone();
    let writer = tokio::spawn(async move {
        to_tunnel.write_all(&sent).await.unwrap();
        to_tunnel
    });
    let mut echoed = vec![0u8; expected.len()];
    let read =
        tokio::time::timeout(Duration::from_secs(20), from_tunnel.read_exact(&mut echoed)).await;
    assert!(
        matches!(read, Ok(Ok(_))),
        "the tunnel broke without descriptors: {read:?}"
    );
    assert!(echoed == expected, "the bytes came back changed");
    writer.await.unwrap();
}

#[tokio::test]
async fn workers_are_replaced_after_the_binary_was_removed_from_disk() {
    let backend = Backend::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("sluice");
    std::fs::copy(env!("CARGO_BIN_EXE_sluice"), &copy).unwrap();
    let sluice = Supervisor::start_binary(&copy, &config(&[&backend], 1, ""), true);
    // As when an upgrade replaces the file under a running balancer.
    std::fs::remove_file(&copy).unwrap();
    let replaced = sluice.kill_a_worker_and_wait_for_its_replacement(Duration::from_secs(5));
    assert!(replaced, "no replacement: {:?}", sluice.workers());
    sluice.assert_serves("web").await;
}

#[tokio::test]
async fn stop_returns_when_the_supervisor_exited_but_is_not_reaped_yet() {
    let backend = Backend::start("app").await;
    // `Supervisor` is this test's child, reaped only when dropped: once it
    // exits it is a zombie, which `stop` must count as stopped.
    let sluice = Supervisor::run(&config(&[&backend], 1, ""));
    let mut stop = command(sluice.state.path())
        .args(["stop", "-p", &sluice.pid().to_string()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = stop.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            stop.kill().unwrap();
            panic!("`sluice stop` still waits for an exited supervisor");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut said = String::new();
    std::io::Read::read_to_string(&mut stop.stderr.take().unwrap(), &mut said).unwrap();
    assert!(status.success(), "{said}");
    assert!(said.contains("stopped"), "{said}");
}

#[tokio::test]
async fn workers_are_named_sluice_in_process_lists() {
    let backend = Backend::start("app").await;
    let sluice = Supervisor::run(&config(&[&backend], 2, ""));
    for (pid, _) in sluice.workers() {
        let pid = pid.expect("a running worker");
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
        assert_eq!(comm.trim_end(), "sluice");
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        assert!(cmdline.starts_with(b"sluice\0worker\0"), "{cmdline:?}");
    }
}

#[tokio::test]
async fn start_shows_what_went_wrong_while_starting() {
    let dead = Backend::dead("dead");
    let state = tempfile::tempdir().unwrap();
    let path = state.path().join("sluice.yaml");
    std::fs::write(
        &path,
        format!(
            "workers: 1\nupstreams:\n  - id: dead\n    address: {}\n    health_check: {{ kind: tcp, timeout: 500ms }}\n\
             listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    rules: [{{ upstreams: [dead] }}]\n",
            dead.addr
        ),
    )
    .unwrap();
    let sluice = |args: &[&str]| command(state.path()).args(args).output().unwrap();
    let started = sluice(&["start", "-c", path.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&started.stderr).into_owned();
    assert!(started.status.success(), "{said}");
    assert!(said.contains("upstream dead unknown -> down"), "{said}");
    let pid = String::from_utf8(started.stdout).unwrap().trim().to_owned();
    assert!(sluice(&["stop", "-p", &pid]).status.success());
}
