//! CPU time of a process tree, from `/proc/PID/stat`.

use std::fs;

/// The fields of one `/proc/PID/stat` line this harness needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// The process's parent.
    pub ppid: u32,
    /// User-mode CPU time, in clock ticks.
    pub utime: u64,
    /// Kernel-mode CPU time, in clock ticks.
    pub stime: u64,
}

/// Parses a `/proc/PID/stat` line. The command name (field 2) is in
/// parentheses and may itself contain spaces and `)`, so fields are counted
/// from the last `)`.
pub fn parse_stat(line: &str) -> Option<Stat> {
    let rest = &line[line.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state (field 3) is index 0, ppid (4) index 1,
    // utime (14) index 11, stime (15) index 12.
    Some(Stat {
        ppid: fields.get(1)?.parse().ok()?,
        utime: fields.get(11)?.parse().ok()?,
        stime: fields.get(12)?.parse().ok()?,
    })
}

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

/// Every live process in `/proc` with its stat.
fn all_processes() -> Vec<(u32, Stat)> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let line = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        Some((pid, parse_stat(&line)?))
    })
    .collect()
}

/// The PIDs of `root` and all its descendants, given `(pid, ppid)` pairs.
pub fn tree(root: u32, procs: &[(u32, u32)]) -> Vec<u32> {
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            procs
                .iter()
                .filter(|&&(pid, ppid)| ppid == parent && pid != parent)
                .map(|&(pid, _)| pid),
        );
        i += 1;
    }
    found
}

/// Total utime+stime, in seconds, of `root` and all its descendants now
/// (e.g. sluice's supervisor and workers, nginx's master and workers).
pub fn tree_cpu_seconds(root: u32, ticks_per_second: u64) -> f64 {
    let procs = all_processes();
    let pairs: Vec<(u32, u32)> = procs.iter().map(|(p, s)| (*p, s.ppid)).collect();
    let pids = tree(root, &pairs);
    let ticks: u64 = procs
        .iter()
        .filter(|(p, _)| pids.contains(p))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_name() {
        let line = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 \
                    57 23 0 0 20 0 1 0 12345 1000000 200 18446744073709551615";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                ppid: 1,
                utime: 57,
                stime: 23
            })
        );
    }

    #[test]
    fn rejects_truncated_stat() {
        assert_eq!(parse_stat("1 (x) S 1 2 3"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn finds_descendants() {
        let procs = [(10, 1), (11, 10), (12, 10), (13, 11), (20, 1)];
        let mut t = tree(10, &procs);
        t.sort();
        assert_eq!(t, vec![10, 11, 12, 13]);
    }

    #[test]
    fn parses_machine_busy() {
        let text = "cpu  100 5 50 1000 20 3 2 1 0 0\ncpu0 1 2 3 4\n";
        assert_eq!(parse_machine_busy(text), Some(100 + 5 + 50 + 3 + 2 + 1));
    }
}
