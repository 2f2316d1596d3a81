//! `sluice init`: the commented starter config, kept as a file in
//! `config/` so the test that loads every example checks it too.

/// The text `sluice init` writes.
pub const STARTER_CONFIG: &str = include_str!("../config/starter.yaml");
