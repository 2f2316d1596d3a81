use std::borrow::Cow;

use super::*;
use crate::runtime::router::tests::Rng;

fn norm(raw: &str) -> Result<String, BadPath> {
    normalize_path(raw).map(Cow::into_owned)
}

#[test]
fn normalize_examples() {
    assert_eq!(norm("/%41").unwrap(), "/A");
    assert_eq!(norm("/caf%c3%a9").unwrap(), "/café");
    assert_eq!(norm("/a%2Fb").unwrap(), "/a%2Fb");
    assert_eq!(norm("/a%2fb").unwrap(), "/a%2Fb");
    assert_eq!(norm("/a/./b/../c").unwrap(), "/a/c");
    assert_eq!(norm("/../x").unwrap(), "/x");
    assert_eq!(norm("/../../x/..").unwrap(), "/");
    assert_eq!(norm("//a///b").unwrap(), "/a/b");
    assert_eq!(norm("/a/%2e%2e/b").unwrap(), "/b");
    assert_eq!(norm("/a/%2E/b").unwrap(), "/a/b");
    assert_eq!(norm("/a/.%2e").unwrap(), "/");
    assert_eq!(norm("/a?x=1").unwrap(), "/a");
    assert_eq!(norm("/a/../b?x=/../..").unwrap(), "/b");
    assert_eq!(norm("/a#frag").unwrap(), "/a");
    // Decoded once only.
    assert_eq!(norm("/%252e%252e").unwrap(), "/%2e%2e");
    assert_eq!(norm("/%25").unwrap(), "/%");
    // Not dot-segments.
    assert_eq!(norm("/a/..%2F/b").unwrap(), "/a/..%2F/b");
    assert_eq!(norm("/a/.../b").unwrap(), "/a/.../b");
    assert_eq!(norm("/a/.b/").unwrap(), "/a/.b/");
    // Decoded '?' is data, not a query.
    assert_eq!(norm("/a%3Fb").unwrap(), "/a?b");
}

#[test]
fn normalize_rfc3986_remove_dot_segments() {
    // RFC 3986 §5.2.4 and §5.4 examples (paths only).
    assert_eq!(norm("/a/b/c/./../../g").unwrap(), "/a/g");
    assert_eq!(norm("/b/c/.").unwrap(), "/b/c/");
    assert_eq!(norm("/b/c/./").unwrap(), "/b/c/");
    assert_eq!(norm("/b/c/..").unwrap(), "/b/");
    assert_eq!(norm("/b/c/../").unwrap(), "/b/");
    assert_eq!(norm("/b/c/../g").unwrap(), "/b/g");
    assert_eq!(norm("/b/c/../..").unwrap(), "/");
    assert_eq!(norm("/b/c/../../g").unwrap(), "/g");
    assert_eq!(norm("/b/c/../../../g").unwrap(), "/g");
    assert_eq!(norm("/b/c/g.").unwrap(), "/b/c/g.");
    assert_eq!(norm("/b/c/g..").unwrap(), "/b/c/g..");
    assert_eq!(norm("/b/c/./g/.").unwrap(), "/b/c/g/");
    assert_eq!(norm("/b/c/g/./h").unwrap(), "/b/c/g/h");
    assert_eq!(norm("/b/c/g/../h").unwrap(), "/b/c/h");
    assert_eq!(norm("/.").unwrap(), "/");
    assert_eq!(norm("/..").unwrap(), "/");
    assert_eq!(norm("/").unwrap(), "/");
    assert_eq!(norm("//").unwrap(), "/");
    assert_eq!(norm("/a//").unwrap(), "/a/");
}

#[test]
fn normalize_errors() {
    assert_eq!(norm("/%00"), Err(BadPath::Nul));
    assert_eq!(norm("/a\0b"), Err(BadPath::Nul));
    assert_eq!(norm("/a%zz"), Err(BadPath::BadEscape { offset: 2 }));
    assert_eq!(norm("/a%4"), Err(BadPath::BadEscape { offset: 2 }));
    assert_eq!(norm("/a/%"), Err(BadPath::BadEscape { offset: 3 }));
    assert_eq!(norm("/%ff"), Err(BadPath::NotUtf8));
    assert_eq!(norm("/%c3"), Err(BadPath::NotUtf8));
    assert_eq!(norm(""), Err(BadPath::NotAbsolute));
    assert_eq!(norm("a/b"), Err(BadPath::NotAbsolute));
    assert_eq!(norm("?x"), Err(BadPath::NotAbsolute));
    assert_eq!(norm("*"), Err(BadPath::NotAbsolute));
    // Errors in the query are not the path's business.
    assert_eq!(norm("/a?%zz%00").unwrap(), "/a");
}

#[test]
fn normalize_borrows_when_unchanged() {
    for raw in [
        "/",
        "/a/b",
        "/a/b/",
        "/a%2Fb",
        "/a.b/..c/...",
        "/café",
        "/a?x=%zz",
    ] {
        let out = normalize_path(raw).unwrap();
        assert!(matches!(out, Cow::Borrowed(_)), "{raw}");
        assert_eq!(out, raw.split('?').next().unwrap());
    }
    for raw in ["/%41", "/a%2fb", "//a", "/a/./b", "/a/.."] {
        assert!(
            matches!(normalize_path(raw).unwrap(), Cow::Owned(_)),
            "{raw}"
        );
    }
}

#[test]
fn fuzz_normalize_invariants() {
    let pieces = [
        "/", "/", "/", "a", "b", ".", "..", "%2e", "%2E%2e", "%2F", "%2f", "%41", "%25", "%",
        "%zz", "%00", "%c3%a9", "%ff", "?", "#", "é", "//", "x.y",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        let mut raw = String::from("/");
        for _ in 0..rng.next() % 10 {
            raw.push_str(rng.pick(&pieces));
        }
        let Ok(out) = normalize_path(&raw) else {
            continue;
        };
        assert!(out.starts_with('/'), "{raw} -> {out}");
        assert!(!out.contains("//"), "{raw} -> {out}");
        for seg in out.split('/') {
            assert!(seg != "." && seg != "..", "{raw} -> {out}");
        }
        // Without a '%' left over (other than an encoded slash), the output
        // is a fixed point, returned borrowed.
        if !out.replace("%2F", "").contains(['%', '?', '#']) {
            let again = normalize_path(&out).unwrap();
            assert!(matches!(again, Cow::Borrowed(_)), "{raw} -> {out}");
            assert_eq!(again, out);
        }
    }
}
