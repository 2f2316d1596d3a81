//! `tcp-iperf3`: an iperf3 server, and one iperf3 client stream of bulk
//! data for a few seconds: Gbit/s, and the proxy's CPU-seconds per GiB.

use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::Command;

use super::process::spawn;
use super::{Case, Outcome};
use crate::targets::{Target, free_port};

/// Seconds per iperf3 run.
const SECONDS: u32 = 5;
/// Bytes in a GiB.
const GIB: f64 = (1u64 << 30) as f64;

/// iperf3 in server mode on a free loopback port; it serves one test at a
/// time, one after the other. Its reports go to a log file.
pub fn start_server(dir: &Path) -> Result<Target> {
    let port = free_port()?;
    let mut cmd = Command::new("iperf3");
    cmd.args(["-s", "-B", "127.0.0.1", "-p", &port.to_string()])
        .arg("--logfile")
        .arg(dir.join("iperf3-server.log"));
    spawn("iperf3-server", port, cmd, dir, false)
}

/// The one case: client to server, one stream.
pub fn cases() -> Vec<Case> {
    vec![Case {
        name: format!("tcp-iperf3 {SECONDS}s"),
        unit: "Gbit/s",
        cpu_unit: "CPU-s/GiB",
        run: Box::new(client),
    }]
}

/// `iperf3 -c 127.0.0.1 -p PORT -t 5 -J`.
fn client(port: u16) -> Result<Outcome> {
    let out = Command::new("iperf3")
        .args(["-c", "127.0.0.1", "-p", &port.to_string()])
        .args(["-t", &SECONDS.to_string(), "-J"])
        .output()
        .context("running iperf3")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let result = parse(&text).with_context(|| {
        format!(
            "iperf3 ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok(Outcome {
        throughput: result.bits_per_second / 1e9,
        work: result.bytes as f64 / GIB,
        errors: None,
    })
}

/// What the receiving side of an iperf3 test counted.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// Bytes received.
    pub bytes: u64,
    /// Received bits per second over the test.
    pub bits_per_second: f64,
}

/// Parses `iperf3 -J` output: `end.sum_received`. iperf3 exits 0 even
/// when it could not connect, with an `error` field instead, so that is
/// checked first.
pub fn parse(json: &str) -> Result<Received> {
    let v: serde_json::Value = serde_json::from_str(json).context("iperf3 output is no JSON")?;
    if let Some(error) = v.get("error").and_then(|e| e.as_str()) {
        bail!("iperf3: {error}");
    }
    let sum = &v["end"]["sum_received"];
    Ok(Received {
        bytes: sum["bytes"].as_u64().context("no end.sum_received.bytes")?,
        bits_per_second: sum["bits_per_second"]
            .as_f64()
            .context("no end.sum_received.bits_per_second")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_receiver_sum() {
        let r = parse(include_str!("testdata/iperf3.json")).expect("parses");
        assert_eq!(r.bytes, 7_421_689_856);
        assert!((r.bits_per_second - 29_685_171_267.337_2).abs() < 1e-3);
    }

    #[test]
    fn an_error_report_is_an_error() {
        let e = parse(include_str!("testdata/iperf3-refused.json")).expect_err("refused");
        assert!(format!("{e:#}").contains("Connection refused"), "{e:#}");
    }

    #[test]
    fn truncated_output_is_an_error() {
        assert!(parse("{\"start\": {}").is_err());
        assert!(parse("{\"end\": {}}").is_err());
    }
}
