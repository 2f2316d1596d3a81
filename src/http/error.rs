//! Responses sluice makes itself, and the error type of the proxy path.
//!
//! Every failure on the way to an upstream is a [`ProxyError`] that records
//! which side failed; it maps to one status code and a short plain-text body
//! saying what happened.

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};

use super::body::ResponseBody;

/// Why a request could not be proxied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// The request is malformed or ambiguous (client side).
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The request target is longer than sluice accepts.
    #[error("request URI too long")]
    UriTooLong,
    /// The body is larger than `max_body_size`.
    #[error("request body larger than max_body_size")]
    BodyTooLarge,
    /// The client stopped sending its body for `body_timeout`.
    #[error("request body not received within body_timeout")]
    BodyTimeout,
    /// No rule matches the request.
    #[error("no route for this request")]
    NoRoute,
    /// Every upstream of the pool was tried or none exists.
    #[error("no upstream available")]
    NoUpstream,
    /// Connecting to the upstream failed and no retry is left.
    #[error("upstream connect failed")]
    ConnectFailed,
    /// The upstream failed before a complete response head.
    #[error("upstream failed before responding")]
    UpstreamFailed,
    /// The upstream did not answer within `response_timeout`.
    #[error("upstream response timeout")]
    UpstreamTimeout,
}

impl ProxyError {
    /// The status this error is answered with.
    pub fn status(self) -> StatusCode {
        match self {
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::UriTooLong => StatusCode::URI_TOO_LONG,
            ProxyError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::NoUpstream => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::ConnectFailed | ProxyError::UpstreamFailed => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// Whether the client connection must close after the answer (the
    /// request stream may be out of sync).
    pub fn closes_connection(self) -> bool {
        matches!(
            self,
            ProxyError::BadRequest(_)
                | ProxyError::UriTooLong
                | ProxyError::BodyTooLarge
                | ProxyError::BodyTimeout
        )
    }

    /// The plain-text response for this error.
    pub fn response(self) -> Response<ResponseBody> {
        let status = self.status();
        let body = format!("{} {}\n", status.as_u16(), self);
        let mut response = plain_text(status, Bytes::from(body));
        if self.closes_connection() {
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// A short plain-text response.
pub fn plain_text(status: StatusCode, body: Bytes) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
