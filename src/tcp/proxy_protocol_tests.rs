use super::*;

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

#[test]
fn v1_round_trips_and_leaves_stream_data() {
    let header = encode_v1(addr("192.0.2.7:51000"), addr("10.0.0.1:6432"));
    assert_eq!(header, b"PROXY TCP4 192.0.2.7 10.0.0.1 51000 6432\r\n");
    let mut buf = header.clone();
    buf.extend_from_slice(b"hello");
    let (parsed, n) = parse(&buf).unwrap().unwrap();
    assert_eq!(n, header.len());
    assert_eq!(
        parsed,
        ProxyHeader::Proxied {
            source: addr("192.0.2.7:51000"),
            destination: addr("10.0.0.1:6432"),
        }
    );
    let v6 = encode_v1(addr("[2001:db8::1]:1"), addr("[::1]:2"));
    assert_eq!(v6, b"PROXY TCP6 2001:db8::1 ::1 1 2\r\n");
    assert!(parse(&v6).unwrap().is_some());
}

#[test]
fn v2_round_trips_for_both_families() {
    let header = encode_v2(addr("192.0.2.7:51000"), addr("10.0.0.1:6432"));
    let mut expected = V2_SIGNATURE.to_vec();
    expected.extend_from_slice(&[0x21, 0x11, 0, 12, 192, 0, 2, 7, 10, 0, 0, 1]);
    expected.extend_from_slice(&51000u16.to_be_bytes());
    expected.extend_from_slice(&6432u16.to_be_bytes());
    assert_eq!(header, expected);
    for (source, destination) in [
        ("192.0.2.7:51000", "10.0.0.1:6432"),
        ("[2001:db8::7]:9", "[2001:db8::1]:5432"),
    ] {
        let (source, destination) = (addr(source), addr(destination));
        let bytes = encode_v2(source, destination);
        let (parsed, n) = parse(&bytes).unwrap().unwrap();
        assert_eq!(n, bytes.len());
        assert_eq!(
            parsed,
            ProxyHeader::Proxied {
                source,
                destination
            }
        );
    }
}

#[test]
fn mixed_families_are_written_as_ipv6() {
    let v1 = encode_v1(addr("192.0.2.7:1"), addr("[::1]:2"));
    assert_eq!(v1, b"PROXY TCP6 ::ffff:192.0.2.7 ::1 1 2\r\n");
    let v2 = encode_v2(addr("192.0.2.7:1"), addr("[::1]:2"));
    assert_eq!(v2[13], 0x21);
    assert_eq!(v2.len(), 16 + 36);
}

#[test]
fn every_prefix_of_a_valid_header_asks_for_more() {
    for header in [
        encode_v1(addr("192.0.2.7:51000"), addr("10.0.0.1:6432")),
        encode_v2(addr("[2001:db8::7]:9"), addr("[2001:db8::1]:5432")),
    ] {
        for len in 0..header.len() {
            assert_eq!(parse(&header[..len]), Ok(None), "prefix {len}");
        }
    }
}

#[test]
fn local_and_unknown_use_the_socket_addresses() {
    assert_eq!(
        parse(b"PROXY UNKNOWN\r\n").unwrap(),
        Some((ProxyHeader::Local, 15))
    );
    assert_eq!(
        parse(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nxyz").unwrap(),
        Some((ProxyHeader::Local, 35))
    );
    let mut local = V2_SIGNATURE.to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0, 0]);
    assert_eq!(parse(&local).unwrap(), Some((ProxyHeader::Local, 16)));
    // A PROXY command over AF_UNIX carries no IP address.
    let mut unix = V2_SIGNATURE.to_vec();
    unix.extend_from_slice(&[0x21, 0x31, 0, 216]);
    unix.extend_from_slice(&[0u8; 216]);
    assert_eq!(parse(&unix).unwrap(), Some((ProxyHeader::Local, 232)));
}

#[test]
fn v2_tlvs_after_the_addresses_are_skipped() {
    let mut header = encode_v2(addr("192.0.2.7:1"), addr("10.0.0.1:2"));
    header[15] = 12 + 5;
    header.extend_from_slice(&[0x04, 0x00, 0x02, b'o', b'k']);
    header.extend_from_slice(b"data");
    let (_, n) = parse(&header).unwrap().unwrap();
    assert_eq!(n, 16 + 17);
}

