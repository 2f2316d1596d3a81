//! Behaviour of `config::parse` / `config::load` beyond single error files:
//! inheritance of defaults, resolved paths, hostile input, message format.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use sluice::config::{self, HealthCheckKind, ListenerMode, RuleAction, Workers};

fn parse(text: &str) -> Result<config::Config, config::ConfigErrors> {
    config::parse(text, Path::new("test.yaml"))
}

fn errors(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(errors) => errors
            .errors()
            .iter()
            .map(|e| format!("{}:{}: {}", e.line, e.column, e.message))
            .collect(),
    }
}

const MINIMAL: &str = "
upstreams:
  - id: app
    address: 127.0.0.1:3000
listeners:
  - name: web
    listen: 8080
    rules: [{ upstreams: [app] }]
";

#[test]
fn minimal_config_gets_the_documented_defaults() {
    let config = parse(MINIMAL).expect("valid");
    assert_eq!(config.workers, Workers::Auto);
    assert_eq!(config.admin, None);
    assert_eq!(config.drain_timeout, Duration::from_secs(30));
    let listener = &config.listeners[0];
    assert_eq!(
        listener.listen,
        "0.0.0.0:8080".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(listener.settings, config::Settings::default());
    let ListenerMode::Http(http) = &listener.mode else {
        panic!("http listener")
    };
    let rule = &http.rules[0];
    assert_eq!(rule.path, "/*");
    assert_eq!(rule.priority, None);
    let RuleAction::Proxy { pool, pass_host } = &rule.action else {
        panic!("proxy rule")
    };
    assert!(*pass_host);
    assert_eq!(pool.upstreams, ["app"]);
    assert_eq!(pool.strategy, strategies::StrategyKind::default());
    assert_eq!(pool.hash_key, None);
    let upstream = &config.upstreams[0];
    assert_eq!(upstream.weight.get(), 1);
    assert_eq!(upstream.health_check.kind, HealthCheckKind::Http);
    assert_eq!(upstream.health_check.path, "/healthz");
    assert_eq!(upstream.health_check.interval, Duration::from_secs(2));
    assert_eq!(upstream.health_check.timeout, Duration::from_secs(1));
}

#[test]
fn most_specific_setting_wins() {
    let config = parse(
        "
defaults:
  connect_timeout: 3s
  idle_timeout: 90s
  max_body_size: 1m
  health_check: { path: /up, expect_status: 204, interval: 5s, rise: 4 }
upstreams:
  - id: app
    address: app.internal:3000
    connect_timeout: 250ms
    health_check: { interval: 1s, path: /ping }
  - id: other
    address: 127.0.0.1:3001
listeners:
  - name: web
    listen: 127.0.0.1:0
    idle_timeout: 30s
    max_body_size: 0
    rules:
      - path: /upload
        upstreams: [app, other]
        max_body_size: 100m
        response_timeout: 2m
        pass_host: false
      - upstreams: [other]
",
    )
    .expect("valid");
    let [app, other] = &config.upstreams[..] else {
        panic!("two upstreams")
    };
    assert_eq!(app.settings.connect_timeout, Duration::from_millis(250));
    assert_eq!(
        app.overrides.connect_timeout,
        Some(Duration::from_millis(250))
    );
    assert_eq!(app.overrides.response_timeout, None);
    assert_eq!(other.settings.connect_timeout, Duration::from_secs(3));
    assert_eq!(other.overrides, config::UpstreamOverrides::default());
    // Field by field: status and rise from defaults, interval and path from the upstream.
    assert_eq!(app.health_check.kind, HealthCheckKind::Http);
    assert_eq!(
        app.health_check.expect_status,
        config::StatusSet(vec![204..=204])
    );
    assert_eq!(app.health_check.rise.get(), 4);
    assert_eq!(app.health_check.interval, Duration::from_secs(1));
    assert_eq!(app.health_check.path, "/ping");
    assert_eq!(other.health_check.interval, Duration::from_secs(5));
    assert_eq!(other.health_check.path, "/up");

    let listener = &config.listeners[0];
    assert_eq!(listener.settings.connect_timeout, Duration::from_secs(3));
    assert_eq!(listener.settings.idle_timeout, Duration::from_secs(30));
    assert_eq!(listener.settings.max_body_size, None);
    let ListenerMode::Http(http) = &listener.mode else {
        panic!("http listener")
    };
    let [upload, fallback] = &http.rules[..] else {
        panic!("two rules")
    };
    assert_eq!(upload.settings.max_body_size, Some(100 << 20));
    assert_eq!(upload.settings.response_timeout, Duration::from_secs(120));
    assert_eq!(upload.settings.idle_timeout, Duration::from_secs(30));
    assert!(matches!(
        upload.action,
        RuleAction::Proxy {
            pass_host: false,
            ..
        }
    ));
    assert_eq!(fallback.settings, listener.settings);
}

#[test]
fn rule_matches_are_normalised() {
    let config = parse(
        "
upstreams: [{ id: app, address: '[::1]:3000' }]
listeners:
  - name: web
    listen: '[::1]:0'
    rules:
      - { path: /users/*/avatar, host: '*.Example.COM', methods: [get, Post], priority: -3, upstreams: [app] }
",
    )
    .expect("valid");
    assert_eq!(config.upstreams[0].address.to_string(), "[::1]:3000");
    let ListenerMode::Http(http) = &config.listeners[0].mode else {
        panic!("http listener")
    };
    let rule = &http.rules[0];
    assert_eq!(rule.host.as_deref(), Some("*.example.com"));
    assert_eq!(rule.methods, [http::Method::GET, http::Method::POST]);
    assert_eq!(rule.priority, Some(-3));
}

#[test]
fn upstreams_only_tcp_listeners_use_are_checked_by_connecting() {
    let yaml = |defaults: &str, db_check: &str| {
        format!(
            "{defaults}upstreams:\n  - {{ id: db, address: 127.0.0.1:5432{db_check} }}\n  - {{ id: app, address: 127.0.0.1:3000 }}\n  - {{ id: both, address: 127.0.0.1:3001 }}\n\
             listeners:\n  - {{ name: pg, listen: 6432, mode: tcp, upstreams: [db] }}\n  - {{ name: mix, listen: 6433, mode: tcp, upstreams: [both] }}\n\
             \x20 - name: web\n    listen: 8080\n    rules: [{{ upstreams: [app, both] }}]\n"
        )
    };
    let kind = |config: &config::Config, id: &str| {
        config
            .upstreams
            .iter()
            .find(|u| u.id == id)
            .unwrap()
            .health_check
            .kind
    };
    let plain = parse(&yaml("", "")).expect("valid");
    assert_eq!(
        kind(&plain, "db"),
        HealthCheckKind::Tcp,
        "no GET /healthz to a database"
    );
    assert_eq!(kind(&plain, "app"), HealthCheckKind::Http);
    assert_eq!(
        kind(&plain, "both"),
        HealthCheckKind::Http,
        "an HTTP rule uses it"
    );
    for defaults in [
        "{ kind: http }",
        "{ path: /ready }",
        "{ expect_status: 200 }",
    ] {
        let chosen = parse(&yaml(
            &format!("defaults: {{ health_check: {defaults} }}\n"),
            "",
        ))
        .expect("valid");
        assert_eq!(kind(&chosen, "db"), HealthCheckKind::Http, "{defaults}");
    }
    let own = parse(&yaml("", ", health_check: { path: /up }")).expect("valid");
    assert_eq!(
        kind(&own, "db"),
        HealthCheckKind::Http,
        "an HTTP check's path"
    );
}

#[test]
fn a_quoted_worker_count_is_a_count() {
    let config = parse(&format!("workers: \"2\"\n{MINIMAL}")).expect("valid");
    assert_eq!(config.workers, Workers::Count(2.try_into().unwrap()));
    assert_eq!(
        errors(&format!("workers: \"0\"\n{MINIMAL}")),
        ["1:10: `workers` must be `auto` or more than 0, found `0`"]
    );
}

#[test]
fn an_empty_admin_section_is_the_default_admin_endpoint() {
    for section in ["admin:\n", "admin:\n  # listen: 9999\n", "admin: {}\n"] {
        let config = parse(&format!("{section}{MINIMAL}")).expect("valid");
        assert_eq!(
            config.admin.map(|admin| admin.listen),
            Some("127.0.0.1:9901".parse::<SocketAddr>().unwrap()),
            "{section}"
        );
    }
}

#[test]
fn public_folders_resolve_against_the_config_folder() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("static")).expect("mkdir");
    let file = dir.path().join("sluice.yaml");
    std::fs::write(
        &file,
        "admin: { listen: 9999 }\nworkers: 3\nlisteners:\n  - name: web\n    listen: 8080\n    rules: [{ path: /assets/*, public: ./static }]\n",
    )
    .expect("write");
    let config = config::load(&file).expect("valid");
    assert_eq!(config.workers, Workers::Count(3.try_into().unwrap()));
    assert_eq!(
        config.admin.unwrap().listen,
        "127.0.0.1:9999".parse::<SocketAddr>().unwrap()
    );
    let ListenerMode::Http(http) = &config.listeners[0].mode else {
        panic!("http listener")
    };
    let RuleAction::Static { root } = &http.rules[0].action else {
        panic!("static rule")
    };
    assert!(root.is_absolute());
    assert_eq!(*root, dir.path().join("static").canonicalize().unwrap());
}

#[test]
fn tcp_listener_options() {
    let config = parse(
        "
upstreams: [{ id: pg, address: 'localhost:5432', health_check: { kind: postgres } }]
listeners:
  - { name: db, listen: 6432, mode: tcp, upstreams: [pg], proxy_protocol: v1, accept_proxy_protocol: true }
",
    )
    .expect("valid");
    let ListenerMode::Tcp(tcp) = &config.listeners[0].mode else {
        panic!("tcp listener")
    };
    assert_eq!(tcp.proxy_protocol, Some(config::ProxyProtocolVersion::V1));
    assert!(tcp.accept_proxy_protocol);
    assert_eq!(
        config.upstreams[0].health_check.kind,
        HealthCheckKind::Postgres
    );
}

#[test]
fn errors_display_as_file_line_column_sorted() {
    let err =
        parse("listeners:\n  - name: web\n    listen: 8080\n    mode: tpc\nzzz: 1\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "test.yaml:4:11: unknown mode `tpc`; did you mean `tcp`?\ntest.yaml:5:1: unknown key `zzz` at the top level"
    );
}

#[test]
fn unreadable_file_is_one_error() {
    let err = config::load(Path::new("/nonexistent/sluice.yaml")).unwrap_err();
    assert_eq!(err.errors().len(), 1);
    assert!(
        err.to_string()
            .starts_with("/nonexistent/sluice.yaml: cannot read config:"),
        "{err}"
    );
}

#[test]
fn zero_length_and_whitespace_documents_are_empty() {
    assert_eq!(errors(""), ["1:1: the config file is empty"]);
    assert_eq!(errors("\n\n   \n"), ["1:1: the config file is empty"]);
    assert_eq!(
        errors("just text"),
        ["1:1: the config file must be a map of settings (`listeners:`, `upstreams:`, ...)"]
    );
}

#[test]
fn billion_laughs_is_refused_fast() {
    let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for level in 1..30 {
        let prev = format!("*l{}", level - 1).replace("*l0", "*a");
        let items = [prev.as_str(); 10].join(", ");
        text.push_str(&format!("l{level}: &l{level} [{items}]\n"));
    }
    let start = Instant::now();
    let errs = errors(&text);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(
        errs,
        ["2:10: YAML aliases (`*name`) are not supported in a config file"]
    );
}

#[test]
fn deep_nesting_is_refused() {
    let text = format!("listeners: {}{}\n", "[".repeat(10_000), "]".repeat(10_000));
    let errs = errors(&text);
    assert_eq!(errs.len(), 1);
    assert!(errs[0].ends_with("nesting too deep"), "{errs:?}");
}

#[test]
fn many_errors_in_a_large_file_stay_fast() {
    let mut text = String::from("upstreams:\n");
    for i in 0..5_000 {
        text.push_str(&format!(
            "  - {{ id: u{i}, address: 'h:{}', wieght: 1 }}\n",
            70_000 + i
        ));
    }
    let start = Instant::now();
    let errs = errors(&text);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    // Each upstream: a bad port and a misspelled key; plus no listeners.
    assert_eq!(errs.len(), 10_001);
    assert_eq!(
        errs[2],
        "2:35: unknown key `wieght` in upstream; did you mean `weight`?"
    );
}

/// Whether this build's `strategies` crate has `name` (strategies are
/// written in parallel; tests of strategy-specific rules wait for them).
fn has_strategy(name: &str) -> bool {
    let found = name.parse::<strategies::StrategyKind>().is_ok();
    if !found {
        eprintln!("strategy `{name}` is not in this build yet; skipping");
    }
    found
}

#[test]
fn consistent_hash_defaults_to_client_ip_and_parses_keys() {
    if !has_strategy("consistent-hash") {
        return;
    }
    let config = parse(
        "
upstreams: [{ id: app, address: '127.0.0.1:3000' }]
listeners:
  - name: web
    listen: 8080
    rules:
      - { path: /a, upstreams: [app], strategy: consistent-hash }
      - { path: /b, upstreams: [app], strategy: consistent-hash, hash_key: 'header:X-User' }
  - { name: db, listen: 6432, mode: tcp, upstreams: [app], strategy: consistent-hash }
",
    )
    .expect("valid");
    let ListenerMode::Http(http) = &config.listeners[0].mode else {
        panic!("http listener")
    };
    let keys: Vec<_> = http
        .rules
        .iter()
        .map(|rule| match &rule.action {
            RuleAction::Proxy { pool, .. } => pool.hash_key.clone(),
            RuleAction::Static { .. } => None,
        })
        .collect();
    assert_eq!(
        keys,
        [
            Some(config::HashKey::ClientIp),
            Some(config::HashKey::Header(http::HeaderName::from_static(
                "x-user"
            )))
        ]
    );
    let ListenerMode::Tcp(tcp) = &config.listeners[1].mode else {
        panic!("tcp listener")
    };
    assert_eq!(tcp.pool.hash_key, Some(config::HashKey::ClientIp));
}

#[test]
fn consistent_hash_key_errors() {
    if !has_strategy("consistent-hash") {
        return;
    }
    let errs = errors(
        "
upstreams: [{ id: app, address: '127.0.0.1:3000' }]
listeners:
  - name: web
    listen: 8080
    rules:
      - { upstreams: [app], strategy: consistent-hash, hash_key: 'cokie:x' }
  - { name: db, listen: 6432, mode: tcp, upstreams: [app], strategy: consistent-hash, hash_key: path }
",
    );
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(
        errs[0].starts_with("7:66: unknown hash_key `cokie:x`; did you mean `cookie`?"),
        "{errs:?}"
    );
    assert_eq!(errs[1], "8:97: a tcp listener can hash only on `client-ip`");
}

#[test]
fn endless_and_binary_files_are_refused() {
    let start = Instant::now();
    let err = config::load(Path::new("/dev/zero")).unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
    assert!(err.to_string().contains("too large"), "{err}");

    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("binary.yaml");
    std::fs::write(&file, [0xff, 0xfe, 0x00]).expect("write");
    let err = config::load(&file).unwrap_err();
    assert!(err.to_string().ends_with("not UTF-8 text"), "{err}");
}
