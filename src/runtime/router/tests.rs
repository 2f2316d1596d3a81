use ::http::Method;

use super::*;

/// Shorthand for a spec list: (path, host, methods, priority).
type S<'a> = (&'a str, Option<&'a str>, &'a [Method], Option<i32>);

fn router(specs: &[S<'_>]) -> Router {
    let specs: Vec<RouteSpec<'_>> = specs
        .iter()
        .map(|&(path, host, methods, priority)| RouteSpec {
            path,
            host,
            methods,
            priority,
        })
        .collect();
    Router::new(&specs).unwrap()
}

fn paths(patterns: &[&'static str]) -> Router {
    let specs: Vec<S<'_>> = patterns.iter().map(|p| (*p, None, &[][..], None)).collect();
    router(&specs)
}

fn rule(r: &Router, path: &str) -> Option<usize> {
    r.route(None, &Method::GET, path).map(|m| m.rule)
}

fn rule_h(r: &Router, host: Option<&str>, path: &str) -> Option<usize> {
    r.route(host, &Method::GET, path).map(|m| m.rule)
}

fn pattern_err(path: &str, host: Option<&str>) -> PatternError {
    Router::new(&[RouteSpec {
        path,
        host,
        methods: &[],
        priority: None,
    }])
    .unwrap_err()
}

// ---- paths ----

#[test]
fn prefix_is_segment_aware() {
    let r = paths(&["/api"]);
    assert_eq!(rule(&r, "/api"), Some(0));
    assert_eq!(rule(&r, "/api/"), Some(0));
    assert_eq!(rule(&r, "/api/x/y"), Some(0));
    assert_eq!(rule(&r, "/apix"), None);
    assert_eq!(rule(&r, "/ap"), None);
    assert_eq!(rule(&r, "/"), None);
    assert_eq!(rule(&r, "/x/api"), None);
}

#[test]
fn paths_are_case_sensitive() {
    let r = paths(&["/api"]);
    assert_eq!(rule(&r, "/API"), None);
}

#[test]
fn one_segment_star() {
    let r = paths(&["/users/*/avatar"]);
    assert_eq!(rule(&r, "/users/7/avatar"), Some(0));
    assert_eq!(rule(&r, "/users/7/avatar/"), Some(0));
    assert_eq!(rule(&r, "/users/7/avatar/big.png"), Some(0));
    assert_eq!(rule(&r, "/users/avatar"), None);
    assert_eq!(rule(&r, "/users//avatar"), None);
    assert_eq!(rule(&r, "/users/7/8/avatar"), None);
    assert_eq!(rule(&r, "/users/7/avatars"), None);
    assert_eq!(rule(&r, "/users/7"), None);
    // An encoded slash is part of its segment.
    assert_eq!(rule(&r, "/users/a%2Fb/avatar"), Some(0));
}

#[test]
fn trailing_star_matches_any_remainder_including_none() {
    let r = paths(&["/assets/*"]);
    assert_eq!(rule(&r, "/assets"), Some(0));
    assert_eq!(rule(&r, "/assets/"), Some(0));
    assert_eq!(rule(&r, "/assets/a"), Some(0));
    assert_eq!(rule(&r, "/assets/a/b"), Some(0));
    assert_eq!(rule(&r, "/assetsx"), None);
    assert_eq!(rule(&r, "/"), None);
}

#[test]
fn root_star_matches_everything() {
    for pattern in ["/*", "/"] {
        let r = paths(&[pattern]);
        for path in ["/", "/a", "/a/b/c", "/a/"] {
            assert_eq!(rule(&r, path), Some(0), "{pattern} vs {path}");
        }
    }
}

#[test]
fn non_absolute_paths_match_nothing() {
    let r = paths(&["/*"]);
    assert_eq!(rule(&r, ""), None);
    assert_eq!(rule(&r, "*"), None);
    assert_eq!(rule(&r, "a/b"), None);
}

#[test]
fn prefix_len_values() {
    let r = paths(&["/assets/*"]);
    let m = |r: &Router, p: &str| r.route(None, &Method::GET, p).unwrap().prefix_len;
    assert_eq!(m(&r, "/assets/app.js"), 7);
    assert_eq!(&"/assets/app.js"[7..], "/app.js");
    assert_eq!(m(&r, "/assets"), 7);
    assert_eq!(m(&r, "/assets/"), 7);
    assert_eq!(m(&paths(&["/*"]), "/x/y"), 0);
    assert_eq!(m(&paths(&["/"]), "/"), 0);
    assert_eq!(m(&paths(&["/api"]), "/api/x"), 4);
    assert_eq!(m(&paths(&["/a/b/*"]), "/a/b/c/d"), 4);
    assert_eq!(m(&paths(&["/users/*/avatar"]), "/users/7/avatar/x"), 6);
    assert_eq!(m(&paths(&["/*/x"]), "/y/x"), 0);
}

#[test]
fn pattern_details() {
    // Empty segments ignored, trailing star is the same as none.
    let r = paths(&["//api//"]);
    assert_eq!(rule(&r, "/api/x"), Some(0));
    // Literal segments are percent-decoded like request paths.
    let r = paths(&["/caf%C3%A9"]);
    assert_eq!(rule(&r, "/café/menu"), Some(0));
    let r = paths(&["/a%2fb"]);
    assert_eq!(rule(&r, "/a%2Fb"), Some(0));
    assert_eq!(rule(&r, "/a/b"), None);
    // An encoded star is a literal star.
    let r = paths(&["/%2A"]);
    assert_eq!(rule(&r, "/*"), Some(0));
    assert_eq!(rule(&r, "/x"), None);
}

#[test]
fn pattern_errors() {
    assert!(matches!(
        pattern_err("api", None),
        PatternError::NotAbsolute { rule: 0, .. }
    ));
    assert!(matches!(
        pattern_err("", None),
        PatternError::NotAbsolute { .. }
    ));
    for p in ["/a*", "/*.js", "/a/**", "/**/x"] {
        assert!(
            matches!(pattern_err(p, None), PatternError::PartialWildcard { .. }),
            "{p}"
        );
    }
    for p in ["/a/../b", "/./a", "/a/%2e%2E", "/a?x=1", "/a#f"] {
        assert!(
            matches!(pattern_err(p, None), PatternError::Unmatchable { .. }),
            "{p}"
        );
    }
    assert!(matches!(
        pattern_err("/a%zz", None),
        PatternError::BadEncoding {
            source: BadPath::BadEscape { .. },
            ..
        }
    ));
    assert!(matches!(
        pattern_err("/a%00", None),
        PatternError::BadEncoding {
            source: BadPath::Nul,
            ..
        }
    ));
    // The error names the faulty rule.
    let err = Router::new(&[
        RouteSpec {
            path: "/ok",
            host: None,
            methods: &[],
            priority: None,
        },
        RouteSpec {
            path: "bad",
            host: None,
            methods: &[],
            priority: None,
        },
    ])
    .unwrap_err();
    assert_eq!(err.rule(), 1);
    assert_eq!(err.to_string(), "path `bad` must start with '/'");
}

#[test]
fn host_pattern_errors() {
    assert!(matches!(
        pattern_err("/", Some("")),
        PatternError::EmptyHost { .. }
    ));
    assert!(matches!(
        pattern_err("/", Some(" ")),
        PatternError::EmptyHost { .. }
    ));
    for h in [
        "*",
        "*.",
        "a.*.com",
        "*example.com",
        "ex*.com",
        "example.com:80",
        "a..com",
        ".example.com",
        "*..com",
        "ex ample.com",
        "exämple.com",
        "[::1",
        "[::1]:80",
        "[]",
        "[zz]",
        "a/b",
    ] {
        assert!(
            matches!(pattern_err("/", Some(h)), PatternError::InvalidHost { .. }),
            "{h}"
        );
    }
}

// ---- hosts ----

#[test]
fn host_exact() {
    let r = router(&[("/", Some("example.com"), &[], None)]);
    assert_eq!(rule_h(&r, Some("example.com"), "/"), Some(0));
    assert_eq!(rule_h(&r, Some("EXAMPLE.Com"), "/"), Some(0));
    assert_eq!(rule_h(&r, Some("example.com:8080"), "/"), Some(0));
    assert_eq!(rule_h(&r, Some("example.com."), "/"), Some(0));
    assert_eq!(rule_h(&r, Some("Example.COM.:443"), "/"), Some(0));
    assert_eq!(rule_h(&r, Some("a.example.com"), "/"), None);
    assert_eq!(rule_h(&r, Some("example.org"), "/"), None);
    assert_eq!(rule_h(&r, Some("example.com.evil"), "/"), None);
    assert_eq!(rule_h(&r, Some(""), "/"), None);
    assert_eq!(rule_h(&r, None, "/"), None);
    // Pattern case and trailing dot do not matter either.
    let r = router(&[("/", Some("Example.COM."), &[], None)]);
    assert_eq!(rule_h(&r, Some("example.com"), "/"), Some(0));
}

#[test]
fn host_wildcard_any_depth_not_apex() {
    let r = router(&[("/", Some("*.example.com"), &[], None)]);
    assert_eq!(rule_h(&r, Some("a.example.com"), "/"), Some(0));
    assert_eq!(rule_h(&r, Some("a.b.example.com"), "/"), Some(0));
    assert_eq!(rule_h(&r, Some("A.Example.COM:8443"), "/"), Some(0));
    assert_eq!(rule_h(&r, Some("a.example.com."), "/"), Some(0));
    assert_eq!(rule_h(&r, Some("example.com"), "/"), None);
    assert_eq!(rule_h(&r, Some(".example.com"), "/"), None);
    assert_eq!(rule_h(&r, Some("a..example.com"), "/"), None);
    assert_eq!(rule_h(&r, Some("aexample.com"), "/"), None);
    assert_eq!(rule_h(&r, Some("a.example.com.evil"), "/"), None);
    assert_eq!(rule_h(&r, Some("a.example.org"), "/"), None);
    assert_eq!(rule_h(&r, None, "/"), None);
}

#[test]
fn host_ip_literals() {
    let r = router(&[
        ("/", Some("[::1]"), &[], None),
        ("/", Some("127.0.0.1"), &[], None),
    ]);
    assert_eq!(rule_h(&r, Some("[::1]:80"), "/"), Some(0));
    assert_eq!(rule_h(&r, Some("[::1]"), "/"), Some(0));
    assert_eq!(rule_h(&r, Some("127.0.0.1:8080"), "/"), Some(1));
    assert_eq!(rule_h(&r, Some("127.0.0.2"), "/"), None);
    // Case-insensitive in hex digits too.
    let r = router(&[("/", Some("[FE80::A]"), &[], None)]);
    assert_eq!(rule_h(&r, Some("[fe80::a]:1"), "/"), Some(0));
}

#[test]
fn bare_host_forms() {
    assert_eq!(bare_host("example.com"), "example.com");
    assert_eq!(bare_host("example.com:8080"), "example.com");
    assert_eq!(bare_host("example.com."), "example.com");
    assert_eq!(bare_host("[::1]:80"), "[::1]");
    assert_eq!(bare_host("[::1]"), "[::1]");
    assert_eq!(bare_host("::1"), "::1");
    assert_eq!(bare_host(""), "");
    assert_eq!(bare_host("user:pw@example.com:80"), "example.com");
}

#[test]
fn host_rule_beats_hostless_and_exact_beats_wildcard() {
    let r = router(&[
        ("/", None, &[], None),
        ("/", Some("*.example.com"), &[], None),
        ("/", Some("*.a.example.com"), &[], None),
        ("/", Some("www.example.com"), &[], None),
    ]);
    assert_eq!(rule_h(&r, Some("www.example.com"), "/x"), Some(3));
    assert_eq!(rule_h(&r, Some("b.a.example.com"), "/x"), Some(2));
    assert_eq!(rule_h(&r, Some("api.example.com"), "/x"), Some(1));
    assert_eq!(rule_h(&r, Some("other.org"), "/x"), Some(0));
    assert_eq!(rule_h(&r, None, "/x"), Some(0));
}

#[test]
fn host_match_beats_more_literal_segments() {
    let r = router(&[
        ("/a/b/c", None, &[], None),
        ("/*", Some("example.com"), &[], None),
    ]);
    assert_eq!(rule_h(&r, Some("example.com"), "/a/b/c"), Some(1));
    assert_eq!(rule_h(&r, Some("other.com"), "/a/b/c"), Some(0));
}

// ---- methods ----

#[test]
fn methods() {
    let get_head = [Method::GET, Method::HEAD];
    let r = router(&[("/", None, &get_head, None)]);
    assert!(r.route(None, &Method::GET, "/").is_some());
    assert!(r.route(None, &Method::HEAD, "/").is_some());
    assert!(r.route(None, &Method::POST, "/").is_none());
    let any = router(&[("/", None, &[], None)]);
    let custom = Method::from_bytes(b"PURGE").unwrap();
    assert!(any.route(None, &custom, "/").is_some());
    let purge = [custom.clone()];
    let r = router(&[("/", None, &purge, None)]);
    assert!(r.route(None, &custom, "/").is_some());
    assert!(r.route(None, &Method::GET, "/").is_none());
}

#[test]
fn method_restricted_beats_unrestricted_and_falls_through() {
    let post = [Method::POST];
    let r = router(&[("/api", None, &[], None), ("/api", None, &post, None)]);
    assert_eq!(r.route(None, &Method::POST, "/api").unwrap().rule, 1);
    assert_eq!(r.route(None, &Method::GET, "/api").unwrap().rule, 0);
}

// ---- order ----

#[test]
fn specificity_beats_file_order() {
    let r = paths(&["/*", "/api", "/api/v1"]);
    assert_eq!(rule(&r, "/api/v1/x"), Some(2));
    assert_eq!(rule(&r, "/api/v2"), Some(1));
    assert_eq!(rule(&r, "/apix"), Some(0));
    assert_eq!(rule(&r, "/"), Some(0));
}

#[test]
fn one_segment_star_beats_trailing_star() {
    let r = paths(&["/a/*", "/a/*/*"]);
    assert_eq!(rule(&r, "/a/x"), Some(1));
    assert_eq!(rule(&r, "/a/x/y"), Some(1));
    assert_eq!(rule(&r, "/a"), Some(0));
    assert_eq!(rule(&r, "/a/"), Some(0));
    // More literal segments still come first.
    let r = paths(&["/users/*/avatar", "/users/7/*"]);
    assert_eq!(rule(&r, "/users/7/avatar"), Some(0));
    let r = paths(&["/*/*", "/users"]);
    assert_eq!(rule(&r, "/users/7"), Some(1));
}

#[test]
fn priority_overrides_specificity() {
    let r = router(&[("/api/v1", None, &[], None), ("/*", None, &[], Some(10))]);
    assert_eq!(rule(&r, "/api/v1"), Some(1));
    // Priority also beats a host match; negative priority sinks a rule.
    let r = router(&[
        ("/", Some("example.com"), &[], Some(-1)),
        ("/", None, &[], None),
    ]);
    assert_eq!(rule_h(&r, Some("example.com"), "/"), Some(1));
    let r = router(&[
        ("/", Some("example.com"), &[], Some(0)),
        ("/", None, &[], None),
    ]);
    assert_eq!(rule_h(&r, Some("example.com"), "/"), Some(0));
}

#[test]
fn ties_keep_file_order() {
    let r = paths(&["/api", "/api/*", "/api"]);
    assert_eq!(rule(&r, "/api/x"), Some(0));
    let r = paths(&["/api/*", "/api"]);
    assert_eq!(rule(&r, "/api/x"), Some(0));
    let r = router(&[
        ("/x", None, &[], Some(3)),
        ("/y", None, &[], Some(3)),
        ("/*", None, &[], Some(3)),
    ]);
    assert_eq!(rule(&r, "/x"), Some(0));
    let r = router(&[("/*", None, &[], Some(3)), ("/*", None, &[], Some(3))]);
    assert_eq!(rule(&r, "/x"), Some(0));
}

#[test]
fn empty_router_matches_nothing() {
    let r = Router::new(&[]).unwrap();
    assert_eq!(rule(&r, "/"), None);
}

#[test]
fn router_is_send_sync_debug() {
    fn check<T: Send + Sync + std::fmt::Debug>() {}
    check::<Router>();
    check::<PatternError>();
    check::<BadPath>();
}

/// Small deterministic generator (xorshift), so the fuzz loop needs no crate.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub(super) fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

/// The first matching rule in the router's order must be the one with the
/// best key among all matching rules, computed here naively.
/// Path matching the obvious way, with vectors: the prefix length if
/// `pattern` matches `path`.
fn naive_path_match(pattern: &str, path: &str) -> Option<usize> {
    let mut pat: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty()).collect();
    if pat.last() == Some(&"*") {
        pat.pop();
    }
    let segs: Vec<&str> = path[1..].split('/').collect();
    let mut prefix_len = 0;
    let mut leading = true;
    for (i, p) in pat.iter().enumerate() {
        let seg = segs.get(i)?;
        if *p == "*" {
            if seg.is_empty() {
                return None;
            }
            leading = false;
        } else if p != seg {
            return None;
        } else if leading {
            prefix_len += 1 + seg.len();
        }
    }
    Some(prefix_len)
}

#[test]
fn fuzz_route_picks_most_specific() {
    let patterns = [
        "/*", "/a", "/a/*", "/a/b", "/*/b", "/a/*/c", "/a/*/*", "/b/*/*/d", "/",
    ];
    let hosts = [None, Some("x.com"), Some("*.x.com"), Some("*.y.x.com")];
    let methods: [&[Method]; 2] = [&[], &[Method::POST]];
    let mut rng = Rng(42);
    for _ in 0..300 {
        let n = 1 + rng.next() % 6;
        let specs: Vec<S<'_>> = (0..n)
            .map(|_| {
                let host = hosts[(rng.next() % hosts.len() as u64) as usize];
                let m = methods[(rng.next() % 2) as usize];
                let prio = match rng.next() % 4 {
                    0 => Some(1),
                    1 => Some(-1),
                    _ => None,
                };
                (rng.pick(&patterns), host, m, prio)
            })
            .collect();
        let r = router(&specs);
        for _ in 0..30 {
            let mut path = String::new();
            for _ in 0..rng.next() % 5 {
                path.push('/');
                path.push_str(rng.pick(&["a", "b", "c", "d", ""]));
            }
            if path.is_empty() {
                path.push('/');
            }
            let host = rng.pick(&["x.com", "X.COM:80", "z.y.x.com", "q.x.com", ""]);
            let host = (!host.is_empty()).then_some(host);
            let method = if rng.next().is_multiple_of(2) {
                Method::GET
            } else {
                Method::POST
            };
            let got = r.route(host, &method, &path).map(|m| m.rule);
            // Naive: every rule alone (its path checked with vectors), keep
            // the matching ones, best key.
            let best = (0..specs.len())
                .filter(|&i| {
                    let alone = router(&specs[i..=i]).route(host, &method, &path);
                    if host.is_none() && specs[i].1.is_none() && specs[i].2.is_empty() {
                        assert_eq!(
                            alone.map(|m| m.prefix_len),
                            naive_path_match(specs[i].0, &path),
                            "{} vs {path}",
                            specs[i].0
                        );
                    }
                    alone.is_some()
                })
                .min_by_key(|&i| {
                    let (p, h, m, prio) = specs[i];
                    let literals = p.split('/').filter(|s| !s.is_empty() && *s != "*").count();
                    let inner_stars = p
                        .strip_suffix("/*")
                        .unwrap_or(p)
                        .split('/')
                        .filter(|s| *s == "*")
                        .count();
                    let host_rank = match h {
                        None => (0, 0),
                        Some(h) if h.starts_with("*.") => (1, h.len()),
                        Some(_) => (2, 0),
                    };
                    (
                        Reverse(prio.unwrap_or(0)),
                        Reverse(host_rank),
                        Reverse(literals),
                        Reverse(inner_stars),
                        Reverse(!m.is_empty()),
                        i,
                    )
                });
            assert_eq!(got, best, "{specs:?} {host:?} {method} {path}");
        }
    }
}
