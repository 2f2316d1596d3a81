//! The supervisor's side of the admin endpoint: binding it at start and on
//! reload, and rendering its pages from the supervisor's state (inside the
//! event loop, so a page always shows one consistent generation).

use std::net::SocketAddr;
use std::rc::Rc;

use tokio::sync::{mpsc, oneshot};

use super::{Event, Supervisor};
use crate::admin::{self, AdminHandle, Page, Renderer, Snapshot, WorkerInfo};
use crate::config::AdminConfig;

/// What a reload does to the admin endpoint.
#[derive(Debug)]
pub(super) enum AdminChange {
    /// Same address (or still none): keep serving as is.
    Keep,
    /// Serve on a newly bound socket (replacing any old endpoint).
    Start(SocketAddr, std::net::TcpListener),
    /// `admin:` was removed.
    Stop,
}

/// Decides (and binds, when needed) the admin endpoint for a new config;
/// a bind failure rejects the reload.
pub(super) fn plan(
    current: Option<&AdminHandle>,
    wanted: Option<&AdminConfig>,
) -> Result<AdminChange, String> {
    match (current, wanted) {
        (Some(current), Some(wanted)) if current.configured == wanted.listen => {
            Ok(AdminChange::Keep)
        }
        (None, None) => Ok(AdminChange::Keep),
        (_, None) => Ok(AdminChange::Stop),
        (_, Some(wanted)) => admin::bind(wanted.listen)
            .map(|socket| AdminChange::Start(wanted.listen, socket))
            .map_err(|error| format!("{error}\n")),
    }
}

/// Asks the event loop for a page.
pub(super) fn renderer(events: mpsc::UnboundedSender<Event>) -> Renderer {
    Rc::new(move |page| {
        let events = events.clone();
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            events.send(Event::Admin(page, reply)).ok()?;
            answer.await.ok()
        })
    })
}

impl Supervisor {
    /// Applies an [`AdminChange`] once the new generation is committed.
    pub(super) fn apply_admin(&mut self, change: AdminChange) -> std::io::Result<()> {
        match change {
            AdminChange::Keep => {}
            AdminChange::Stop => self.admin = None,
            AdminChange::Start(configured, socket) => {
                self.admin = None;
                let renderer = renderer(self.events.clone());
                self.admin = Some(AdminHandle::start(configured, socket, renderer)?);
            }
        }
        Ok(())
    }

    /// The admin endpoint's bound address, for the ready line.
    pub(super) fn admin_address(&self) -> String {
        self.admin
            .as_ref()
            .map_or_else(|| "none".to_owned(), |a| a.local.to_string())
    }

    /// Renders an admin page from the current state.
    pub(super) fn render_admin(&self, page: Page) -> String {
        let bound = self
            .bound
            .iter()
            .map(|b| {
                (
                    b.name.as_str(),
                    b.socket.local_addr().unwrap_or(b.configured),
                )
            })
            .collect();
        let workers = self
            .workers
            .iter()
            .map(|w| WorkerInfo {
                pid: w.pid,
                state: match w.pid {
                    Some(_) if w.applied == self.generation => "running",
                    Some(_) => "starting",
                    None => "restarting",
                },
                restarts: w.restarts,
            })
            .collect();
        Snapshot {
            config: &self.config,
            slots: &self.slots,
            region: &self.region,
            bound,
            workers,
            reloads: self.reloads,
            generation: self.generation,
        }
        .render(page)
    }
}
