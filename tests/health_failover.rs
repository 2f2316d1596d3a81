//! Health and live traffic together (issue 6): a backend dying under load,
//! coming back, and a pool with every upstream marked down (panic mode).
//! `Instance::start` blocks for the first round of checks, so these tests
//! run on a multi-thread runtime where the backends keep answering.

mod common;
mod health_support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use health_support::{HealthBackend, wait_for};
use sluice::counters::UpstreamCounter;
use sluice::instance::Instance;

fn proxy(backends: &[&HealthBackend], check: &str) -> Instance {
    let mut yaml = String::from("upstreams:\n");
    for b in backends {
        yaml.push_str(&health_support::upstream(b.name, b.addr, check));
    }
    let ids: Vec<&str> = backends.iter().map(|b| b.name).collect();
    yaml.push_str(&format!(
        "admin:\n  listen: 127.0.0.1:0\nlisteners:\n  - name: web\n    listen: 127.0.0.1:0\n    mode: http\n    rules:\n      - path: /*\n        upstreams: [{}]\n",
        ids.join(", ")
    ));
    let config = sluice::config::parse(&yaml, Path::new("failover.yaml")).unwrap();
    Instance::start(&config).unwrap()
}

/// `clients` loops sending GET / until `stop`; counts answers and errors.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    errors: Arc<std::sync::Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(url: String, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
        let tasks = (0..clients)
            .map(|_| {
                let (url, stop, ok, errors) =
                    (url.clone(), stop.clone(), ok.clone(), errors.clone());
                tokio::spawn(async move {
                    let http = common::client();
                    while !stop.load(Ordering::SeqCst) {
                        match http.get(&url).send().await {
                            Ok(r) if r.status() == 200 => {
                                ok.fetch_add(1, Ordering::SeqCst);
                            }
                            Ok(r) => errors
                                .lock()
                                .unwrap()
                                .push(format!("status {}", r.status())),
                            Err(e) => errors.lock().unwrap().push(e.to_string()),
                        }
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            errors,
            tasks,
        }
    }

    async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            task.await.unwrap();
        }
        let errors = self.errors.lock().unwrap().clone();
        (self.ok.load(Ordering::SeqCst), errors)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_dying_under_load_costs_no_request_and_comes_back_after_rise() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let a = HealthBackend::start("a").await;
    let mut b = HealthBackend::start("b").await;
    let (interval, timeout, fall) = (200, 200, 3);
    let instance = proxy(
        &[&a, &b],
        &format!(
            "kind: http, path: /healthz, interval: {interval}ms, timeout: {timeout}ms, rise: 2, fall: {fall}"
        ),
    );
    let region = Arc::clone(&instance.region);
    assert!(region.is_up(0) && region.is_up(1), "both up from the start");
    let load = Load::start(format!("http://{}/", instance.address("web")), 4);
    wait_for(Duration::from_secs(2), "b serves", || {
        b.hits.load(Ordering::SeqCst) > 20
    })
    .await;

    b.kill().await;
    let killed = Instant::now();
    wait_for(Duration::from_secs(3), "b marked down", || !region.is_up(1)).await;
    let took = killed.elapsed();
    let bound = Duration::from_millis(interval * fall + timeout);
    assert!(took <= bound, "marked down after {took:?}, bound {bound:?}");
    // Picks made just before the flip may still fail once; then nothing.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let errors_then = region.upstream_total(1, UpstreamCounter::ConnectErrors);
    let served_then = a.hits.load(Ordering::SeqCst);
    wait_for(Duration::from_secs(3), "load continues on a", || {
        a.hits.load(Ordering::SeqCst) > served_then + 100
    })
    .await;
    assert_eq!(
        region.upstream_total(1, UpstreamCounter::ConnectErrors),
        errors_then,
        "no request is attempted on a down upstream"
    );

    let b = HealthBackend::start_on("b", b.addr).await;
    let restarted = Instant::now();
    wait_for(Duration::from_secs(3), "b up again", || region.is_up(1)).await;
    let probes = b.probes.load(Ordering::SeqCst);
    assert!(
        probes >= 2,
        "up after rise = 2 passing checks, saw {probes}"
    );
    assert!(restarted.elapsed() >= Duration::from_millis(interval * 9 / 10));
    wait_for(Duration::from_secs(3), "traffic returns to b", || {
        b.hits.load(Ordering::SeqCst) > 20
    })
    .await;

    let (ok, errors) = load.finish().await;
    assert!(errors.is_empty(), "clients saw errors: {errors:?}");
    assert!(ok > 300, "only {ok} requests");
    instance.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_with_every_upstream_down_serves_in_panic_mode_until_one_recovers() {
    // Three upstreams, so "picks among all" is a real spread.
    let (a, b, c) = (
        HealthBackend::start("a").await,
        HealthBackend::start("b").await,
        HealthBackend::start("c").await,
    );
    for backend in [&a, &b, &c] {
        backend.set_health(500);
    }
    let instance = proxy(
        &[&a, &b, &c],
        "kind: http, path: /healthz, interval: 100ms, timeout: 300ms, rise: 2, fall: 3",
    );
    let region = Arc::clone(&instance.region);
    assert!(
        (0..3).all(|slot| !region.is_up(slot)),
        "every upstream failed its first check"
    );
    let http = common::client();
    let url = format!("http://{}/", instance.address("web"));
    for _ in 0..30 {
        let response = http.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200, "panic mode serves");
    }
    let hits = [&a, &b, &c].map(|x| x.hits.load(Ordering::SeqCst));
    assert!(
        hits.iter().all(|&h| h > 0),
        "panic mode picks among all: {hits:?}"
    );
    let admin = instance.admin.expect("the admin endpoint runs");
    let panic_gauge = || async move {
        let samples = common::metrics::samples(&common::metrics::scrape(admin).await);
        common::metrics::value(
            &samples,
            "sluice_pool_panic",
            &[("listener", "web"), ("rule", "/*")],
        )
    };
    assert_eq!(panic_gauge().await, 1.0, "the metric shows panic mode");

    a.set_health(200);
    wait_for(Duration::from_secs(2), "a recovers", || region.is_up(0)).await;
    let others = b.hits.load(Ordering::SeqCst) + c.hits.load(Ordering::SeqCst);
    for _ in 0..20 {
        let response = http.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-backend"], "a", "panic is over");
    }
    assert_eq!(
        b.hits.load(Ordering::SeqCst) + c.hits.load(Ordering::SeqCst),
        others
    );
    assert_eq!(panic_gauge().await, 0.0, "recovery clears the metric");
    instance.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_waits_for_the_first_round_bounded_by_the_check_timeout() {
    let live = HealthBackend::start("live").await;
    let hang = health_support::fake(health_support::Fake::Hang).await;
    let mut yaml = String::from("upstreams:\n");
    let check = "kind: http, path: /healthz, interval: 2s, timeout: 400ms, rise: 2, fall: 3";
    yaml.push_str(&health_support::upstream("hang", hang, check));
    yaml.push_str(&health_support::upstream("live", live.addr, check));
    yaml.push_str("listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    mode: http\n    rules:\n      - path: /*\n        upstreams: [hang, live]\n");
    let config = sluice::config::parse(&yaml, Path::new("startup.yaml")).unwrap();
    let started = Instant::now();
    let instance = Instance::start(&config).unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(380) && took < Duration::from_millis(1000),
        "start-up took {took:?}"
    );
    assert!(!instance.region.is_up(0), "the hanging upstream timed out");
    assert!(
        instance.region.is_up(1),
        "the live one is up from the first request"
    );
    let http = common::client();
    for _ in 0..10 {
        let response = http
            .get(format!("http://{}/", instance.address("web")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["x-backend"], "live");
    }
    instance.stop();
}
