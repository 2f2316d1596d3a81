//! One client request: check, route, then proxy it to a pool or serve a
//! file.
//!
//! Proxying picks an upstream with the pool's strategy and sends on a
//! pooled or new connection. A failed connect moves the request to another
//! upstream (up to `retries`, never one already tried). A pooled connection
//! the upstream had closed is replaced transparently: a request not yet
//! written goes on a fresh connection, and a bodyless idempotent request
//! is rebuilt if the close raced with sending it (and moves to another
//! upstream if the fresh connect fails). Nothing is retried once a body
//! started streaming or a response began.

use std::cell::{Cell, RefCell};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::{Body, Incoming};
use strategies::{PickContext, Tried};

use super::Worker;
use super::body::{BodyState, RequestBody, ResponseBody};
use super::client_io::{Phase, SharedPhase};
use super::deadline::LazyTimer;
use super::error::ProxyError;
use super::forwarding;
use super::hash_key;
use super::static_files;
use super::upstream::PooledConnection;
use super::upstream::exchange::{self, Failure, RequestWriter};
use super::upstream::link::Link;
use crate::counters::{ActiveGuard, UpstreamCounter};
use crate::runtime::headers::RequestVars;
use crate::runtime::pool::Pool;
use crate::runtime::{Action, HttpRoutes, ListenerKind, Metered, Rule, Runtime, Upstream};

/// What a request handler knows about its client connection.
#[derive(Debug)]
pub struct ConnContext {
    /// The worker serving it.
    pub worker: Rc<Worker>,
    /// The listener's name (its index may change with a reload).
    pub listener: std::rc::Rc<str>,
    /// The client's address.
    pub client: SocketAddr,
    /// The client's IP as an `X-Forwarded-For` value, formatted once.
    pub forwarded_for: HeaderValue,
    /// The connection's phase (deadlines).
    pub phase: SharedPhase,
    /// Counts the connection as open while anything (also an upgraded
    /// tunnel) holds this context; carries the config generation it was
    /// accepted under, used if a reload removed its listener.
    pub admitted: super::Admitted,
    /// Its listener's stop (reload or stop).
    pub stop: crate::stop::ListenerStop,
    /// The upstream response deadline's timer, reused by each request.
    pub(super) response_timer: RefCell<LazyTimer>,
}

/// Where a request's outcome is counted: the route it took (with the
/// pair for a response sluice made itself) and the upstream pair of the
/// last attempt, if one was picked.
#[derive(Clone, Copy, Debug)]
struct Outcome {
    own: Metered,
    upstream: Option<usize>,
}

/// Filled in while a request is routed and proxied.
type OutcomeCell = Cell<Option<Outcome>>;

/// Handles one request; never fails (errors become responses).
pub async fn handle(
    conn: Rc<ConnContext>,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    conn.phase.set(Phase::Busy);
    let present = forwarding::Present::of(req.headers());
    let client_keeps_alive = forwarding::keeps_alive(&req, present);
    let started = Instant::now();
    let outcome: OutcomeCell = Cell::new(None);
    let ambiguous = conn.phase.take_ambiguous_framing();
    let current = conn.worker.runtime.load_full();
    // Until a reload, the generation is the one the connection was
    // admitted under, whose listener index is known.
    let index = if Arc::ptr_eq(&current, &conn.admitted.runtime) {
        Some(conn.admitted.index)
    } else {
        current.listener_index(&conn.listener)
    };
    let (runtime, index) = match index {
        Some(index) => (current, index),
        None => (Arc::clone(&conn.admitted.runtime), conn.admitted.index),
    };
    let served = if ambiguous {
        Err(ProxyError::BadRequest(
            "ambiguous message framing (Content-Length / Transfer-Encoding)",
        ))
    } else {
        route_and_serve(&conn, &runtime, index, req, present, started, &outcome).await
    };
    let own_answer = matches!(served, Err(ProxyError::NoUpstream | ProxyError::NoRoute));
    // Only sluice's own answers to a broken request say `Connection:
    // close`; an upstream's `Connection` never reaches the client.
    let closes = matches!(served, Err(error) if error.closes_connection());
    let mut response = match served {
        Ok(response) => response,
        Err(error) => error.response(),
    };
    let listener = &runtime.listeners[index];
    let status = response.status().as_u16();
    conn.worker.row.count_response(listener.slot, status);
    let outcome = outcome.get().or(match &listener.kind {
        ListenerKind::Http(routes) => Some(Outcome {
            own: routes.no_rule,
            upstream: None,
        }),
        ListenerKind::Tcp(_) => None,
    });
    if let Some(outcome) = outcome {
        let pair = match outcome.upstream {
            Some(pair) if !own_answer => pair,
            _ => outcome.own.pair,
        };
        conn.worker
            .row
            .observe_request(outcome.own.route, pair, status, started.elapsed());
    }
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        conn.phase.set(Phase::Tunnel);
    }
    conn.phase.set_keep_alive(client_keeps_alive && !closes);
    response
        .body_mut()
        .set_phase(std::sync::Arc::clone(&conn.phase));
    Ok(response)
}

