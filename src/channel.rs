//! The channel between the supervisor and one worker: a Unix stream
//! socketpair carrying length-prefixed frames, with file descriptors
//! (listening sockets) passed alongside in `SCM_RIGHTS`.
//!
//! Every read goes through `recvmsg`, so descriptors are never lost to a
//! plain `read`; received descriptors queue up and each frame says how many
//! of them are its own.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use tokio::io::Interest;
use tokio::net::UnixStream;

use crate::runtime::slots::Slots;

/// Largest frame accepted (a config file is at most 16 MiB).
const MAX_FRAME: usize = 32 << 20;
/// Most descriptors one frame may carry (one per listener).
const MAX_FDS: usize = crate::counters::MAX_LISTENERS;

/// A message between supervisor and worker.
#[derive(Debug)]
pub enum Message {
    /// Supervisor → worker: serve this config (the first one, or a reload).
    Config(ConfigMessage),
    /// Worker → supervisor: the config of this generation is applied.
    Applied(u64),
    /// Worker → supervisor: the config could not be applied.
    Rejected(u64, String),
    /// Worker → supervisor: still alive (the watchdog's input).
    Heartbeat,
    /// Supervisor → worker: stop accepting, drain, exit.
    Stop,
}

/// A config generation for a worker.
#[derive(Debug)]
pub struct ConfigMessage {
    /// Increases with every reload.
    pub generation: u64,
    /// The config file (for relative paths and messages).
    pub source: PathBuf,
    /// The config text the supervisor validated.
    pub text: String,
    /// Counter slots by identity.
    pub slots: Slots,
    /// Every listener of this generation: its name and listening socket.
    pub listeners: Vec<(String, OwnedFd)>,
}

/// Why the channel failed.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The peer closed the channel.
    #[error("channel closed")]
    Closed,
    /// A socket error.
    #[error("channel: {0}")]
    Io(#[from] io::Error),
    /// A frame that does not decode.
    #[error("channel: malformed frame ({0})")]
    Malformed(&'static str),
}

/// One end of the channel.
#[derive(Debug)]
pub struct Channel {
    stream: UnixStream,
    /// Held for a whole frame, so concurrent senders never interleave.
    writing: tokio::sync::Mutex<()>,
    buffer: RefCell<Vec<u8>>,
    fds: RefCell<VecDeque<OwnedFd>>,
}

/// A connected pair of channel ends as plain descriptors: one stays, one
/// goes to the child.
pub fn pair() -> io::Result<(OwnedFd, OwnedFd)> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType, socketpair};
    Ok(socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?)
}

impl Channel {
    /// Wraps a connected, non-blocking Unix stream socket.
    pub fn new(fd: OwnedFd) -> io::Result<Channel> {
        let std_stream = std::os::unix::net::UnixStream::from(fd);
        std_stream.set_nonblocking(true)?;
        Ok(Channel {
            stream: UnixStream::from_std(std_stream)?,
            writing: tokio::sync::Mutex::new(()),
            buffer: RefCell::default(),
            fds: RefCell::default(),
        })
    }

    /// Sends a message (and its descriptors).
    pub async fn send(&self, message: &Message) -> Result<(), ChannelError> {
        let (kind, payload, fds) = encode(message);
        let mut frame = Vec::with_capacity(9 + payload.len());
        frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        frame.push(kind);
        frame.extend_from_slice(&(fds.len() as u32).to_le_bytes());
        frame.extend_from_slice(&payload);
        let _whole_frame = self.writing.lock().await;
        let mut sent = 0;
        while sent < frame.len() {
            let chunk = &frame[sent..];
            let attach = if sent == 0 { fds.as_slice() } else { &[] };
            sent += self
                .stream
                .async_io(Interest::WRITABLE, || {
                    let mut space = vec![
                        MaybeUninit::uninit();
                        rustix::cmsg_space!(ScmRights(attach.len().max(1)))
                    ];
                    let mut control = SendAncillaryBuffer::new(&mut space);
                    if !attach.is_empty() && !control.push(SendAncillaryMessage::ScmRights(attach))
                    {
                        return Err(io::Error::other("too many descriptors for one message"));
                    }
                    Ok(rustix::net::sendmsg(
                        &self.stream,
                        &[IoSlice::new(chunk)],
                        &mut control,
                        SendFlags::NOSIGNAL,
                    )?)
                })
                .await?;
        }
        Ok(())
    }

    /// Receives the next message.
    pub async fn recv(&self) -> Result<Message, ChannelError> {
        loop {
            if let Some(message) = self.take_frame()? {
                return Ok(message);
            }
            self.fill().await?;
        }
    }

