//! Header templating: any value either compiles or names an unknown
//! variable; a compiled one renders, for any client host, a value without
//! line breaks or NUL (a header that cannot split the request).
#![no_main]

use arbitrary::Arbitrary;
use http::header::HeaderName;
use libfuzzer_sys::fuzz_target;
use sluice::runtime::headers::{HeaderTemplate, RequestVars};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    value: &'a str,
    host: Option<&'a str>,
    ip: [u8; 16],
    v4: bool,
    port: u16,
}

fuzz_target!(|input: Input<'_>| {
    let name = HeaderName::from_static("x-fuzz");
    let Ok(template) = HeaderTemplate::compile(name, input.value) else {
        return;
    };
    let ip = if input.v4 {
        std::net::IpAddr::from([input.ip[0], input.ip[1], input.ip[2], input.ip[3]])
    } else {
        std::net::IpAddr::from(input.ip)
    };
    let vars = RequestVars {
        ip,
        port: input.port,
        host: input.host,
        scheme: "http",
        request_id: "0123456789abcdef",
    };
    let rendered = template.render(&vars);
    assert!(
        !rendered
            .as_bytes()
            .iter()
            .any(|b| matches!(b, b'\r' | b'\n' | 0)),
        "{rendered:?}"
    );
});