async fn route_and_serve(
    conn: &Rc<ConnContext>,
    runtime: &Runtime,
    index: usize,
    req: Request<Incoming>,
    present: forwarding::Present,
    started: Instant,
    outcome: &OutcomeCell,
) -> Result<Response<ResponseBody>, ProxyError> {
    let ListenerKind::Http(routes) = &runtime.listeners[index].kind else {
        return Err(ProxyError::NoRoute);
    };
    // The host as a header value shares the client's Host header bytes;
    // `host` borrows it.
    let host_value = forwarding::check_request(&req, present)?
        .and_then(|host| forwarding::host_value(req.headers(), host));
    let host = host_value.as_ref().and_then(|v| v.to_str().ok());
    // The normalised path is borrowed from the request (no allocation in
    // the common case); only a static file keeps it.
    let (found, static_path) = {
        // `OPTIONS *` (the only request `check_request` lets through with
        // `*`) asks about the server as a whole: it is routed as `/` and
        // forwarded as it came.
        let raw = match req.uri().path() {
            "*" => "/",
            path => path,
        };
        let path = crate::runtime::router::normalize_path(raw)
            .map_err(|_| ProxyError::BadRequest("malformed request path"))?;
        let found = routes
            .router
            .route(host, req.method(), &path)
            .ok_or(ProxyError::NoRoute)?;
        let static_path = matches!(routes.rules[found.rule].action, Action::Static { .. })
            .then(|| path.into_owned());
        (found, static_path)
    };
    let rule = &routes.rules[found.rule];
    outcome.set(Some(Outcome {
        own: rule.metered,
        upstream: None,
    }));
    match &rule.action {
        Action::Static { root } => {
            let path = static_path.unwrap_or_default();
            Ok(static_files::serve(root, &path, found.prefix_len, req).await)
        }
        Action::Proxy { pool, pass_host } => {
            let target = Target {
                runtime,
                routes,
                rule,
                pool,
                pass_host: *pass_host,
            };
            let host = Host {
                value: host_value.as_ref(),
                text: host,
            };
            proxy(conn, &target, host, req, present, started, outcome).await
        }
    }
}

/// The request's host, as [`forwarding::check_request`] found it.
#[derive(Clone, Copy)]
struct Host<'a> {
    value: Option<&'a HeaderValue>,
    text: Option<&'a str>,
}

/// Everything about where a request goes.
struct Target<'a> {
    runtime: &'a Runtime,
    routes: &'a HttpRoutes,
    rule: &'a Rule,
    pool: &'a Pool,
    pass_host: bool,
}

