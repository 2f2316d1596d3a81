//! Body types of the proxy path.
//!
//! [`RequestBody`] streams a client's body to the upstream with
//! backpressure, enforcing `body_timeout` between reads and `max_body_size`;
//! when it fails it records why, so the handler answers 408 or 413 instead
//! of a generic 502. [`ResponseBody`] is what clients receive: an upstream's
//! streamed body (which returns its connection to the pool at the end), a
//! static file, or a short body sluice made.

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::{Instant, Sleep};

use super::client_io::{Phase, SharedPhase};
use super::deadline::LazyTimer;
use super::error::ProxyError;
use super::upstream::exchange::UpstreamBody;
use crate::counters::ActiveGuard;

/// Error type of sluice's bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the handler and the response learn about a request body as it
/// streams: whether it failed (and why: 408, 413, aborted), when it last
/// moved, and whether it has been sent in full. The upstream's response
/// deadline counts from its last move, a connection goes back to the pool
/// only once it was sent in full, and only then is the client connection
/// idle again.
#[derive(Debug)]
pub struct BodyState {
    failure: Cell<Option<ProxyError>>,
    finished: Cell<bool>,
    /// When the last part of the body was handed upstream (or the body
    /// created, or the current upstream connected to, if later): the
    /// upstream's response deadline counts from here.
    progress: Cell<Instant>,
    /// The body's last read found nothing from the client: the upload
    /// waits on the client (bounded by `body_timeout`), not the upstream.
    awaiting_client: Cell<bool>,
}

impl BodyState {
    /// The state of a body whose request arrived at `arrived` (the
    /// handler's clock reading, saving another).
    pub fn new(arrived: Instant) -> BodyState {
        BodyState {
            failure: Cell::new(None),
            finished: Cell::new(false),
            progress: Cell::new(arrived),
            awaiting_client: Cell::new(false),
        }
    }

    /// Why the body failed, if it did.
    pub fn failure(&self) -> Option<ProxyError> {
        self.failure.get()
    }

    /// Whether the whole body has been handed upstream.
    pub fn finished(&self) -> bool {
        self.finished.get()
    }

    /// `Ready` once `timeout` passed without the body moving: the upstream
    /// neither took more of it nor answered after it was sent. Time the
    /// upload waits on the client does not count (the client's pauses are
    /// `body_timeout`'s business). `timer` is the connection's, reused
    /// from request to request.
    pub fn poll_stalled(
        &self,
        timer: &mut LazyTimer,
        timeout: Duration,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        if self.awaiting_client.get() {
            self.moved();
        }
        timer.poll_until(self.progress.get() + timeout, cx)
    }

    /// A newly picked upstream is connected to: the response deadline
    /// counts from here, so time spent connecting, or on upstreams tried
    /// before, is not taken from the upstream that gets the request.
    pub fn attempt_started(&self) {
        self.moved();
    }

    fn moved(&self) {
        self.progress.set(Instant::now());
    }

    fn finish(&self) {
        self.finished.set(true);
        self.moved();
    }
}

/// Fires when a stream made no progress for its timeout. One allocation
/// per stream: the timer is re-armed, not rebuilt, after each frame.
#[derive(Debug)]
struct StallTimer {
    timeout: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl StallTimer {
    fn new(timeout: Duration) -> StallTimer {
        StallTimer {
            timeout,
            timer: None,
            armed: false,
        }
    }

    /// A frame arrived: the next wait starts a new period.
    fn progressed(&mut self) {
        self.armed = false;
    }

    /// Called when the stream is pending: `Ready` once it stalled too long.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = Instant::now() + self.timeout;
        let timer = match (&mut self.timer, self.armed) {
            (Some(timer), true) => timer,
            (Some(timer), false) => {
                timer.as_mut().reset(deadline);
                timer
            }
            (slot @ None, _) => slot.insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        self.armed = true;
        timer.as_mut().poll(cx)
    }
}

/// A client's request body on its way upstream.
#[derive(Debug)]
pub struct RequestBody {
    inner: Option<Incoming>,
    /// `body_timeout` between reads.
    stall: StallTimer,
    remaining: Option<u64>,
    state: Rc<BodyState>,
}

impl RequestBody {
    /// Wraps a client body. `limit` is `max_body_size`.
    pub fn new(
        inner: Incoming,
        timeout: Duration,
        limit: Option<u64>,
        state: Rc<BodyState>,
    ) -> RequestBody {
        let inner = if inner.is_end_stream() {
            None
        } else {
            Some(inner)
        };
        if inner.is_none() {
            state.finish();
        }
        RequestBody {
            inner,
            stall: StallTimer::new(timeout),
            remaining: limit,
            state,
        }
    }

    /// An empty body (for bodyless requests rebuilt for a retry).
    pub fn empty(state: Rc<BodyState>) -> RequestBody {
        state.finish();
        RequestBody {
            inner: None,
            stall: StallTimer::new(Duration::ZERO),
            remaining: None,
            state,
        }
    }

