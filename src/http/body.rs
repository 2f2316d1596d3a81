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
use super::error::ProxyError;
use super::upstream::PooledConnection;
use crate::counters::ActiveGuard;

/// Error type of sluice's bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where a request body failure is recorded for the handler to read.
pub type BodyFailure = Rc<Cell<Option<ProxyError>>>;

/// A client's request body on its way upstream.
#[derive(Debug)]
pub struct RequestBody {
    inner: Option<Incoming>,
    timeout: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    remaining: Option<u64>,
    failure: BodyFailure,
}

impl RequestBody {
    /// Wraps a client body. `limit` is `max_body_size`.
    pub fn new(
        inner: Incoming,
        timeout: Duration,
        limit: Option<u64>,
        failure: BodyFailure,
    ) -> RequestBody {
        let inner = if inner.is_end_stream() {
            None
        } else {
            Some(inner)
        };
        RequestBody {
            inner,
            timeout,
            timer: None,
            remaining: limit,
            failure,
        }
    }

    /// An empty body (for bodyless requests rebuilt for a retry).
    pub fn empty(failure: BodyFailure) -> RequestBody {
        RequestBody {
            inner: None,
            timeout: Duration::ZERO,
            timer: None,
            remaining: None,
            failure,
        }
    }

    fn fail(&mut self, error: ProxyError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.failure.set(Some(error));
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
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.timer = None;
                if let (Some(data), Some(remaining)) = (frame.data_ref(), this.remaining.as_mut()) {
                    let len = data.len() as u64;
                    if len > *remaining {
                        return this.fail(ProxyError::BodyTooLarge);
                    }
                    *remaining -= len;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.failure
                    .set(Some(ProxyError::BadRequest("request body aborted")));
                this.inner = None;
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                this.inner = None;
                Poll::Ready(None)
            }
            Poll::Pending => {
                let timeout = this.timeout;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                ready!(timer.as_mut().poll(cx));
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
}

enum Kind {
    Full(Option<Bytes>),
    Upstream {
        body: Incoming,
        /// Handed back to the pool once the body ended cleanly.
        connection: Option<PooledConnection>,
        /// The request counts as in flight on its upstream until here.
        _active: ActiveGuard,
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
        }
    }

    /// An upstream's streamed body.
    pub fn upstream(
        body: Incoming,
        connection: Option<PooledConnection>,
        active: ActiveGuard,
    ) -> ResponseBody {
        ResponseBody {
            kind: Kind::Upstream {
                body,
                connection,
                _active: active,
            },
            phase: None,
        }
    }

    /// Any other body (static files).
    pub fn boxed(body: UnsyncBoxBody<Bytes, BoxError>) -> ResponseBody {
        ResponseBody {
            kind: Kind::Boxed(body),
            phase: None,
        }
    }

    /// Ties the body to a client connection's phase.
    pub fn set_phase(&mut self, phase: SharedPhase) {
        self.phase = Some(phase);
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if let Some(phase) = &self.phase
            && phase.get() == Phase::Busy
        {
            phase.set(Phase::Idle(Instant::now()));
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
        match &mut self.kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Upstream {
                body, connection, ..
            } => {
                let frame = ready!(Pin::new(&mut *body).poll_frame(cx));
                match &frame {
                    None => {
                        if let Some(connection) = connection.take() {
                            connection.release();
                        }
                    }
                    Some(Err(_)) => *connection = None,
                    Some(Ok(_)) => {
                        if body.is_end_stream()
                            && let Some(connection) = connection.take()
                        {
                            connection.release();
                        }
                    }
                }
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Kind::Boxed(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Upstream { body, .. } => body.is_end_stream(),
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
