//! Running h2load over HTTP/1.1 at a fixed request rate and reading its
//! results. h2load prints no latency percentiles, so p50/p99/p99.9 come
//! from its per-request `--log-file`.

use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A fixed-rate load: `clients` connections each sending `rps_per_client`
/// requests per second for `seconds`, after `warmup_seconds` not measured.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Load {
    /// Concurrent HTTP/1.1 connections.
    pub clients: u32,
    /// Requests per second per connection (h2load's `--rps` is per client).
    pub rps_per_client: u32,
    /// Measured duration.
    pub seconds: u32,
    /// Unmeasured lead-in, so connection set-up and the proxies' upstream
    /// pools filling up are not in the figures.
    pub warmup_seconds: u32,
}

impl Load {
    /// The offered rate, requests per second in total.
    pub fn total_rps(&self) -> u32 {
        self.clients * self.rps_per_client
    }

    /// The h2load arguments (after the program) for `url`, logging each
    /// request to `log`.
    pub fn args(&self, url: &str, log: &Path) -> Vec<String> {
        vec![
            "--h1".into(),
            "-t1".into(),
            format!("-c{}", self.clients),
            format!("--rps={}", self.rps_per_client),
            format!("--duration={}", self.seconds),
            format!("--warm-up-time={}", self.warmup_seconds),
            format!("--log-file={}", log.display()),
            url.into(),
        ]
    }
}

/// Starts h2load with `cmd` (the program, possibly under taskset) and `load`.
pub fn spawn(mut cmd: Command, load: &Load, url: &str, log: &Path) -> Result<Child> {
    cmd.args(load.args(url, log))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().context("starting h2load")
}

/// Waits for h2load to finish and reads its summary and log.
pub fn finish(child: Child, log: &Path) -> Result<H2loadResult> {
    let out = child.wait_with_output().context("waiting for h2load")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "h2load failed ({}): {}{}",
            out.status,
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let summary =
        parse_summary(&text).with_context(|| format!("unexpected h2load output:\n{text}"))?;
    if summary.done == 0 {
        bail!("h2load completed no requests:\n{text}");
    }
    let log_text =
        std::fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
    let mut latencies = parse_log(&log_text);
    latencies.sort_unstable();
    Ok(H2loadResult {
        summary,
        p50_ms: percentile_ms(&latencies, 0.50),
        p99_ms: percentile_ms(&latencies, 0.99),
        p999_ms: percentile_ms(&latencies, 0.999),
    })
}

/// h2load's summary lines.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Requests per second over the measured duration.
    pub rps: f64,
    /// Requests completed in the measured duration.
    pub done: u64,
    /// Failed requests: HTTP status outside 2xx/3xx, network errors, resets
    /// and timeouts (h2load's `errored` and `timeout` are subsets of it).
    pub failed: u64,
}

/// One fixed-rate run.
#[derive(Debug, Clone, PartialEq)]
pub struct H2loadResult {
    /// The summary.
    pub summary: Summary,
    /// Median latency, ms; `None` if no request completed.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency, ms.
    pub p99_ms: Option<f64>,
    /// 99.9th percentile latency, ms.
    pub p999_ms: Option<f64>,
}

/// Parses the `finished in` and `requests:` lines of h2load's output.
pub fn parse_summary(text: &str) -> Option<Summary> {
    let mut rps = None;
    let mut counts = None;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("finished in ") {
            // "finished in 10.00s, 9983.33 req/s, 1.42MB/s"
            rps = rest
                .split(", ")
                .nth(1)?
                .strip_suffix(" req/s")?
                .parse()
                .ok();
        } else if let Some(rest) = line.strip_prefix("requests: ") {
            // "29950 total, 29950 started, 29950 done, 29950 succeeded, 0 failed, ..."
            let count = |name: &str| -> Option<u64> {
                rest.split(", ")
                    .find_map(|p| p.strip_suffix(name))
                    .and_then(|n| n.trim().parse().ok())
            };
            counts = Some((count(" done")?, count(" failed")?));
        }
    }
    let (done, failed) = counts?;
    Some(Summary {
        rps: rps?,
        done,
        failed,
    })
}

