//! sluice: a layer-4/7 load balancer.
//!
//! # Layout
//! - [`cli`]: the command line (clap) and its dispatch to the commands.
//! - [`config`]: reading, validating and typing the YAML config file.
//! - [`runtime`]: the config compiled into its hot-path form: router
//!   tables, pools with their strategies, header templates.
//! - [`counters`]: per-worker rows of atomic counters (connections, bytes,
//!   requests) that the whole balancer reads.
//! - [`health`]: active health checks and passive failure detection, run
//!   once by the supervisor; workers only read the health row.
//! - [`listener`]: binding listening sockets once, with socket2.
//! - [`http`]: the HTTP listener: server connections, proxying, static
//!   files, error responses.
//! - [`tcp`]: TCP passthrough listeners.
//! - [`supervisor`]: `sluice run`: validate, compile, bind, serve until a
//!   stop signal.
//! - [`demo`]: `sluice demo`, built-in backends and a balancer in front.
//! - [`starter`]: `sluice init`, the commented starter config.

pub mod cli;
pub mod config;
pub mod counters;
pub mod demo;
pub mod health;
pub mod http;
pub mod listener;
pub mod runtime;
pub mod starter;
pub mod supervisor;
pub mod tcp;
