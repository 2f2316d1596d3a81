//! Property-driven fuzzing of the parsers that take outside input, bounded
//! so it runs in every CI: config loading and header templates (the router
//! and the PROXY protocol parser have their own loops in their modules) and
//! the framing scan that follows pipelined request streams.
//! Nothing may panic; what is accepted must be well-formed.

use std::path::Path;

use proptest::prelude::*;
use sluice::http::head_scan::FramingScan;
use sluice::runtime::headers::{HeaderTemplate, RequestVars};

/// YAML-ish text: keys, colons, dashes, brackets, numbers, units and the
/// odd control character, so the generator reaches the validator.
fn yamlish() -> impl Strategy<Value = String> {
    let tokens = prop::sample::select(vec![
        "upstreams:",
        "listeners:",
        "defaults:",
        "- id: a",
        "- name: web",
        "address: 127.0.0.1:1",
        "listen: 0",
        "rules:",
        "- path: /*",
        "upstreams: [a]",
        "mode: tcp",
        "health_check:",
        "kind: http",
        "interval: 1s",
        "weight: 0",
        "&x",
        "*x",
        "<<: *x",
        "{",
        "}",
        "[",
        "]",
        "\"",
        "'",
        "---",
        "\t",
        "  ",
        "\n",
        "yes",
        "1e99",
        "99999999999999999999",
        "-1",
        "\u{0}",
        "é",
        ":",
        "#",
        "?",
        "|",
        ">",
    ]);
    prop::collection::vec(tokens, 0..60).prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn config_loading_never_panics(text in yamlish()) {
        let _ = sluice::config::parse(&text, Path::new("fuzz.yaml"));
    }

    #[test]
    fn config_loading_never_panics_on_any_text(text in ".{0,400}") {
        let _ = sluice::config::parse(&text, Path::new("fuzz.yaml"));
    }

    #[test]
    fn mutated_examples_never_panic(index in 0usize..64, cut in 0usize..4000, insert in ".{0,8}") {
        let examples: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/config"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "yaml"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .collect();
        let mut text = examples[index % examples.len()].clone();
        let mut at = cut.min(text.len());
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.insert_str(at, &insert);
        let _ = sluice::config::parse(&text, Path::new("fuzz.yaml"));
    }

    #[test]
    fn header_templates_never_panic_or_emit_line_breaks(value in ".{0,60}", host in ".{0,40}") {
        let name = http::header::HeaderName::from_static("x-fuzz");
        if let Ok(template) = HeaderTemplate::compile(name, &value) {
            let vars = RequestVars { ip: "10.0.0.1".parse().unwrap(), port: 1, host: Some(&host), scheme: "http", request_id: "id" };
            let rendered = template.render(&vars);
            prop_assert!(!rendered.as_bytes().iter().any(|b| matches!(b, b'\r' | b'\n' | 0)));
        }
    }
}

/// Body bytes that look like heads, chunk lines and line ends.
fn tricky_bytes() -> impl Strategy<Value = Vec<u8>> {
    let pieces = prop::sample::select(vec![
        &b"\r\n"[..],
        b"\n",
        b"\r",
        b"0\r\n\r\n",
        b"GET / HTTP/1.1\r\n",
        b"content-length: 1\r\n",
        b"transfer-encoding: chunked\r\n",
        b"x",
        b"\0",
    ]);
    prop::collection::vec(pieces, 0..12).prop_map(|p| p.concat())
}

