//! A 1 GiB upload and a 1 GiB download pass through in flat memory. Its own
//! test binary, so nothing else runs in the process while memory is read.

mod common;

use bytes::Bytes;
use common::{Backend, Proxy, client, peak_rss, upstreams_yaml};
use futures_util::StreamExt;

const GIB: usize = 1 << 30;
const CHUNK: usize = 256 * 1024;
/// Allowed growth of peak RSS while 2 GiB stream through client, proxy and
/// backend in this one process.
const SLACK: u64 = 96 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_each_way_in_flat_memory() {
    let b = Backend::start("app").await;
    let proxy = Proxy::start(&format!(
        "{}listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    mode: http\n    rules:\n      - path: /*\n        upstreams: [app]\n",
        upstreams_yaml(&[&b])
    ));
    let http = client();
    let warmup = http
        .get(proxy.url("web", "/download/1000"))
        .send()
        .await
        .unwrap();
    warmup.bytes().await.unwrap();
    let before = peak_rss();

    let chunk = Bytes::from(vec![b'u'; CHUNK]);
    let upload = futures_util::stream::iter(
        (0..GIB / CHUNK).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
    );
    let response = http
        .post(proxy.url("web", "/sink"))
        .body(reqwest::Body::wrap_stream(upload))
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), GIB.to_string());

    let response = http
        .get(proxy.url("web", &format!("/download/{GIB}")))
        .send()
        .await
        .unwrap();
    let mut stream = response.bytes_stream();
    let mut received = 0usize;
    while let Some(chunk) = stream.next().await {
        received += chunk.unwrap().len();
    }
    assert_eq!(received, GIB);

    let growth = peak_rss().saturating_sub(before);
    assert!(growth < SLACK, "peak RSS grew by {} MiB", growth >> 20);
}