async fn proxy(
    conn: &Rc<ConnContext>,
    target: &Target<'_>,
    host: Host<'_>,
    req: Request<Incoming>,
    present: forwarding::Present,
    started: Instant,
    outcome: &OutcomeCell,
) -> Result<Response<ResponseBody>, ProxyError> {
    let settings = &target.rule.settings;
    if let (Some(limit), Some(length)) = (settings.max_body_size, req.body().size_hint().exact())
        && length > limit
    {
        return Err(ProxyError::BodyTooLarge);
    }
    let mut req = req;
    let client_upgrade = forwarding::upgrade_protocol(req.headers(), present)
        .map(|p| (p, hyper::upgrade::on(&mut req)));
    let (parts, body) = req.into_parts();
    let key = hash_key::extract(target.pool.hash_key.as_ref(), &parts, conn.client.ip());
    let failure = Rc::new(BodyState::new(started.into()));
    let body = RequestBody::new(
        body,
        settings.body_timeout,
        settings.max_body_size,
        Rc::clone(&failure),
    );
    let bodyless = body.is_end_stream();
    let mut headers = forwarding::UpstreamHeaders::new(
        &parts.headers,
        present,
        &conn.forwarded_for,
        host.value,
        client_upgrade.as_ref().map(|(p, _)| p.clone()),
    );
    apply_templates(conn, target.routes, host.text, &mut headers);
    let target_path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let outgoing = Outgoing {
        chunked: !bodyless && !headers.has_length(),
        method: parts.method,
        target: target_path,
        headers,
        pass_host: target.pass_host,
        host: host.value,
    };
    let mut body = Some(body);
    let mut tried = Tried::default();
    let mut connect_attempts_left = settings.retries + 1;
    let ctx_key = key.as_deref();
    let mut panic = false;
    let mut last_failure = ProxyError::ConnectFailed;
    // The first attempt starts with the request (one clock reading less).
    let mut attempt_started = started;
    loop {
        let ctx = PickContext {
            client: Some(conn.client.ip()),
            key: ctx_key,
            tried,
        };
        let Some(pick) = target.pool.pick(conn.worker.row.region(), &ctx) else {
            return Err(if tried.is_empty() || panic {
                ProxyError::NoUpstream
            } else {
                last_failure
            });
        };
        if !tried.is_empty() {
            conn.worker.row.count_retry(target.rule.metered.route);
        }
        tried.insert(pick.index);
        outcome.set(Some(Outcome {
            own: target.rule.metered,
            upstream: target.rule.pairs.get(pick.index).copied(),
        }));
        panic = pick.panic;
        let upstream = &target.runtime.upstreams[target.pool.members[pick.index]];
        let connect_timeout = upstream.connect_timeout.unwrap_or(settings.connect_timeout);
        let response_timeout = upstream
            .response_timeout
            .unwrap_or(settings.response_timeout);
        // Counted from the pick, so concurrent picks see each other.
        let mut active = Some(ActiveGuard::new(&conn.worker.row, upstream.slot));
        let mut fresh = false;
        let sent = loop {
            let connection = match conn
                .worker
                .connections
                .acquire(upstream.slot, &upstream.address, connect_timeout, fresh)
                .await
            {
                Ok(connection) => connection,
                Err(error) => {
                    conn.worker
                        .row
                        .add_upstream(upstream.slot, UpstreamCounter::ConnectErrors, 1);
                    let attempt_ended = Instant::now();
                    conn.worker
                        .row
                        .observe_upstream(upstream.slot, attempt_ended - attempt_started);
                    attempt_started = attempt_ended;
                    tracing::warn!(upstream = %upstream.id, %error, "connect failed");
                    last_failure = ProxyError::ConnectFailed;
                    break None;
                }
            };
            if !fresh {
                // A newly picked upstream gets its whole response_timeout:
                // the connect, and upstreams tried before, took none of it.
                // The one retry on a fresh connection to the same upstream
                // (its pooled connection was closed) shares the deadline.
                failure.attempt_started();
            }
            let request_body = body
                .take()
                .unwrap_or_else(|| RequestBody::empty(Rc::clone(&failure)));
            let guard = active
                .take()
                .unwrap_or_else(|| ActiveGuard::new(&conn.worker.row, upstream.slot));
            let attempt = send(
                conn,
                upstream,
                connection,
                outgoing.writer(upstream, request_body),
                AttemptTimeouts {
                    response: response_timeout,
                    idle: settings.idle_timeout,
                },
                guard,
                &failure,
            )
            .await;
            let attempt_ended = Instant::now();
            conn.worker
                .row
                .observe_upstream(upstream.slot, attempt_ended - attempt_started);
            attempt_started = attempt_ended;
            match attempt {
                Attempt::Response(response, upgraded) => break Some((response, upgraded)),
                Attempt::Unsent(request_body, reused) if reused && !fresh => {
                    body = Some(request_body);
                    fresh = true;
                }
                Attempt::Unsent(request_body, _) => {
                    body = Some(request_body);
                    break None;
                }
                Attempt::Lost { reused }
                    if reused && bodyless && !fresh && idempotent(&outgoing.method) =>
                {
                    // Kept for another upstream should the fresh connect fail.
                    body = Some(RequestBody::empty(Rc::clone(&failure)));
                    fresh = true;
                }
                // Reset before any response byte, nothing streamed: an
                // idempotent bodyless request moves on to another upstream.
                Attempt::Lost { .. } if bodyless && idempotent(&outgoing.method) => {
                    body = Some(RequestBody::empty(Rc::clone(&failure)));
                    last_failure = ProxyError::UpstreamFailed;
                    break None;
                }
                Attempt::Lost { .. } => {
                    return Err(failure.failure().unwrap_or(ProxyError::UpstreamFailed));
                }
                Attempt::TimedOut => return Err(ProxyError::UpstreamTimeout),
                Attempt::Invalid => return Err(ProxyError::UpstreamFailed),
            }
        };
        if let Some((response, upgraded)) = sent {
            let tunnel = Tunnel {
                upstream: upgraded,
                client: client_upgrade,
                idle: settings.idle_timeout,
            };
            return Ok(finish(*response, tunnel, conn));
        }
        connect_attempts_left -= 1;
        if connect_attempts_left == 0 || body.is_none() {
            return Err(if panic {
                ProxyError::NoUpstream
            } else {
                last_failure
            });
        }
    }
}

