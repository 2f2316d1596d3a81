//! Strategies wired into the real proxy (issue 3's integration tests).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{Backend, Proxy, client, upstreams_yaml};

fn config(backends: &[&Backend], pool: &str) -> String {
    let ids: Vec<&str> = backends.iter().map(|b| b.name).collect();
    format!(
        "{}listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    mode: http\n    rules:\n      - path: /*\n        upstreams: [{}]\n{pool}",
        upstreams_yaml(backends),
        ids.join(", ")
    )
}

async fn backend_of(http: &reqwest::Client, url: &str, user: Option<&str>) -> String {
    let mut request = http.get(url);
    if let Some(user) = user {
        request = request.header("x-user", user);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.headers()["x-backend"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn round_robin_gives_three_backends_equal_shares() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let proxy = Proxy::start(&config(&[&a, &b, &c], "        strategy: round-robin\n"));
    let http = client();
    let mut shares: HashMap<String, usize> = HashMap::new();
    for _ in 0..300 {
        *shares
            .entry(backend_of(&http, &proxy.url("web", "/"), None).await)
            .or_default() += 1;
    }
    assert_eq!(
        shares,
        HashMap::from([("a".into(), 100), ("b".into(), 100), ("c".into(), 100)])
    );
}

#[tokio::test]
async fn weights_are_respected_by_round_robin() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let yaml = config(&[&a, &b], "").replace("  - id: a\n", "  - id: a\n    weight: 3\n");
    let proxy = Proxy::start(&yaml);
    let http = client();
    let mut shares: HashMap<String, usize> = HashMap::new();
    for _ in 0..80 {
        *shares
            .entry(backend_of(&http, &proxy.url("web", "/"), None).await)
            .or_default() += 1;
    }
    assert_eq!(shares, HashMap::from([("a".into(), 60), ("b".into(), 20)]));
}

#[tokio::test]
async fn consistent_hash_on_a_header_keeps_each_user_on_one_backend() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let proxy = Proxy::start(&config(
        &[&a, &b, &c],
        "        strategy: consistent-hash\n        hash_key: header:x-user\n",
    ));
    let http = client();
    let mut home: HashMap<String, String> = HashMap::new();
    for round in 0..5 {
        for user in 0..30 {
            let user = format!("user-{user}");
            let backend = backend_of(&http, &proxy.url("web", "/"), Some(&user)).await;
            if round == 0 {
                home.insert(user, backend);
            } else {
                assert_eq!(home[&user], backend, "{user} moved");
            }
        }
    }
    let used: std::collections::HashSet<&String> = home.values().collect();
    assert_eq!(used.len(), 3, "30 users spread over all three backends");
    let without_key: std::collections::HashSet<String> = {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..6 {
            seen.insert(backend_of(&http, &proxy.url("web", "/"), None).await);
        }
        seen
    };
    assert_eq!(
        without_key.len(),
        3,
        "requests without the key fall back to round-robin"
    );
}

#[tokio::test]
async fn least_connections_steers_new_requests_away_from_a_busy_backend() {
    let slow = Backend::start_with_delay("slow", Duration::from_millis(1500)).await;
    let (f1, f2) = (Backend::start("fast1").await, Backend::start("fast2").await);
    let proxy = Proxy::start(&config(
        &[&slow, &f1, &f2],
        "        strategy: least-connections\n",
    ));
    let url = proxy.url("web", "/");
    // Three at once: one lands on each backend, so the slow one holds one.
    let first: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { backend_of(&client(), &url, None).await })
        })
        .collect();
    while f1.seen().len() + f2.seen().len() < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let http = client();
    for _ in 0..30 {
        let backend = backend_of(&http, &url, None).await;
        assert_ne!(
            backend, "slow",
            "a new request went to the backend with one in flight"
        );
    }
    let mut first_backends: Vec<String> = Vec::new();
    for f in first {
        first_backends.push(f.await.unwrap());
    }
    first_backends.sort();
    assert_eq!(first_backends, ["fast1", "fast2", "slow"]);
    assert_eq!(slow.seen().len(), 1);
}
