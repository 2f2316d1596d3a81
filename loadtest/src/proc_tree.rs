//! A process and its descendants, from `/proc/PID/stat`: the proxies run
//! as several processes (sluice's supervisor and workers, nginx's master and
//! workers, `taskset` exec'ing into them), and every figure is over all of them.

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

/// Every live process in `/proc` with its stat.
pub fn all_processes() -> Vec<(u32, Stat)> {
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

/// `root` and every live descendant now, each with its stat.
pub fn snapshot(root: u32) -> Vec<(u32, Stat)> {
    let procs = all_processes();
    let pairs: Vec<(u32, u32)> = procs.iter().map(|(p, s)| (*p, s.ppid)).collect();
    let pids = tree(root, &pairs);
    procs
        .into_iter()
        .filter(|(p, _)| pids.contains(p))
        .collect()
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
}
