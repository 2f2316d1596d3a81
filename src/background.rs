//! `sluice start | stop | reload | status`: running a supervisor in the
//! background and talking to one through its control socket.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use std::os::unix::process::CommandExt;

use anyhow::Context as _;

use crate::supervisor::control::{self, Command, ControlError};

/// How long `start` waits for the new supervisor to answer, beyond its
/// first round of health checks (which it waits for before it answers).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `reload` waits for the answer: a reload waits for new
/// upstreams' first checks and for every worker, each bounded by the
/// supervisor itself.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(600);
/// How long `status` waits for the answer.
const STATUS_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `stop` waits for a supervisor to finish draining.
const STOP_TIMEOUT: Duration = Duration::from_secs(600);

/// Starts `sluice run` detached, logging to the state directory; returns
/// once it answers on its control socket (exit code 0) or has failed (1).
pub fn start(config: &Path) -> anyhow::Result<i32> {
    let dir = control::ensure_state_dir()?;
    let config = std::fs::canonicalize(config).with_context(|| config.display().to_string())?;
    let starting = dir.join(format!("sluice-starting-{}.log", std::process::id()));
    let log = std::fs::File::create(&starting)?;
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .arg("run")
        .arg("-c")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .env_remove("SLUICE_CONFIG")
        .process_group(0)
        .spawn()
        .context("starting sluice in the background")?;
    let pid = child.id();
    let log_path = dir.join(format!("sluice-{pid}.log"));
    std::fs::rename(&starting, &log_path)?;
    // The first round of checks is bounded by the longest check timeout.
    let checks = crate::config::load(&config)
        .ok()
        .and_then(|c| c.upstreams.iter().map(|u| u.health_check.timeout).max())
        .unwrap_or_default();
    let wait = START_TIMEOUT + checks;
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            eprint!("{}", std::fs::read_to_string(&log_path).unwrap_or_default());
            eprintln!(
                "sluice exited during start ({status}); log: {}",
                log_path.display()
            );
            return Ok(1);
        }
        if let Ok((true, _)) = control::request(pid, Command::Status, Duration::from_secs(2)) {
            println!("{pid}");
            eprintln!("sluice started (pid {pid}); log: {}", log_path.display());
            // What went wrong while it started (upstreams down from their
            // first check, say) would otherwise sit unseen in the log.
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            for line in log
                .lines()
                .filter(|line| line.contains(" WARN ") || line.contains(" ERROR "))
            {
                eprintln!("  {line}");
            }
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "sluice (pid {pid}) did not answer within {wait:?}; log: {}",
        log_path.display()
    );
    Ok(1)
}

/// Asks a supervisor to stop and waits until it has exited.
pub fn stop(pid: Option<u32>) -> anyhow::Result<i32> {
    let pid = match control::pick(pid) {
        Ok(pid) => pid,
        Err(error) => return Ok(report(&error)),
    };
    let (ok, text) = control::request(pid, Command::Stop, Duration::from_secs(10))?;
    if !ok {
        eprint!("{text}");
        return Ok(1);
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    while alive(pid) {
        if Instant::now() > deadline {
            eprintln!("sluice (pid {pid}) is still draining after {STOP_TIMEOUT:?}");
            return Ok(1);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("sluice (pid {pid}) stopped");
    Ok(0)
}

/// `reload` or `status`: prints the supervisor's answer.
pub fn control(pid: Option<u32>, command: Command) -> anyhow::Result<i32> {
    let pid = match control::pick(pid) {
        Ok(pid) => pid,
        Err(error) => return Ok(report(&error)),
    };
    let timeout = match command {
        Command::Reload => RELOAD_TIMEOUT,
        _ => STATUS_TIMEOUT,
    };
    let (ok, text) = control::request(pid, command, timeout)?;
    if ok {
        print!("{text}");
        Ok(0)
    } else {
        eprint!("{text}");
        Ok(1)
    }
}

/// Prints a control error; several instances without `-p` is a usage
/// error (exit 2), the rest exit 1.
fn report(error: &ControlError) -> i32 {
    eprintln!("{error}");
    if matches!(
        error,
        ControlError::NoInstance(_) | ControlError::UnknownPid(..)
    ) {
        for dir in control::sockets_elsewhere() {
            eprintln!(
                "(control sockets found in {}: run this as the user, and with the XDG_RUNTIME_DIR, that started sluice)",
                dir.display()
            );
        }
    }
    match error {
        ControlError::Several(_) => 2,
        _ => 1,
    }
}

/// Whether `pid` still runs. An exited process whose parent has not
/// reaped it yet (a zombie: `sluice run` started by a program that waits
/// for it only once `stop` returns) has exited.
fn alive(pid: u32) -> bool {
    let exists = rustix::process::Pid::from_raw(pid as i32)
        .is_some_and(|pid| rustix::process::test_kill_process(pid).is_ok());
    exists && !is_zombie(pid)
}

/// Whether `/proc/PID/stat` gives state `Z` (the state follows the
/// parenthesised command name, which may itself hold spaces or parens).
fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}
