//! Upgraded connections (WebSocket and others): once the upstream answered
//! 101, the client and upstream connections become one byte tunnel.

use std::rc::Rc;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::proxy::ConnContext;

/// Waits for both sides to finish their upgrade, then copies bytes both
/// ways until either side closes, or until `drain_timeout` after the
/// listener stopped. Holding `conn` keeps the connection counted as open.
pub async fn splice(client: OnUpgrade, upstream: OnUpgrade, conn: Rc<ConnContext>) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(error) => {
            tracing::debug!(%error, "upgrade did not complete");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
            if let Err(error) = copied {
                tracing::debug!(%error, "tunnel ended");
            }
        }
        () = conn.stop.cut.fired() => tracing::debug!("tunnel cut at drain_timeout"),
    }
}
