//! What a scenario is to the harness: a name, the tools it needs, its
//! table's columns and a function that starts what it needs, measures it
//! over the repetitions and stops it again. New scenarios (HTTP, TCP,
//! soak) are one entry in `main.rs`'s table.

use crate::pin::Pinning;
use crate::report::{Column, Run};
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
