//! An upstream's response head and chunked body: on any bytes the parser
//! and the decoder never panic, and the decoded body and where it ends do
//! not depend on how the bytes were split into reads.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sluice::http::upstream::chunked::{ChunkedDecoder, Decoded};
use sluice::http::upstream::response_head::{self, Framing};

/// The body's data and the bytes left after its end, or `None` when the
/// body is invalid or unfinished.
fn decode(input: &[u8], step: usize) -> Option<(Vec<u8>, usize)> {
    let mut decoder = ChunkedDecoder::default();
    let mut buffer = BytesMut::new();
    let mut data = Vec::new();
    let mut fed = 0;
    loop {
        match decoder.decode(&mut buffer).ok()? {
            Decoded::Data(bytes) => data.extend_from_slice(&bytes),
            Decoded::End => return Some((data, buffer.len() + input.len() - fed)),
            Decoded::NeedMore if fed == input.len() => return None,
            Decoded::NeedMore => {
                let end = (fed + step).min(input.len());
                buffer.extend_from_slice(&input[fed..end]);
                fed = end;
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let mut buffer = BytesMut::from(stream);
    let Ok(Some(head)) = response_head::parse(&mut buffer, seed & 1 == 1) else {
        return;
    };
    if head.framing != Framing::Chunked {
        return;
    }
    let whole = decode(&buffer, buffer.len().max(1));
    let pieces = decode(&buffer, usize::from(seed >> 1) % 16 + 1);
    assert_eq!(whole, pieces);
});
