//! A headless Chromium driven over the DevTools protocol, for the web UI
//! tests. `--dump-dom` alone cannot measure anything: its virtual time
//! freezes `performance.now()` while scripts run, and it cannot click. So
//! the browser is started with a debugging port on loopback, and this
//! module speaks just enough WebSocket (RFC 6455, client side) and DevTools
//! protocol to navigate, evaluate script, wait for conditions and take
//! screenshots.
//!
//! The browser runs in its own process group, killed and reaped on drop
//! (panics included), so no renderer outlives a test.

use crate::harness::Scratch;
use serde_json::{json, Value};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The Chromium binary: `$PALISADE_CHROMIUM`, else the first of Debian's
/// and other distributions' names found on `PATH`. Panics, saying how to
/// install it, when there is none.
pub fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("PALISADE_CHROMIUM") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["chromium", "chromium-browser", "google-chrome", "chrome"] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "the web UI tests need a headless Chromium and none is installed: \
         `apt-get install chromium` (Debian's package; .ci/run installs it), \
         or point PALISADE_CHROMIUM at a Chromium or Chrome binary"
    );
}

/// Where the tests leave their screenshots: `<target dir>/ui-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // Tests run from `<target>/<profile>/deps/`.
    let target = exe
        .ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"));
    let dir = target.join("ui-screenshots");
    std::fs::create_dir_all(&dir).expect("creating the screenshot directory");
    dir
}

/// A running headless Chromium with one page under control.
#[derive(Debug)]
pub struct Browser {
    child: Option<Child>,
    ws: WebSocket,
    next_id: u64,
    // Kept for its Drop: the profile directory goes once the browser is gone.
    _profile: Scratch,
}

