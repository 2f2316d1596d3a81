//! sluice: a layer-4/7 load balancer.
//!
//! # Layout
//! - [`admin`]: the admin endpoint the supervisor serves: `/metrics`
//!   (Prometheus), `/status` (JSON), `/healthz`.
//! - [`background`]: `sluice start | stop | reload | status` (the client side).
//! - [`channel`]: framed messages and descriptors between supervisor and workers.
//! - [`cli`]: the command line (clap) and its dispatch to the commands.
//! - [`config`]: reading, validating and typing the YAML config file.
//! - [`runtime`]: the config compiled into its hot-path form: router
//!   tables, pools with their strategies, header templates.
//! - [`counters`]: per-worker rows of atomic counters (connections, bytes,
//!   requests) that the whole balancer reads.
//! - [`health`]: active health checks and passive failure detection, run
//!   once by the supervisor; workers only read the health row.
//! - [`instance`]: an in-process balancer (tests, `sluice demo`).
//! - [`listener`]: binding listening sockets once, with socket2.
//! - [`http`]: the HTTP listener: server connections, proxying, static
//!   files, error responses.
//! - [`tcp`]: TCP passthrough listeners.
//! - [`supervisor`]: `sluice run`: bind once, spawn and watch worker
//!   processes, reload in place, stop gracefully; the control socket.
//! - [`worker`]: a worker's listeners, and the `sluice worker` process.
//! - [`demo`]: `sluice demo`, built-in backends and a balancer in front.
//! - [`starter`]: `sluice init`, the commented starter config.

pub mod admin;
pub mod allocator;
pub mod background;
pub mod channel;
pub mod cli;
pub mod config;
pub mod counters;
pub mod demo;
pub mod health;
pub mod http;
pub mod instance;
pub mod listener;
pub mod runtime;
pub mod starter;
pub mod stop;
pub mod supervisor;
pub mod tcp;
pub mod worker;
