//! `tcp-redis`: a throwaway redis-server, and `redis-benchmark` SET then
//! GET, one request at a time per connection (`-P 1`) and pipelined 16
//! deep (`-P 16`), ops/s.

use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::Command;

use super::process::spawn;
use super::{Case, Outcome};
use crate::targets::{Target, free_port, has_tool};

/// redis-benchmark connections.
const CLIENTS: u32 = 50;
/// Requests per run without pipelining (a few seconds each)...
const REQUESTS_P1: u64 = 150_000;
/// ...and pipelined, which is about ten times faster.
const REQUESTS_P16: u64 = 1_000_000;

/// The tools this scenario needs, missing ones by apt package.
pub fn missing() -> Vec<&'static str> {
    [
        ("redis-server", "redis-server"),
        ("redis-tools", "redis-benchmark"),
    ]
    .into_iter()
    .filter(|(_, bin)| !has_tool(bin))
    .map(|(pkg, _)| pkg)
    .collect()
}

/// redis-server on a free port: no persistence, loopback only.
pub fn start_server(dir: &Path) -> Result<Target> {
    let port = free_port()?;
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .current_dir(dir);
    spawn("redis-server", port, cmd, dir, false)
}

/// SET before GET, so GET finds its key.
pub fn cases() -> Vec<Case> {
    [(1, "set"), (1, "get"), (16, "set"), (16, "get")]
        .into_iter()
        .map(|(pipeline, test)| Case {
            name: format!("tcp-redis -P{pipeline} {}", test.to_uppercase()),
            unit: "ops/s",
            cpu_unit: "CPU-s/100k ops",
            run: Box::new(move |port| bench(port, test, pipeline)),
        })
        .collect()
}

/// One `redis-benchmark -t TEST -P PIPELINE --csv` run at `port`.
fn bench(port: u16, test: &str, pipeline: u32) -> Result<Outcome> {
    let requests = if pipeline == 1 {
        REQUESTS_P1
    } else {
        REQUESTS_P16
    };
    let out = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-t", test, "-n", &requests.to_string()])
        .args(["-c", &CLIENTS.to_string(), "-P", &pipeline.to_string()])
        .arg("--csv")
        .output()
        .context("running redis-benchmark")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "redis-benchmark failed ({}): {text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let rps = parse_csv(&text, test)
        .with_context(|| format!("unexpected redis-benchmark output:\n{text}"))?;
    Ok(Outcome {
        throughput: rps,
        work: requests as f64 / 100_000.0,
        errors: None,
    })
}

/// The requests per second of `test` (case-insensitive) in
/// `redis-benchmark --csv` output: a header line, then one
/// `"TEST","rps",...` line per test, every field quoted.
pub fn parse_csv(text: &str, test: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let mut fields = line.split(',').map(|f| f.trim().trim_matches('"'));
        let name = fields.next()?;
        if !name.eq_ignore_ascii_case(test) {
            return None;
        }
        fields.next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// redis-benchmark 7.0.15, `-t get,set -n 20000 -c 50 -P 1 --csv`.
    const CSV: &str = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"
\"SET\",\"512820.50\",\"1.167\",\"0.424\",\"1.231\",\"1.687\",\"2.391\",\"2.551\"
\"GET\",\"49382.71\",\"0.665\",\"0.112\",\"0.663\",\"0.943\",\"1.015\",\"3.783\"
";

    #[test]
    fn finds_each_test_by_name() {
        assert_eq!(parse_csv(CSV, "get"), Some(49_382.71));
        assert_eq!(parse_csv(CSV, "SET"), Some(512_820.50));
    }

    #[test]
    fn a_missing_test_or_the_header_is_no_figure() {
        assert_eq!(parse_csv(CSV, "lpush"), None);
        assert_eq!(
            parse_csv(CSV, "test"),
            None,
            "the header's rps is no number"
        );
        assert_eq!(parse_csv("", "get"), None);
    }
}
