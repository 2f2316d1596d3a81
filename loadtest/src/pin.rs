//! CPU pinning: the efficiency and capacity figures are taken with the
//! proxy alone on one core and the load generator and backend on another,
//! so the proxy's figures do not depend on how the scheduler mixes them.

use std::process::Command;

/// Where the processes of a scenario run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pinning {
    /// Wherever the scheduler puts them.
    Off,
    /// The proxy (and everything it spawns) on `proxy`; the load generator
    /// and the backend on `load`.
    On {
        /// CPU of the proxy.
        proxy: usize,
        /// CPU of the load generator and the backend.
        load: usize,
    },
}

/// A process's part in a run, which decides its CPU when pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// sluice, nginx or HAProxy under test.
    Proxy,
    /// wrk, h2load or the backend.
    Load,
}

impl Pinning {
    /// Pinning on the first two CPUs this process may use, unless
    /// `disabled` or fewer than two are available.
    pub fn choose(allowed: &[usize], disabled: bool) -> Pinning {
        match allowed {
            [proxy, load, ..] if !disabled => Pinning::On {
                proxy: *proxy,
                load: *load,
            },
            _ => Pinning::Off,
        }
    }

    /// The CPU for `role`, if pinned.
    pub fn cpu(self, role: Role) -> Option<usize> {
        match (self, role) {
            (Pinning::Off, _) => None,
            (Pinning::On { proxy, .. }, Role::Proxy) => Some(proxy),
            (Pinning::On { load, .. }, Role::Load) => Some(load),
        }
    }

    /// A command running `program`, under `taskset -c CPU` when pinned
    /// (the affinity is inherited by everything the program spawns).
    pub fn command(self, role: Role, program: impl AsRef<std::ffi::OsStr>) -> Command {
        match self.cpu(role) {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu.to_string()).arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    /// How the table names this mode.
    pub fn describe(self) -> String {
        match self {
            Pinning::Off => "unpinned".to_string(),
            Pinning::On { proxy, load } => {
                format!("pinned: proxy on CPU {proxy}, load generator and backend on CPU {load}")
            }
        }
    }
}

/// The CPUs this process may run on, from `Cpus_allowed_list` in
/// `/proc/self/status`; empty if unreadable.
pub fn allowed_cpus() -> Vec<usize> {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .and_then(|l| parse_cpu_list(l.trim()))
        })
        .unwrap_or_default()
}

/// Parses a kernel CPU list such as `0-3,6,8-9`.
pub fn parse_cpu_list(s: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(a.parse::<usize>().ok()?..=b.parse().ok()?),
            None => cpus.push(part.parse().ok()?),
        }
    }
    Some(cpus)
}

/// Whether `taskset` exists, without which pinning is impossible.
pub fn has_taskset() -> bool {
    crate::targets::has_tool("taskset")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_lists() {
        assert_eq!(parse_cpu_list("0-1"), Some(vec![0, 1]));
        assert_eq!(parse_cpu_list("0"), Some(vec![0]));
        assert_eq!(parse_cpu_list("0-2,5,7-8"), Some(vec![0, 1, 2, 5, 7, 8]));
        assert_eq!(parse_cpu_list("x"), None);
    }

    #[test]
    fn pins_only_with_two_cpus_and_not_disabled() {
        assert_eq!(
            Pinning::choose(&[2, 3, 4], false),
            Pinning::On { proxy: 2, load: 3 }
        );
        assert_eq!(Pinning::choose(&[0], false), Pinning::Off);
        assert_eq!(Pinning::choose(&[0, 1], true), Pinning::Off);
    }

    #[test]
    fn wraps_pinned_commands_in_taskset() {
        let p = Pinning::On { proxy: 0, load: 1 };
        let c = p.command(Role::Load, "wrk");
        assert_eq!(c.get_program(), "taskset");
        assert_eq!(c.get_args().collect::<Vec<_>>(), ["-c", "1", "wrk"]);
        assert_eq!(
            Pinning::Off.command(Role::Proxy, "nginx").get_program(),
            "nginx"
        );
    }
}