/// Latencies, microseconds, of the requests in an h2load `--log-file`
/// (start time, status, microseconds to the end of the response per line);
/// failed streams (status -1) have no latency and are left out.
pub fn parse_log(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split('\t');
            let _start = f.next()?;
            let status: i32 = f.next()?.trim().parse().ok()?;
            let micros: u64 = f.next()?.trim().parse().ok()?;
            (status > 0).then_some(micros)
        })
        .collect()
}

/// The `q` quantile (nearest rank) of sorted microsecond latencies, in ms.
pub fn percentile_ms(sorted_us: &[u64], q: f64) -> Option<f64> {
    let n = sorted_us.len();
    if n == 0 {
        return None;
    }
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
    Some(sorted_us[rank - 1] as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// h2load 1.52.0, `--h1 -c50 -t1 --rps 200 -D 3` against nginx.
    const OUTPUT: &str = "starting benchmark...
spawning thread #0: 50 total client(s). Timing-based test with 0s of warm-up time and 3s of main duration for measurements.
Warm-up started for thread #0.
progress: 10% of clients started
progress: 100% of clients started
Warm-up phase is over for thread #0.
Main benchmark duration is started for thread #0.
Application protocol: http/1.1
Main benchmark duration is over for thread #0. Stopping all clients.
Stopped all clients for thread #0

finished in 3.00s, 9983.33 req/s, 1.42MB/s
requests: 29950 total, 29950 started, 29950 done, 29947 succeeded, 3 failed, 2 errored, 1 timeout
status codes: 29949 2xx, 0 3xx, 0 4xx, 1 5xx
traffic: 4.26MB (4462550) total, 3.08MB (3234600) headers (space savings 0.00%), 58.50KB (59900) data
                     min         max         mean         sd        +/- sd
time for request:      124us      9.56ms      1.63ms      1.45ms    85.71%
time for connect:        9us       319us       171us        88us    58.00%
time to 1st byte:     1.82ms      2.02ms      1.93ms        52us    60.00%
req/s           :     199.56      199.60      199.58        0.01    60.00%
";

    /// The same tool against a closed port: no request at all.
    const REFUSED: &str = "finished in 2.00s, 0.00 req/s, 0B/s
requests: 0 total, 0 started, 0 done, 0 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 0 2xx, 0 3xx, 0 4xx, 0 5xx
";

    #[test]
    fn parses_summary() {
        assert_eq!(
            parse_summary(OUTPUT),
            Some(Summary {
                rps: 9983.33,
                done: 29950,
                failed: 3
            })
        );
    }

    #[test]
    fn parses_a_run_with_no_requests() {
        let s = parse_summary(REFUSED).expect("parses");
        assert_eq!((s.done, s.failed, s.rps), (0, 0, 0.0));
    }

    #[test]
    fn rejects_other_output() {
        assert_eq!(parse_summary("starting benchmark...\n"), None);
        assert_eq!(
            parse_summary("finished in 3.00s, fast, 1MB/s\nrequests: 1 done, 0 failed\n"),
            None
        );
    }

    #[test]
    fn reads_latencies_from_the_log_skipping_failed_streams() {
        let log = "1795468882272666\t200\t1803\n\
                   1795468882272673\t-1\t0\n\
                   1795468882272678\t502\t1816\n\
                   garbage\n";
        assert_eq!(parse_log(log), vec![1803, 1816]);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=1000).map(|i| i * 1000).collect();
        assert_eq!(percentile_ms(&v, 0.50), Some(500.0));
        assert_eq!(percentile_ms(&v, 0.99), Some(990.0));
        assert_eq!(percentile_ms(&v, 0.999), Some(999.0));
        assert_eq!(percentile_ms(&[2500], 0.999), Some(2.5));
        assert_eq!(percentile_ms(&[], 0.5), None);
    }

    #[test]
    fn splits_the_rate_over_clients() {
        let l = Load {
            clients: 50,
            rps_per_client: 200,
            seconds: 10,
            warmup_seconds: 1,
        };
        assert_eq!(l.total_rps(), 10_000);
        let a = l.args("http://127.0.0.1:1/", Path::new("/tmp/l.tsv"));
        assert!(a.contains(&"--h1".to_string()));
        assert!(a.contains(&"--rps=200".to_string()));
        assert!(a.contains(&"-c50".to_string()));
        assert!(a.contains(&"--log-file=/tmp/l.tsv".to_string()));
    }
}
