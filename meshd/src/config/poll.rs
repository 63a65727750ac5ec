//! Reload step 1, from configsrv's API: long-poll
//! `GET /v1/nodes/<node>/config?wait=30s` with the last ETag, over http or
//! https (verified against `--config-ca`), with the node token, within one
//! deadline per request and a size cap per body. Each body goes to the
//! reload loop, which applies it and then writes it to the cache that meshd
//! starts from when configsrv is down.

use crate::error::ReloadError;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use schemas::{NodeName, RedactedUrl};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

/// How long one long-poll waits on the server.
const WAIT: &str = "30s";
/// The whole request (connect, TLS, head and body) must finish within
/// configsrv's wait plus this much, or the connection is dropped and retried.
const GRACE: Duration = Duration::from_secs(30);

/// Why the channel to configsrv cannot be set up or a request failed.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// `--config-url` is not a usable URL.
    #[error("--config-url {url}: {why}")]
    Url {
        /// The URL, without credentials.
        url: RedactedUrl,
        /// What is wrong.
        why: String,
    },
    /// An https URL without a CA to verify it with.
    #[error("--config-url {url} is https: give --config-ca FILE, the CA that signed configsrv's certificate")]
    NoCa {
        /// The URL.
        url: RedactedUrl,
    },
    /// `--config-ca` cannot be used.
    #[error("--config-ca: {0}")]
    Ca(#[from] crate::tls::TlsError),
    /// Connecting, TLS or the exchange failed.
    #[error("{url}: {why}")]
    Io {
        /// The URL.
        url: RedactedUrl,
        /// What failed.
        why: String,
    },
    /// configsrv wants the node token, or another one.
    #[error("{url}: HTTP 401: configsrv refused the node token; check --config-token-file")]
    Unauthorized {
        /// The URL.
        url: RedactedUrl,
    },
    /// Any other unexpected status.
    #[error("{url}: HTTP {code}")]
    Status {
        /// The URL.
        url: RedactedUrl,
        /// The status code.
        code: u16,
    },
    /// No whole answer in time.
    #[error("{url}: no whole answer within {after:?}; reconnecting")]
    Timeout {
        /// The URL.
        url: RedactedUrl,
        /// The deadline.
        after: Duration,
    },
}

