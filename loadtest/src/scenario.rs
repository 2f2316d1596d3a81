//! What a scenario is to the harness: a name, the tools it needs, its
//! table's columns and a function that starts what it needs, measures it
//! over the repetitions and stops it again. New scenarios (HTTP, TCP,
//! soak) are one entry in `main.rs`'s table.

use crate::configs::Workers;
use crate::pin::Pinning;
use crate::report::{Column, Run};
use crate::targets::Launch;
use anyhow::Result;
use std::path::Path;

/// What every scenario gets from the command line and the machine.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// The sluice release binary.
    pub sluice: &'a Path,
    /// A temporary folder for configs, logs and pid files, removed at exit.
    pub dir: &'a Path,
    /// Repetitions per target.
    pub reps: u32,
    /// The pinning of the per-core scenarios (`--no-pin` turns it off).
    pub pinning: Pinning,
    /// Clock ticks per second, for `/proc` CPU times.
    pub ticks: u64,
    /// The harness's open-files limit, which the servers inherit.
    pub open_files: u64,
}

impl Ctx<'_> {
    /// How to start this run's servers with `workers` and `pinning`.
    pub fn launch(&self, workers: Workers, pinning: Pinning) -> Launch<'_> {
        Launch {
            sluice: self.sluice,
            dir: self.dir,
            workers,
            pinning,
            open_files: self.open_files,
        }
    }
}

/// What a scenario measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// How it ran, for its table's title (e.g. pinned or not).
    pub mode: String,
    /// Every run, replaced ones included.
    pub runs: Vec<Run>,
}

/// One entry of the scenario table.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// Name on the command line and in the tables.
    pub name: &'static str,
    /// One line on what it measures, for `--help`.
    pub about: &'static str,
    /// Programs it cannot run without; it is skipped if one is missing.
    pub needs: &'static [&'static str],
    /// Its table's columns (keys of the runs' values).
    pub columns: &'static [Column],
    /// Runs it.
    pub run: fn(&Ctx) -> Result<Outcome>,
}
