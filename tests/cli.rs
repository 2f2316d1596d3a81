//! The `sluice` binary as a user runs it.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Backend, client, upstreams_yaml};

fn sluice() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .env_remove("SLUICE_CONFIG")
        .env("SLUICE_LOG", "info");
    command
}

fn signal(child: &Child, signal: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, signal).unwrap();
}

/// Reads the child's stderr until the ready line; returns the address of
/// listener `name`.
fn wait_ready(child: &mut Child, name: &str) -> std::net::SocketAddr {
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.contains("sluice ready") {
            let needle = format!("{name}=");
            let at = line.find(&needle).unwrap() + needle.len();
            let addr = line[at..]
                .split(|c: char| c.is_whitespace() || c == '"')
                .next()
                .unwrap();
            std::thread::spawn(move || lines.for_each(drop));
            return addr.parse().unwrap();
        }
    }
    panic!("sluice exited before it was ready");
}

#[test]
fn check_prints_every_error_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.yaml");
    std::fs::write(
        &path,
        "upstreams:\n  - id: a\n    adress: 127.0.0.1:1\nlisteners:\n  - name: web\n    listen: 127.0.0.1:0\n    rules:\n      - pth: /\n        upstreams: [b]\n",
    )
    .unwrap();
    let output = sluice().args(["check", "-c"]).arg(&path).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    let file = path.display().to_string();
    assert!(
        stderr.contains(&format!("{file}:3:5: ")) && stderr.contains("did you mean `address`"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{file}:8:9: ")) && stderr.contains("did you mean `path`"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{file}:9:21: ")),
        "unknown upstream b: {stderr}"
    );
}

#[test]
fn check_accepts_the_examples_and_reads_sluice_config() {
    let root = env!("CARGO_MANIFEST_DIR");
    let output = sluice()
        .args(["check", "-c", &format!("{root}/config/example.yaml")])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains(": ok"));
    let output = sluice()
        .arg("check")
        .env("SLUICE_CONFIG", format!("{root}/config/dev.yaml"))
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("dev.yaml: ok"));
}

#[test]
fn init_writes_a_valid_config_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.yaml");
    assert!(
        sluice()
            .arg("init")
            .arg(&path)
            .output()
            .unwrap()
            .status
            .success()
    );
    assert!(
        sluice()
            .args(["check", "-c"])
            .arg(&path)
            .output()
            .unwrap()
            .status
            .success()
    );
    let before = std::fs::read_to_string(&path).unwrap();
    let output = sluice().arg("init").arg(&path).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("already exists"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
}

#[test]
fn version_and_help() {
    let output = sluice().arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("sluice {}", env!("CARGO_PKG_VERSION"))
    );
    for command in ["run", "check", "init", "demo"] {
        let output = sluice().args([command, "--help"]).output().unwrap();
        assert!(output.status.success(), "{command} --help");
    }
    assert_eq!(
        sluice().arg("frobnicate").output().unwrap().status.code(),
        Some(2)
    );
}

#[tokio::test]
async fn run_serves_then_drains_an_in_flight_request_on_sigterm() {
    let backend = Backend::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.yaml");
    std::fs::write(
        &path,
        format!(
            "{}listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    rules:\n      - path: /*\n        upstreams: [app]\n",
            upstreams_yaml(&[&backend])
        ),
    )
    .unwrap();
    let mut child = sluice()
        .args(["run", "-c"])
        .arg(&path)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = wait_ready(&mut child, "web");
    let http = client();
    assert_eq!(
        http.get(format!("http://{addr}/hello"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "app GET /hello"
    );
    let slow = tokio::spawn(http.get(format!("http://{addr}/slow/800")).send());
    while backend.seen().len() < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    signal(&child, rustix::process::Signal::TERM);
    let response = slow.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "stopped sluice still accepts"
    );
}

#[tokio::test]
async fn run_refuses_an_invalid_config_and_a_taken_port() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "listeners: []\nnonsense: 1\n").unwrap();
    let output = sluice().args(["run", "-c"]).arg(&path).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("bad.yaml:2:1"));

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let yaml = format!(
        "upstreams:\n  - id: a\n    address: 127.0.0.1:1\nlisteners:\n  - name: web\n    listen: {}\n    rules:\n      - path: /*\n        upstreams: [a]\n",
        taken.local_addr().unwrap()
    );
    std::fs::write(&path, yaml).unwrap();
    let output = sluice().args(["run", "-c"]).arg(&path).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("cannot bind"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn demo_answers_from_its_three_backends() {
    let mut child = sluice()
        .args(["demo", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .to_owned();
    std::thread::spawn(move || lines.for_each(drop));
    let http = client();
    let mut answered = std::collections::HashSet::new();
    for _ in 0..3 {
        let text = http.get(&url).send().await.unwrap().text().await.unwrap();
        answered.insert(text.split_whitespace().next().unwrap().to_owned());
    }
    assert_eq!(
        answered,
        ["demo-1", "demo-2", "demo-3"].map(String::from).into()
    );
    signal(&child, rustix::process::Signal::INT);
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success());
}

#[test]
fn a_user_that_does_not_exist_is_refused_by_run_and_warned_about_by_check() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.yaml");
    std::fs::write(
        &path,
        "user: sluice-no-such-user\nupstreams:\n  - id: app\n    address: 127.0.0.1:9\nlisteners:\n  - name: web\n    listen: 127.0.0.1:0\n    rules:\n      - path: /*\n        upstreams: [app]\n",
    )
    .unwrap();
    // `check` may run on another machine than the config: it warns.
    let check = sluice().args(["check", "-c"]).arg(&path).output().unwrap();
    assert_eq!(check.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(
        stderr.contains("warning: ")
            && stderr.contains("`user: sluice-no-such-user`: no such user"),
        "{stderr}"
    );

    let mut run = sluice()
        .args(["run", "-c"])
        .arg(&path)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = run.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = run.kill();
            panic!("sluice run started with a user that does not exist");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut run.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("no such user"), "{stderr}");
}
