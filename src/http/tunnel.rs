//! Upgraded connections (WebSocket and others): once the upstream answered
//! 101, the client and upstream connections become one byte tunnel.

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;

use super::proxy::ConnContext;
use super::upstream::link::Link;
use crate::tcp::copy::idle_watch;

/// Waits for the client side's upgrade, hands it what the upstream sent
/// after its 101 head, then copies bytes both ways until either side
/// closes, nothing moved either way for `idle` (the rule's
/// `idle_timeout`, as nginx's `proxy_read_timeout` and HAProxy's `timeout
/// tunnel` end a silent tunnel), or until `drain_timeout` after the
/// listener stopped. Holding `conn` keeps the connection counted as open.
pub async fn splice(client: OnUpgrade, upstream: Link, idle: Duration, conn: Rc<ConnContext>) {
    let client = match client.await {
        Ok(client) => client,
        Err(error) => {
            tracing::debug!(%error, "upgrade did not complete");
            return;
        }
    };
    let activity = Cell::new(Instant::now());
    let mut client = Moving {
        inner: TokioIo::new(client),
        activity: &activity,
    };
    let (upstream, early) = upstream.into_parts();
    let mut upstream = Moving {
        inner: upstream,
        activity: &activity,
    };
    let copied = async {
        if !early.is_empty() {
            client.write_all(&early).await?;
        }
        tokio::io::copy_bidirectional(&mut client, &mut upstream).await
    };
    tokio::select! {
        copied = copied => {
            if let Err(error) = copied {
                tracing::debug!(%error, "tunnel ended");
            }
        }
        () = idle_watch(&activity, idle) => tracing::debug!(?idle, "tunnel idle; closed"),
        () = conn.stop.cut.fired() => tracing::debug!("tunnel cut at drain_timeout"),
    }
}

/// One side of a tunnel, noting when a byte last moved through it.
struct Moving<'a, T> {
    inner: T,
    activity: &'a Cell<Instant>,
}

impl<T> Moving<'_, T> {
    fn moved(&self) {
        self.activity.set(Instant::now());
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Moving<'_, T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.moved();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Moving<'_, T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.moved();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
