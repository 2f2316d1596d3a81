//! CPU time: the proxy's (its whole process tree) and the machine's, read
//! before and after a run and turned into CPU-s per 100k requests and the
//! "other CPU-s" that shows a disturbed run.

use crate::proc_tree;
use crate::report::Values;
use std::fs;

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux if that fails).
pub fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// Total utime+stime, in seconds, of `root` and all its descendants now
/// (e.g. sluice's supervisor and workers, nginx's master and workers).
pub fn tree_cpu_seconds(root: u32, ticks_per_second: u64) -> f64 {
    let ticks: u64 = proc_tree::snapshot(root)
        .iter()
        .map(|(_, s)| s.utime + s.stime)
        .sum();
    ticks as f64 / ticks_per_second as f64
}

/// Total busy CPU time of the whole machine, in seconds, from `/proc/stat`
/// (everything except idle and iowait).
pub fn machine_busy_seconds(ticks_per_second: u64) -> Option<f64> {
    let text = fs::read_to_string("/proc/stat").ok()?;
    parse_machine_busy(&text).map(|t| t as f64 / ticks_per_second as f64)
}

/// Busy ticks from the first (`cpu `) line of `/proc/stat`: user, nice,
/// system, irq, softirq and steal; idle and iowait left out.
pub fn parse_machine_busy(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal ...
    Some(v.first()? + v.get(1)? + v.get(2)? + v.get(5)? + v.get(6)? + v.get(7).unwrap_or(&0))
}

/// The proxy's and the machine's CPU counters at one instant.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// CPU seconds of the proxy's process tree; `None` without a proxy.
    proxy: Option<f64>,
    /// Busy CPU seconds of the machine.
    busy: Option<f64>,
}

impl Sample {
    /// Reads both counters now; `root` is the proxy's PID, if any.
    pub fn now(root: Option<u32>, ticks: u64) -> Sample {
        Sample {
            proxy: root.map(|pid| tree_cpu_seconds(pid, ticks)),
            busy: machine_busy_seconds(ticks),
        }
    }

    /// Adds `cpu_per_100k` (the proxy's CPU seconds per 100k of `requests`)
    /// and `other_cpu_s` (the machine's busy seconds besides the proxy's:
    /// load generator, backend and anything else) between `self` and `end`.
    pub fn record(&self, end: &Sample, requests: u64, values: &mut Values) {
        let proxy = self.proxy.zip(end.proxy).map(|(a, b)| b - a);
        if let Some(c) = proxy.filter(|_| requests > 0) {
            values.insert("cpu_per_100k".into(), c * 100_000.0 / requests as f64);
        }
        if let Some((a, b)) = self.busy.zip(end.busy) {
            values.insert("other_cpu_s".into(), b - a - proxy.unwrap_or(0.0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_machine_busy() {
        let text = "cpu  100 5 50 1000 20 3 2 1 0 0\ncpu0 1 2 3 4\n";
        assert_eq!(parse_machine_busy(text), Some(100 + 5 + 50 + 3 + 2 + 1));
    }

    #[test]
    fn records_cpu_per_100k_and_other_load() {
        let a = Sample {
            proxy: Some(10.0),
            busy: Some(100.0),
        };
        let b = Sample {
            proxy: Some(12.0),
            busy: Some(107.0),
        };
        let mut v = Values::new();
        a.record(&b, 200_000, &mut v);
        assert_eq!(v["cpu_per_100k"], 1.0);
        assert_eq!(v["other_cpu_s"], 5.0);
    }

    #[test]
    fn direct_runs_have_no_proxy_cpu() {
        let a = Sample {
            proxy: None,
            busy: Some(1.0),
        };
        let mut v = Values::new();
        a.record(&a, 10, &mut v);
        assert!(!v.contains_key("cpu_per_100k"));
        assert_eq!(v["other_cpu_s"], 0.0);
    }
}