#[test]
fn malformed_headers_are_refused() {
    let refused: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\n",
        b"PROXX TCP4",
        b"\r\n\r\n\0\r\nQUIX",
        b"PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n",
        b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2 3\r\n",
        b"PROXY TCP4 1.2.3.4 ::1 1 2\r\n",
        b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 1.2.3.4 1 65536\r\n",
        b"PROXY TCP4 1.2.3.4 1.2.3.4 01 2\r\n",
        b"PROXY TCP4 1.2.3.4 1.2.3.4 +1 2\r\n",
        b"PROXY TCP4 1.2.3.4  1.2.3.4 1 2\r\n",
        b"PROXY TCP4 1.2.3.\xff 1.2.3.4 1 2\r\n",
        b"PROXY \r\n",
    ];
    for bytes in refused {
        assert!(
            parse(bytes).is_err(),
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    let long = [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 200]].concat();
    assert_eq!(parse(&long), Err(ProxyHeaderError::V1TooLong));

    let v2 = |ver_cmd: u8, family: u8, len: u16| {
        let mut bytes = V2_SIGNATURE.to_vec();
        bytes.extend_from_slice(&[ver_cmd, family]);
        bytes.extend_from_slice(&len.to_be_bytes());
        bytes.extend_from_slice(&vec![0u8; usize::from(len)]);
        bytes
    };
    assert!(parse(&v2(0x11, 0x11, 12)).is_err(), "version 1 in v2");
    assert!(parse(&v2(0x22, 0x11, 12)).is_err(), "command 2");
    assert!(parse(&v2(0x21, 0x11, 11)).is_err(), "short IPv4 block");
    assert!(parse(&v2(0x21, 0x21, 35)).is_err(), "short IPv6 block");
    assert!(parse(&v2(0x21, 0x41, 12)).is_err(), "family 4");
    assert!(parse(&v2(0x21, 0x13, 12)).is_err(), "transport 3");
    assert_eq!(
        parse(&v2(0x21, 0x11, 2000)[..16]),
        Err(ProxyHeaderError::V2TooLong(2016)),
        "refused from the fixed part alone, before reading the rest"
    );
    let mut early = V2_SIGNATURE.to_vec();
    early.push(0x31);
    assert!(parse(&early).is_err(), "bad version seen at byte 13");
}

/// A small fixed-seed generator: the loop below is reproducible.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn random_bytes_never_panic_and_never_overrun() {
    let mut state = 0x5EED_1234_ABCD_0001u64;
    let valid = [
        encode_v1(addr("192.0.2.7:51000"), addr("10.0.0.1:6432")),
        encode_v2(addr("[2001:db8::7]:9"), addr("[2001:db8::1]:5432")),
        encode_v2(addr("192.0.2.7:1"), addr("10.0.0.1:2")),
    ];
    for round in 0..200_000 {
        let len = (xorshift(&mut state) % 140) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| xorshift(&mut state) as u8).collect();
        // Most rounds mutate a valid header so the parser gets deep.
        if round % 4 != 0 {
            let base = &valid[round % valid.len()];
            bytes = base.clone();
            for _ in 0..1 + xorshift(&mut state) % 4 {
                let i = (xorshift(&mut state) as usize) % bytes.len();
                bytes[i] = xorshift(&mut state) as u8;
            }
            let cut = (xorshift(&mut state) as usize) % (bytes.len() + 1);
            bytes.truncate(cut);
        }
        if let Ok(Some((_, n))) = parse(&bytes) {
            assert!(n <= bytes.len() && n <= MAX_HEADER);
        }
    }
}

#[test]
fn local_headers_parse_as_local_in_both_versions() {
    for version in [
        crate::config::ProxyProtocolVersion::V1,
        crate::config::ProxyProtocolVersion::V2,
    ] {
        let header = encode_local(version);
        assert_eq!(
            parse(&header).unwrap(),
            Some((ProxyHeader::Local, header.len())),
            "{version:?}"
        );
    }
}