    async fn fill(&self) -> Result<(), ChannelError> {
        let mut chunk = vec![0u8; 64 * 1024];
        let mut received = Vec::new();
        let n = self
            .stream
            .async_io(Interest::READABLE, || {
                let mut space =
                    vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
                let mut control = RecvAncillaryBuffer::new(&mut space);
                let msg = rustix::net::recvmsg(
                    &self.stream,
                    &mut [IoSliceMut::new(&mut chunk)],
                    &mut control,
                    RecvFlags::CMSG_CLOEXEC,
                )?;
                for message in control.drain() {
                    if let RecvAncillaryMessage::ScmRights(fds) = message {
                        received.extend(fds);
                    }
                }
                Ok(msg.bytes)
            })
            .await?;
        self.fds.borrow_mut().extend(received);
        if n == 0 {
            return Err(ChannelError::Closed);
        }
        self.buffer.borrow_mut().extend_from_slice(&chunk[..n]);
        Ok(())
    }

    fn take_frame(&self) -> Result<Option<Message>, ChannelError> {
        let mut buffer = self.buffer.borrow_mut();
        let mut queued = self.fds.borrow_mut();
        if buffer.len() < 9 {
            return Ok(None);
        }
        let len = u32::from_le_bytes([buffer[0], buffer[1], buffer[2], buffer[3]]) as usize;
        let fd_count = u32::from_le_bytes([buffer[5], buffer[6], buffer[7], buffer[8]]) as usize;
        if len > MAX_FRAME || fd_count > MAX_FDS {
            return Err(ChannelError::Malformed("frame too large"));
        }
        if buffer.len() < 9 + len {
            return Ok(None);
        }
        if queued.len() < fd_count {
            return Err(ChannelError::Malformed("descriptors missing"));
        }
        let kind = buffer[4];
        let payload: Vec<u8> = buffer.drain(..9 + len).skip(9).collect();
        let fds: Vec<OwnedFd> = queued.drain(..fd_count).collect();
        decode(kind, &payload, fds).map(Some)
    }
}

const CONFIG: u8 = 1;
const APPLIED: u8 = 2;
const REJECTED: u8 = 3;
const HEARTBEAT: u8 = 4;
const STOP: u8 = 5;

fn encode(message: &Message) -> (u8, Vec<u8>, Vec<BorrowedFd<'_>>) {
    let mut out = Writer::default();
    match message {
        Message::Config(config) => {
            out.u64(config.generation);
            out.str(&config.source.to_string_lossy());
            out.str(&config.text);
            out.u32(config.slots.upstream_table().len() as u32);
            for entry in config.slots.upstream_table() {
                match entry {
                    Some((id, address)) => {
                        out.u8(1);
                        out.str(id);
                        out.str(address);
                    }
                    None => out.u8(0),
                }
            }
            out.u32(config.slots.listener_table().len() as u32);
            for entry in config.slots.listener_table() {
                match entry {
                    Some(name) => {
                        out.u8(1);
                        out.str(name);
                    }
                    None => out.u8(0),
                }
            }
            out.u32(config.slots.route_table().len() as u32);
            for entry in config.slots.route_table() {
                match entry {
                    Some((listener, rule)) => {
                        out.u8(1);
                        out.str(listener);
                        out.str(rule);
                    }
                    None => out.u8(0),
                }
            }
            out.u32(config.slots.pair_table().len() as u32);
            for entry in config.slots.pair_table() {
                match entry {
                    Some((listener, rule, upstream)) => {
                        out.u8(1);
                        out.str(listener);
                        out.str(rule);
                        out.str(upstream);
                    }
                    None => out.u8(0),
                }
            }
            out.u32(config.listeners.len() as u32);
            for (name, _) in &config.listeners {
                out.str(name);
            }
            (
                CONFIG,
                out.0,
                config.listeners.iter().map(|(_, fd)| fd.as_fd()).collect(),
            )
        }
        Message::Applied(generation) => {
            out.u64(*generation);
            (APPLIED, out.0, Vec::new())
        }
        Message::Rejected(generation, error) => {
            out.u64(*generation);
            out.str(error);
            (REJECTED, out.0, Vec::new())
        }
        Message::Heartbeat => (HEARTBEAT, out.0, Vec::new()),
        Message::Stop => (STOP, out.0, Vec::new()),
    }
}

