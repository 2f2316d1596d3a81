//! Hostname upstreams: the resolver's answer is reused for a second, and
//! the last good one stands in for a minute while the resolver fails.
//!
//! Each new connection to a hostname upstream used to ask the system
//! resolver (a blocking `getaddrinfo` on tokio's thread pool). Under a burst
//! of new connections that is one lookup per connection; and while DNS is
//! down every connect failed, which passive health counts until the
//! upstream reads down, though its address had not changed. As HAProxy
//! does with its `hold valid` and `hold obsolete` times:
//!
//! - an answer is used again for [`FRESH`], so DNS changes are still
//!   followed within a second;
//! - after that, one connect asks again while the others go on with the
//!   answer they have. It waits at most [`ASK_WAIT`] for the resolver, then
//!   goes on with that answer too (a resolver that times out must not
//!   make the asking connect, or health check, fail). If the lookup
//!   fails, the last good answer is used, and asked about again a second
//!   later, for up to [`STALE`];
//! - a name with no good answer younger than [`STALE`] waits for the
//!   resolver, and fails with its error. Connects that need such a name
//!   at the same time share one lookup, and a failed one is not repeated
//!   for [`FRESH`]: connects in that second fail at once with its error.
//!
//! A lookup runs as a task of its own. A connect that stops waiting for
//! it (done waiting after [`ASK_WAIT`], or cut at `connect_timeout`) does
//! not stop it, and no other lookup of that name starts while it runs: its
//! outcome is kept for the next connect. So a resolver that hangs during
//! an outage gets one lookup per name at a time, not one per connect or
//! per second piling up in tokio's blocking pool. One that has run for
//! [`GIVE_UP`] is given up (its blocking call runs on, its answer unused),
//! and the next connect starts another. An outcome is as old as its
//! lookup's end, not as the connect that next reads it.
//!
//! The cache is per thread: each worker (and the health checker) has its
//! own, with no locking but the one of a lookup's outcome.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// How long an answer is used without asking again, and how long after a
/// failed lookup the next one is tried.
pub const FRESH: Duration = Duration::from_secs(1);

/// How long the last good answer stands in while lookups fail.
pub const STALE: Duration = Duration::from_secs(60);

/// How long a connect that asks about a name it has an answer for waits
/// for the resolver before it uses that answer.
pub const ASK_WAIT: Duration = Duration::from_millis(100);

/// How long a lookup may run before the next connect starts another:
/// longer than the system resolver's own worst case (glibc: 5 s per try,
/// 2 tries, 3 servers).
pub const GIVE_UP: Duration = Duration::from_secs(30);

/// The lookup key: host and port.
type Key = (String, u16);

/// What the resolver said.
type Outcome = io::Result<Vec<SocketAddr>>;

/// One name's last good answer.
#[derive(Debug)]
struct Answer {
    addresses: Rc<[SocketAddr]>,
    /// When it was looked up.
    at: Instant,
    /// No new lookup before this.
    next_ask: Instant,
}

/// A name with no usable answer whose last lookup failed: connects fail
/// with the same error until `until`.
#[derive(Debug)]
struct Failure {
    kind: io::ErrorKind,
    message: String,
    until: Instant,
}

/// A lookup's outcome, written by its task and read by the connects
/// waiting for it.
#[derive(Debug, Default)]
struct Lookup {
    /// Set, with `outcome`, when the resolver answered.
    finished: AtomicBool,
    /// What the resolver said, and when: an answer or failure is as old
    /// as its lookup, not as the connect that next reads it.
    outcome: Mutex<Option<(Outcome, Instant)>>,
    done: Notify,
}

impl Lookup {
    /// Returns once the lookup has an outcome.
    async fn finished(&self) {
        let notified = self.done.notified();
        let mut notified = std::pin::pin!(notified);
        notified.as_mut().enable();
        if !self.finished.load(Ordering::Acquire) {
            notified.await;
        }
    }

    /// The outcome and when it came, once: whoever takes it settles it
    /// into the cache.
    fn take(&self) -> Option<(Outcome, Instant)> {
        if !self.finished.load(Ordering::Acquire) {
            return None;
        }
        self.outcome.lock().ok()?.take()
    }
}

