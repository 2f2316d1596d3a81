//! The harness's open-files limit: as the client of the idle scenario it
//! holds 10,000 connections at once, and the servers it starts inherit it.

use anyhow::{Result, bail};
use rustix::process::{Resource, getrlimit, setrlimit};

/// Raises the soft open-files limit to the hard one, or to `need` if the
/// hard limit is below it (which needs privilege), and returns the new soft
/// limit; fails if it stays below `need`.
pub fn raise_open_files(need: u64) -> Result<u64> {
    let mut limit = getrlimit(Resource::Nofile);
    let soft = limit.current.unwrap_or(u64::MAX);
    let wanted = match limit.maximum {
        Some(hard) if hard < need => {
            limit.maximum = Some(need);
            need
        }
        Some(hard) => hard,
        None => need.max(soft),
    };
    if soft >= wanted {
        return Ok(soft);
    }
    limit.current = Some(wanted);
    if let Err(e) = setrlimit(Resource::Nofile, limit) {
        bail!(
            "cannot raise the open files limit from {soft} to {need}: {e} (raise it with `ulimit -n`)"
        );
    }
    Ok(wanted)
}

/// The current soft open-files limit.
pub fn open_files() -> u64 {
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}