/// Methods that may be sent again after a failure (RFC 9110 §9.2.2).
fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// The parts of the upstream request that survive a retry.
struct Outgoing<'a> {
    method: Method,
    /// The request target in origin form.
    target: &'a str,
    headers: forwarding::UpstreamHeaders<'a>,
    pass_host: bool,
    host: Option<&'a HeaderValue>,
    /// The body has no length and goes in chunks.
    chunked: bool,
}

impl Outgoing<'_> {
    /// The request for `upstream`, with `body`.
    fn writer(&self, upstream: &Upstream, body: RequestBody) -> RequestWriter {
        RequestWriter::new(&self.method, self.encode(upstream), body, self.chunked)
    }

    /// The request head for `upstream`.
    fn encode(&self, upstream: &Upstream) -> Vec<u8> {
        let host = match (self.pass_host, self.host) {
            (true, Some(host)) => host,
            _ => &upstream.host_header,
        };
        let mut head = Vec::with_capacity(512);
        super::upstream::encode_request_head(
            &mut head,
            &self.method,
            self.target,
            host,
            &self.headers,
            self.chunked,
        );
        head
    }
}

/// How one attempt to send went.
enum Attempt {
    /// A response head arrived (boxed: far larger than the other cases),
    /// with the connection itself for a 101.
    Response(Box<Response<ResponseBody>>, Option<Link>),
    /// The connection was closed before anything was written: the request
    /// body is handed back. `bool`: the connection came from the pool.
    Unsent(RequestBody, bool),
    /// The request was (maybe partly) written and no response came.
    Lost { reused: bool },
    /// No response head within `response_timeout`.
    TimedOut,
    /// A response head that was refused (framing that could be read two
    /// ways, say) or cut short: answered 502 and never sent again.
    Invalid,
}

/// The deadlines of one attempt at an upstream.
#[derive(Clone, Copy, Debug)]
struct AttemptTimeouts {
    /// No response head this long after the last request byte (or after
    /// the attempt began on this upstream, if later): 504.
    response: Duration,
    /// No response body frame this long: the response is cut.
    idle: Duration,
}