/// A lookup under way (or finished and not yet settled) for a name.
#[derive(Debug)]
struct Running {
    lookup: Arc<Lookup>,
    started: Instant,
    task: tokio::task::AbortHandle,
}

/// Answers, failures and lookups under way, by (host, port).
#[derive(Debug, Default)]
pub struct Cache {
    answers: RefCell<HashMap<Key, Answer>>,
    failures: RefCell<HashMap<Key, Failure>>,
    lookups: RefCell<HashMap<Key, Running>>,
}

thread_local! {
    static CACHE: Rc<Cache> = Rc::default();
}

/// The addresses of `host:port`, from the system resolver or this thread's
/// cache (see the module notes).
pub async fn resolve(host: &str, port: u16) -> io::Result<Rc<[SocketAddr]>> {
    let name = host.to_owned();
    let lookup = async move {
        tokio::net::lookup_host((name.as_str(), port))
            .await
            .map(|addresses| addresses.collect::<Vec<_>>())
    };
    CACHE.with(Rc::clone).resolve(host, port, lookup).await
}

/// What a connect does about a name.
enum Plan {
    /// Uses the cached answer.
    Use(Rc<[SocketAddr]>),
    /// Waits at most [`ASK_WAIT`] for this lookup, then plans again; uses
    /// this answer if the resolver is slow.
    Ask(Rc<[SocketAddr]>, Arc<Lookup>),
    /// Fails at once: the last lookup failed less than [`FRESH`] ago.
    Fail(io::Error),
    /// Waits for this lookup, then plans again: nothing usable is cached.
    Wait(Arc<Lookup>),
}

impl Cache {
    /// Resolves through `lookup` when the cached answer does not do (see
    /// the module notes). The cache is borrowed between awaits, never
    /// across one.
    async fn resolve(
        &self,
        host: &str,
        port: u16,
        lookup: impl Future<Output = Outcome> + Send + 'static,
    ) -> io::Result<Rc<[SocketAddr]>> {
        let key = (host.to_owned(), port);
        let mut lookup = Some(lookup);
        loop {
            match self.plan(&key, &mut lookup) {
                Plan::Use(addresses) => return Ok(addresses),
                Plan::Fail(error) => return Err(error),
                Plan::Wait(running) => running.finished().await,
                Plan::Ask(fallback, running) => {
                    if tokio::time::timeout(ASK_WAIT, running.finished())
                        .await
                        .is_err()
                    {
                        tracing::warn!(host = %key.0, "resolver slow; using the last answer");
                        return Ok(fallback);
                    }
                }
            }
        }
    }

    /// What to do about `key`, after settling a finished lookup; starts
    /// `lookup` (once) when this connect is the one to ask.
    fn plan<F>(&self, key: &Key, lookup: &mut Option<F>) -> Plan
    where
        F: Future<Output = Outcome> + Send + 'static,
    {
        let running = self.running(key);
        let mut answers = self.answers.borrow_mut();
        if let Some(answer) = answers.get_mut(key).filter(|a| a.at.elapsed() < STALE) {
            let addresses = Rc::clone(&answer.addresses);
            if Instant::now() < answer.next_ask || running.is_some() {
                return Plan::Use(addresses);
            }
            return match lookup.take() {
                Some(lookup) => Plan::Ask(addresses, self.start(key, lookup)),
                None => Plan::Use(addresses),
            };
        }
        if let Some(failure) = self.failures.borrow().get(key)
            && Instant::now() < failure.until
        {
            return Plan::Fail(io::Error::new(failure.kind, failure.message.clone()));
        }
        match (running, lookup.take()) {
            (Some(running), _) => Plan::Wait(running),
            (None, Some(lookup)) => Plan::Wait(self.start(key, lookup)),
            (None, None) => Plan::Fail(io::Error::new(
                io::ErrorKind::TimedOut,
                "the resolver gave no answer",
            )),
        }
    }

    /// The lookup under way for `key`, if any: a finished one is settled
    /// and removed, and one running for [`GIVE_UP`] is given up.
    fn running(&self, key: &Key) -> Option<Arc<Lookup>> {
        let mut lookups = self.lookups.borrow_mut();
        let running = lookups.get(key)?;
        if let Some((outcome, at)) = running.lookup.take() {
            lookups.remove(key);
            drop(lookups);
            self.settle(key, outcome, at);
            return None;
        }
        if running.started.elapsed() >= GIVE_UP {
            tracing::warn!(host = %key.0, "resolver gave no answer in {GIVE_UP:?}; asking again");
            running.task.abort();
            // Whoever waits for it plans again.
            running.lookup.done.notify_waiters();
            lookups.remove(key);
            return None;
        }
        Some(Arc::clone(&running.lookup))
    }