    fn fail(&mut self, error: ProxyError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.state.failure.set(Some(error));
        self.inner = None;
        Poll::Ready(Some(Err(error.into())))
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        this.state.awaiting_client.set(polled.is_pending());
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                this.stall.progressed();
                this.state.moved();
                if let (Some(data), Some(remaining)) = (frame.data_ref(), this.remaining.as_mut()) {
                    let len = data.len() as u64;
                    if len > *remaining {
                        return this.fail(ProxyError::BodyTooLarge);
                    }
                    *remaining -= len;
                }
                // hyper may stop polling once the body says it has ended.
                if this.inner.as_ref().is_some_and(Body::is_end_stream) {
                    this.state.finish();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.state
                    .failure
                    .set(Some(ProxyError::BadRequest("request body aborted")));
                this.inner = None;
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                this.inner = None;
                this.state.finish();
                Poll::Ready(None)
            }
            Poll::Pending => {
                ready!(this.stall.poll_expired(cx));
                this.fail(ProxyError::BodyTimeout)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

/// The body of a response to a client.
#[derive(Debug)]
pub struct ResponseBody {
    kind: Kind,
    /// Set back to idle when the response is done, which restarts the
    /// keep-alive idle deadline.
    phase: Option<SharedPhase>,
    /// The request body of a proxied exchange: the connection is idle again
    /// (and the upstream connection reusable) only once it was sent in full.
    request: Option<Rc<BodyState>>,
}

enum Kind {
    Full(Option<Bytes>),
    Upstream {
        /// Hands its connection back to the pool once it ended cleanly
        /// (boxed: many times the size of the other kinds).
        body: Box<UpstreamBody>,
        /// The request counts as in flight on its upstream until here.
        _active: ActiveGuard,
        /// `idle_timeout` between frames: a stalled or trickling upstream
        /// ends the response (the client sees it cut short).
        stall: StallTimer,
        /// The upstream body's failure, reported one poll late: hyper
        /// drops what it has buffered for the client when a body fails,
        /// and a failure that arrives with the last data would otherwise
        /// hide the head and the data too.
        failed: Option<BoxError>,
    },
    Boxed(UnsyncBoxBody<Bytes, BoxError>),
}

impl std::fmt::Debug for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Full(_) => "Full",
            Kind::Upstream { .. } => "Upstream",
            Kind::Boxed(_) => "Boxed",
        })
    }
}

impl ResponseBody {
    /// A complete in-memory body.
    pub fn full(bytes: Bytes) -> ResponseBody {
        ResponseBody {
            kind: Kind::Full(Some(bytes)),
            phase: None,
            request: None,
        }
    }

    /// No body (a 101 answer, whose connection becomes a tunnel).
    pub fn empty() -> ResponseBody {
        ResponseBody {
            kind: Kind::Full(None),
            phase: None,
            request: None,
        }
    }

    /// An upstream's streamed body.
    pub fn upstream(
        body: UpstreamBody,
        active: ActiveGuard,
        request: Rc<BodyState>,
        idle: Duration,
    ) -> ResponseBody {
        ResponseBody {
            kind: Kind::Upstream {
                body: Box::new(body),
                _active: active,
                stall: StallTimer::new(idle),
                failed: None,
            },
            phase: None,
            request: Some(request),
        }
    }

    /// Any other body (static files).
    pub fn boxed(body: UnsyncBoxBody<Bytes, BoxError>) -> ResponseBody {
        ResponseBody {
            kind: Kind::Boxed(body),
            phase: None,
            request: None,
        }
    }

    /// Ties the body to a client connection's phase.
    pub fn set_phase(&mut self, phase: SharedPhase) {
        self.phase = Some(phase);
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        let request_done = self.request.as_ref().is_none_or(|r| r.finished());
        if let Some(phase) = &self.phase
            && phase.get() == Phase::Busy
            && request_done
        {
            // Part of a pipelined head already read: that head is being
            // read (header_timeout, then 408), the connection is not idle.
            let now = Instant::now();
            phase.set(if phase.at_boundary() {
                Phase::Idle(now)
            } else {
                Phase::Head(now)
            });
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match &mut this.kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Upstream {
                body,
                stall,
                failed,
                ..
            } => {
                if let Some(error) = failed.take() {
                    return Poll::Ready(Some(Err(error)));
                }
                match body.poll_data(cx) {
                    Poll::Ready(Some(Err(error))) => {
                        *failed = Some(error);
                        // Pending once: hyper flushes what it has first.
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                    Poll::Ready(data) => {
                        stall.progressed();
                        Poll::Ready(data.map(|data| data.map(Frame::data)))
                    }
                    Poll::Pending => {
                        if body.take_upload_progress() {
                            stall.progressed();
                        }
                        ready!(stall.poll_expired(cx));
                        body.close();
                        Poll::Ready(Some(Err("upstream body stalled past idle_timeout".into())))
                    }
                }
            }
            Kind::Boxed(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Upstream { body, failed, .. } => failed.is_none() && body.is_end_stream(),
            Kind::Boxed(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Upstream { body, .. } => body.size_hint(),
            Kind::Boxed(body) => body.size_hint(),
        }
    }
}
