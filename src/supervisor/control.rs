//! The control socket: how `sluice stop | reload | status` reach a running
//! supervisor.
//!
//! Every supervisor listens on `sluice-<PID>.sock` in the state directory
//! (`$XDG_RUNTIME_DIR/sluice`, else `/run/sluice` as root, else
//! `/tmp/sluice-<uid>`). The protocol is one line: the client sends a
//! command, the supervisor answers `ok` or `error` on the first line, then
//! text, and closes.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The commands the control socket understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Graceful stop.
    Stop,
    /// Reload the config file.
    Reload,
    /// Workers, listeners and upstreams as tables.
    Status,
}

impl Command {
    /// The wire word.
    pub fn word(self) -> &'static str {
        match self {
            Command::Stop => "stop",
            Command::Reload => "reload",
            Command::Status => "status",
        }
    }

    /// Parses the wire word.
    pub fn parse(word: &str) -> Option<Command> {
        [Command::Stop, Command::Reload, Command::Status]
            .into_iter()
            .find(|c| c.word() == word.trim())
    }
}

/// Why a control request failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No supervisor is running for this user.
    #[error("no running sluice found in {0}")]
    NoInstance(PathBuf),
    /// Several are running and no `-p` was given.
    #[error("several sluice instances are running ({}); pick one with -p PID", .0.iter().map(u32::to_string).collect::<Vec<_>>().join(", "))]
    Several(Vec<u32>),
    /// The given PID has no control socket.
    #[error("no sluice with PID {0} (no control socket in {1})")]
    UnknownPid(u32, PathBuf),
    /// Talking to the socket failed.
    #[error("control socket: {0}")]
    Io(#[from] std::io::Error),
}

/// The state directory (created on demand, mode 0700).
pub fn state_dir() -> PathBuf {
    if let Some(runtime) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        PathBuf::from(runtime).join("sluice")
    } else if rustix::process::geteuid().is_root() {
        PathBuf::from("/run/sluice")
    } else {
        std::env::temp_dir().join(format!("sluice-{}", rustix::process::geteuid().as_raw()))
    }
}

/// Creates the state directory if needed.
pub fn ensure_state_dir() -> std::io::Result<PathBuf> {
    let dir = state_dir();
    ensure_private_dir(&dir)?;
    Ok(dir)
}

/// Creates `dir` (mode 0700) if needed, and refuses one that is not a
/// directory of this user closed to everyone else: under a shared `/tmp`
/// another user could have made it first, to take over the control
/// socket or point the log file elsewhere through a link.
fn ensure_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let meta = std::fs::symlink_metadata(dir)?;
    let me = rustix::process::geteuid().as_raw();
    let problem = if !meta.is_dir() {
        Some("it is not a directory".to_owned())
    } else if meta.uid() != me {
        Some(format!("it belongs to uid {}, not {me}", meta.uid()))
    } else if meta.mode() & 0o077 != 0 {
        Some(format!(
            "others may use it (mode {:o})",
            meta.mode() & 0o777
        ))
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(std::io::Error::other(format!(
            "state directory {}: {problem}; remove it, or set XDG_RUNTIME_DIR",
            dir.display()
        ))),
    }
}

/// The control socket of supervisor `pid`.
pub fn socket_path(pid: u32) -> PathBuf {
    state_dir().join(format!("sluice-{pid}.sock"))
}

/// The PIDs of supervisors that answer on their control socket; sockets
/// left by crashed instances are removed on the way.
pub fn running_instances() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(state_dir()) else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let pid = name
                .strip_prefix("sluice-")?
                .strip_suffix(".sock")?
                .parse()
                .ok()?;
            if UnixStream::connect(entry.path()).is_ok() {
                Some(pid)
            } else {
                let _ = std::fs::remove_file(entry.path());
                None
            }
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// Other state directories sluice could have used, under another user or
/// another `XDG_RUNTIME_DIR`, that hold a control socket: where an
/// instance this command cannot see may be.
pub fn sockets_elsewhere() -> Vec<PathBuf> {
    let mine = state_dir();
    let uid = rustix::process::geteuid().as_raw();
    let mut candidates = vec![
        PathBuf::from("/run/sluice"),
        std::env::temp_dir().join(format!("sluice-{uid}")),
        PathBuf::from(format!("/run/user/{uid}/sluice")),
    ];
    candidates.retain(|dir| *dir != mine);
    holding_sockets(candidates)
}

/// Those of `dirs` that hold a file named like a control socket.
fn holding_sockets(dirs: Vec<PathBuf>) -> Vec<PathBuf> {
    dirs.into_iter()
        .filter(|dir| {
            std::fs::read_dir(dir).is_ok_and(|entries| {
                entries.filter_map(Result::ok).any(|entry| {
                    let name = entry.file_name();
                    let name = name.to_string_lossy();
                    name.starts_with("sluice-") && name.ends_with(".sock")
                })
            })
        })
        .collect()
}

/// The supervisor to talk to: `pid` if given, else the only one running.
pub fn pick(pid: Option<u32>) -> Result<u32, ControlError> {
    if let Some(pid) = pid {
        return if socket_path(pid).exists() {
            Ok(pid)
        } else {
            Err(ControlError::UnknownPid(pid, state_dir()))
        };
    }
    match running_instances().as_slice() {
        [] => Err(ControlError::NoInstance(state_dir())),
        [one] => Ok(*one),
        several => Err(ControlError::Several(several.to_vec())),
    }
}

/// Sends `command` to supervisor `pid`; returns whether it answered `ok`,
/// and its text. Waits up to `timeout` for the answer.
pub fn request(
    pid: u32,
    command: Command,
    timeout: Duration,
) -> Result<(bool, String), ControlError> {
    request_at(&socket_path(pid), command, timeout)
}

fn request_at(
    path: &Path,
    command: Command,
    timeout: Duration,
) -> Result<(bool, String), ControlError> {
    let mut stream = UnixStream::connect(path)?;
    stream.set_read_timeout(Some(timeout))?;
    writeln!(stream, "{}", command.word())?;
    let mut reader = BufReader::new(stream);
    let mut first = String::new();
    reader.read_line(&mut first)?;
    let mut rest = String::new();
    reader.read_to_string(&mut rest)?;
    Ok((first.trim() == "ok", rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn directories_holding_a_control_socket_are_found() {
        let root = tempfile::tempdir().unwrap();
        let (with, without) = (root.path().join("a"), root.path().join("b"));
        std::fs::create_dir(&with).unwrap();
        std::fs::create_dir(&without).unwrap();
        std::fs::write(with.join("sluice-42.sock"), "").unwrap();
        std::fs::write(without.join("sluice-42.log"), "").unwrap();
        let missing = root.path().join("c");
        assert_eq!(
            holding_sockets(vec![with.clone(), without, missing]),
            [with]
        );
    }

    #[test]
    fn a_state_directory_others_can_use_is_refused() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("sluice");
        ensure_private_dir(&dir).unwrap();
        ensure_private_dir(&dir).unwrap();

        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let error = ensure_private_dir(&dir).unwrap_err().to_string();
        assert!(error.contains("others may use it (mode 777)"), "{error}");

        let elsewhere = parent.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        let link = parent.path().join("link");
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
        let error = ensure_private_dir(&link).unwrap_err().to_string();
        assert!(error.contains("not a directory"), "{error}");
    }
}
