//! Memory of a proxy's process tree: the idle-connection figure is how much
//! it grows while holding many idle keep-alive connections.

use crate::proc_tree;
use std::fs;

/// Memory of a process tree, KiB, summed over its processes.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Memory {
    /// Resident set size (shared pages counted once per process).
    pub rss_kib: u64,
    /// Proportional set size (shared pages split between the processes
    /// sharing them), so the sum is the tree's real footprint.
    pub pss_kib: u64,
}

/// The memory of `root` and all its descendants now. Pss comes from
/// `/proc/PID/smaps_rollup`; where that is unreadable, Rss from
/// `/proc/PID/status` (VmRSS) stands in for it.
pub fn tree_memory(root: u32) -> Memory {
    proc_tree::snapshot(root)
        .iter()
        .filter_map(|(pid, _)| process_memory(*pid))
        .fold(Memory::default(), |a, m| Memory {
            rss_kib: a.rss_kib + m.rss_kib,
            pss_kib: a.pss_kib + m.pss_kib,
        })
}

/// One process's memory.
fn process_memory(pid: u32) -> Option<Memory> {
    if let Ok(text) = fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        && let (Some(rss_kib), Some(pss_kib)) = (kib_field(&text, "Rss:"), kib_field(&text, "Pss:"))
    {
        return Some(Memory { rss_kib, pss_kib });
    }
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = kib_field(&text, "VmRSS:")?;
    Some(Memory {
        rss_kib,
        pss_kib: rss_kib,
    })
}

/// The value of a `Name:   1234 kB` line.
pub fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLLUP: &str = "55d4c000-7ffd4000 ---p 00000000 00:00 0                          [rollup]
Rss:                4312 kB
Pss:                1875 kB
Pss_Dirty:           912 kB
Pss_Anon:            880 kB
Shared_Clean:       2884 kB
Private_Dirty:       912 kB
Swap:                  0 kB
SwapPss:               0 kB
";

    #[test]
    fn reads_smaps_rollup() {
        assert_eq!(kib_field(ROLLUP, "Rss:"), Some(4312));
        assert_eq!(kib_field(ROLLUP, "Pss:"), Some(1875));
        assert_eq!(kib_field(ROLLUP, "SwapPss:"), Some(0));
    }

    #[test]
    fn reads_status_vmrss() {
        let status = "Name:\tnginx\nVmPeak:\t   12000 kB\nVmRSS:\t    3456 kB\nThreads:\t1\n";
        assert_eq!(kib_field(status, "VmRSS:"), Some(3456));
        assert_eq!(kib_field(status, "VmSwap:"), None);
    }
}
