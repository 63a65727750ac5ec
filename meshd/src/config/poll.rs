//! Reload step 1, from configsrv's API: long-poll
//! `GET /v1/nodes/<node>/config?wait=30s` with the last ETag, and write each
//! new config into the cache directory. The cache is what the file watch
//! reads, so a config fetched over HTTP takes the same validate-and-swap
//! path as a file, and meshd starts from the cache when configsrv is down.

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use schemas::NodeName;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long one long-poll waits on the server.
const WAIT: &str = "30s";

/// Where to fetch this node's config, from `--config-url`: a configsrv base
/// URL (`http://host:9900`) or the full node URL.
pub fn node_url(base: &str, node: &NodeName) -> Result<hyper::Uri, String> {
    let trimmed = base.trim_end_matches('/');
    let full = if trimmed.contains("/v1/nodes/") {
        trimmed.to_owned()
    } else {
        format!("{trimmed}/v1/nodes/{node}/config")
    };
    let uri: hyper::Uri = full
        .parse()
        .map_err(|e| format!("--config-url {base}: {e}"))?;
    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
        return Err(format!(
            "--config-url {base}: only http://host:port URLs are supported"
        ));
    }
    Ok(uri)
}

/// Writes `bytes` to `path` so a reader sees the old file or the new one, never half.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

enum Fetched {
    New(Bytes, Option<String>),
    Unchanged,
}

async fn fetch(uri: &hyper::Uri, etag: Option<&str>) -> Result<Fetched, String> {
    let authority = uri.authority().ok_or("no host")?.clone();
    let stream = tokio::net::TcpStream::connect(authority.as_str())
        .await
        .map_err(|e| format!("{authority}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let path = format!("{}?wait={WAIT}", uri.path());
    let mut req = hyper::Request::get(path).header(hyper::header::HOST, authority.as_str());
    if let Some(tag) = etag {
        req = req.header(hyper::header::IF_NONE_MATCH, tag);
    }
    let req = req.body(Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(Duration::from_secs(45), sender.send_request(req))
        .await
        .map_err(|_| "no answer in 45s".to_owned())?
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let tag = resp
        .headers()
        .get(hyper::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match status.as_u16() {
        304 => Ok(Fetched::Unchanged),
        200 => {
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok(Fetched::New(body, tag))
        }
        // Not rendered yet (a new node): ask again after a pause.
        404 => {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok(Fetched::Unchanged)
        }
        code => Err(format!("{uri}: HTTP {code}")),
    }
}

/// Keeps `cache/<node>.yaml` equal to the last valid config configsrv served, until the process ends.
pub async fn follow(uri: hyper::Uri, cache: PathBuf) {
    let mut etag: Option<String> = None;
    let mut backoff = Duration::from_millis(250);
    loop {
        match fetch(&uri, etag.as_deref()).await {
            Ok(Fetched::New(body, tag)) => {
                backoff = Duration::from_millis(250);
                // Only a config that validates becomes the cache meshd would start from.
                let text = String::from_utf8_lossy(&body);
                if let Err(errors) = schemas::parse_node_config(&uri.to_string(), &text) {
                    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
                    tracing::error!(errors = %lines.join("; "), "configsrv served an invalid config; the cache keeps the last good one");
                    etag = tag;
                    continue;
                }
                match write_atomic(&cache, &body) {
                    Ok(()) => etag = tag,
                    Err(e) => {
                        tracing::error!(path = %cache.display(), error = %e, "cannot write the config cache");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
            Ok(Fetched::Unchanged) => backoff = Duration::from_millis(250),
            Err(e) => {
                tracing::warn!(error = %e, retry_ms = backoff.as_millis() as u64, "configsrv unreachable; serving the last good config");
                tokio::time::sleep(backoff.mul_f64(0.5 + 0.5 * fastrand::f64())).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_url_may_be_a_base_or_the_node_url() {
        let n: NodeName = "agent-5".parse().unwrap();
        assert_eq!(
            node_url("http://cs:9900", &n).unwrap().to_string(),
            "http://cs:9900/v1/nodes/agent-5/config"
        );
        assert_eq!(
            node_url("http://cs:9900/", &n).unwrap().path(),
            "/v1/nodes/agent-5/config"
        );
        assert_eq!(
            node_url("http://cs:9900/v1/nodes/x/config", &n)
                .unwrap()
                .path(),
            "/v1/nodes/x/config"
        );
        assert!(node_url("https://cs", &n).is_err());
        assert!(node_url("cs:9900", &n).is_err());
    }
}
