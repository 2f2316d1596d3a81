//! Binding listening sockets, once, in the supervisor.
//!
//! Workers inherit these sockets instead of binding their own, so a dead
//! worker's queued connections stay in the shared accept queue and
//! `listen: 127.0.0.1:0` works (the bound port is read back).

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, Socket, Type};

/// Accept queue length requested from the kernel (capped by
/// `net.core.somaxconn`).
const BACKLOG: i32 = 4096;

/// Binds a non-blocking TCP listener on `addr` with `SO_REUSEADDR`, so a
/// restart does not wait for `TIME_WAIT` sockets of the previous run;
/// `defer` is passed to [`set_deferred_accept`].
pub fn bind(addr: SocketAddr, defer: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    let listener = socket.into();
    if defer && let Err(error) = set_deferred_accept(&listener, true) {
        // Only a saving is lost: connections are accepted on handshake.
        tracing::warn!(%addr, %error, "cannot defer accepting");
    }
    Ok(listener)
}

/// How long, in seconds, the kernel holds a connection whose client has
/// not sent a byte before handing it over anyway: HAProxy's
/// `defer-accept` value. A client that waits for the server to speak is
/// served after this delay instead of never.
const DEFER_SECONDS: libc::c_int = 1;

/// Sets whether `accept` hands over a connection only once the client's
/// first bytes have arrived (`TCP_DEFER_ACCEPT`), as nginx's `deferred`
/// and HAProxy's `defer-accept` can.
///
/// For HTTP, where the client always speaks first, this saves the worker a
/// wake-up and an empty read per new connection, and keeps silent
/// connections in the kernel. TCP listeners must not defer: in protocols
/// such as MySQL or SMTP the server speaks first. A listener kept across a
/// reload can change mode, so this is set on every kept socket too.
pub fn set_deferred_accept(socket: &TcpListener, defer: bool) -> io::Result<()> {
    let seconds: libc::c_int = if defer { DEFER_SECONDS } else { 0 };
    // SAFETY: the pointer and length describe `seconds`, a live c_int, and
    // the descriptor is borrowed from `socket` for the call.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&raw const seconds).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_gets_a_real_port() {
        let listener = bind("127.0.0.1:0".parse().unwrap(), false).unwrap();
        assert_ne!(listener.local_addr().unwrap().port(), 0);
    }

    fn deferred_accept_seconds(listener: &TcpListener) -> libc::c_int {
        let mut seconds: libc::c_int = -1;
        let mut length = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: the pointers describe `seconds` and `length`, both live.
        let result = unsafe {
            libc::getsockopt(
                listener.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_DEFER_ACCEPT,
                (&raw mut seconds).cast(),
                &raw mut length,
            )
        };
        assert_eq!(result, 0, "{}", io::Error::last_os_error());
        seconds
    }

    #[test]
    fn deferred_accept_is_set_and_cleared() {
        let listener = bind("127.0.0.1:0".parse().unwrap(), false).unwrap();
        assert_eq!(deferred_accept_seconds(&listener), 0);
        set_deferred_accept(&listener, true).unwrap();
        assert!(deferred_accept_seconds(&listener) > 0);
        set_deferred_accept(&listener, false).unwrap();
        assert_eq!(deferred_accept_seconds(&listener), 0);
    }

    #[test]
    fn a_taken_port_is_an_error() {
        let first = bind("127.0.0.1:0".parse().unwrap(), false).unwrap();
        let err = bind(first.local_addr().unwrap(), false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }
}
