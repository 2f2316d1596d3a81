use super::*;

fn parse_all(text: &str, head_request: bool) -> Result<Option<ResponseHead>, HeadError> {
    parse(&mut BytesMut::from(text), head_request)
}

#[test]
fn a_complete_head_leaves_the_body_in_the_buffer() {
    let mut buffer =
        BytesMut::from("HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: 1\r\nx-a: 2\r\n\r\nhello");
    let head = parse(&mut buffer, false).unwrap().unwrap();
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.version, Version::HTTP_11);
    assert_eq!(head.framing, Framing::Length(5));
    assert!(head.keep_alive);
    assert!(head.reason.is_none());
    let values: Vec<_> = head.headers.get_all("x-a").iter().collect();
    assert_eq!(values, ["1", "2"]);
    assert_eq!(&buffer[..], b"hello");
}

#[test]
fn an_incomplete_head_waits_and_a_huge_one_fails() {
    let mut buffer = BytesMut::from("HTTP/1.1 200 OK\r\ncontent-le");
    assert_eq!(parse(&mut buffer, false).unwrap().map(|h| h.status), None);
    assert_eq!(&buffer[..], b"HTTP/1.1 200 OK\r\ncontent-le");
    let mut huge = BytesMut::from("HTTP/1.1 200 OK\r\nx-filler: ");
    huge.resize(MAX_HEAD_BYTES, b'x');
    assert_eq!(
        parse(&mut huge.clone(), false).unwrap_err(),
        HeadError::TooLarge
    );
    huge.extend_from_slice(b"\r\n\r\n");
    assert_eq!(parse(&mut huge, false).unwrap_err(), HeadError::TooLarge);
}

#[test]
fn framing_follows_rfc_9112() {
    let framing =
        |text: &str, head_request| parse_all(text, head_request).unwrap().unwrap().framing;
    assert_eq!(
        framing(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            false
        ),
        Framing::Chunked
    );
    for coded in [
        "transfer-encoding: gzip",
        "transfer-encoding: gzip, chunked",
        "transfer-encoding: gzip\r\ntransfer-encoding: chunked",
        "transfer-encoding: chunked, chunked",
    ] {
        let text = format!("HTTP/1.1 200 OK\r\n{coded}\r\n\r\n");
        assert_eq!(
            parse_all(&text, false).unwrap_err(),
            HeadError::UnsupportedCoding,
            "{coded}"
        );
    }
    assert_eq!(
        framing(
            "HTTP/1.1 200 OK\r\ntransfer-encoding:  Chunked \r\n\r\n",
            false
        ),
        Framing::Chunked
    );
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\n\r\n", false),
        Framing::UntilClose
    );
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n", true),
        Framing::Length(0)
    );
    assert_eq!(
        framing("HTTP/1.1 204 No Content\r\n\r\n", false),
        Framing::Length(0)
    );
    assert_eq!(
        framing("HTTP/1.1 304 Not Modified\r\n\r\n", false),
        Framing::Length(0)
    );
}

#[test]
fn ambiguous_or_invalid_lengths_are_refused() {
    for text in [
        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 5x\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999999\r\n\r\n",
    ] {
        for head_request in [false, true] {
            assert_eq!(
                parse_all(text, head_request).unwrap_err(),
                HeadError::AmbiguousFraming,
                "{text} (HEAD: {head_request})"
            );
        }
    }
    let no_content = "HTTP/1.1 204 No Content\r\ncontent-length: abc\r\n\r\n";
    assert_eq!(
        parse_all(no_content, false).unwrap_err(),
        HeadError::AmbiguousFraming
    );
    assert!(matches!(
        parse_all("HTTTP/1.1 200 OK\r\n\r\n", false),
        Err(HeadError::Malformed(_))
    ));
}

#[test]
fn reuse_follows_the_version_and_connection_header() {
    let keeps = |text: &str| parse_all(text, false).unwrap().unwrap().keep_alive;
    assert!(!keeps(
        "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
    ));
    assert!(!keeps("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n"));
    assert!(keeps(
        "HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n"
    ));
    assert!(!keeps("HTTP/1.1 200 OK\r\n\r\n"));
}

#[test]
fn only_an_unusual_reason_is_kept() {
    let reason = |text: &str| parse_all(text, false).unwrap().unwrap().reason;
    assert_eq!(
        reason("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"),
        None
    );
    assert_eq!(
        reason("HTTP/1.1 404 Nothing Here\r\ncontent-length: 0\r\n\r\n").as_deref(),
        Some(&b"Nothing Here"[..])
    );
}

#[test]
fn a_reason_that_is_not_utf8_is_dropped() {
    let mut buffer = BytesMut::from(&b"HTTP/1.1 200 \xff\xfe\r\ncontent-length: 0\r\n\r\n"[..]);
    let head = parse(&mut buffer, false).unwrap().unwrap();
    assert_eq!((head.status, head.reason), (StatusCode::OK, None));
}

#[test]
fn a_head_is_complete_only_after_an_empty_line() {
    let head = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
    assert!(may_be_complete(head, 0));
    assert!(!may_be_complete(&head[..head.len() - 1], 0));
    // Only the bytes after `from` (and the two before) are looked at.
    assert!(may_be_complete(head, head.len() - 1));
    assert!(!may_be_complete(head, head.len()));
    assert!(may_be_complete(b"HTTP/1.1 200 OK\n\n", 0));
    assert!(!may_be_complete(b"", 0));
    assert!(!may_be_complete(b"HTTP/1.1 200 OK\r\nx: y\n\r", 0));
    assert!(!may_be_complete(b"HTTP/1.1 200 OK\r\nx: \r\n", 0));
    assert!(may_be_complete(b"HTTP/1.1 200 OK\r\n\r\nbody\n", 0));
}
