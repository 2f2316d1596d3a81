//! The health checker on its own (issue 6): kinds, thresholds, timeouts,
//! first round and reloads, against real sockets. The checker runs on its
//! own thread, so these tests only read the region it writes.

mod health_support;
mod sockets;

use std::time::{Duration, Instant};

use sluice::counters::UpstreamCounter;

use health_support::{
    ALTERNATE, Fake, HealthBackend, checker, config, fake, results, upstream, wait_for,
};

const FAST: &str = "interval: 100ms, timeout: 300ms, rise: 2, fall: 3";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_check_with_a_wrong_status_keeps_the_upstream_down_until_rise_passes() {
    let app = HealthBackend::start("app").await;
    app.set_health(503);
    let cfg = config(&[
        upstream(
            "app",
            app.addr,
            &format!("kind: http, path: /healthz, {FAST}"),
        ),
        upstream("free", app.addr, "kind: none"),
    ]);
    let (handle, region) = checker(&cfg);
    assert!(
        !region.is_up(0),
        "a checked upstream reads down before its first check"
    );
    assert!(region.is_up(1), "a `none` upstream is up at once");
    assert!(handle.wait_first_round());
    assert!(!region.is_up(0), "status 503 is outside 200-399");
    let (_, failures, _) = results(&region, 0);
    assert!(failures >= 1);
    app.set_health(200);
    let probes = app.probes.load(std::sync::atomic::Ordering::SeqCst);
    wait_for(Duration::from_secs(2), "up after two passes", || {
        region.is_up(0)
    })
    .await;
    let passes = app.probes.load(std::sync::atomic::Ordering::SeqCst) - probes;
    assert!(passes >= 2, "rise 2 needs two passing checks, saw {passes}");
    handle.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_and_postgres_checks_judge_the_answer() {
    let cases = [
        ("redis-pong", Fake::Reply(b"+PONG\r\n"), "redis", true),
        (
            "redis-err",
            Fake::Reply(b"-ERR unknown command\r\n"),
            "redis",
            false,
        ),
        (
            "redis-noauth",
            Fake::Reply(b"-NOAUTH Authentication required.\r\n"),
            "redis",
            true,
        ),
        (
            "redis-loading",
            Fake::Reply(b"-LOADING Redis is loading the dataset in memory\r\n"),
            "redis",
            false,
        ),
        (
            "redis-garbage",
            Fake::Reply(b"HTTP/1.1 400 Bad Request\r\n\r\n"),
            "redis",
            false,
        ),
        ("redis-close", Fake::Close, "redis", false),
        (
            "pg-password",
            Fake::Reply(b"R\x00\x00\x00\x08\x00\x00\x00\x05"),
            "postgres",
            true,
        ),
        (
            "pg-no-role",
            Fake::Reply(b"E\x00\x00\x00(SFATAL\x00C28000\x00Mrole does not exist\x00\x00"),
            "postgres",
            true,
        ),
        (
            "pg-shutting-down",
            Fake::Reply(
                b"E\x00\x00\x009SFATAL\x00C57P03\x00Mthe database system is shutting down\x00\x00",
            ),
            "postgres",
            false,
        ),
        ("pg-ssl-answer", Fake::Reply(b"N"), "postgres", false),
        (
            "pg-garbage",
            Fake::Reply(b"HTTP/1.1 400 Bad Request\r\n\r\n"),
            "postgres",
            false,
        ),
        ("pg-close", Fake::Close, "postgres", false),
        (
            "http-garbage",
            Fake::Reply(b"SSH-2.0-OpenSSH_9.6\r\n"),
            "http",
            false,
        ),
        ("http-close", Fake::Close, "http", false),
        (
            "http-early-hints",
            Fake::Reply(
                b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            ),
            "http",
            true,
        ),
        (
            "http-only-interim",
            Fake::Reply(b"HTTP/1.1 100 Continue\r\n\r\n"),
            "http",
            false,
        ),
        ("tcp-open", Fake::Close, "tcp", true),
    ];
    let mut upstreams = Vec::new();
    for (id, behaviour, kind, _) in cases {
        upstreams.push(upstream(
            id,
            fake(behaviour).await,
            &format!("kind: {kind}, {FAST}"),
        ));
    }
    upstreams.push(upstream(
        "refused",
        sockets::refused_address(),
        &format!("kind: tcp, {FAST}"),
    ));
    let (handle, region) = checker(&config(&upstreams));
    assert!(handle.wait_first_round());
    for (slot, (id, _, _, up)) in cases.iter().enumerate() {
        assert_eq!(region.is_up(slot), *up, "{id}");
        let (success, failure, timeout) = results(&region, slot);
        assert_eq!(timeout, 0, "{id}");
        assert_eq!((success > 0, failure > 0), (*up, !*up), "{id}");
    }
    assert!(!region.is_up(cases.len()), "connection refused");
    handle.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_check_times_out_and_blocks_nothing_else() {
    let live = HealthBackend::start("live").await;
    let cfg = config(&[
        upstream(
            "hang",
            fake(Fake::Hang).await,
            "kind: http, interval: 200ms, timeout: 300ms, rise: 1, fall: 1",
        ),
        upstream(
            "live",
            live.addr,
            "kind: tcp, interval: 100ms, timeout: 300ms, rise: 1, fall: 1",
        ),
    ]);
    let start = Instant::now();
    let (handle, region) = checker(&cfg);
    assert!(
        handle.wait_first_round(),
        "the first round ends at the timeout"
    );
    let first_round = start.elapsed();
    assert!(
        first_round >= Duration::from_millis(280) && first_round < Duration::from_millis(800),
        "first round took {first_round:?}"
    );
    assert_eq!(results(&region, 0), (0, 0, 1), "a hang counts as a timeout");
    assert!(!region.is_up(0));
    assert!(region.is_up(1));
    let before = results(&region, 1).0;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let live_checks = results(&region, 1).0 - before;
    assert!(
        (9..=16).contains(&live_checks),
        "the live upstream kept its 100 ms rhythm: {live_checks} checks in 1.2 s"
    );
    let (_, failures, timeouts) = results(&region, 0);
    assert_eq!(failures, 0);
    assert!(
        (4..=6).contains(&timeouts),
        "one timeout per 300 ms: {timeouts}"
    );
    handle.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_alternating_pass_and_fail_never_changes_state() {
    let flaky = HealthBackend::start("flaky").await;
    flaky.set_health(ALTERNATE);
    let cfg = config(&[upstream(
        "flaky",
        flaky.addr,
        "kind: http, path: /healthz, interval: 30ms, timeout: 300ms, rise: 2, fall: 3",
    )]);
    let (handle, region) = checker(&cfg);
    assert!(handle.wait_first_round());
    assert!(region.is_up(0), "the first probe passed");
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        assert!(
            region.is_up(0),
            "changed state after {:?}",
            results(&region, 0)
        );
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let (success, failure, _) = results(&region, 0);
    assert!(
        success >= 10 && failure >= 10,
        "{success} passes, {failure} failures"
    );
    handle.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_unchanged_upstreams_and_checks_new_ones_first() {
    let (a, b, c) = (
        HealthBackend::start("a").await,
        HealthBackend::start("b").await,
        HealthBackend::start("c").await,
    );
    let check = format!("kind: http, path: /healthz, {FAST}");
    let (mut handle, region) = checker(&config(&[
        upstream("a", a.addr, &check),
        upstream("b", b.addr, &check),
    ]));
    assert!(handle.wait_first_round());
    a.set_health(500);
    wait_for(Duration::from_secs(2), "a down", || !region.is_up(0)).await;
    a.set_health(200);
    let hang = fake(Fake::Hang).await;
    handle.update(&config(&[
        upstream("a", a.addr, &check),
        upstream("hang", hang, &check),
        upstream("c", c.addr, &check),
    ]));
    assert!(
        !region.is_up(0),
        "a keeps its state (down, rise not reached yet)"
    );
    assert!(
        !region.is_up(1),
        "a new upstream reads down until its first check, even in a slot that read up"
    );
    assert!(handle.wait_first_round());
    assert!(region.is_up(2), "c passed its first check");
    assert!(!region.is_up(1), "hang timed out");
    wait_for(Duration::from_secs(2), "a up through rise", || {
        region.is_up(0)
    })
    .await;
    let probes_of_b = b.probes.load(std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        b.probes.load(std::sync::atomic::Ordering::SeqCst),
        probes_of_b,
        "a removed upstream is no longer checked"
    );
    handle.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_changes_what_is_checked_judges_the_upstream_anew() {
    let (a, b) = (
        HealthBackend::start("a").await,
        HealthBackend::start("b").await,
    );
    a.set_health(500);
    b.set_health(500);
    let (mut handle, region) = checker(&config(&[
        upstream("a", a.addr, &format!("kind: http, path: /, {FAST}")),
        upstream("b", b.addr, "kind: none"),
    ]));
    assert!(handle.wait_first_round());
    assert!(region.is_up(0) && region.is_up(1));
    // Slow checks that need three failures: only a fresh judgement can
    // take them down within this test.
    let slow = "kind: http, path: /healthz, interval: 30s, timeout: 300ms, rise: 2, fall: 3";
    handle.update(&config(&[
        upstream("a", a.addr, slow),
        upstream("b", b.addr, slow),
    ]));
    assert!(
        handle.wait_first_round(),
        "the reload waits for the new checks"
    );
    assert!(!region.is_up(0), "a new path is judged by its first answer");
    assert!(!region.is_up(1), "a check where there was none, too");
    handle.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_whose_slot_moves_in_a_reload_carries_its_state() {
    let (a, b) = (
        HealthBackend::start("a").await,
        HealthBackend::start("b").await,
    );
    b.set_health(500);
    let check = format!("kind: http, path: /healthz, {FAST}");
    let (mut handle, region) = checker(&config(&[
        upstream("a", a.addr, &check),
        upstream("b", b.addr, &check),
    ]));
    assert!(handle.wait_first_round());
    assert!(region.is_up(0) && !region.is_up(1));
    // Today's slots are config indices: removing `a` moves `b` to slot 0.
    handle.update(&config(&[upstream("b", b.addr, &check)]));
    assert!(!region.is_up(0), "b is still down, now in slot 0");
    assert!(handle.wait_first_round(), "b needs no new first check");
    b.set_health(200);
    wait_for(Duration::from_secs(2), "b up in its new slot", || {
        region.is_up(0)
    })
    .await;
    handle.stop();
}

/// A checker of `backend` (slot 0, `fall: 3`) whose active checks pass
/// and run rarely: only live traffic, written into the region's worker
/// row by the test, can change the state.
fn live_traffic_only(
    backend: &HealthBackend,
) -> (
    sluice::health::HealthHandle,
    std::sync::Arc<sluice::counters::Region>,
) {
    let (handle, region) = checker(&config(&[upstream(
        "a",
        backend.addr,
        "kind: http, path: /healthz, interval: 60s, timeout: 300ms, rise: 1, fall: 3",
    )]));
    assert!(handle.wait_first_round());
    (handle, region)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_failures_count_toward_fall_only_when_nothing_was_answered_in_between() {
    let a = HealthBackend::start("a").await;
    let (handle, region) = live_traffic_only(&a);
    let row = region.worker_row(0);
    let reset = || {
        row.add_upstream(0, UpstreamCounter::Requests, 1);
        row.add_upstream(0, UpstreamCounter::Resets, 1);
    };
    // Several passive polls (every 50 ms) between events.
    let between = Duration::from_millis(150);
    for _ in 0..4 {
        reset();
        tokio::time::sleep(between).await;
        row.add_upstream(0, UpstreamCounter::Requests, 2);
        row.add_upstream(0, UpstreamCounter::Answered, 2);
        tokio::time::sleep(between).await;
    }
    assert!(region.is_up(0), "four resets, each followed by answers");
    // Requests still in flight between the resets are not answers.
    for _ in 0..3 {
        row.add_upstream(0, UpstreamCounter::Requests, 1);
        row.add_upstream(0, UpstreamCounter::Active, 1);
        tokio::time::sleep(between).await;
        row.add_upstream(0, UpstreamCounter::Resets, 1);
        row.sub_upstream(0, UpstreamCounter::Active, 1);
        tokio::time::sleep(between).await;
    }
    wait_for(Duration::from_secs(2), "down after three in a row", || {
        !region.is_up(0)
    })
    .await;
    handle.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connects_that_time_out_one_by_one_count_toward_fall() {
    let a = HealthBackend::start("a").await;
    let (handle, region) = live_traffic_only(&a);
    let row = region.worker_row(0);
    let between = Duration::from_millis(150);
    // Picked (counted in flight), then the connect times out: the drop in
    // flight is not an answer.
    for _ in 0..3 {
        row.add_upstream(0, UpstreamCounter::Active, 1);
        tokio::time::sleep(between).await;
        row.add_upstream(0, UpstreamCounter::ConnectErrors, 1);
        row.sub_upstream(0, UpstreamCounter::Active, 1);
        tokio::time::sleep(between).await;
    }
    wait_for(Duration::from_secs(2), "down after three timeouts", || {
        !region.is_up(0)
    })
    .await;
    handle.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_send_the_proxy_header_the_upstreams_listeners_send() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A Redis-like server behind a balancer that sends PROXY v2: it wants
    // the header first, and closes a connection that starts otherwise.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut head = [0u8; 16];
                if stream.read_exact(&mut head).await.is_err()
                    || head[..12] != sluice::tcp::proxy_protocol::V2_SIGNATURE
                {
                    return;
                }
                let mut rest = vec![0u8; usize::from(u16::from_be_bytes([head[14], head[15]]))];
                let mut ping = [0u8; 6];
                if stream.read_exact(&mut rest).await.is_ok()
                    && stream.read_exact(&mut ping).await.is_ok()
                    && &ping == b"PING\r\n"
                {
                    let _ = stream.write_all(b"+PONG\r\n").await;
                }
            });
        }
    });
    let yaml = format!(
        "upstreams:\n{}listeners:\n  - name: t\n    listen: 127.0.0.1:0\n    mode: tcp\n    proxy_protocol: v2\n    upstreams: [cache]\n",
        upstream(
            "cache",
            addr,
            "kind: redis, interval: 100ms, timeout: 500ms, rise: 1, fall: 1"
        )
    );
    let config = sluice::config::parse(&yaml, std::path::Path::new("t.yaml")).unwrap();
    let (handle, region) = checker(&config);
    assert!(handle.wait_first_round());
    assert!(region.is_up(0), "{:?}", results(&region, 0));
    handle.stop();
}