fn decode(kind: u8, payload: &[u8], fds: Vec<OwnedFd>) -> Result<Message, ChannelError> {
    let mut r = Reader(payload);
    let message = match kind {
        CONFIG => {
            let generation = r.u64()?;
            let source = PathBuf::from(r.str()?);
            let text = r.str()?;
            let mut upstreams = Vec::new();
            for _ in 0..r.u32()? {
                upstreams.push(if r.u8()? == 1 {
                    Some((r.str()?, r.str()?))
                } else {
                    None
                });
            }
            let mut listeners = Vec::new();
            for _ in 0..r.u32()? {
                listeners.push(if r.u8()? == 1 { Some(r.str()?) } else { None });
            }
            let mut routes = Vec::new();
            for _ in 0..r.u32()? {
                routes.push(if r.u8()? == 1 {
                    Some((r.str()?, r.str()?))
                } else {
                    None
                });
            }
            let mut pairs = Vec::new();
            for _ in 0..r.u32()? {
                pairs.push(if r.u8()? == 1 {
                    Some((r.str()?, r.str()?, r.str()?))
                } else {
                    None
                });
            }
            let count = r.u32()? as usize;
            if count != fds.len() {
                return Err(ChannelError::Malformed(
                    "listener count differs from descriptors",
                ));
            }
            let mut named = Vec::with_capacity(count);
            for fd in fds {
                named.push((r.str()?, fd));
            }
            Message::Config(ConfigMessage {
                generation,
                source,
                text,
                slots: Slots::from_tables(upstreams, listeners).with_routes(routes, pairs),
                listeners: named,
            })
        }
        APPLIED => Message::Applied(r.u64()?),
        REJECTED => Message::Rejected(r.u64()?, r.str()?),
        HEARTBEAT => Message::Heartbeat,
        STOP => Message::Stop,
        _ => return Err(ChannelError::Malformed("unknown message kind")),
    };
    Ok(message)
}

#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn str(&mut self, v: &str) {
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v.as_bytes());
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], ChannelError> {
        if self.0.len() < n {
            return Err(ChannelError::Malformed("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, ChannelError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, ChannelError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, ChannelError> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ]))
    }
    fn str(&mut self) -> Result<String, ChannelError> {
        let len = self.u32()? as usize;
        String::from_utf8(self.take(len)?.to_vec())
            .map_err(|_| ChannelError::Malformed("text is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn config_with_listeners_crosses_the_channel() {
        let (a, b) = pair().unwrap();
        let (a, b) = (Channel::new(a).unwrap(), Channel::new(b).unwrap());
        let sockets: Vec<std::net::TcpListener> = (0..3)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let addrs: Vec<_> = sockets.iter().map(|s| s.local_addr().unwrap()).collect();
        let slots = Slots::from_tables(
            vec![Some(("a".into(), "127.0.0.1:1".into())), None],
            vec![Some("web".into())],
        )
        .with_routes(
            vec![None, Some(("web".into(), "/api".into()))],
            vec![Some(("web".into(), "/api".into(), "a".into())), None],
        );
        let big = "x".repeat(300_000);
        let message = Message::Config(ConfigMessage {
            generation: 7,
            source: "/etc/sluice.yaml".into(),
            text: big.clone(),
            slots: slots.clone(),
            listeners: sockets
                .into_iter()
                .enumerate()
                .map(|(i, s)| (format!("l{i}"), OwnedFd::from(s)))
                .collect(),
        });
        let send = async {
            a.send(&message).await.unwrap();
            a.send(&Message::Heartbeat).await.unwrap();
            a.send(&Message::Rejected(3, "nope".into())).await.unwrap();
        };
        let receive = async {
            let Message::Config(got) = b.recv().await.unwrap() else {
                panic!("not a config")
            };
            assert!(matches!(b.recv().await.unwrap(), Message::Heartbeat));
            assert!(matches!(b.recv().await.unwrap(), Message::Rejected(3, e) if e == "nope"));
            got
        };
        let ((), got) = tokio::join!(send, receive);
        assert_eq!(got.generation, 7);
        assert_eq!(got.text, big);
        assert_eq!(got.slots, slots);
        for ((name, fd), (i, addr)) in got.listeners.into_iter().zip(addrs.into_iter().enumerate())
        {
            assert_eq!(name, format!("l{i}"));
            assert_eq!(std::net::TcpListener::from(fd).local_addr().unwrap(), addr);
        }
        drop(a);
        assert!(matches!(b.recv().await, Err(ChannelError::Closed)));
    }

    #[tokio::test]
    async fn concurrent_sends_never_interleave_frames() {
        let (a, b) = pair().unwrap();
        let (a, b) = (
            std::rc::Rc::new(Channel::new(a).unwrap()),
            Channel::new(b).unwrap(),
        );
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async move {
                let big = "y".repeat(2 << 20);
                let senders: Vec<_> = (0..4)
                    .map(|i| {
                        let (a, text) = (std::rc::Rc::clone(&a), big.clone());
                        tokio::task::spawn_local(async move {
                            a.send(&Message::Rejected(i, text)).await.unwrap();
                            a.send(&Message::Stop).await.unwrap();
                        })
                    })
                    .collect();
                let mut rejected = 0;
                let mut stops = 0;
                while rejected + stops < 8 {
                    match b.recv().await.unwrap() {
                        Message::Rejected(_, text) => {
                            assert_eq!(text.len(), big.len());
                            rejected += 1;
                        }
                        Message::Stop => stops += 1,
                        other => panic!("unexpected {other:?}"),
                    }
                }
                for s in senders {
                    s.await.unwrap();
                }
            })
            .await;
    }
}
