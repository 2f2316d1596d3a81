//! `public` folders: content types, validators, ranges, index files, and no
//! way out of the folder.

mod common;

use std::time::Duration;

use common::{Backend, Proxy, raw_exchange, status_of, upstreams_yaml};

struct Site {
    proxy: Proxy,
    backend: Backend,
}

async fn site() -> Site {
    let backend = Backend::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    let public = dir.path().join("public");
    std::fs::create_dir_all(public.join("sub")).unwrap();
    std::fs::write(public.join("app.js"), "console.log('hi');\n").unwrap();
    std::fs::write(public.join("index.html"), "<h1>home</h1>\n").unwrap();
    std::fs::write(public.join("sub/index.html"), "<h1>sub</h1>\n").unwrap();
    std::fs::write(public.join("a b.txt"), "spaced\n").unwrap();
    std::fs::write(dir.path().join("secret.txt"), "TOP SECRET\n").unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret.txt"), public.join("link.txt")).unwrap();
    std::os::unix::fs::symlink(dir.path(), public.join("up")).unwrap();
    let yaml = format!(
        "{}listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    mode: http\n    rules:\n      - path: /assets/*\n        public: ./public\n      - path: /*\n        upstreams: [app]\n",
        upstreams_yaml(&[&backend])
    );
    Site {
        proxy: Proxy::start_in(&yaml, dir),
        backend,
    }
}

async fn get(site: &Site, target: &str, extra: &str) -> String {
    let request = format!("GET {target} HTTP/1.1\r\nhost: a\r\nconnection: close\r\n{extra}\r\n");
    raw_exchange(
        site.proxy.addr("web"),
        request.as_bytes(),
        Duration::from_secs(5),
    )
    .await
}

fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    response.lines().find_map(|l| {
        l.split_once(": ")
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    })
}

#[tokio::test]
async fn files_have_types_validators_and_ranges() {
    let site = site().await;
    let response = get(&site, "/assets/app.js", "").await;
    assert_eq!(status_of(&response), 200);
    assert!(
        header(&response, "content-type")
            .unwrap()
            .contains("javascript"),
        "{response}"
    );
    assert!(response.ends_with("console.log('hi');\n"));
    let etag = header(&response, "etag").expect("etag").to_owned();
    assert!(header(&response, "last-modified").is_some());

    let response = get(
        &site,
        "/assets/app.js",
        &format!("if-none-match: {etag}\r\n"),
    )
    .await;
    assert_eq!(status_of(&response), 304, "{response}");
    let modified = header(&get(&site, "/assets/app.js", "").await, "last-modified")
        .unwrap()
        .to_owned();
    assert_eq!(
        status_of(
            &get(
                &site,
                "/assets/app.js",
                &format!("if-modified-since: {modified}\r\n")
            )
            .await
        ),
        304
    );

    let response = get(&site, "/assets/app.js", "range: bytes=0-6\r\n").await;
    assert_eq!(status_of(&response), 206);
    assert!(response.ends_with("console"), "{response}");
    assert_eq!(status_of(&get(&site, "/assets/a%20b.txt", "").await), 200);
    assert!(site.backend.seen().is_empty());
}

#[tokio::test]
async fn ranges_apply_only_while_they_can_be_trusted() {
    let site = site().await;
    let first = get(&site, "/assets/app.js", "").await;
    let etag = header(&first, "etag").unwrap().to_owned();
    let modified = header(&first, "last-modified").unwrap().to_owned();
    let range = |extra: &str| format!("range: bytes=0-6\r\n{extra}");
    let any_case = get(&site, "/assets/app.js", "range: Bytes=0-6\r\n").await;
    assert_eq!(status_of(&any_case), 206, "{any_case}");
    for validator in [&etag, &modified] {
        let partial = get(
            &site,
            "/assets/app.js",
            &range(&format!("if-range: {validator}\r\n")),
        )
        .await;
        assert_eq!(status_of(&partial), 206, "{validator}: {partial}");
    }
    for stale in ["\"another\"", "Tue, 01 Jan 2019 00:00:00 GMT"] {
        let whole = get(
            &site,
            "/assets/app.js",
            &range(&format!("if-range: {stale}\r\n")),
        )
        .await;
        assert_eq!(status_of(&whole), 200, "{stale}: {whole}");
        assert!(whole.ends_with("console.log('hi');\n"), "{whole}");
    }
    for unusual in ["range: bytes=0-0,2-2\r\n", "range: items=0-5\r\n"] {
        let whole = get(&site, "/assets/app.js", unusual).await;
        assert_eq!(status_of(&whole), 200, "{unusual}: {whole}");
    }
    let not_modified = get(
        &site,
        "/assets/app.js",
        &format!("if-none-match: {etag}\r\n"),
    )
    .await;
    assert_eq!(status_of(&not_modified), 304);
    assert_eq!(header(&not_modified, "location"), None, "{not_modified}");
}

#[tokio::test]
async fn folders_serve_index_html() {
    let site = site().await;
    assert!(
        get(&site, "/assets/", "")
            .await
            .ends_with("<h1>home</h1>\n")
    );
    let top = get(&site, "/assets?x=1", "").await;
    assert_eq!(status_of(&top), 307, "{top}");
    assert_eq!(header(&top, "location"), Some("/assets/?x=1"));
    assert!(
        get(&site, "/assets/sub/", "")
            .await
            .ends_with("<h1>sub</h1>\n")
    );
    let redirect = get(&site, "/assets/sub", "").await;
    assert!(
        matches!(status_of(&redirect), 301 | 307 | 308),
        "{redirect}"
    );
    assert_eq!(header(&redirect, "location"), Some("/assets/sub/"));
    assert_eq!(status_of(&get(&site, "/assets/missing.js", "").await), 404);
}

#[tokio::test]
async fn a_folder_redirect_goes_to_the_normalised_path_never_another_site() {
    let site = site().await;
    for (target, location) in [
        ("//evil.example/../assets/sub", "/assets/sub/"),
        ("/x/../assets/./sub?a=1", "/assets/sub/?a=1"),
    ] {
        let redirect = get(&site, target, "").await;
        assert!(
            matches!(status_of(&redirect), 301 | 307 | 308),
            "{target}: {redirect}"
        );
        assert_eq!(header(&redirect, "location"), Some(location), "{target}");
    }
}

#[tokio::test]
async fn nothing_outside_the_folder_is_served() {
    let site = site().await;
    for target in [
        "/assets/../secret.txt",
        "/assets/%2e%2e/secret.txt",
        "/assets/%2E%2E/%2e%2e/secret.txt",
        "/assets/..%2fsecret.txt",
        "/assets/..%2Fsecret.txt",
        "/assets/..%5csecret.txt",
        "/assets/..\\secret.txt",
        "/assets/link.txt",
        "/assets/up/secret.txt",
        "/assets/%252e%252e/secret.txt",
        "/assets//../secret.txt",
    ] {
        let response = get(&site, target, "").await;
        assert!(
            !response.contains("TOP SECRET"),
            "{target} leaked: {response}"
        );
        let status = status_of(&response);
        assert!(matches!(status, 200 | 400 | 404), "{target}: {status}");
        if status == 200 {
            assert_eq!(
                header(&response, "x-backend"),
                Some("app"),
                "{target} must have been routed away from the folder"
            );
        }
    }
    for target in ["/assets/%00", "/assets/a%00.js"] {
        assert_eq!(status_of(&get(&site, target, "").await), 400, "{target}");
    }
}
