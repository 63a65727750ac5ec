//! Processes under test: the built binaries, spawned behind guards that kill
//! and reap them on drop (panics included) and print their stderr when a
//! test fails; scratch directories; polling with deadlines, never sleeps.

use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Where cargo put the binaries: `<target dir>/<profile>/` of the running
/// executable (or `$PALISADE_BIN_DIR`). Builds them once per
/// test process into that same directory and profile, so `cargo test
/// -p palisade-tests` never runs stale binaries, `--release`,
/// `--target-dir` and `CARGO_TARGET_DIR` included.
pub fn bin(name: &str) -> PathBuf {
    // Benchmarks run release binaries from a directory they name.
    if let Some(dir) = std::env::var_os("PALISADE_BIN_DIR") {
        return PathBuf::from(dir).join(name);
    }
    static BUILT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let exe = std::env::current_exe().expect("test executable path");
    // Tests run from `<profile>/deps/`; this crate's own bins from `<profile>/`.
    let exe_dir = exe.parent().expect("target/<profile>");
    let dir = match exe_dir.file_name() {
        Some(d) if d == "deps" => exe_dir.parent().expect("target/<profile>"),
        _ => exe_dir,
    };
    let built = BUILT.get_or_init(|| {
        let target_dir = dir.parent().ok_or("no target directory")?;
        // Cargo names the `dev` profile's directory `debug`; others by name.
        let profile = match dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev",
            Some(other) => other,
        };
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "--bins",
                "-p",
                "meshd",
                "-p",
                "configsrv",
            ])
            .arg("--profile")
            .arg(profile)
            .arg("--target-dir")
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .map_err(|e| e.to_string())?;
        status
            .success()
            .then_some(())
            .ok_or_else(|| format!("cargo build failed: {status}"))
    });
    if let Err(e) = built {
        panic!("building the binaries for the end-to-end tests: {e}");
    }
    dir.join(name)
}

/// A scratch directory, removed on drop.
#[derive(Debug)]
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// A fresh directory named after the test.
    pub fn new(name: &str) -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "palisade-e2e-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// A path inside.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }

    /// Writes a file atomically (temp file, then rename), as configsrv does.
    pub fn write(&self, rel: &str, body: &str) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let tmp = p.with_extension("tmp-write");
        std::fs::write(&tmp, body).unwrap();
        std::fs::rename(&tmp, &p).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running binary; killed and reaped on drop.
#[derive(Debug)]
pub struct Proc {
    /// What it is, for messages.
    pub name: String,
    child: Option<Child>,
    stderr: PathBuf,
}

