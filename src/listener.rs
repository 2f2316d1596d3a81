//! Binding listening sockets, once, in the supervisor.
//!
//! Workers inherit these sockets instead of binding their own, so a dead
//! worker's queued connections stay in the shared accept queue and
//! `listen: 127.0.0.1:0` works (the bound port is read back).

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// Accept queue length requested from the kernel (capped by
/// `net.core.somaxconn`).
const BACKLOG: i32 = 4096;

/// Binds a non-blocking TCP listener on `addr` with `SO_REUSEADDR`, so a
/// restart does not wait for `TIME_WAIT` sockets of the previous run.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_gets_a_real_port() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        assert_ne!(listener.local_addr().unwrap().port(), 0);
    }

    #[test]
    fn a_taken_port_is_an_error() {
        let first = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let err = bind(first.local_addr().unwrap()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }
}
