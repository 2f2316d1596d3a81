//! Reading and validating the config file.

pub mod model;

pub use model::*;
