//! meshd's own answers. Every status meshd writes itself, rather than
//! passing on a backend's, comes from one error type and is rendered here:
//! as raw bytes for meshd's HTTP/1.1 server, and as a response for its
//! HTTP/2 server. A short text body names what happened, so a 403 says who may
//! not reach what and by which rule.

use super::body::{DownBody, Settle};
use super::codec::push_decimal;
use crate::authz::Decision;
use hyper::header::HeaderValue;
use hyper::{Response, StatusCode};
use std::sync::Arc;

/// Why meshd answers a request itself.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProxyError {
    /// The request head is not valid HTTP/1.x, or its framing is ambiguous (400).
    #[error("malformed request: {0}")]
    BadRequest(String),
    /// The request body ended before its framing said, or was malformed (400).
    #[error("request body ended early or was malformed")]
    BadBody,
    /// The client stopped sending its body for the idle timeout (408).
    #[error("request body stalled")]
    BodyStalled,
    /// An edge request names no host (400).
    #[error("the request names no host")]
    NoHost,
    /// The request head is over the size or count limit (431).
    #[error("request head too large")]
    HeadTooLarge,
    /// The allow-list denies the source (403).
    #[error("{src} may not reach {dst} ({})", .decision.decider)]
    Forbidden {
        /// The source app, or `unknown`.
        src: Arc<str>,
        /// The destination app.
        dst: schemas::AppId,
        /// The verdict and the rule that decided it.
        decision: Decision,
    },
    /// No app on the edge serves this host and path (404).
    #[error("no app serves {host}{path}")]
    NoRoute {
        /// The host the request names.
        host: String,
        /// Its path.
        path: String,
    },
    /// Plain HTTP to an app that redirects to HTTPS (308).
    #[error("moved to {0}")]
    Redirect(String),
    /// meshd has no config yet (503).
    #[error("no config yet")]
    NoConfig,
    /// No healthy backend to send to (503).
    #[error("{0} has no healthy backend")]
    NoBackend(schemas::AppId),
    /// Backends could not be reached, failed, or answered what cannot be passed on (502).
    #[error("{0} could not be reached or failed")]
    BadGateway(schemas::AppId),
    /// The backend did not answer within the response timeout (504).
    #[error("{0} did not answer in time")]
    GatewayTimeout(schemas::AppId),
}

impl ProxyError {
    /// The status meshd answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadRequest(_) | ProxyError::BadBody | ProxyError::NoHost => {
                StatusCode::BAD_REQUEST
            }
            ProxyError::BodyStalled => StatusCode::REQUEST_TIMEOUT,
            ProxyError::HeadTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ProxyError::NoRoute { .. } => StatusCode::NOT_FOUND,
            ProxyError::Redirect(_) => StatusCode::PERMANENT_REDIRECT,
            ProxyError::NoConfig | ProxyError::NoBackend(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ProxyError::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The status as a failed exchange counts it.
    pub fn code(&self) -> u16 {
        self.status().as_u16()
    }

    /// The body text.
    pub fn text(&self) -> String {
        format!("palisade: {self}\n")
    }

    fn location(&self) -> Option<&str> {
        match self {
            ProxyError::Redirect(l) => Some(l),
            _ => None,
        }
    }

    /// Writes the whole HTTP/1.1 answer into `out`; `keep`: the connection
    /// takes another request afterwards.
    pub fn write_h1(&self, out: &mut Vec<u8>, keep: bool) {
        let status = self.status();
        let text = self.text();
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
        if let Some(l) = self.location() {
            out.extend_from_slice(b"\r\nlocation: ");
            out.extend_from_slice(l.as_bytes());
        }
        out.extend_from_slice(b"\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ");
        push_decimal(out, text.len() as u64);
        out.extend_from_slice(if keep {
            b"\r\n\r\n".as_slice()
        } else {
            b"\r\nconnection: close\r\n\r\n".as_slice()
        });
        out.extend_from_slice(text.as_bytes());
    }

    /// The answer as a response (HTTP/2).
    pub fn response<S: Settle>(&self) -> Response<DownBody<S>> {
        let mut r = Response::new(DownBody::text(self.text()));
        *r.status_mut() = self.status();
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if let Some(l) = self.location().and_then(|l| HeaderValue::from_str(l).ok()) {
            r.headers_mut().insert(hyper::header::LOCATION, l);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_h1_answer_is_framed_by_length_and_says_whether_it_closes() {
        let mut out = Vec::new();
        ProxyError::Redirect("https://shop.test/a".into()).write_h1(&mut out, true);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with(
                "HTTP/1.1 308 Permanent Redirect\r\nlocation: https://shop.test/a\r\n"
            ),
            "{text}"
        );
        let body = "palisade: moved to https://shop.test/a\n";
        assert!(
            text.ends_with(&format!("content-length: {}\r\n\r\n{body}", body.len())),
            "{text}"
        );
        let mut out = Vec::new();
        ProxyError::HeadTooLarge.write_h1(&mut out, false);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 431 ") && text.contains("connection: close\r\n\r\n"),
            "{text}"
        );
    }
}
