//! The harness's open-files limit: as the client of the idle scenario it
//! holds 10,000 connections at once, and the servers it starts inherit it.

use anyhow::{Result, bail};
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Raises the soft open-files limit to at least `need`: to
/// `max(need, hard)`, lifting the hard limit too where permitted, else to
/// the hard limit; fails if the result is below `need` (the soft limit
/// is raised as far as allowed either way).
pub fn raise_open_files(need: u64) -> Result<u64> {
    let limit = getrlimit(Resource::Nofile);
    let soft = limit.current.unwrap_or(u64::MAX);
    if soft >= need {
        return Ok(soft);
    }
    let wanted = limit.maximum.map_or(need, |hard| hard.max(need));
    let lifted = Rlimit {
        current: Some(wanted),
        maximum: limit.maximum.map(|_| wanted),
    };
    if setrlimit(Resource::Nofile, lifted).is_ok() {
        return Ok(wanted);
    }
    if let Some(hard) = limit.maximum.filter(|h| *h > soft) {
        let raised = Rlimit {
            current: Some(hard),
            maximum: Some(hard),
        };
        if setrlimit(Resource::Nofile, raised).is_ok() && hard >= need {
            return Ok(hard);
        }
    }
    bail!(
        "the open files limit is {} and cannot be raised to {need} without privilege \
         (raise the hard limit, e.g. `ulimit -Hn {need}` as root)",
        open_files()
    )
}

/// The current soft open-files limit.
pub fn open_files() -> u64 {
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}
