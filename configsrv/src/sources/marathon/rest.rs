//! Talking to Marathon over HTTP(S): the full read of apps and tasks, and
//! the `/v2/events` stream with server-side `event_type` filters. Several
//! Marathon URLs fail over in order; basic auth comes from the URL, DC/OS
//! token auth from a file, and a custom CA bundle can be trusted.

use crate::error::SourceError;
use crate::sources::marathon::events::SUBSCRIBED;
use schemas::RedactedUrl;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How configsrv reaches Marathon.
#[derive(Debug, Clone)]
pub struct MarathonClient {
    urls: Vec<reqwest::Url>,
    http: reqwest::Client,
    /// Whole-request timeout of REST reads (the stream has none).
    timeout: Duration,
    /// Largest REST answer taken, in bytes.
    max_body: u64,
    /// Largest event (or line) taken from the stream, in bytes.
    pub max_event: usize,
    token: Option<String>,
}

/// Settings of the Marathon client.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Marathon base URLs, tried in order.
    pub urls: Vec<String>,
    /// Timeout of one REST request.
    pub timeout: Option<Duration>,
    /// PEM bundle of CAs to trust for HTTPS.
    pub ca_file: Option<PathBuf>,
    /// File holding a DC/OS authentication token.
    pub token_file: Option<PathBuf>,
    /// Largest REST answer taken, in bytes (`--source-max-bytes`).
    pub max_body: u64,
    /// Largest stream event or line taken, in bytes (`--event-max-bytes`).
    pub max_event: usize,
}

fn io_err(path: &Path, error: std::io::Error) -> SourceError {
    SourceError::Io {
        path: path.to_owned(),
        error,
    }
}

