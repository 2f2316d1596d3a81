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
    let rss_kib = crate::mem::kib_field(&status, "VmRSS:")?;
    let fds = fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some(Sample { rss_kib, fds })
}

/// The direct children of `pid` (sluice's workers under its supervisor).
pub fn children(pid: u32) -> Vec<u32> {
    let mut found: Vec<u32> = proc_tree::all_processes()
        .into_iter()
        .filter(|(_, stat)| stat.ppid == pid)
        .map(|(child, _)| child)
        .collect();
    found.sort_unstable();
    found
}
