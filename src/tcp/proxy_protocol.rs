//! The PROXY protocol (HAProxy's, versions 1 and 2): a header in front of a
//! TCP stream that carries the original client address across a balancer.
//!
//! sluice writes one toward upstreams that want the client address
//! (`proxy_protocol: v1 | v2`) and reads one from a balancer in front of it
//! (`accept_proxy_protocol: true`). The reader faces the network, so
//! [`parse`] is written for hostile input: it never reads past the buffer,
//! refuses anything that is not a well-formed header as early as the first
//! wrong byte, and bounds the header size ([`MAX_HEADER`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The 12-byte signature that opens a version 2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Longest version 1 header, `\r\n` included (the spec's limit).
pub const V1_MAX: usize = 107;
/// Longest version 2 header accepted (16-byte fixed part + addresses and
/// TLVs). The format allows 64 KiB; real balancers send well under 1 KiB,
/// and a bound keeps a hostile peer from making sluice buffer much.
pub const MAX_HEADER: usize = 16 + 1024;

/// Why a PROXY header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyHeaderError {
    /// The bytes are neither `PROXY ` nor the version 2 signature.
    #[error("not a PROXY protocol header")]
    NotProxy,
    /// A version 1 line without `\r\n` within 107 bytes.
    #[error("PROXY v1 header longer than {V1_MAX} bytes")]
    V1TooLong,
    /// A version 1 line that does not parse.
    #[error("malformed PROXY v1 header: {0}")]
    V1Malformed(&'static str),
    /// A version 2 header announcing more than [`MAX_HEADER`] bytes.
    #[error("PROXY v2 header of {0} bytes is larger than allowed")]
    V2TooLong(usize),
    /// A version 2 header with a wrong version, command or address length.
    #[error("malformed PROXY v2 header: {0}")]
    V2Malformed(&'static str),
}

/// What a received header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// The balancer in front relays a client: its address and the address it
    /// connected to.
    Proxied {
        /// The original client.
        source: SocketAddr,
        /// The address the client connected to.
        destination: SocketAddr,
    },
    /// A connection of the balancer's own (v2 `LOCAL`, v1 `UNKNOWN`, or an
    /// address family other than TCP/UDP over IPv4/IPv6): the socket's own
    /// addresses apply.
    Local,
}

/// Parses a header at the start of `buf`. `Ok(None)` means "not enough
/// bytes yet, read more"; `Ok(Some((header, n)))` means the header is the
/// first `n` bytes and the rest of `buf` is stream data.
pub fn parse(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyHeaderError> {
    const V1_PREFIX: &[u8] = b"PROXY ";
    if buf.first() == Some(&b'P') {
        let n = buf.len().min(V1_PREFIX.len());
        if buf[..n] != V1_PREFIX[..n] {
            return Err(ProxyHeaderError::NotProxy);
        }
        return parse_v1(buf);
    }
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] != V2_SIGNATURE[..n] {
        return Err(ProxyHeaderError::NotProxy);
    }
    parse_v2(buf)
}

fn parse_v1(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyHeaderError> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() >= V1_MAX {
            return Err(ProxyHeaderError::V1TooLong);
        }
        return Ok(None);
    };
    let line =
        std::str::from_utf8(&buf[..end]).map_err(|_| ProxyHeaderError::V1Malformed("not ASCII"))?;
    let mut fields = line.split(' ');
    // `parse` checked the `PROXY ` prefix, so the first field is `PROXY`.
    let _proxy = fields.next();
    let header = match fields.next() {
        Some("UNKNOWN") => ProxyHeader::Local,
        Some(family @ ("TCP4" | "TCP6")) => {
            let mut next = || {
                fields
                    .next()
                    .ok_or(ProxyHeaderError::V1Malformed("missing field"))
            };
            let (src, dst, sport, dport) = (next()?, next()?, next()?, next()?);
            if fields.next().is_some() {
                return Err(ProxyHeaderError::V1Malformed("extra field"));
            }
            let ip = |text: &str| -> Result<IpAddr, ProxyHeaderError> {
                let ip = if family == "TCP4" {
                    text.parse::<Ipv4Addr>().map(IpAddr::V4)
                } else {
                    text.parse::<Ipv6Addr>().map(IpAddr::V6)
                };
                ip.map_err(|_| ProxyHeaderError::V1Malformed("bad address"))
            };
            let port = |text: &str| -> Result<u16, ProxyHeaderError> {
                // Decimal without sign or leading zeros, as the spec says.
                let canonical = !text.is_empty()
                    && text.bytes().all(|b| b.is_ascii_digit())
                    && (text == "0" || !text.starts_with('0'));
                text.parse::<u16>()
                    .ok()
                    .filter(|_| canonical)
                    .ok_or(ProxyHeaderError::V1Malformed("bad port"))
            };
            ProxyHeader::Proxied {
                source: SocketAddr::new(ip(src)?, port(sport)?),
                destination: SocketAddr::new(ip(dst)?, port(dport)?),
            }
        }
        _ => return Err(ProxyHeaderError::V1Malformed("unknown protocol")),
    };
    Ok(Some((header, end + 2)))
}

