//! A listener's stop, as the connection tasks of one worker wait for it.
//!
//! Every connection task waits for its listener to stop alongside its own
//! reads and writes, so that wait is polled again each time the task wakes
//! for I/O: several times per request or per proxied message. A `watch`
//! receiver re-registers with its `Notify` on every poll (a lock and a few
//! hundred instructions); a [`StopSignal`] checks a flag and keeps the
//! waker it already has.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use slab::Slab;
use tokio::sync::watch;

/// A flag set once on the worker's thread, awaited by any number of tasks
/// of that thread.
#[derive(Clone, Default)]
pub struct StopSignal {
    inner: Rc<SignalState>,
}

#[derive(Default)]
struct SignalState {
    fired: Cell<bool>,
    waiters: RefCell<Slab<Waker>>,
}

impl std::fmt::Debug for StopSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StopSignal")
            .field("fired", &self.inner.fired.get())
            .finish_non_exhaustive()
    }
}

impl StopSignal {
    /// Sets the flag and wakes every task waiting for it.
    pub fn fire(&self) {
        self.inner.fired.set(true);
        let waiters = std::mem::take(&mut *self.inner.waiters.borrow_mut());
        for (_, waker) in waiters {
            waker.wake();
        }
    }

    /// Whether [`StopSignal::fire`] was called.
    #[cfg(test)]
    fn is_fired(&self) -> bool {
        self.inner.fired.get()
    }

    /// Resolves once the signal fired (at once if it already has).
    pub fn fired(&self) -> Fired<'_> {
        Fired {
            state: &self.inner,
            key: None,
        }
    }
}

/// The future of [`StopSignal::fired`].
pub struct Fired<'a> {
    state: &'a SignalState,
    /// Where this future's waker is kept, once it waits.
    key: Option<usize>,
}

impl Future for Fired<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.state.fired.get() {
            self.key = None;
            return Poll::Ready(());
        }
        let state = self.state;
        let mut waiters = state.waiters.borrow_mut();
        match self.key.and_then(|key| waiters.get_mut(key)) {
            Some(waker) => {
                if !waker.will_wake(cx.waker()) {
                    waker.clone_from(cx.waker());
                }
            }
            None => self.key = Some(waiters.insert(cx.waker().clone())),
        }
        Poll::Pending
    }
}

impl Drop for Fired<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key
            && !self.state.fired.get()
        {
            self.state.waiters.borrow_mut().try_remove(key);
        }
    }
}

/// The two moments of a listener's stop (a `sluice stop`, or a reload that
/// removed it).
#[derive(Clone, Debug, Default)]
pub struct ListenerStop {
    /// The listener stopped accepting: keep-alive connections finish the
    /// request they are on and close, idle ones close.
    pub stopping: StopSignal,
    /// `drain_timeout` later: whatever is still open is cut.
    pub cut: StopSignal,
}

impl ListenerStop {
    /// Follows the listener's `shutdown` flag on a task of this thread:
    /// fires `stopping` when it turns true (or its sender is gone) and
    /// `cut` after `drain_timeout()` (read at that moment, so the config
    /// in force when the stop came decides).
    pub fn follow(
        mut shutdown: watch::Receiver<bool>,
        drain_timeout: impl Fn() -> Duration + 'static,
    ) -> ListenerStop {
        let stop = ListenerStop::default();
        let signals = stop.clone();
        tokio::task::spawn_local(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
            signals.stopping.fire();
            tokio::time::sleep(drain_timeout()).await;
            signals.cut.fire();
        });
        stop
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_waiting_task_wakes_once_it_fires() {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let signal = StopSignal::default();
                let woken = Rc::new(Cell::new(0));
                let tasks: Vec<_> = (0..3)
                    .map(|_| {
                        let (signal, woken) = (signal.clone(), Rc::clone(&woken));
                        tokio::task::spawn_local(async move {
                            signal.fired().await;
                            woken.set(woken.get() + 1);
                        })
                    })
                    .collect();
                tokio::task::yield_now().await;
                assert_eq!(woken.get(), 0);
                // A waiter that gave up leaves no waker behind.
                let given_up = tokio::time::timeout(Duration::from_millis(1), signal.fired());
                assert!(given_up.await.is_err());
                assert_eq!(signal.inner.waiters.borrow().len(), 3);
                signal.fire();
                for task in tasks {
                    task.await.unwrap();
                }
                assert_eq!(woken.get(), 3);
                assert!(signal.is_fired());
                signal.fired().await;
            })
            .await;
    }

    #[tokio::test]
    async fn a_listener_stop_fires_stopping_then_cut_after_the_drain() {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let (stop_tx, stop_rx) = watch::channel(false);
                let stop = ListenerStop::follow(stop_rx, || Duration::from_millis(50));
                tokio::task::yield_now().await;
                assert!(!stop.stopping.is_fired());
                stop_tx.send(true).unwrap();
                stop.stopping.fired().await;
                assert!(!stop.cut.is_fired(), "cut before the drain timeout");
                stop.cut.fired().await;
            })
            .await;
    }
}
