//! Starting a TCP server (a backend or a proxy) and waiting until it
//! listens, without connecting to it: a probe connection through a proxy
//! would reach the backend, and iperf3 takes any connection for a test.

use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::targets::Target;

/// How long a server may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Spawns `cmd` with its output in `dir/NAME.log` (a file, so a chatty
/// server never blocks on a pipe), waits until `port` is listening, and
/// wraps it as a target; its process tree's CPU is measured if `measure`.
pub fn spawn(
    name: &'static str,
    port: u16,
    mut cmd: Command,
    dir: &Path,
    measure: bool,
) -> Result<Target> {
    let log_path = dir.join(format!("{name}.log"));
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let mut child = cmd.spawn().with_context(|| format!("starting {name}"))?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            let output = std::fs::read_to_string(&log_path).unwrap_or_default();
            bail!("{name} exited at start-up ({status}): {output}");
        }
        if listening(port) {
            return Ok(Target::new(name, port, Some(child), measure));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{name} did not listen on port {port} within {START_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether a socket listens on `port` (IPv4 or IPv6), from `/proc/net/tcp*`.
pub fn listening(port: u16) -> bool {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .any(|file| std::fs::read_to_string(file).is_ok_and(|text| parse_listening(&text, port)))
}

/// Whether a `/proc/net/tcp` table has a socket in state `0A` (LISTEN)
/// whose local port (hex, after the last `:` of the local address) is `port`.
pub fn parse_listening(table: &str, port: u16) -> bool {
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(state)) = (fields.get(1), fields.get(3)) else {
            return false;
        };
        let local_port = local
            .rsplit(':')
            .next()
            .and_then(|hex| u16::from_str_radix(hex, 16).ok());
        *state == "0A" && local_port == Some(port)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1175 1 00000000bcb55223 100 0 0 10 0
   1: 0100007F:46A1 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6467079 1 0000000041a5886d 100 0 0 10 0
   2: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 6467080 1 0000000041a5886e 20 4 30 10 -1
";

    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1451 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 123 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn finds_listening_ports() {
        assert!(parse_listening(TCP, 0x07E8));
        assert!(parse_listening(TCP, 0x46A1));
        assert!(parse_listening(TCP6, 5201));
    }

    #[test]
    fn ignores_connected_sockets_and_the_header() {
        assert!(!parse_listening(TCP, 0x1F90), "state 01 is ESTABLISHED");
        assert!(!parse_listening(TCP, 0xC350), "a remote port");
        assert!(!parse_listening("garbage\nmore garbage", 80));
    }
}
