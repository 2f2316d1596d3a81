//! The request-stream framing scan: on any bytes it never panics, and the
//! verdict does not depend on how the bytes were split into reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::http::head_scan::FramingScan;

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let mut whole = FramingScan::default();
    whole.feed(stream);
    let mut pieces = FramingScan::default();
    let mut rest = stream;
    let mut size = usize::from(seed % 16) + 1;
    while !rest.is_empty() {
        let (piece, tail) = rest.split_at(size.min(rest.len()));
        pieces.feed(piece);
        rest = tail;
        size = size * 7 % 31 + 1;
    }
    assert_eq!(
        (whole.clear_heads(), whole.stopped()),
        (pieces.clear_heads(), pieces.stopped())
    );
});
