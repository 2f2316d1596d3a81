//! Every routing rule of SPEC §3, through the real proxy to real backends.

mod common;

use std::time::Duration;

use common::{Backend, Proxy, client, raw_exchange, status_of, upstreams_yaml};

/// Sends a request and returns (status, answering backend).
async fn hit(proxy: &Proxy, method: &str, host: &str, path: &str) -> (u16, String) {
    let request = format!("{method} {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
    let response = raw_exchange(
        proxy.addr("web"),
        request.as_bytes(),
        Duration::from_secs(5),
    )
    .await;
    let backend = response
        .lines()
        .find_map(|l| l.strip_prefix("x-backend: "))
        .unwrap_or("-")
        .trim()
        .to_owned();
    (status_of(&response), backend)
}

async fn backends(names: &[&'static str]) -> Vec<Backend> {
    let mut out = Vec::new();
    for name in names {
        out.push(Backend::start(name).await);
    }
    out
}

fn config(backends: &[Backend], rules: &str) -> String {
    let refs: Vec<&Backend> = backends.iter().collect();
    format!(
        "{}listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    mode: http\n    rules:\n{rules}",
        upstreams_yaml(&refs)
    )
}

#[tokio::test]
async fn prefixes_are_segment_aware() {
    let b = backends(&["api", "root"]).await;
    let proxy = Proxy::start(&config(
        &b,
        "      - path: /api\n        upstreams: [api]\n      - path: /*\n        upstreams: [root]\n",
    ));
    for (path, expected) in [
        ("/api", "api"),
        ("/api/", "api"),
        ("/api/v1/users?x=1", "api"),
        ("/apix", "root"),
        ("/ap", "root"),
        ("/", "root"),
        ("/other/api", "root"),
    ] {
        assert_eq!(
            hit(&proxy, "GET", "a.test", path).await,
            (200, expected.to_owned()),
            "{path}"
        );
    }
}

#[tokio::test]
async fn specificity_beats_file_order_and_priority_beats_specificity() {
    let b = backends(&["wide", "narrow", "star", "urgent"]).await;
    let rules = "      - path: /*\n        upstreams: [wide]\n\
                 \x20     - path: /users/*\n        upstreams: [wide]\n\
                 \x20     - path: /users/*/avatar\n        upstreams: [star]\n\
                 \x20     - path: /users/me\n        upstreams: [narrow]\n\
                 \x20     - path: /ops\n        upstreams: [wide]\n\
                 \x20     - path: /*\n        priority: 10\n        methods: [DELETE]\n        upstreams: [urgent]\n";
    let proxy = Proxy::start(&config(&b, rules));
    assert_eq!(hit(&proxy, "GET", "a.test", "/users/me").await.1, "narrow");
    assert_eq!(
        hit(&proxy, "GET", "a.test", "/users/me/x").await.1,
        "narrow"
    );
    assert_eq!(
        hit(&proxy, "GET", "a.test", "/users/7/avatar").await.1,
        "star"
    );
    assert_eq!(
        hit(&proxy, "GET", "a.test", "/users/7/avatar/big").await.1,
        "star"
    );
    assert_eq!(hit(&proxy, "GET", "a.test", "/users/7").await.1, "wide");
    assert_eq!(
        hit(&proxy, "GET", "a.test", "/users/avatar").await.1,
        "wide"
    );
    assert_eq!(
        hit(&proxy, "DELETE", "a.test", "/users/me").await.1,
        "urgent"
    );
}

#[tokio::test]
async fn hosts_exact_wildcard_and_methods() {
    let b = backends(&["exact", "wild", "post", "any"]).await;
    let rules = "      - path: /*\n        host: example.com\n        upstreams: [exact]\n\
                 \x20     - path: /*\n        host: \"*.example.com\"\n        upstreams: [wild]\n\
                 \x20     - path: /form\n        methods: [POST, PUT]\n        upstreams: [post]\n\
                 \x20     - path: /*\n        upstreams: [any]\n";
    let proxy = Proxy::start(&config(&b, rules));
    assert_eq!(hit(&proxy, "GET", "example.com", "/").await.1, "exact");
    assert_eq!(hit(&proxy, "GET", "EXAMPLE.com:8080", "/").await.1, "exact");
    assert_eq!(hit(&proxy, "GET", "a.example.com", "/").await.1, "wild");
    assert_eq!(hit(&proxy, "GET", "a.b.example.com", "/").await.1, "wild");
    assert_eq!(hit(&proxy, "GET", "badexample.com", "/").await.1, "any");
    assert_eq!(hit(&proxy, "POST", "other.test", "/form").await.1, "post");
    assert_eq!(hit(&proxy, "GET", "other.test", "/form").await.1, "any");
}

#[tokio::test]
async fn paths_are_normalised_for_matching_and_forwarded_as_sent() {
    let b = backends(&["api", "root"]).await;
    let proxy = Proxy::start(&config(
        &b,
        "      - path: /api\n        upstreams: [api]\n      - path: /*\n        upstreams: [root]\n",
    ));
    assert_eq!(hit(&proxy, "GET", "a.test", "/x/../api/v1").await.1, "api");
    assert_eq!(hit(&proxy, "GET", "a.test", "/%61pi/v1").await.1, "api");
    assert_eq!(hit(&proxy, "GET", "a.test", "//api//v1").await.1, "api");
    assert_eq!(hit(&proxy, "GET", "a.test", "/api%2Fv1").await.1, "root");
    assert_eq!(
        hit(&proxy, "GET", "a.test", "/api/%2e%2e/secret").await.1,
        "root"
    );
    let uris: Vec<String> = b[0].seen().into_iter().map(|s| s.uri).collect();
    assert_eq!(uris, ["/x/../api/v1", "/%61pi/v1", "//api//v1"]);
    assert_eq!(hit(&proxy, "GET", "a.test", "/bad%zz").await.0, 400);
}

#[tokio::test]
async fn no_matching_rule_is_404() {
    let b = backends(&["api"]).await;
    let proxy = Proxy::start(&config(
        &b,
        "      - path: /api\n        upstreams: [api]\n",
    ));
    let response = client()
        .get(proxy.url("web", "/nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    assert!(response.text().await.unwrap().contains("no route"));
    assert!(b[0].seen().is_empty());
}

#[tokio::test]
async fn every_method_is_proxied() {
    let b = backends(&["app"]).await;
    let proxy = Proxy::start(&config(&b, "      - path: /*\n        upstreams: [app]\n"));
    for method in [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "PROPFIND",
    ] {
        let (status, backend) = hit(&proxy, method, "a.test", "/m").await;
        assert_eq!((status, backend.as_str()), (200, "app"), "{method}");
    }
    let methods: Vec<String> = b[0].seen().into_iter().map(|s| s.method).collect();
    assert_eq!(
        methods,
        [
            "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "PROPFIND"
        ]
    );
}

#[tokio::test]
async fn an_upstream_named_by_hostname_is_resolved_and_reached() {
    let b = Backend::start("named").await;
    let proxy = Proxy::start(&format!(
        "upstreams:\n  - id: named\n    address: localhost:{}\n    health_check: {{ kind: http, path: /, interval: 200ms }}\n\
         listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    rules:\n      - path: /*\n        upstreams: [named]\n",
        b.addr.port()
    ));
    // Traffic and health checks both connect by name; `localhost` may
    // resolve to ::1 first, where nothing listens, and then the next
    // address is tried.
    for _ in 0..3 {
        assert_eq!(
            hit(&proxy, "GET", "a", "/").await,
            (200, "named".to_owned())
        );
    }
    assert!(b.seen().len() >= 3);
}

#[tokio::test]
async fn options_asterisk_is_routed_as_the_root_and_forwarded_as_it_came() {
    let app = Backend::start("app").await;
    let api = Backend::start("api").await;
    let yaml = format!(
        "{}listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    rules:\n      - path: /api\n        upstreams: [api]\n      - path: /*\n        upstreams: [app]\n",
        upstreams_yaml(&[&app, &api])
    );
    let proxy = Proxy::start(&yaml);
    let response = raw_exchange(
        proxy.addr("web"),
        b"OPTIONS * HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status_of(&response), 200, "{response}");
    assert!(response.ends_with("app OPTIONS *"), "{response}");
    let refused = raw_exchange(
        proxy.addr("web"),
        b"GET * HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status_of(&refused), 400, "{refused}");
}
