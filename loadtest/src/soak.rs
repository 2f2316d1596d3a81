//! The `soak` scenario (issue 8): a long mixed load through sluice must
//! leave the resident memory and the open descriptors of every sluice
//! process where they started.
//!
//! `loadtest soak [--quick] [--connections N] [--requests N] [--workers N]
//! [--concurrency N] [--sluice PATH]`
//!
//! Starts its own backend ([`backend`]) and sluice (`workers: N`), warms up
//! with 10% of the load (so allocator pools and buffers reach their working
//! size), lets idle connections close, samples each sluice
//! process ([`procs`]), runs the mix ([`client`]; by default 1M requests
//! over 100k connections with 50 tasks), waits for the drain and samples
//! again. It passes when every process is the same PID as before (no
//! worker died), grew by at most 10% or 8 MiB of RSS (whichever is larger),
//! holds at most [`FD_SLACK`] more or fewer descriptors, and at most 0.1%
//! of requests failed.

mod backend;
mod client;
mod procs;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use client::Totals;
use procs::Sample;

/// Descriptors a process may hold more or fewer after the drain.
const FD_SLACK: usize = 4;
/// RSS growth always allowed, in KiB.
const RSS_SLACK_KIB: u64 = 8 * 1024;

/// The soak's command line.
struct Options {
    connections: usize,
    requests: usize,
    workers: usize,
    concurrency: usize,
    sluice: Option<PathBuf>,
}

const USAGE: &str = "usage: loadtest soak [--quick] [--connections N] [--requests N] \
[--workers N] [--concurrency N] [--sluice PATH]\n\
defaults: 100000 connections, 1000000 requests, 1 worker, 50 tasks; \
--quick: 10000 connections, 100000 requests";

fn parse(args: impl Iterator<Item = String>) -> Result<Options> {
    let mut options = Options {
        connections: 100_000,
        requests: 1_000_000,
        workers: 1,
        concurrency: 50,
        sluice: None,
    };
    let mut args = args;
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Result<usize> {
            args.next()
                .and_then(|v| v.parse().ok())
                .filter(|&n: &usize| n > 0)
                .with_context(|| format!("{name} needs a positive number\n{USAGE}"))
        };
        match arg.as_str() {
            "--quick" => (options.connections, options.requests) = (10_000, 100_000),
            "--connections" => options.connections = number("--connections")?,
            "--requests" => options.requests = number("--requests")?,
            "--workers" => options.workers = number("--workers")?,
            "--concurrency" => options.concurrency = number("--concurrency")?,
            "--sluice" => {
                options.sluice = Some(args.next().context("--sluice needs a path")?.into())
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown soak argument {other:?}\n{USAGE}"),
        }
    }
    Ok(options)
}

/// Runs the soak; an error if it failed.
pub fn run(args: impl Iterator<Item = String>) -> Result<()> {
    let options = parse(args)?;
    let bin = crate::find_sluice(options.sluice.clone())?;
    let dir = tempfile::Builder::new()
        .prefix("sluice-soak-")
        .tempdir()
        .context("creating a temp dir")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let backend = backend::start()?;
    let sluice = Sluice::start(&bin, dir.path(), backend, options.workers)?;
    eprintln!(
        "soak: sluice {} (pid {}, workers {:?}) on {}, backend on {backend}",
        bin.display(),
        sluice.child.id(),
        sluice.workers,
        sluice.addr
    );
    let per = client::per_keep_alive(options.connections, options.requests);
    let warm = (options.connections / 10).max(1000);
    runtime.block_on(client::run(
        sluice.addr,
        warm,
        per,
        options.concurrency,
        Arc::default(),
    ));
    let before = settle(&sluice, None);
    let totals = Arc::new(Totals::default());
    let started = Instant::now();
    runtime.block_on(async {
        let load = client::run(
            sluice.addr,
            options.connections,
            per,
            options.concurrency,
            Arc::clone(&totals),
        );
        tokio::pin!(load);
        let mut ticker = tokio::time::interval(Duration::from_secs(10));
        ticker.tick().await;
        loop {
            tokio::select! {
                () = &mut load => break,
                _ = ticker.tick() => eprintln!(
                    "soak: {:>4.0}s {} connections, {} requests, {} errors; RSS KiB {:?}",
                    started.elapsed().as_secs_f64(),
                    totals.connections.load(Ordering::Relaxed),
                    totals.completed.load(Ordering::Relaxed),
                    totals.errors.load(Ordering::Relaxed),
                    sample_all(&sluice).iter().map(|s| s.map_or(0, |s| s.rss_kib)).collect::<Vec<_>>(),
                ),
            }
        }
    });
    let took = started.elapsed();
    let after = settle(&sluice, Some(&before));
    report(&options, &totals, took, &before, &after, per)
}

/// A sluice supervisor and its workers, stopped on drop.
struct Sluice {
    child: Child,
    workers: Vec<u32>,
    addr: SocketAddr,
}