impl MarathonClient {
    /// Builds the client; fails on a bad URL, CA file or token file.
    pub fn new(opts: &ClientOptions) -> Result<MarathonClient, SourceError> {
        let mut urls = Vec::new();
        for u in &opts.urls {
            let url = reqwest::Url::parse(u.trim_end_matches('/')).map_err(|e| {
                SourceError::Config(format!("Marathon URL `{}`: {e}", RedactedUrl::new(u)))
            })?;
            urls.push(url);
        }
        if urls.is_empty() {
            return Err(SourceError::Config(
                "at least one Marathon URL is needed".into(),
            ));
        }
        let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(5));
        if let Some(ca) = &opts.ca_file {
            let pem = std::fs::read(ca).map_err(|e| io_err(ca, e))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                SourceError::Config(format!(
                    "{}: not a PEM certificate bundle: {e}",
                    ca.display()
                ))
            })?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let token = match &opts.token_file {
            Some(f) => Some(
                std::fs::read_to_string(f)
                    .map_err(|e| io_err(f, e))?
                    .trim()
                    .to_owned(),
            ),
            None => None,
        };
        let http = builder
            .build()
            .map_err(|e| SourceError::Config(e.to_string()))?;
        let timeout = opts.timeout.unwrap_or(Duration::from_secs(10));
        Ok(MarathonClient {
            urls,
            http,
            timeout,
            max_body: opts.max_body,
            max_event: opts.max_event,
            token,
        })
    }

    /// The Marathon URLs, in failover order, as logs may show them.
    pub fn shown_urls(&self) -> Vec<RedactedUrl> {
        self.urls
            .iter()
            .map(|u| RedactedUrl::new(u.as_str()))
            .collect()
    }

    /// `base` + `path`, as errors name it: without credentials, one slash between.
    fn origin(base: &reqwest::Url, path: &str) -> RedactedUrl {
        RedactedUrl::new(&format!("{}{path}", base.as_str().trim_end_matches('/')))
    }

    fn request(&self, base: &reqwest::Url, path: &str) -> reqwest::RequestBuilder {
        self.request_as(reqwest::Method::GET, base, path)
    }

    fn request_as(
        &self,
        method: reqwest::Method,
        base: &reqwest::Url,
        path: &str,
    ) -> reqwest::RequestBuilder {
        let mut url = base.clone();
        let user = url.username().to_owned();
        let pass = url.password().map(str::to_owned);
        let _ = url.set_username("");
        let _ = url.set_password(None);
        let full = format!("{}{path}", url.as_str().trim_end_matches('/'));
        let mut req = self.http.request(method, full);
        if !user.is_empty() {
            req = req.basic_auth(user, pass);
        }
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("token={t}"));
        }
        req
    }

    /// `GET /v2/apps?embed=apps.tasks` from the first Marathon that answers.
    pub async fn fetch_apps(&self) -> Result<(RedactedUrl, bytes::Bytes), SourceError> {
        let mut last = None;
        for base in &self.urls {
            let origin = Self::origin(base, "/v2/apps");
            let http = |e: reqwest::Error| SourceError::Http {
                origin: origin.clone(),
                message: schemas::redact::redact(&e.to_string()),
            };
            // The timeout covers the body too.
            let attempt = async {
                let resp = self
                    .request(base, "/v2/apps?embed=apps.tasks")
                    .timeout(self.timeout)
                    .send()
                    .await
                    .and_then(reqwest::Response::error_for_status)
                    .map_err(http)?;
                crate::sources::read_body(resp, &origin, self.max_body).await
            };
            match attempt.await {
                Ok(body) => return Ok((origin, body)),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| SourceError::Config("no Marathon URL".into())))
    }

    /// Opens `/v2/events` with the subscribed `event_type` filters on the
    /// first Marathon that accepts.
    pub async fn open_events(&self) -> Result<(RedactedUrl, reqwest::Response), SourceError> {
        let filters: String = SUBSCRIBED
            .iter()
            .map(|t| format!("event_type={t}"))
            .collect::<Vec<_>>()
            .join("&");
        let mut last = None;
        for base in &self.urls {
            let origin = Self::origin(base, "/v2/events");
            let attempt = async {
                let resp = self
                    .request(base, &format!("/v2/events?{filters}"))
                    .header("Accept", "text/event-stream")
                    .send()
                    .await?;
                resp.error_for_status()
            };
            match attempt.await {
                Ok(resp) => return Ok((origin, resp)),
                Err(e) => {
                    last = Some(SourceError::Http {
                        origin,
                        message: schemas::redact::redact(&e.to_string()),
                    })
                }
            }
        }
        Err(last.unwrap_or_else(|| SourceError::Config("no Marathon URL".into())))
    }
}

/// Marathon's answer to one call: its status and body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Where it came from, without credentials.
    pub origin: RedactedUrl,
    /// The HTTP status.
    pub status: u16,
    /// The body (at most `--source-max-bytes`).
    pub body: bytes::Bytes,
}

impl MarathonClient {
    /// One call (`GET /v2/apps/<id>`, `PUT /v2/apps/<id>` with a JSON body)
    /// to the first Marathon that answers: an unreachable one fails over to
    /// the next, and any HTTP answer, whatever its status, is the caller's to
    /// read (every Marathon forwards writes to its leader).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        json: Option<&serde_json::Value>,
    ) -> Result<Answer, SourceError> {
        let mut last = None;
        for base in &self.urls {
            let origin = Self::origin(base, path);
            let mut req = self
                .request_as(method.clone(), base, path)
                .timeout(self.timeout);
            if let Some(body) = json {
                req = req.json(body);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    last = Some(SourceError::Http {
                        origin,
                        message: schemas::redact::redact(&e.to_string()),
                    });
                    continue;
                }
            };
            let status = resp.status().as_u16();
            let body = crate::sources::read_body(resp, &origin, self.max_body).await?;
            return Ok(Answer {
                origin,
                status,
                body,
            });
        }
        Err(last.unwrap_or_else(|| SourceError::Config("no Marathon URL".into())))
    }
}
