//! A timer for deadlines that keep moving later: a keep-alive connection's
//! idle deadline moves with every request, an upstream's response deadline
//! with every part of an upload.
//!
//! Moving a tokio timer takes it out of the timer wheel and puts it back,
//! several hundred instructions; creating one per request costs as much
//! again. A [`LazyTimer`] stays armed for the earlier time it had and is
//! re-armed only when it fires before the deadline now asked for, so a
//! deadline that moves later with every request costs one wheel update per
//! timeout period instead of one per request.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::time::{Instant, Sleep};

/// One reusable timer (its allocation too).
#[derive(Debug, Default)]
pub struct LazyTimer {
    sleep: Option<Pin<Box<Sleep>>>,
}

impl LazyTimer {
    /// `Ready` once `deadline` passed; registers `cx` to be woken by then
    /// (possibly earlier, after which a poll re-arms it).
    pub fn poll_until(&mut self, deadline: Instant, cx: &mut Context<'_>) -> Poll<()> {
        let sleep = match &mut self.sleep {
            Some(sleep) => {
                if sleep.deadline() > deadline {
                    sleep.as_mut().reset(deadline);
                }
                sleep
            }
            None => self
                .sleep
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        loop {
            ready!(sleep.as_mut().poll(cx));
            if sleep.deadline() >= deadline {
                return Poll::Ready(());
            }
            sleep.as_mut().reset(deadline);
        }
    }

    /// The time the timer is armed for, if it is.
    pub fn armed_for(&self) -> Option<Instant> {
        self.sleep.as_ref().map(|sleep| sleep.deadline())
    }

    /// Forgets the timer (and frees it).
    pub fn disarm(&mut self) {
        self.sleep = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn fires_at_the_deadline_asked_for_last() {
        let start = Instant::now();
        let mut timer = LazyTimer::default();
        let once = |timer: &mut LazyTimer, deadline| {
            let mut cx = Context::from_waker(std::task::Waker::noop());
            timer.poll_until(deadline, &mut cx)
        };
        // Armed for 1 s, then waited on for 3 s: it fires at 1 s, is
        // re-armed, and the wait ends at 3 s.
        assert!(once(&mut timer, start + Duration::from_secs(1)).is_pending());
        poll_fn(|cx| timer.poll_until(start + Duration::from_secs(3), cx)).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(3));
        // A deadline earlier than the armed one moves the timer at once.
        let now = Instant::now();
        assert!(once(&mut timer, now + Duration::from_secs(60)).is_pending());
        assert_eq!(timer.armed_for(), Some(now + Duration::from_secs(60)));
        poll_fn(|cx| timer.poll_until(now + Duration::from_secs(2), cx)).await;
        assert_eq!(Instant::now() - now, Duration::from_secs(2));
        timer.disarm();
        assert_eq!(timer.armed_for(), None);
    }
}
