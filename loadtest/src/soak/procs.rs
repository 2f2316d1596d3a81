//! What the soak watches in each sluice process: resident memory and open
//! descriptors, from `/proc`.

use std::fs;

use crate::proc_tree;

/// One process at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// `VmRSS`, in KiB.
    pub rss_kib: u64,
    /// Entries in `/proc/PID/fd`.
    pub fds: usize,
}

/// Samples `pid`; `None` if it is gone.
pub fn sample(pid: u32) -> Option<Sample> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let fds = fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some(Sample { rss_kib, fds })
}

/// The direct children of `pid` (sluice's workers under its supervisor).
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<u32> = dir
        .filter_map(|e| {
            let child: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let line = fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
            (proc_tree::parse_stat(&line)?.ppid == pid).then_some(child)
        })
        .collect();
    found.sort_unstable();
    found
}
