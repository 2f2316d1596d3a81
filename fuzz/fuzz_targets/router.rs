//! The router: any rule set either compiles or is refused; a compiled one
//! routes any normalised request path to a rule that exists, with a prefix
//! inside the path.
#![no_main]

use arbitrary::Arbitrary;
use http::Method;
use libfuzzer_sys::fuzz_target;
use sluice::runtime::router::{RouteSpec, Router, normalize_path};

const METHODS: [Method; 4] = [Method::GET, Method::POST, Method::HEAD, Method::DELETE];

#[derive(Arbitrary, Debug)]
struct Rule<'a> {
    path: &'a str,
    host: Option<&'a str>,
    methods: u8,
    priority: Option<i8>,
}

#[derive(Arbitrary, Debug)]
struct Request<'a> {
    host: Option<&'a str>,
    method: u8,
    path: &'a str,
}

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    rules: Vec<Rule<'a>>,
    requests: Vec<Request<'a>>,
}

fuzz_target!(|input: Input<'_>| {
    let methods: Vec<Vec<Method>> = input
        .rules
        .iter()
        .map(|rule| {
            (0..METHODS.len())
                .filter(|bit| rule.methods & (1 << bit) != 0)
                .map(|bit| METHODS[bit].clone())
                .collect()
        })
        .collect();
    let specs: Vec<RouteSpec<'_>> = input
        .rules
        .iter()
        .zip(&methods)
        .map(|(rule, methods)| RouteSpec {
            path: rule.path,
            host: rule.host,
            methods,
            priority: rule.priority.map(i32::from),
        })
        .collect();
    let Ok(router) = Router::new(&specs) else {
        return;
    };
    for request in &input.requests {
        let Ok(path) = normalize_path(request.path) else {
            continue;
        };
        assert!(
            path.starts_with('/'),
            "normalised {:?} to {path:?}",
            request.path
        );
        let method = &METHODS[usize::from(request.method) % METHODS.len()];
        if let Some(found) = router.route(request.host, method, &path) {
            assert!(found.rule < specs.len());
            assert!(
                path.is_char_boundary(found.prefix_len),
                "{found:?} in {path:?}"
            );
        }
    }
});