/// How a generated request frames its body.
#[derive(Clone, Debug)]
enum Body {
    None,
    Length(&'static str, Vec<u8>),
    Chunked(&'static str, Vec<Vec<u8>>, bool, Vec<&'static str>),
}

/// One well-framed request: leading empty lines, line end, extra headers
/// and a body.
fn request() -> impl Strategy<Value = Vec<u8>> {
    let body = prop_oneof![
        Just(Body::None),
        (
            prop::sample::select(vec!["", "0", " ", "\t00"]),
            tricky_bytes()
        )
            .prop_map(|(pad, bytes)| Body::Length(pad, bytes)),
        (
            prop::sample::select(vec!["chunked", "Chunked", " CHUNKED\t", "chunked "]),
            prop::collection::vec(tricky_bytes(), 0..4),
            any::<bool>(),
            prop::collection::vec(
                prop::sample::select(vec!["x-t: 1", "content-length: 9"]),
                0..3
            ),
        )
            .prop_map(|(te, chunks, ext, trailers)| Body::Chunked(te, chunks, ext, trailers)),
    ];
    let extra = prop::sample::select(vec![
        "host: a",
        "x-note: content-length: 5",
        "x-transfer-encoding: chunked",
        "content-lengths: 3",
        "transfer-encodingx: gzip",
        "connection: keep-alive",
    ]);
    (
        0usize..3,
        any::<bool>(),
        prop::collection::vec(extra, 0..4),
        body,
    )
        .prop_map(|(empty_lines, bare_lf, extra, body)| {
            let eol = if bare_lf { "\n" } else { "\r\n" };
            let mut out = eol.repeat(empty_lines).into_bytes();
            out.extend_from_slice(format!("POST /p HTTP/1.1{eol}").as_bytes());
            for header in extra {
                out.extend_from_slice(format!("{header}{eol}").as_bytes());
            }
            match body {
                Body::None => out.extend_from_slice(eol.as_bytes()),
                Body::Length(pad, bytes) => {
                    out.extend_from_slice(
                        format!("Content-Length:{pad}{}{eol}{eol}", bytes.len()).as_bytes(),
                    );
                    out.extend_from_slice(&bytes);
                }
                Body::Chunked(te, chunks, ext, trailers) => {
                    out.extend_from_slice(format!("Transfer-Encoding: {te}{eol}{eol}").as_bytes());
                    for chunk in chunks.iter().filter(|c| !c.is_empty()) {
                        let ext = if ext { " ;a=\"b\"" } else { "" };
                        out.extend_from_slice(format!("{:X}{ext}\r\n", chunk.len()).as_bytes());
                        out.extend_from_slice(chunk);
                        out.extend_from_slice(b"\r\n");
                    }
                    out.extend_from_slice(b"0\r\n");
                    for trailer in trailers {
                        out.extend_from_slice(format!("{trailer}\r\n").as_bytes());
                    }
                    out.extend_from_slice(b"\r\n");
                }
            }
            out
        })
}

/// A head whose framing sluice refuses.
fn refused_head() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "POST /bad HTTP/1.1\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n",
        "POST /bad HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n",
        "POST /bad HTTP/1.1\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\n",
        "POST /bad HTTP/1.1\r\ncontent-length: 5, 5\r\n\r\n",
        "POST /bad HTTP/1.1\r\ncontent-length: +5\r\n\r\n",
        "POST /bad HTTP/1.1\r\ntransfer-encoding: chunked, chunked\r\n\r\n",
        "POST /bad HTTP/1.1\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
        "POST /bad HTTP/1.1\r\ntransfer-encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST /bad HTTP/1.1\ntransfer-encoding : chunked\n\n",
        "POST /bad HTTP/1.1\r\nTransfer-Encoding: \u{1}chunked\r\n\r\n",
    ])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    /// The framing scan counts every well-framed request of a pipelined
    /// stream, whatever its bodies hold and however reads split it, and
    /// stops exactly at a refused head.
    #[test]
    fn the_framing_scan_follows_pipelined_streams(
        requests in prop::collection::vec(request(), 0..6),
        bad in prop::option::of((any::<prop::sample::Index>(), refused_head())),
        cuts in prop::collection::vec(1usize..64, 0..40),
    ) {
        let mut stream: Vec<u8> = Vec::new();
        let mut expected = (requests.len() as u64, false);
        let bad_at = bad.as_ref().map(|(index, _)| index.index(requests.len() + 1));
        for (i, request) in requests.iter().enumerate() {
            if bad_at == Some(i) {
                expected = (i as u64, true);
                stream.extend_from_slice(bad.as_ref().unwrap().1.as_bytes());
            }
            stream.extend_from_slice(request);
        }
        if bad_at == Some(requests.len()) {
            expected = (requests.len() as u64, true);
            stream.extend_from_slice(bad.as_ref().unwrap().1.as_bytes());
        }
        let mut scan = FramingScan::default();
        let mut rest = &stream[..];
        for cut in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (piece, tail) = rest.split_at((*cut).min(rest.len()));
            scan.feed(piece);
            rest = tail;
        }
        scan.feed(rest);
        prop_assert_eq!(
            (scan.clear_heads(), scan.stopped()),
            expected,
            "{:?}",
            String::from_utf8_lossy(&stream)
        );
    }
}