/// Everything one request to configsrv needs, fixed at start.
#[derive(Clone)]
pub struct Channel {
    uri: hyper::Uri,
    /// The URL as logs and errors show it.
    pub shown: RedactedUrl,
    token: Option<String>,
    tls: Option<tokio_rustls::TlsConnector>,
    max_bytes: u64,
    timeout: Duration,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("Channel")
            .field("url", &self.shown)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

/// Where to fetch this node's config, from `--config-url`: a configsrv base
/// URL (`http://host:9900`, `https://...`) or the full node URL.
pub fn node_url(base: &str, node: &NodeName) -> Result<hyper::Uri, PollError> {
    let bad = |why: &str| PollError::Url {
        url: RedactedUrl::new(base),
        why: why.to_owned(),
    };
    let trimmed = base.trim_end_matches('/');
    let full = if trimmed.contains("/v1/nodes/") {
        trimmed.to_owned()
    } else {
        format!("{trimmed}/v1/nodes/{node}/config")
    };
    let uri: hyper::Uri = full.parse().map_err(|e| bad(&format!("{e}")))?;
    let authority = uri.authority().ok_or_else(|| bad("no host"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(bad("only http:// and https:// URLs are supported"));
    }
    if authority.as_str().contains('@') {
        return Err(bad(
            "credentials do not belong in the URL; give --config-token-file",
        ));
    }
    Ok(uri)
}

impl Channel {
    /// Sets the channel up: the URL, the token, and for https the CA to trust.
    pub fn new(
        base: &str,
        node: &NodeName,
        token: Option<String>,
        ca: Option<&Path>,
        max_bytes: u64,
    ) -> Result<Channel, PollError> {
        let uri = node_url(base, node)?;
        let shown = RedactedUrl::new(&uri.to_string());
        let tls = match (uri.scheme_str(), ca) {
            (Some("https"), Some(ca)) => {
                let config = crate::tls::client_config(&ca.display().to_string())?;
                Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
            }
            (Some("https"), None) => return Err(PollError::NoCa { url: shown }),
            (_, Some(_)) => {
                return Err(PollError::Url {
                    url: shown,
                    why: "--config-ca needs an https:// URL".into(),
                })
            }
            _ => None,
        };
        if tls.is_none() && token.is_some() {
            tracing::warn!(url = %shown, "the node token goes over plain http; use https with --config-ca");
        }
        Ok(Channel {
            uri,
            shown,
            token,
            tls,
            max_bytes,
            timeout: Duration::from_secs(30) + GRACE,
        })
    }

    fn io(&self, why: impl std::fmt::Display) -> PollError {
        PollError::Io {
            url: self.shown.clone(),
            why: why.to_string(),
        }
    }
}

/// What one request brought.
enum Fetched {
    New(Bytes, Option<String>),
    Unchanged,
    /// A body meshd will not take; its ETag, so it is not fetched again.
    Refused(ReloadError, Option<String>),
}

/// What the poller hands the reload loop.
#[derive(Debug)]
pub enum Update {
    /// A body to load, apply and cache.
    Config(Bytes),
    /// A body refused before loading (too large): report it.
    Refused(ReloadError),
}

async fn fetch(ch: &Channel, etag: Option<&str>) -> Result<Fetched, PollError> {
    match tokio::time::timeout(ch.timeout, exchange_over_tcp(ch, etag)).await {
        Ok(result) => result,
        Err(_) => Err(PollError::Timeout {
            url: ch.shown.clone(),
            after: ch.timeout,
        }),
    }
}

async fn exchange_over_tcp(ch: &Channel, etag: Option<&str>) -> Result<Fetched, PollError> {
    let host = ch.uri.host().unwrap_or_default();
    let https = ch.tls.is_some();
    let port = ch.uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let stream = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
        .await
        .map_err(|e| ch.io(e))?;
    match &ch.tls {
        Some(tls) => {
            let name =
                rustls::pki_types::ServerName::try_from(host.trim_matches(['[', ']']).to_owned())
                    .map_err(|e| ch.io(e))?;
            let stream = tls.connect(name, stream).await.map_err(|e| ch.io(e))?;
            exchange(ch, stream, etag).await
        }
        None => exchange(ch, stream, etag).await,
    }
}

async fn exchange<S>(ch: &Channel, io: S, etag: Option<&str>) -> Result<Fetched, PollError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| ch.io(e))?;
    tokio::spawn(conn);
    let host = ch.uri.authority().map(|a| a.as_str()).unwrap_or_default();
    let mut req = hyper::Request::get(format!("{}?wait={WAIT}", ch.uri.path()))
        .header(hyper::header::HOST, host);
    if let Some(tag) = etag {
        req = req.header(hyper::header::IF_NONE_MATCH, tag);
    }
    if let Some(token) = &ch.token {
        req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let req = req.body(Empty::<Bytes>::new()).map_err(|e| ch.io(e))?;
    let resp = sender.send_request(req).await.map_err(|e| ch.io(e))?;
    let tag = resp
        .headers()
        .get(hyper::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let too_large = || ReloadError::TooLarge {
        url: ch.shown.clone(),
        limit: ch.max_bytes,
    };
    match resp.status().as_u16() {
        304 => Ok(Fetched::Unchanged),
        200 => {
            // Refused at once when announced, else counted while read.
            let announced = resp
                .headers()
                .get(hyper::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if announced.is_some_and(|n| n > ch.max_bytes) {
                return Ok(Fetched::Refused(too_large(), tag));
            }
            let limit = usize::try_from(ch.max_bytes).unwrap_or(usize::MAX);
            match Limited::new(resp.into_body(), limit).collect().await {
                Ok(body) => Ok(Fetched::New(body.to_bytes(), tag)),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    Ok(Fetched::Refused(too_large(), tag))
                }
                Err(e) => Err(ch.io(e)),
            }
        }
        // Not rendered yet (a new node): ask again after a pause.
        404 => {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok(Fetched::Unchanged)
        }
        401 => Err(PollError::Unauthorized {
            url: ch.shown.clone(),
        }),
        code => Err(PollError::Status {
            url: ch.shown.clone(),
            code,
        }),
    }
}

/// Follows configsrv until the receiver goes away, handing every new body
/// (or its refusal) to the reload loop.
pub async fn follow(ch: Channel, updates: mpsc::Sender<Update>) {
    let mut etag: Option<String> = None;
    let mut backoff = Duration::from_millis(250);
    loop {
        let update = match fetch(&ch, etag.as_deref()).await {
            Ok(Fetched::New(body, tag)) => {
                tracing::debug!(etag = ?tag, bytes = body.len(), "configsrv sent a config");
                etag = tag;
                Some(Update::Config(body))
            }
            Ok(Fetched::Refused(why, tag)) => {
                etag = tag;
                Some(Update::Refused(why))
            }
            Ok(Fetched::Unchanged) => {
                tracing::debug!(?etag, "configsrv: unchanged");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_ms = backoff.as_millis() as u64, "configsrv unreachable; serving the last good config");
                tokio::time::sleep(backoff.mul_f64(0.5 + 0.5 * fastrand::f64())).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        backoff = Duration::from_millis(250);
        if let Some(u) = update {
            if updates.send(u).await.is_err() {
                return;
            }
        }
    }
}

/// Writes an applied config to the cache. A failure is logged and counted,
/// never fatal: the config already runs; only a restart without configsrv
/// would start from an older one.
pub fn write_cache(cache: &Path, body: &[u8]) {
    if let Err(error) = schemas::write_atomic(cache, body) {
        ::metrics::counter!(crate::metrics::CONFIG_CACHE_WRITE_FAILURES).increment(1);
        tracing::error!(path = %cache.display(), %error, "cannot write the config cache; the config runs, but a restart without configsrv would start from an older one");
    }
}

/// The cache file for `node` in `dir`.
pub fn cache_path(dir: &Path, node: &NodeName) -> PathBuf {
    dir.join(node.file_name())
}

#[cfg(test)]
mod tests;