/// Sends one attempt. `response_timeout` counts from the last part of the
/// request body handed upstream, or from when this upstream was picked
/// and connected to, whichever is later: a long upload is not cut while it
/// moves, and an upstream that stops reading it, or does not answer once
/// it has it all, gets the timeout.
async fn send(
    conn: &ConnContext,
    upstream: &Upstream,
    connection: PooledConnection,
    request: RequestWriter,
    timeouts: AttemptTimeouts,
    active: ActiveGuard,
    body: &Rc<BodyState>,
) -> Attempt {
    conn.worker
        .row
        .add_upstream(upstream.slot, UpstreamCounter::Requests, 1);
    let reused = connection.reused;
    // The exchange first, then the deadline; polled by hand rather than
    // with `select!`, which moves both futures into a tuple and out again
    // (two copies of the exchange's state per request).
    let mut exchange = std::pin::pin!(exchange::exchange(connection, request));
    let answered = std::future::poll_fn(|cx| match exchange.as_mut().poll(cx) {
        Poll::Ready(answered) => Poll::Ready(Some(answered)),
        Poll::Pending => body
            .poll_stalled(&mut conn.response_timer.borrow_mut(), timeouts.response, cx)
            .map(|()| None),
    })
    .await;
    let Some(answered) = answered else {
        return Attempt::TimedOut;
    };
    match answered {
        Ok(answer) => {
            conn.worker
                .row
                .add_upstream(upstream.slot, UpstreamCounter::Answered, 1);
            let head = answer.head;
            let (response_body, upgraded) = if head.status == StatusCode::SWITCHING_PROTOCOLS {
                (ResponseBody::empty(), answer.body.into_link())
            } else {
                let response_body =
                    ResponseBody::upstream(answer.body, active, Rc::clone(body), timeouts.idle);
                (response_body, None)
            };
            let mut response = Response::new(response_body);
            *response.status_mut() = head.status;
            *response.headers_mut() = head.headers;
            if let Some(reason) = head
                .reason
                .and_then(|r| hyper::ext::ReasonPhrase::try_from(r).ok())
            {
                response.extensions_mut().insert(reason);
            }
            Attempt::Response(Box::new(response), upgraded)
        }
        Err(Failure::Invalid(error)) => {
            tracing::warn!(upstream = %upstream.id, %error, "invalid response head");
            // The connection is dropped with the exchange: never reused.
            Attempt::Invalid
        }
        Err(Failure::Unsent(request_body)) => Attempt::Unsent(request_body, reused),
        Err(Failure::Cut) => {
            tracing::debug!(upstream = %upstream.id, "upstream failed in the middle of its response head");
            if body.failure().is_none() {
                conn.worker
                    .row
                    .add_upstream(upstream.slot, UpstreamCounter::Resets, 1);
            }
            Attempt::Invalid
        }
        Err(Failure::Lost) => {
            tracing::debug!(upstream = %upstream.id, "upstream failed before responding");
            if !reused && body.failure().is_none() {
                // A pooled connection closing as it is reused is the
                // keep-alive race, and a client body that failed is the
                // client's doing: neither is the upstream failing.
                conn.worker
                    .row
                    .add_upstream(upstream.slot, UpstreamCounter::Resets, 1);
            }
            Attempt::Lost { reused }
        }
    }
}

/// What a 101 answer turns into a tunnel: the upstream connection, the
/// client's upgrade (with the protocol it asked for), and how long the
/// tunnel may stay idle.
struct Tunnel {
    upstream: Option<Link>,
    client: Option<(HeaderValue, hyper::upgrade::OnUpgrade)>,
    idle: Duration,
}

/// Cleans the upstream response for the client and, for a 101, splices the
/// two upgraded connections together.
fn finish(
    mut response: Response<ResponseBody>,
    tunnel: Tunnel,
    conn: &Rc<ConnContext>,
) -> Response<ResponseBody> {
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    forwarding::to_client(response.headers_mut(), switching);
    if switching {
        let (Some((protocol, client)), Some(upstream)) = (tunnel.client, tunnel.upstream) else {
            return ProxyError::UpstreamFailed.response();
        };
        let agreed = response
            .headers()
            .get(http::header::UPGRADE)
            .is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(protocol.as_bytes()));
        if !agreed {
            return ProxyError::UpstreamFailed.response();
        }
        let splice = super::tunnel::splice(client, upstream, tunnel.idle, Rc::clone(conn));
        tokio::task::spawn_local(splice);
    }
    response
}

/// Sets the listener's configured headers (replacing any client value).
fn apply_templates(
    conn: &ConnContext,
    routes: &HttpRoutes,
    host: Option<&str>,
    headers: &mut forwarding::UpstreamHeaders<'_>,
) {
    if routes.headers.is_empty() {
        return;
    }
    let request_id = if routes.needs_request_id {
        conn.worker.next_request_id()
    } else {
        String::new()
    };
    let vars = RequestVars {
        ip: conn.client.ip(),
        port: conn.client.port(),
        host,
        scheme: "http",
        request_id: &request_id,
    };
    for template in &routes.headers {
        headers.set(template.name.clone(), template.render(&vars));
    }
}