fn parse_v2(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyHeaderError> {
    if buf.len() < 16 {
        if let Some(&ver_cmd) = buf.get(12) {
            check_version_command(ver_cmd)?;
        }
        return Ok(None);
    }
    let ver_cmd = buf[12];
    let family = buf[13];
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let total = 16 + len;
    check_version_command(ver_cmd)?;
    if total > MAX_HEADER {
        return Err(ProxyHeaderError::V2TooLong(total));
    }
    if buf.len() < total {
        return Ok(None);
    }
    let body = &buf[16..total];
    if ver_cmd & 0x0F == 0 {
        // LOCAL: health checks and the like from the balancer itself.
        return Ok(Some((ProxyHeader::Local, total)));
    }
    let header = match family >> 4 {
        // AF_INET
        1 => {
            let Some(a) = body.get(..12) else {
                return Err(ProxyHeaderError::V2Malformed("short IPv4 address block"));
            };
            let ip = |i: usize| IpAddr::V4(Ipv4Addr::new(a[i], a[i + 1], a[i + 2], a[i + 3]));
            let port = |i: usize| u16::from_be_bytes([a[i], a[i + 1]]);
            ProxyHeader::Proxied {
                source: SocketAddr::new(ip(0), port(8)),
                destination: SocketAddr::new(ip(4), port(10)),
            }
        }
        // AF_INET6
        2 => {
            let Some(a) = body.get(..36) else {
                return Err(ProxyHeaderError::V2Malformed("short IPv6 address block"));
            };
            let ip = |i: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&a[i..i + 16]);
                IpAddr::V6(Ipv6Addr::from(octets))
            };
            let port = |i: usize| u16::from_be_bytes([a[i], a[i + 1]]);
            ProxyHeader::Proxied {
                source: SocketAddr::new(ip(0), port(32)),
                destination: SocketAddr::new(ip(16), port(34)),
            }
        }
        // AF_UNSPEC, AF_UNIX: no IP address to use; the socket's applies.
        0 | 3 => ProxyHeader::Local,
        _ => return Err(ProxyHeaderError::V2Malformed("unknown address family")),
    };
    if family & 0x0F > 2 {
        return Err(ProxyHeaderError::V2Malformed("unknown transport"));
    }
    Ok(Some((header, total)))
}

fn check_version_command(ver_cmd: u8) -> Result<(), ProxyHeaderError> {
    if ver_cmd >> 4 != 2 {
        return Err(ProxyHeaderError::V2Malformed("version is not 2"));
    }
    if ver_cmd & 0x0F > 1 {
        return Err(ProxyHeaderError::V2Malformed("unknown command"));
    }
    Ok(())
}

/// Two addresses of one family: an IPv4 one is written as IPv4-mapped IPv6
/// when the other is IPv6, so a header never mixes families.
fn same_family(source: SocketAddr, destination: SocketAddr) -> (SocketAddr, SocketAddr) {
    let v6 = |a: SocketAddr| match a.ip() {
        IpAddr::V4(ip) => SocketAddr::new(IpAddr::V6(ip.to_ipv6_mapped()), a.port()),
        IpAddr::V6(_) => a,
    };
    match (source.ip(), destination.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => (source, destination),
        _ => (v6(source), v6(destination)),
    }
}

/// A version 1 header (`PROXY TCP4 src dst sport dport\r\n`) for a client
/// at `source` that connected to `destination`.
pub fn encode_v1(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let (source, destination) = same_family(source, destination);
    let family = if source.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        source.ip(),
        destination.ip(),
        source.port(),
        destination.port()
    )
    .into_bytes()
}

/// A version 2 header (command `PROXY`, transport TCP, no TLVs) for a
/// client at `source` that connected to `destination`.
pub fn encode_v2(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let (source, destination) = same_family(source, destination);
    let mut out = Vec::with_capacity(16 + 36);
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(0x21);
    match (source.ip(), destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.push(0x11);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (s, d) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(ip) => ip.to_ipv6_mapped(),
                IpAddr::V6(ip) => ip,
            };
            out.push(0x21);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&v6(s).octets());
            out.extend_from_slice(&v6(d).octets());
        }
    }
    out.extend_from_slice(&source.port().to_be_bytes());
    out.extend_from_slice(&destination.port().to_be_bytes());
    out
}

/// A header for a connection of sluice's own (a health probe), carrying
/// no client address: v1 `PROXY UNKNOWN`, v2 command `LOCAL`. A backend
/// that requires the header takes it and uses the socket's addresses.
pub fn encode_local(version: crate::config::ProxyProtocolVersion) -> Vec<u8> {
    match version {
        crate::config::ProxyProtocolVersion::V1 => b"PROXY UNKNOWN\r\n".to_vec(),
        crate::config::ProxyProtocolVersion::V2 => {
            let mut out = V2_SIGNATURE.to_vec();
            // Version 2, command LOCAL; family and transport unspecified;
            // no address block.
            out.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
            out
        }
    }
}

#[cfg(test)]
#[path = "proxy_protocol_tests.rs"]
mod tests;
