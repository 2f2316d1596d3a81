//! Running wrk and parsing its `--latency` output.

use anyhow::{Context, Result, bail};
use std::process::Command;

/// What one wrk run measured.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WrkResult {
    /// Completed requests.
    pub requests: u64,
    /// Requests per second, as wrk reports it.
    pub rps: f64,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
    /// Responses outside 2xx/3xx plus socket errors (connect, read, write, timeout).
    pub errors: u64,
}

/// Runs `wrk -t1 -c<connections> -d<seconds>s --latency` against `url`,
/// with `Connection: close` on every request if `close` is set; `cmd` is
/// the wrk program, possibly under taskset.
pub fn run(
    mut cmd: Command,
    url: &str,
    connections: u32,
    seconds: u32,
    close: bool,
) -> Result<WrkResult> {
    cmd.args([
        "-t1",
        &format!("-c{connections}"),
        &format!("-d{seconds}s"),
        "--latency",
    ]);
    if close {
        cmd.args(["-H", "Connection: close"]);
    }
    cmd.arg(url);
    let out = cmd.output().context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "wrk failed ({}): {}{}",
            out.status,
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse(&text).with_context(|| format!("unexpected wrk output:\n{text}"))
}

/// Parses a wrk duration such as `812.00us`, `1.23ms`, `2.00s` or `1.00m`
/// into milliseconds.
pub fn parse_duration_ms(s: &str) -> Option<f64> {
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (num, unit) = s.split_at(split);
    let v: f64 = num.parse().ok()?;
    let scale = match unit {
        "us" => 0.001,
        "ms" => 1.0,
        "s" => 1000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        _ => return None,
    };
    Some(v * scale)
}

/// Parses wrk's `--latency` report.
pub fn parse(text: &str) -> Option<WrkResult> {
    let mut requests = None;
    let mut rps = None;
    let mut p50 = None;
    let mut p99 = None;
    let mut errors = 0u64;
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", d] => p50 = parse_duration_ms(d),
            ["99%", d] => p99 = parse_duration_ms(d),
            [n, "requests", "in", ..] => requests = n.parse().ok(),
            ["Requests/sec:", r] => rps = r.parse().ok(),
            ["Non-2xx", "or", "3xx", "responses:", n] => errors += n.parse::<u64>().ok()?,
            ["Socket", "errors:", rest @ ..] => {
                // "connect 0, read 0, write 0, timeout 0"
                for pair in rest.chunks(2) {
                    if let [_, n] = pair {
                        errors += n.trim_end_matches(',').parse::<u64>().ok()?;
                    }
                }
            }
            _ => {}
        }
    }
    Some(WrkResult {
        requests: requests?,
        rps: rps?,
        p50_ms: p50?,
        p99_ms: p99?,
        errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "Running 4s test @ http://127.0.0.1:8080/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.52ms  305.12us   9.87ms   88.10%
    Req/Sec    33.01k     1.20k   35.10k    72.50%
  Latency Distribution
     50%    1.45ms
     75%    1.60ms
     90%    1.81ms
     99%    2.90ms
  131415 requests in 4.00s, 15.04MB read
  Socket errors: connect 0, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 7
Requests/sec:  32851.46
Transfer/sec:      3.76MB
";

    #[test]
    fn parses_full_report() {
        let r = parse(OUTPUT).expect("parses");
        assert_eq!(r.requests, 131_415);
        assert!((r.rps - 32_851.46).abs() < 1e-6);
        assert!((r.p50_ms - 1.45).abs() < 1e-9);
        assert!((r.p99_ms - 2.90).abs() < 1e-9);
        assert_eq!(r.errors, 12);
    }

    #[test]
    fn parses_clean_report_without_error_lines() {
        let text = OUTPUT
            .lines()
            .filter(|l| !l.contains("errors") && !l.contains("Non-2xx"))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(parse(&text).expect("parses").errors, 0);
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration_ms("812.00us"), Some(0.812));
        assert_eq!(parse_duration_ms("1.50ms"), Some(1.5));
        assert_eq!(parse_duration_ms("2.00s"), Some(2000.0));
        assert_eq!(parse_duration_ms("1.00m"), Some(60_000.0));
        assert_eq!(parse_duration_ms("3.0parsecs"), None);
    }

    #[test]
    fn rejects_incomplete_output() {
        assert_eq!(parse("Running 4s test @ http://x/\n"), None);
    }
}