impl Sluice {
    fn start(bin: &Path, dir: &Path, backend: SocketAddr, workers: usize) -> Result<Sluice> {
        let port = crate::targets::free_port()?;
        let config = format!(
            "workers: {workers}\n\
             defaults:\n  health_check:\n    kind: none\n\
             upstreams:\n  - id: backend\n    address: {backend}\n\
             listeners:\n  - name: http\n    listen: 127.0.0.1:{port}\n\
             \x20   rules:\n      - path: /*\n        upstreams: [backend]\n"
        );
        let path = dir.join("sluice.yaml");
        std::fs::write(&path, config)?;
        let log = std::fs::File::create(dir.join("sluice.log"))?;
        let child = Command::new(bin)
            .args(["run", "-c"])
            .arg(&path)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting sluice")?;
        let mut sluice = Sluice {
            child,
            workers: Vec::new(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            sluice.workers = procs::children(sluice.child.id());
            if sluice.workers.len() == workers && std::net::TcpStream::connect(sluice.addr).is_ok()
            {
                return Ok(sluice);
            }
            if let Some(status) = sluice.child.try_wait()? {
                let log = std::fs::read_to_string(dir.join("sluice.log")).unwrap_or_default();
                bail!("sluice exited at start-up ({status}): {log}");
            }
            if Instant::now() > deadline {
                bail!("sluice did not start {workers} workers and listen within 15 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The supervisor and the workers it had at start, in that order.
    fn pids(&self) -> Vec<u32> {
        std::iter::once(self.child.id())
            .chain(self.workers.iter().copied())
            .collect()
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        crate::targets::stop(&mut self.child, Duration::from_secs(5));
    }
}

/// Waits until the descriptors of every process stopped changing (and,
/// with `before`, are back within [`FD_SLACK`] of it), at most 30 s, then
/// samples every process (`None` for one that is gone).
fn settle(sluice: &Sluice, before: Option<&[Option<Sample>]>) -> Vec<Option<Sample>> {
    // Idle keep-alive connections to the backend close after its idle time.
    std::thread::sleep(backend::IDLE + Duration::from_secs(1));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = sample_all(sluice);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = sample_all(sluice);
        let steady = now
            .iter()
            .zip(&last)
            .all(|(a, b)| a.map(|s| s.fds) == b.map(|s| s.fds));
        let back = before.is_none_or(|before| {
            now.iter().zip(before).all(|(a, b)| {
                a.zip(*b)
                    .is_some_and(|(a, b)| a.fds.abs_diff(b.fds) <= FD_SLACK)
            })
        });
        if (steady && back) || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

fn sample_all(sluice: &Sluice) -> Vec<Option<Sample>> {
    sluice.pids().into_iter().map(procs::sample).collect()
}

/// Prints the per-process table and the totals; an error if the soak
/// failed.
fn report(
    options: &Options,
    totals: &Totals,
    took: Duration,
    before: &[Option<Sample>],
    after: &[Option<Sample>],
    per: usize,
) -> Result<()> {
    let completed = totals.completed.load(Ordering::Relaxed);
    let aborted = totals.aborted.load(Ordering::Relaxed);
    let errors = totals.errors.load(Ordering::Relaxed);
    let requests = completed + aborted + errors;
    println!(
        "soak: {} connections ({per} requests per keep-alive one), {requests} requests \
         ({completed} completed, {aborted} aborted on purpose, {errors} failed) in {:.1} s \
         ({:.0} req/s), {} workers, {} tasks",
        totals.connections.load(Ordering::Relaxed),
        took.as_secs_f64(),
        requests as f64 / took.as_secs_f64(),
        options.workers,
        options.concurrency,
    );
    println!(
        "| process    | RSS before | RSS after | RSS delta | fds before | fds after | fds delta | verdict |"
    );
    println!(
        "|------------|------------|-----------|-----------|------------|-----------|-----------|---------|"
    );
    let mut failed = Vec::new();
    for (i, (b, a)) in before.iter().zip(after).enumerate() {
        let role = if i == 0 {
            "supervisor".to_owned()
        } else {
            format!("worker {i}")
        };
        let (Some(b), Some(a)) = (b, a) else {
            println!("| {role:<10} | gone |");
            failed.push(format!("{role} is gone (it died or was replaced)"));
            continue;
        };
        let rss_delta = a.rss_kib as i64 - b.rss_kib as i64;
        let rss_bound = (b.rss_kib / 10).max(RSS_SLACK_KIB) as i64;
        let fd_delta = a.fds as i64 - b.fds as i64;
        let ok = rss_delta <= rss_bound && fd_delta.unsigned_abs() as usize <= FD_SLACK;
        if !ok {
            failed.push(format!(
                "{role}: RSS {rss_delta:+} KiB (bound {rss_bound}), fds {fd_delta:+} (bound ±{FD_SLACK})"
            ));
        }
        println!(
            "| {role:<10} | {:>6} KiB | {:>5} KiB | {:>+5} KiB | {:>10} | {:>9} | {:>+9} | {:<7} |",
            b.rss_kib,
            a.rss_kib,
            rss_delta,
            b.fds,
            a.fds,
            fd_delta,
            if ok { "pass" } else { "FAIL" },
        );
    }
    if errors * 1000 > requests {
        failed.push(format!("{errors} of {requests} requests failed"));
    }
    if failed.is_empty() {
        println!("soak: pass");
        Ok(())
    } else {
        bail!("soak failed: {}", failed.join("; "))
    }
}
