//! The rest of a request body once the response head came, sent by a task
//! of its own.
//!
//! Until the head, the exchange writes the request while it reads. After
//! it, the response body is polled only when the client takes more of it,
//! so a client that writes its whole body before reading, to an upstream
//! that answers while it reads (an echo), would stop both until
//! `send_timeout`. So the upload moves to a task that writes through a
//! second descriptor of the same socket (a `dup`), while the response is
//! read through the first. The second is closed before the upload reports
//! its end, so a connection that goes back to the pool has one descriptor
//! again.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::io;
use std::rc::Rc;
use std::task::{Context, Waker};

use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::exchange::{RequestWriter, WriteError};

/// How an upload ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UploadEnd {
    /// The whole request went out.
    Sent,
    /// The client's body failed (its `BodyState` says why).
    BodyFailed,
    /// The upstream socket refused more (the upstream may have answered
    /// in full anyway).
    Refused,
}

/// What the upload task tells the response body.
#[derive(Default)]
struct Report {
    ended: Cell<Option<UploadEnd>>,
    progressed: Cell<bool>,
    /// The response body's task, woken when the upload ends.
    waiting: RefCell<Option<Waker>>,
}

/// An upload running on its own task; dropping it stops the task.
pub struct Upload {
    report: Rc<Report>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("ended", &self.report.ended.get())
            .finish_non_exhaustive()
    }
}

/// A second descriptor of `stream`'s socket, registered with the runtime;
/// fails when the process is out of descriptors.
pub fn second_descriptor(stream: &TcpStream) -> io::Result<TcpStream> {
    let socket = socket2::SockRef::from(stream).try_clone()?;
    TcpStream::from_std(socket.into())
}

impl Upload {
    /// Starts sending the rest of `writer` through `second`, a second
    /// descriptor of the upstream socket (see [`second_descriptor`]).
    pub fn start(mut writer: RequestWriter, mut second: TcpStream) -> Upload {
        let report = Rc::new(Report::default());
        let reporting = Rc::clone(&report);
        let task = tokio::task::spawn_local(async move {
            let result = poll_fn(|cx| {
                let polled = writer.poll_write(cx, &mut second);
                if writer.take_progress() {
                    reporting.progressed.set(true);
                }
                polled
            })
            .await;
            drop(second);
            reporting.ended.set(Some(match result {
                Ok(()) => UploadEnd::Sent,
                Err(WriteError::Body) => UploadEnd::BodyFailed,
                Err(WriteError::Socket) => UploadEnd::Refused,
            }));
            if let Some(waker) = reporting.waiting.take() {
                waker.wake();
            }
        });
        Upload { report, task }
    }

    /// How the upload ended, if it did.
    pub fn ended(&self) -> Option<UploadEnd> {
        self.report.ended.get()
    }

    /// Whether bytes went out since the last call.
    pub fn take_progress(&self) -> bool {
        self.report.progressed.take()
    }

    /// Wakes `cx`'s task when the upload ends.
    pub fn notify(&self, cx: &Context<'_>) {
        let mut waiting = self.report.waiting.borrow_mut();
        if !waiting.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *waiting = Some(cx.waker().clone());
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        self.task.abort();
    }
}
