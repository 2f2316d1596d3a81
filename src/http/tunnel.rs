//! Upgraded connections (WebSocket and others): once the upstream answered
//! 101, the client and upstream connections become one byte tunnel.

use std::rc::Rc;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;

use super::proxy::ConnContext;
use super::upstream::link::Link;

/// Waits for the client side's upgrade, hands it what the upstream sent
/// after its 101 head, then copies bytes both ways until either side
/// closes, or until `drain_timeout` after the listener stopped. Holding
/// `conn` keeps the connection counted as open.
pub async fn splice(client: OnUpgrade, upstream: Link, conn: Rc<ConnContext>) {
    let client = match client.await {
        Ok(client) => client,
        Err(error) => {
            tracing::debug!(%error, "upgrade did not complete");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let (mut upstream, early) = upstream.into_parts();
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
        () = conn.stop.cut.fired() => tracing::debug!("tunnel cut at drain_timeout"),
    }
}
