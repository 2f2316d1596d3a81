//! Reading sluice's admin endpoint in tests: scraping, parsing the text
//! exposition into series, and finding the Prometheus tools.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// `name` on PATH. Missing: a failure when `CI=true`, else `None` with a
/// note (so a developer without Prometheus can still run the rest).
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "`{name}` is not installed (Debian package `prometheus`); CI must run this test"
        );
        eprintln!("note: skipping, `{name}` is not installed (Debian package `prometheus`)");
    }
    found
}

/// GETs `path` from the admin endpoint: (status, content type, body).
pub async fn get(admin: SocketAddr, path: &str) -> (u16, String, String) {
    let response = super::client()
        .get(format!("http://{admin}{path}"))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, response.text().await.unwrap())
}

/// `/metrics` as text.
pub async fn scrape(admin: SocketAddr) -> String {
    let (status, _, body) = get(admin, "/metrics").await;
    assert_eq!(status, 200);
    body
}

/// Every sample of an exposition, keyed by its series as written
/// (`name{labels}`).
pub fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse().unwrap())
        })
        .collect()
}

/// The value of one series, e.g. `series(&s, "sluice_workers", &[])`.
pub fn value(samples: &BTreeMap<String, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    let key = series(name, labels);
    *samples
        .get(&key)
        .unwrap_or_else(|| panic!("no series {key} in /metrics"))
}

/// A series key as sluice writes it.
pub fn series(name: &str, labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return name.to_owned();
    }
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", labels.join(","))
}

/// Runs `promtool check metrics` on an exposition; panics with its output
/// when it finds a problem.
pub fn promtool_check(promtool: &std::path::Path, text: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
