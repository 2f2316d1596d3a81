//! PROXY protocol v1/v2 parsing: any bytes are a header, "read more" or an
//! error. A header found is within the buffer and the size bound, every
//! shorter prefix of it asks for more, and the addresses it carries encode
//! back into headers that parse to the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::tcp::proxy_protocol::{MAX_HEADER, ProxyHeader, encode_v1, encode_v2, parse};

fuzz_target!(|data: &[u8]| {
    let Ok(Some((header, used))) = parse(data) else {
        return;
    };
    assert!(
        used <= data.len() && used <= MAX_HEADER,
        "{used} of {}",
        data.len()
    );
    assert_eq!(parse(&data[..used]), Ok(Some((header, used))));
    for cut in [0, used / 2, used - 1] {
        assert_eq!(parse(&data[..cut]), Ok(None), "prefix of {cut} bytes");
    }
    if let ProxyHeader::Proxied {
        source,
        destination,
    } = header
    {
        for encoded in [
            encode_v1(source, destination),
            encode_v2(source, destination),
        ] {
            if source.is_ipv4() != destination.is_ipv4() {
                continue;
            }
            assert_eq!(
                parse(&encoded),
                Ok(Some((header, encoded.len()))),
                "{encoded:?}"
            );
        }
    }
});