    /// Starts `lookup` as a task of its own for `key`.
    fn start(
        &self,
        key: &Key,
        lookup: impl Future<Output = Outcome> + Send + 'static,
    ) -> Arc<Lookup> {
        let shared = Arc::new(Lookup::default());
        let writer = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            let outcome = lookup.await;
            if let Ok(mut slot) = writer.outcome.lock() {
                *slot = Some((outcome, Instant::now()));
            }
            writer.finished.store(true, Ordering::Release);
            writer.done.notify_waiters();
        });
        self.lookups.borrow_mut().insert(
            key.clone(),
            Running {
                lookup: Arc::clone(&shared),
                started: Instant::now(),
                task: task.abort_handle(),
            },
        );
        shared
    }

    /// Keeps a successful, non-empty lookup that finished at `now`; after
    /// a failed or empty one, keeps the last good answer while it is
    /// younger than [`STALE`] (asking again [`FRESH`] after the failure),
    /// else the failure, for [`FRESH`] after it.
    fn settle(&self, key: &Key, outcome: Outcome, now: Instant) {
        let mut answers = self.answers.borrow_mut();
        let failure = match outcome {
            Ok(addresses) if !addresses.is_empty() => {
                let answer = Answer {
                    addresses: addresses.into(),
                    at: now,
                    next_ask: now + FRESH,
                };
                self.failures.borrow_mut().remove(key);
                answers.insert(key.clone(), answer);
                return;
            }
            Ok(_) => io::Error::new(io::ErrorKind::NotFound, "host resolved to no address"),
            Err(error) => error,
        };
        match answers.get_mut(key) {
            Some(answer) if answer.at.elapsed() < STALE => {
                answer.next_ask = now + FRESH;
                tracing::warn!(
                    host = %key.0,
                    error = %failure,
                    "cannot resolve; using the last answer, {} s old",
                    answer.at.elapsed().as_secs()
                );
            }
            _ => {
                answers.remove(key);
                let kept = Failure {
                    kind: failure.kind(),
                    message: failure.to_string(),
                    until: now + FRESH,
                };
                self.failures.borrow_mut().insert(key.clone(), kept);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(last: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, last], 80))
    }

    fn answer(addresses: Vec<SocketAddr>) -> std::future::Ready<io::Result<Vec<SocketAddr>>> {
        std::future::ready(Ok(addresses))
    }

    fn down() -> std::future::Ready<io::Result<Vec<SocketAddr>>> {
        std::future::ready(Err(io::Error::other("resolver down")))
    }

    /// A cache whose answer for `app:80` (10.0.0.1) is `age` old.
    async fn answered_ago(age: Duration) -> Cache {
        let cache = Cache::default();
        cache
            .resolve("app", 80, answer(vec![addr(1)]))
            .await
            .unwrap();
        tokio::time::advance(age).await;
        cache
    }

    /// `resolving`, which must end within 10 s (paused time jumps there
    /// when nothing else can run).
    async fn within(
        resolving: impl Future<Output = io::Result<Rc<[SocketAddr]>>>,
    ) -> io::Result<Rc<[SocketAddr]>> {
        tokio::time::timeout(Duration::from_secs(10), resolving)
            .await
            .expect("still waiting for another connect's lookup")
    }

    /// A lookup that must not happen.
    async fn not_asked() -> io::Result<Vec<SocketAddr>> {
        panic!("looked up although a fresh answer was cached")
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_is_reused_for_a_second_then_asked_again() {
        let cache = Cache::default();
        let first = cache.resolve("app", 80, answer(vec![addr(1)])).await;
        assert_eq!(&*first.unwrap(), [addr(1)]);
        tokio::time::advance(FRESH - Duration::from_millis(1)).await;
        let again = cache.resolve("app", 80, not_asked()).await;
        assert_eq!(&*again.unwrap(), [addr(1)]);
        tokio::time::advance(Duration::from_millis(1)).await;
        let moved = cache.resolve("app", 80, answer(vec![addr(2)])).await;
        assert_eq!(&*moved.unwrap(), [addr(2)], "a DNS change is followed");
        let other_port = cache.resolve("app", 81, answer(vec![addr(3)])).await;
        assert_eq!(&*other_port.unwrap(), [addr(3)], "ports are apart");
    }

    #[tokio::test(start_paused = true)]
    async fn the_last_good_answer_stands_in_for_a_minute_while_lookups_fail() {
        let cache = answered_ago(STALE - Duration::from_secs(3)).await;
        let stale = cache.resolve("app", 80, down()).await;
        assert_eq!(&*stale.unwrap(), [addr(1)]);
        // Asked again only a second after a failure.
        let backing_off = cache.resolve("app", 80, not_asked()).await;
        assert_eq!(&*backing_off.unwrap(), [addr(1)]);
        tokio::time::advance(FRESH).await;
        let empty = cache.resolve("app", 80, answer(Vec::new())).await;
        assert_eq!(&*empty.unwrap(), [addr(1)], "an empty answer fails too");
        tokio::time::advance(Duration::from_secs(2)).await;
        let error = cache.resolve("app", 80, down()).await.unwrap_err();
        assert_eq!(error.to_string(), "resolver down");
        assert!(cache.answers.borrow().is_empty(), "given up");
    }

    #[tokio::test(start_paused = true)]
    async fn no_answer_is_served_past_a_minute_even_while_backing_off() {
        let cache = answered_ago(STALE - Duration::from_millis(500)).await;
        assert!(cache.resolve("app", 80, down()).await.is_ok(), "stale");
        // The next lookup is a second off, but the answer is now too old.
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(cache.resolve("app", 80, down()).await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_resolver_does_not_hold_up_the_connect_that_asks() {
        let cache = answered_ago(FRESH).await;
        let slow = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(vec![addr(2)])
        };
        let started = Instant::now();
        let fallback = cache.resolve("app", 80, slow).await;
        assert_eq!(&*fallback.unwrap(), [addr(1)]);
        assert_eq!(started.elapsed(), ASK_WAIT);
        // No second lookup while the first runs on, even a second later.
        let next = cache.resolve("app", 80, not_asked()).await;
        assert_eq!(&*next.unwrap(), [addr(1)]);
        tokio::time::advance(FRESH).await;
        let meanwhile = cache.resolve("app", 80, not_asked()).await;
        assert_eq!(&*meanwhile.unwrap(), [addr(1)]);
        // Its answer, when it comes, is kept for the next connect.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let later = cache.resolve("app", 80, not_asked()).await;
        assert_eq!(&*later.unwrap(), [addr(2)]);
    }

    #[tokio::test(start_paused = true)]
    async fn while_one_connect_asks_the_others_use_the_answer_they_have() {
        let cache = answered_ago(FRESH).await;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let slow = async { rx.await.unwrap() };
        let (asked, meanwhile, ()) = tokio::join!(
            cache.resolve("app", 80, slow),
            cache.resolve("app", 80, not_asked()),
            async { tx.send(Ok(vec![addr(2)])).unwrap() },
        );
        assert_eq!(&*asked.unwrap(), [addr(2)]);
        assert_eq!(&*meanwhile.unwrap(), [addr(1)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lookup_that_never_ends_is_given_up() {
        let cache = answered_ago(FRESH).await;
        let never = std::future::pending::<Outcome>();
        // Cut (at connect_timeout, say) before the resolver wait is over.
        let cut = tokio::time::timeout(ASK_WAIT / 2, cache.resolve("app", 80, never));
        assert!(cut.await.is_err(), "the lookup never ends");
        let next = cache.resolve("app", 80, not_asked()).await;
        assert_eq!(&*next.unwrap(), [addr(1)]);
        tokio::time::advance(GIVE_UP).await;
        let later = cache.resolve("app", 80, answer(vec![addr(3)])).await;
        assert_eq!(&*later.unwrap(), [addr(3)], "not stuck asking");
    }

    #[tokio::test(start_paused = true)]
    async fn a_host_never_resolved_fails_with_the_resolvers_error() {
        let cache = Cache::default();
        let error = cache.resolve("nowhere", 80, down()).await.unwrap_err();
        assert_eq!(error.to_string(), "resolver down");
        tokio::time::advance(FRESH).await;
        let empty = cache.resolve("nowhere", 80, answer(Vec::new())).await;
        assert_eq!(empty.unwrap_err().kind(), io::ErrorKind::NotFound);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_lookup_is_not_repeated_for_a_second() {
        let cache = Cache::default();
        let failed = cache.resolve("app", 80, down()).await.unwrap_err();
        tokio::time::advance(FRESH - Duration::from_millis(1)).await;
        let again = cache.resolve("app", 80, not_asked()).await.unwrap_err();
        assert_eq!(again.kind(), failed.kind());
        assert_eq!(again.to_string(), "resolver down");
        tokio::time::advance(Duration::from_millis(1)).await;
        let back = cache.resolve("app", 80, answer(vec![addr(2)])).await;
        assert_eq!(&*back.unwrap(), [addr(2)]);
        let kept = cache.resolve("app", 80, not_asked()).await;
        assert_eq!(&*kept.unwrap(), [addr(2)], "the failure was forgotten");
    }

    #[tokio::test(start_paused = true)]
    async fn connects_with_no_answer_share_one_lookup() {
        let cache = Cache::default();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let slow = async { rx.await.unwrap() };
        let (first, second, third, ()) = tokio::join!(
            cache.resolve("app", 80, slow),
            within(cache.resolve("app", 80, not_asked())),
            within(cache.resolve("app", 80, not_asked())),
            async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                tx.send(Ok(vec![addr(2)])).unwrap();
            },
        );
        for got in [first, second, third] {
            assert_eq!(&*got.unwrap(), [addr(2)]);
        }
        assert!(cache.lookups.borrow().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn connects_waiting_on_a_failed_lookup_get_its_error() {
        let cache = Cache::default();
        let slow_failure = async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            Err(io::Error::other("resolver down"))
        };
        let (first, second) = tokio::join!(
            cache.resolve("app", 80, slow_failure),
            within(cache.resolve("app", 80, not_asked())),
        );
        assert_eq!(first.unwrap_err().to_string(), "resolver down");
        assert_eq!(second.unwrap_err().to_string(), "resolver down");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lookup_runs_on_when_the_connect_that_started_it_is_cut() {
        let cache = Cache::default();
        let slow = async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            Ok(vec![addr(3)])
        };
        let (cut, waited) = tokio::join!(
            tokio::time::timeout(Duration::from_secs(1), cache.resolve("app", 80, slow)),
            within(cache.resolve("app", 80, not_asked())),
        );
        assert!(cut.is_err(), "cut before the resolver answered");
        assert_eq!(&*waited.unwrap(), [addr(3)]);
        assert!(cache.lookups.borrow().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn an_old_failure_does_not_fail_a_connect_long_after() {
        let cache = Cache::default();
        let slow_failure = async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            Err(io::Error::other("resolver down"))
        };
        let cut = tokio::time::timeout(
            Duration::from_secs(2),
            cache.resolve("app", 80, slow_failure),
        );
        assert!(cut.await.is_err());
        tokio::time::sleep(Duration::from_secs(100)).await;
        let later = cache.resolve("app", 80, answer(vec![addr(2)])).await;
        assert_eq!(&*later.unwrap(), [addr(2)], "asked again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_answer_is_as_old_as_its_lookup() {
        let cache = answered_ago(FRESH).await;
        let slow = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(vec![addr(2)])
        };
        let fallback = cache.resolve("app", 80, slow).await;
        assert_eq!(&*fallback.unwrap(), [addr(1)]);
        tokio::time::sleep(Duration::from_secs(100)).await;
        let later = cache.resolve("app", 80, answer(vec![addr(3)])).await;
        assert_eq!(
            &*later.unwrap(),
            [addr(3)],
            "a 95 s old answer is not fresh"
        );
    }

    #[tokio::test]
    async fn localhost_resolves_through_the_system_resolver() {
        let addresses = resolve("localhost", 8080).await.unwrap();
        assert!(addresses.iter().all(|a| a.port() == 8080));
        assert!(addresses.iter().any(|a| a.ip().is_loopback()));
    }
}