impl Browser {
    /// Starts Chromium (1280x900 window) and attaches to its first page.
    pub async fn launch(name: &str) -> Browser {
        let binary = chromium();
        let profile = Scratch::new(&format!("chromium-{name}"));
        let log = std::fs::File::create(profile.path("chromium.log")).unwrap();
        let child = Command::new(&binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--window-size=1280,900",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                // Nothing leaves loopback: no update checks, no safe-browsing,
                // no metrics, no component downloads.
                "--no-first-run",
                "--no-default-browser-check",
                "--no-pings",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-default-apps",
                "--disable-domain-reliability",
                "--disable-sync",
                "--disable-extensions",
                "--disable-client-side-phishing-detection",
                "--metrics-recording-only",
                "--mute-audio",
            ])
            .arg(format!("--user-data-dir={}", profile.0.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            // Its own process group, so that drop ends its renderers too.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let mut guard = ChildGuard(Some(child));

        // Chromium writes its debugging port (first line) into the profile.
        let port_file = profile.path("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(30);
        let port: u16 = loop {
            if let Some(port) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|t| t.lines().next().and_then(|l| l.trim().parse().ok()))
            {
                break port;
            }
            if let Some(Ok(Some(status))) = guard.0.as_mut().map(Child::try_wait) {
                panic!(
                    "{} exited ({status}) before opening its debugging port:\n{}",
                    binary.display(),
                    std::fs::read_to_string(profile.path("chromium.log")).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "Chromium opened no debugging port within 30 s:\n{}",
                std::fs::read_to_string(profile.path("chromium.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let targets: Value = reqwest::get(format!("http://127.0.0.1:{port}/json/list"))
            .await
            .and_then(reqwest::Response::error_for_status)
            .expect("Chromium's target list")
            .json()
            .await
            .expect("Chromium's target list is JSON");
        let page = targets
            .as_array()
            .and_then(|l| l.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .unwrap_or_else(|| panic!("no page among Chromium's targets: {targets}"))
            .to_owned();
        let ws = WebSocket::connect(&page).await;
        let mut browser = Browser {
            child: guard.0.take(),
            ws,
            next_id: 0,
            _profile: profile,
        };
        browser.call("Page.enable", json!({})).await;
        browser.call("Runtime.enable", json!({})).await;
        // The viewport itself 1280x900 (the window's size includes no
        // chrome in headless mode, but some builds take some off anyway).
        browser
            .call(
                "Emulation.setDeviceMetricsOverride",
                json!({"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": false}),
            )
            .await;
        browser
    }

    /// One DevTools command; its result, or a panic naming the error.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.ws.send_text(&msg).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let text = tokio::time::timeout(left, self.ws.recv_text())
                .await
                .unwrap_or_else(|_| panic!("Chromium did not answer {method} within 60 s"));
            let v: Value = serde_json::from_str(&text).expect("DevTools messages are JSON");
            // Events arrive in between; only the answer to this call matters.
            if v["id"].as_u64() == Some(id) {
                if let Some(err) = v.get("error") {
                    panic!("DevTools {method} failed: {err}");
                }
                return v["result"].clone();
            }
        }
    }

    /// Loads `url` and waits for its `load` event.
    pub async fn goto(&mut self, url: &str) {
        let r = self.call("Page.navigate", json!({"url": url})).await;
        if let Some(e) = r["errorText"].as_str() {
            panic!("loading {url}: {e}");
        }
        self.wait_for(
            &format!("{url} to load"),
            "document.readyState === 'complete'",
            Duration::from_secs(20),
        )
        .await;
    }

    /// Evaluates `js` in the page (promises awaited) and returns its value;
    /// an exception is an `Err` with its description.
    pub async fn try_eval(&mut self, js: &str) -> Result<Value, String> {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": js, "awaitPromise": true, "returnByValue": true}),
            )
            .await;
        if let Some(e) = r.get("exceptionDetails") {
            return Err(e["exception"]["description"]
                .as_str()
                .map_or_else(|| e.to_string(), str::to_owned));
        }
        Ok(r["result"]["value"].clone())
    }

    /// Like `try_eval`; panics on an exception.
    pub async fn eval(&mut self, js: &str) -> Value {
        match self.try_eval(js).await {
            Ok(v) => v,
            Err(e) => panic!("evaluating `{js}`: {e}"),
        }
    }

    /// Polls `js` until it yields something other than null, false, 0 or
    /// ""; returns that value. Panics after `deadline` with `what`, the last
    /// value and the page's visible text.
    pub async fn wait_for(&mut self, what: &str, js: &str, deadline: Duration) -> Value {
        let end = Instant::now() + deadline;
        let mut last = Value::Null;
        while Instant::now() < end {
            match self.try_eval(js).await {
                Ok(v) if truthy(&v) => return v,
                Ok(v) => last = v,
                Err(e) => last = Value::String(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let text = self
            .try_eval("document.body ? document.body.innerText.slice(0, 3000) : ''")
            .await
            .unwrap_or_default();
        panic!(
            "the UI did not show {what} within {deadline:?}\nlast value of `{js}`: {last}\n\
             ----- the page's text -----\n{}",
            text.as_str().unwrap_or_default()
        );
    }

    /// Saves a PNG of the viewport to `path`.
    pub async fn screenshot(&mut self, path: &Path) {
        let r = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        let png = base64_decode(r["data"].as_str().expect("screenshot data"));
        assert!(
            png.starts_with(b"\x89PNG"),
            "Chromium's screenshot is a PNG"
        );
        std::fs::write(path, png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        ChildGuard(self.child.take());
    }
}

/// Ends a browser's whole process group: SIGTERM, a grace period, SIGKILL.
struct ChildGuard(Option<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let Some(mut child) = self.0.take() else {
            return;
        };
        let group = format!("-{}", child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let end = Instant::now() + Duration::from_secs(3);
        while Instant::now() < end {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Stragglers of the group (renderers) go too, the leader if it hung.
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        _ => true,
    }
}

/// Standard base64 (screenshots come as such); test input, so a bad byte panics.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c:#x}"),
        }
    };
    let bytes: Vec<u8> = text.bytes().filter(|c| *c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= value(*c) << (18 - 6 * i);
        }
        let [_, a, b, c] = acc.to_be_bytes();
        out.extend_from_slice(&[a, b, c][..chunk.len().saturating_sub(1)]);
    }
    out
}

/// The client side of a WebSocket, text messages only, as DevTools needs.
#[derive(Debug)]
struct WebSocket {
    stream: BufReader<TcpStream>,
}

impl WebSocket {
    async fn connect(url: &str) -> WebSocket {
        let rest = url
            .strip_prefix("ws://")
            .unwrap_or_else(|| panic!("not a ws:// URL: {url}"));
        let (host, path) = rest.split_once('/').expect("a path in the DevTools URL");
        let stream = TcpStream::connect(host)
            .await
            .unwrap_or_else(|e| panic!("connecting to DevTools at {host}: {e}"));
        let mut stream = BufReader::new(stream);
        // The key only proves the server speaks WebSocket; a fixed one does.
        let req = format!(
            "GET /{path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.get_mut().write_all(req.as_bytes()).await.unwrap();
        let mut status = String::new();
        stream.read_line(&mut status).await.unwrap();
        assert!(
            status.starts_with("HTTP/1.1 101"),
            "DevTools refused the WebSocket: {status}"
        );
        loop {
            let mut line = String::new();
            stream.read_line(&mut line).await.unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        WebSocket { stream }
    }

    async fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        let mut frame = vec![0x80 | opcode];
        // Clients must mask (RFC 6455 5.3); any key will do.
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.get_mut().write_all(&frame).await.unwrap();
    }

    async fn send_text(&mut self, text: &str) {
        self.send_frame(0x1, text.as_bytes()).await;
    }

    /// The next text message (fragments joined; pings answered).
    async fn recv_text(&mut self) -> String {
        let mut message = Vec::new();
        loop {
            let mut head = [0u8; 2];
            self.stream
                .read_exact(&mut head)
                .await
                .expect("Chromium closed the DevTools connection");
            let fin = head[0] & 0x80 != 0;
            let opcode = head[0] & 0x0f;
            let masked = head[1] & 0x80 != 0;
            let len = match head[1] & 0x7f {
                126 => u64::from(self.stream.read_u16().await.unwrap()),
                127 => self.stream.read_u64().await.unwrap(),
                n => u64::from(n),
            };
            let mut mask = [0u8; 4];
            if masked {
                self.stream.read_exact(&mut mask).await.unwrap();
            }
            let mut payload = vec![0u8; usize::try_from(len).expect("frame size")];
            self.stream.read_exact(&mut payload).await.unwrap();
            if masked {
                for (i, b) in payload.iter_mut().enumerate() {
                    *b ^= mask[i % 4];
                }
            }
            match opcode {
                0x9 => self.send_frame(0xA, &payload).await,
                0xA => {}
                0x8 => panic!("Chromium closed the DevTools connection"),
                _ => {
                    message.extend_from_slice(&payload);
                    if fin {
                        return String::from_utf8(message).expect("DevTools text is UTF-8");
                    }
                }
            }
        }
    }
}