impl Proc {
    /// Spawns `bin(program) args...`, stderr captured to `log_dir`.
    pub fn spawn(program: &str, args: &[&str], log_dir: &Path) -> Proc {
        static N: AtomicUsize = AtomicUsize::new(0);
        let stderr = log_dir.join(format!(
            "{program}-{}.log",
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let file = std::fs::File::create(&stderr).unwrap();
        let child = Command::new(bin(program))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {program}: {e}"));
        Proc {
            name: format!("{program} {}", args.join(" ")),
            child: Some(child),
            stderr,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// What it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Sends SIGTERM and waits up to `deadline` for the exit code.
    pub fn terminate(&mut self, deadline: Duration) -> Option<i32> {
        let child = self.child.as_mut()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let end = Instant::now() + deadline;
        while Instant::now() < end {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("----- stderr of {} -----\n{}", self.name, self.stderr());
        }
    }
}

/// A free port on 127.0.0.1 for an admin endpoint.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `check` every 20 ms until it returns `Ok`, or panics after
/// `deadline` with `what` and the last value seen.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let end = Instant::now() + deadline;
    let mut last = String::new();
    while Instant::now() < end {
        match check().await {
            Ok(v) => return v,
            Err(seen) => last = seen,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: not within {deadline:?}; last seen: {last}");
}

/// `GET path` on an admin endpoint: (status, body).
pub async fn admin_get(admin: SocketAddr, path: &str) -> Result<(u16, String), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(admin)
        .await
        .map_err(|e| e.to_string())?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut buf))
        .await
        .map_err(|_| "admin endpoint timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or(text.clone())?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// meshd's `/status` document.
pub async fn status(admin: SocketAddr) -> Result<Value, String> {
    let (_, body) = admin_get(admin, "/status").await?;
    serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))
}

/// Polls meshd's `/status` until `check` holds, or panics after `deadline`
/// with `what` and the last status seen; returns the status that passed.
pub async fn wait_for_status(
    admin: SocketAddr,
    what: &str,
    deadline: Duration,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let check = &check;
    eventually(
        &format!("meshd at {admin}: {what}"),
        deadline,
        || async move {
            let s = status(admin).await?;
            if check(&s) {
                Ok(s)
            } else {
                Err(s.to_string())
            }
        },
    )
    .await
}

/// Waits until meshd at `admin` serves generation `at_least` or newer.
pub async fn wait_generation(admin: SocketAddr, at_least: u64) -> Value {
    wait_for_status(
        admin,
        &format!("applying generation {at_least}"),
        Duration::from_secs(5),
        |s| s["generation"].as_u64().is_some_and(|g| g >= at_least),
    )
    .await
}

/// Backend addresses of `app`'s services in a meshd `/status` document, sorted.
pub fn status_backends(status: &Value, app: &str) -> Vec<String> {
    let services = status["services"].as_array().cloned().unwrap_or_default();
    let mut out: Vec<String> = services
        .iter()
        .filter(|svc| svc["app"] == app)
        .flat_map(|svc| svc["backends"].as_array().cloned().unwrap_or_default())
        .filter_map(|b| b["address"].as_str().map(str::to_owned))
        .collect();
    out.sort();
    out
}

/// Runs `configsrv render` once: a Marathon snapshot and a policy directory
/// into `out`; returns its exit status and output.
pub fn render(snapshot: &Path, policies: &Path, out: &Path) -> std::process::Output {
    Command::new(bin("configsrv"))
        .arg("render")
        .arg("--marathon-snapshot")
        .arg(snapshot)
        .arg("--policies")
        .arg(policies)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap_or_else(|e| panic!("running configsrv render: {e}"))
}

/// `<out>/<node>.yaml` as text and parsed, checked to name `node`.
pub fn node_file(out: &Path, node: &str) -> (String, schemas::NodeConfig) {
    let path = out.join(format!("{node}.yaml"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let config = schemas::parse_node_config(&path.display().to_string(), &text)
        .unwrap_or_else(|e| panic!("{e:?}\n{text}"));
    assert_eq!(config.node.to_string(), node, "{text}");
    (text, config)
}

/// The value of one Prometheus series on meshd's `/metrics` (0 when absent).
pub async fn metric(admin: SocketAddr, series: &str) -> f64 {
    let (_, body) = admin_get(admin, "/metrics").await.unwrap();
    body.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// Polls one series on meshd's `/metrics` until `check` holds (counters may
/// lag the connection they count); returns the value.
pub async fn wait_metric(
    admin: SocketAddr,
    series: &str,
    deadline: Duration,
    check: impl Fn(f64) -> bool,
) -> f64 {
    let check = &check;
    eventually(series, deadline, || async move {
        let v = metric(admin, series).await;
        if check(v) {
            Ok(v)
        } else {
            Err(v.to_string())
        }
    })
    .await
}

/// A meshd for `node` serving `dir`, with its admin address.
pub fn meshd(node: &str, dir: &Path, extra: &[&str]) -> (Proc, SocketAddr) {
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin_s = admin.to_string();
    let mut args = vec![
        "run",
        "--node",
        node,
        "--config-dir",
        dir.to_str().unwrap(),
        "--admin",
        &admin_s,
    ];
    args.extend_from_slice(extra);
    (
        Proc::spawn("meshd", &args, dir.parent().unwrap_or(dir)),
        admin,
    )
}

/// A meshd for `node` serving `dir`, its admin on the node's own address at
/// `admin_port` (where configsrv's scraper looks for it); logs in `log_dir`.
pub fn meshd_scraped(node: &str, dir: &Path, admin_port: u16, log_dir: &Path) -> Proc {
    let admin = format!("{node}:{admin_port}");
    let args = [
        "run",
        "--node",
        node,
        "--config-dir",
        dir.to_str().unwrap(),
        "--admin",
        &admin,
    ];
    Proc::spawn("meshd", &args, log_dir)
}

/// `GET url` from configsrv's API, as JSON.
pub async fn get_json(url: &str) -> Result<Value, String> {
    let resp = reqwest::get(url).await.map_err(|e| e.to_string())?;
    let body = resp.text().await.map_err(|e| e.to_string())?;
    serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))
}

/// One series of configsrv's `/metrics` (none when absent).
pub async fn configsrv_metric(api: SocketAddr, series: &str) -> Option<f64> {
    let body = reqwest::get(format!("http://{api}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
}
