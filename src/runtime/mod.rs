//! The config compiled into its hot-path form.

pub mod router;
