//! The command line: `sluice run | check | init | demo`.
//!
//! Each command returns an `ExitCode`-like integer so `main` stays a
//! dispatcher: 0 success, 1 an error the user can act on (invalid config,
//! refused overwrite), 2 a usage error (clap's own).

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::config::{self, Config, ListenerMode, RuleAction};
use crate::supervisor::control::Command as Control;

/// sluice: a layer-4/7 load balancer.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the balancer in the foreground (for systemd and containers); logs to stderr.
    Run(ConfigArg),
    /// Run the balancer in the background; prints its PID.
    Start(ConfigArg),
    /// Stop a running balancer gracefully (draining open connections).
    Stop(PidArg),
    /// Reload the config of a running balancer without dropping traffic (it reads the file it was started with again); prints what changed.
    Reload(PidArg),
    /// Show a running balancer's workers, listeners and upstreams.
    Status(PidArg),
    /// Validate a config file: prints a summary, or every error with file:line:column.
    Check(ConfigArg),
    /// Write a commented starter config; refuses to overwrite an existing file.
    Init {
        /// Where to write it.
        #[arg(default_value = "sluice.yaml")]
        file: PathBuf,
    },
    /// Start three built-in demo backends and a balancer in front of them on loopback.
    Demo {
        /// Port of the demo balancer.
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
    /// A worker process (started by the supervisor, not by hand).
    #[command(hide = true)]
    Worker {
        /// This worker's row in the counter region.
        #[arg(long)]
        index: usize,
        /// How many workers the region has rows for.
        #[arg(long)]
        workers: usize,
        /// The supervisor's PID (the worker exits if its parent differs).
        #[arg(long)]
        supervisor: u32,
        /// User to run as once the sockets are inherited.
        #[arg(long)]
        user: Option<String>,
    },
}

/// Which running instance to talk to.
#[derive(Debug, clap::Args)]
pub struct PidArg {
    /// PID of the supervisor (needed when several instances run).
    #[arg(short, long)]
    pub pid: Option<u32>,
}

/// The config file argument shared by commands.
#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// Config file.
    #[arg(
        short,
        long = "config",
        env = "SLUICE_CONFIG",
        default_value = "sluice.yaml"
    )]
    pub config: PathBuf,
}

/// Runs a parsed command; returns the process exit code.
pub fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Run(arg) => {
            if load_or_print(&arg.config).is_none() {
                return Ok(1);
            }
            crate::supervisor::run(&arg.config)?;
            Ok(0)
        }
        Command::Start(arg) => {
            if load_or_print(&arg.config).is_none() {
                return Ok(1);
            }
            crate::background::start(&arg.config)
        }
        Command::Stop(arg) => crate::background::stop(arg.pid),
        Command::Reload(arg) => crate::background::control(arg.pid, Control::Reload),
        Command::Status(arg) => crate::background::control(arg.pid, Control::Status),
        Command::Check(arg) => {
            let Some(config) = load_or_print(&arg.config) else {
                return Ok(1);
            };
            if let Err(error) = crate::runtime::compile(&config) {
                eprintln!("{}: {error}", arg.config.display());
                return Ok(1);
            }
            // A warning only: the file may be checked on another machine
            // than the one it runs on (start and reload refuse it).
            if let Some(user) = &config.user
                && let Err(error) = crate::worker::check_user(user)
            {
                eprintln!("warning: {}: {error:#}", arg.config.display());
            }
            print!("{}", summary(&config));
            Ok(0)
        }
        Command::Init { file } => init(&file),
        Command::Demo { port } => {
            crate::demo::run(port)?;
            Ok(0)
        }
        Command::Worker {
            index,
            workers,
            supervisor,
            user,
        } => {
            crate::worker::run_process(index, workers, supervisor, user.as_deref())?;
            Ok(0)
        }
    }
}

/// Loads a config, or prints its errors and returns `None`.
fn load_or_print(path: &Path) -> Option<Config> {
    match config::load(path) {
        Ok(config) => Some(config),
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!(
                "{}: {} error(s); nothing was started",
                path.display(),
                errors.0.len()
            );
            None
        }
    }
}

fn init(file: &Path) -> anyhow::Result<i32> {
    use std::io::Write;
    let mut out = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(file)
    {
        Ok(out) => out,
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            eprintln!("{}: already exists; not overwriting it", file.display());
            return Ok(1);
        }
        Err(error) => return Err(anyhow::anyhow!("{}: {error}", file.display())),
    };
    out.write_all(crate::starter::STARTER_CONFIG.as_bytes())?;
    println!(
        "wrote {}; check it with `sluice check -c {}`",
        file.display(),
        file.display()
    );
    Ok(0)
}

/// A few lines describing a valid config, for `sluice check`.
pub fn summary(config: &Config) -> String {
    use std::fmt::Write;
    let mut out = format!("{}: ok\n", config.source.display());
    for listener in &config.listeners {
        match &listener.mode {
            ListenerMode::Http(http) => {
                // Writing to a String cannot fail.
                writeln!(
                    out,
                    "  listener {} (http) on {}: {} rule(s)",
                    listener.name,
                    listener.listen,
                    http.rules.len()
                )
                .expect("write to String");
                for rule in &http.rules {
                    let target = match &rule.action {
                        RuleAction::Proxy { pool, .. } => format!(
                            "{} over [{}]",
                            pool.strategy.name(),
                            pool.upstreams.join(", ")
                        ),
                        RuleAction::Static { root } => format!("files in {}", root.display()),
                    };
                    let host = rule
                        .host
                        .as_deref()
                        .map(|h| format!(" host {h}"))
                        .unwrap_or_default();
                    writeln!(out, "    {}{host} -> {target}", rule.path).expect("write to String");
                }
            }
            ListenerMode::Tcp(tcp) => {
                writeln!(
                    out,
                    "  listener {} (tcp) on {}: {} over [{}]",
                    listener.name,
                    listener.listen,
                    tcp.pool.strategy.name(),
                    tcp.pool.upstreams.join(", ")
                )
                .expect("write to String");
            }
        }
    }
    writeln!(out, "  {} upstream(s)", config.upstreams.len()).expect("write to String");
    out
}
