//! The fault soak (issue 13): the Marathon simulator, `configsrv serve`
//! following it, three meshd on 127.0.0.201-203 long-polling configsrv, and
//! backends on the task addresses 127.0.201.N; HTTP/1.1, HTTP/2, TCP and
//! WebSocket load from allowed sources and a prober from a denied one;
//! faults injected in an order drawn from a printed seed. At the end it
//! prints what was sent and failed, the fault that explains each failure,
//! meshd's RSS over time and descriptors, and the invariants checked; it
//! exits 1 when an invariant broke, a failure is unexplained, or RSS or
//! descriptors grew past their bound.
//!
//! `soak [--duration 10m] [--seed N]`; `ops/soak/run` builds and runs it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test support fails loudly by design

#[path = "soak/faults.rs"]
mod faults;
#[path = "soak/load.rs"]
mod load;
#[path = "soak/watch.rs"]
mod watch;

use palisade_tests::harness::{free_port, status, Proc, Scratch};
use palisade_tests::marathon_sim::MarathonSim;
use serde_json::json;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use watch::{Fleet, NodeView};

/// The meshd nodes (Marathon's agents), on addresses no test uses.
pub const NODES: [&str; 3] = ["127.0.0.201", "127.0.0.202", "127.0.0.203"];
/// Service ports.
pub const WEB_PORT: u16 = 25101;
/// The TCP app's service port.
pub const TCP_PORT: u16 = 25102;
/// The apps: id, service port, HTTP (else TCP) backends.
pub const APPS: [(&str, u16, bool); 2] = [
    ("/soak/web", WEB_PORT, true),
    ("/soak/tcp", TCP_PORT, false),
];

/// A failure is explained by a fault active from this long before it...
const BEFORE: Duration = Duration::from_secs(1);
/// ...to this long after the fault ended (a client step may take 3 s).
const AFTER: Duration = Duration::from_secs(5);
/// No fault starts in the last stretch: the mesh must settle by the end.
const QUIET_END: Duration = Duration::from_secs(8);
/// Tasks the simulator may start (addresses 127.0.201.1-254).
const MAX_LAUNCHED: usize = 230;

const USAGE: &str = "usage: soak [--duration 10m] [--seed N] [--faults F,..]

Runs the palisade fault soak on 127.0.0.0/8 for DURATION (ms, s, m or h;
default 10m) with faults drawn from seed N (default: from the clock; printed).
--faults keeps only the named faults (to chase one); the names are printed
with each fault and listed in the report. On failure every process's log is
copied to target/soak-logs/<seed>/.
Exits 0 when every invariant held, every failed request is explained by a
fault, and meshd's RSS and descriptors stayed bounded; 1 otherwise.";

/// The good policy: default deny, both apps reachable from 127.0.202.0/24.
pub fn policy(balance: &str) -> String {
    format!(
        "apiVersion: palisade/v1\nkind: Policy\ndefaults:\n  action: deny\n  mode: enforce\napps:\n  /soak/web:\n    protocol: http\n    balance: {balance}\n    allow:\n      - from_cidr: 127.0.202.0/24\n  /soak/tcp:\n    protocol: tcp\n    allow:\n      - from_cidr: 127.0.202.0/24\n"
    )
}

/// splitmix64: small, seedable, enough to pick faults.
pub struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// One fault as it happened.
#[derive(Debug, Clone)]
pub struct FaultRecord {
    name: &'static str,
    what: String,
    start: Duration,
    end: Duration,
}

/// State the load, the watcher and the driver share.
pub struct Shared {
    started: Instant,
    stop: AtomicBool,
    /// Set once warm-up is over: from then on every app must stay served.
    warm: AtomicBool,
    sent: Mutex<BTreeMap<&'static str, (u64, u64)>>,
    failures: Mutex<Vec<(Duration, &'static str, usize, String)>>,
    breaches: Mutex<BTreeMap<String, (u64, Duration)>>,
    denied_probes: AtomicU64,
    views: Mutex<Vec<NodeView>>,
    rss: Mutex<Vec<(Duration, Vec<u64>)>>,
}

impl Shared {
    /// Counts one client step; keeps failures with their time.
    pub fn record(&self, kind: &'static str, node: usize, result: Result<(), String>) {
        let mut sent = self.sent.lock().unwrap();
        let e = sent.entry(kind).or_default();
        e.0 += 1;
        if let Err(err) = result {
            e.1 += 1;
            self.failures
                .lock()
                .unwrap()
                .push((self.started.elapsed(), kind, node, err));
        }
    }

    /// Records an invariant breach (repeats are counted, not repeated).
    pub fn breach(&self, what: String) {
        let at = self.started.elapsed();
        let mut b = self.breaches.lock().unwrap();
        let e = b.entry(what.clone()).or_insert((0, at));
        e.0 += 1;
        if e.0 == 1 {
            eprintln!("[{:7.1}s] BREACH {what}", at.as_secs_f64());
        }
    }
}

/// The processes and files of one soak.
pub struct Soak {
    /// First: unmounted before the scratch directory is removed.
    _mount: Option<Mount>,
    dir: Scratch,
    sim: MarathonSim,
    api: SocketAddr,
    configsrv: Mutex<Proc>,
    spawn_configsrv: Box<dyn Fn() -> Proc + Send + Sync>,
    fleet: Mutex<Fleet>,
    balance: Mutex<&'static str>,
    tmpfs: Option<PathBuf>,
    admins: Vec<SocketAddr>,
    launched: AtomicUsize,
}

/// The tmpfs under the meshd caches; unmounted on drop.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

fn parse_duration(s: &str) -> Option<Duration> {
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    Some(match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return None,
    })
}

/// What the command line asks for.
struct Args {
    duration: Duration,
    seed: u64,
    /// The faults to draw from: all, or those `--faults` names.
    faults: Vec<&'static str>,
}

fn args() -> Result<Args, String> {
    let mut faults = faults::FAULTS.to_vec();
    let mut duration = Duration::from_secs(600);
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64 % 1_000_000_007);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "--duration" => {
                let v = it.next().ok_or("--duration needs a value")?;
                duration = parse_duration(&v).ok_or(format!("bad duration {v:?}"))?;
            }
            "--seed" => {
                let v = it.next().ok_or("--seed needs a value")?;
                seed = v.parse().map_err(|_| format!("bad seed {v:?}"))?;
            }
            "--faults" => {
                let v = it.next().ok_or("--faults needs a value")?;
                faults = v
                    .split(',')
                    .map(|name| {
                        faults::FAULTS
                            .iter()
                            .copied()
                            .find(|f| *f == name.trim())
                            .ok_or(format!(
                                "unknown fault {name:?}; known: {:?}",
                                faults::FAULTS
                            ))
                    })
                    .collect::<Result<_, _>>()?;
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if duration < Duration::from_secs(30) {
        return Err("--duration must be at least 30s (warm-up and settling take 20s)".into());
    }
    Ok(Args {
        duration,
        seed,
        faults,
    })
}

fn main() {
    let args = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("soak: {e}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ok = rt.block_on(run(args));
    rt.shutdown_timeout(Duration::from_secs(2));
    std::process::exit(if ok { 0 } else { 1 });
}

async fn post_app(sim: &MarathonSim, id: &str, port: u16) {
    let def = json!({
        "id": id, "instances": 2, "cpus": 0.1, "mem": 32, "labels": {}, "healthChecks": [],
        "networks": [{"mode": "container", "name": "soak"}],
        "container": {"type": "DOCKER", "docker": {"image": "soak/echo:1"},
            "portMappings": [{"containerPort": 8080, "servicePort": port, "protocol": "tcp"}]}
    });
    let r = reqwest::Client::new()
        .post(format!("{}/v2/apps", sim.url))
        .json(&def)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "posting {id}");
}

async fn run(args: Args) -> bool {
    let Args {
        duration,
        seed,
        faults: chosen,
    } = args;
    println!("soak: seed {seed}, duration {duration:?} (rerun: ops/soak/run --duration {}s --seed {seed})", duration.as_secs());
    let dir = Scratch::new("soak");
    dir.write("policies/soak.yaml", &policy("round_robin"));
    let cache = dir.path("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let mount = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "soak-cache"])
        .arg(&cache)
        .status();
    let (mount, tmpfs) = match mount {
        Ok(s) if s.success() => (Some(Mount(cache.clone())), Some(cache.clone())),
        other => {
            println!("soak: cache-full fault SKIPPED: cannot mount a tmpfs on {} ({other:?}); run as root to include it", cache.display());
            (None, None)
        }
    };

    let sim = MarathonSim::start("127.0.0.1:0", &NODES, [127, 0, 201]).await;
    for (id, port, _) in APPS {
        post_app(&sim, id, port).await;
    }
    let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let spawn_configsrv = {
        let (url, policies, log) = (sim.url.clone(), dir.path("policies"), dir.0.clone());
        move || {
            Proc::spawn(
                "configsrv",
                &[
                    "serve",
                    "--marathon",
                    &url,
                    "--policies",
                    policies.to_str().unwrap(),
                    "--listen",
                    &api.to_string(),
                    "--resync-interval",
                    "1s",
                    "--marathon-timeout",
                    "500ms",
                ],
                &log,
            )
        }
    };
    let admins: Vec<SocketAddr> = NODES
        .iter()
        .map(|_| format!("127.0.0.1:{}", free_port()).parse().unwrap())
        .collect();
    let soak = Arc::new(Soak {
        admins: admins.clone(),
        _mount: mount,
        configsrv: Mutex::new(spawn_configsrv()),
        spawn_configsrv: Box::new(spawn_configsrv),
        dir,
        sim,
        api,
        fleet: Mutex::new(Fleet::default()),
        balance: Mutex::new("round_robin"),
        tmpfs,
        launched: AtomicUsize::new(4),
    });
    Fleet::reconcile(&soak.fleet, &soak.sim).await;

    let mut procs = Vec::new();
    let url = format!("http://{api}");
    for (node, admin) in NODES.iter().zip(admins.clone()) {
        let node_cache = cache.join(node);
        std::fs::create_dir_all(&node_cache).unwrap();
        procs.push(Proc::spawn(
            "meshd",
            &[
                "run",
                "--node",
                node,
                "--config-url",
                &url,
                "--cache-dir",
                node_cache.to_str().unwrap(),
                "--admin",
                &admin.to_string(),
            ],
            &soak.dir.0,
        ));
    }
    let meshd = Arc::new(Mutex::new(procs));
    let shared = Arc::new(Shared {
        started: Instant::now(),
        stop: AtomicBool::new(false),
        warm: AtomicBool::new(false),
        sent: Mutex::default(),
        failures: Mutex::default(),
        breaches: Mutex::default(),
        denied_probes: AtomicU64::new(0),
        views: Mutex::new(vec![NodeView::default(); NODES.len()]),
        rss: Mutex::default(),
    });

    // Ready: every node serves both apps with backends.
    let ready_by = Instant::now() + Duration::from_secs(60);
    loop {
        let mut ready = 0;
        for a in &admins {
            if let Ok(s) = status(*a).await {
                let n = s["services"].as_array().map_or(0, |v| {
                    v.iter()
                        .filter(|svc| svc["backends"].as_array().is_some_and(|b| !b.is_empty()))
                        .count()
                });
                ready += usize::from(n == APPS.len());
            }
        }
        if ready == NODES.len() {
            break;
        }
        if Instant::now() > ready_by {
            eprintln!("soak: the mesh did not come up within 60s");
            for p in meshd.lock().unwrap().iter() {
                eprintln!("----- {} -----\n{}", p.name, p.stderr());
            }
            eprintln!(
                "----- configsrv -----\n{}",
                soak.configsrv.lock().unwrap().stderr()
            );
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "soak: mesh up in {:.1}s; load and faults start",
        shared.started.elapsed().as_secs_f64()
    );
    let shared_start = Instant::now();

    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(watch::watcher(
        Arc::clone(&shared),
        Arc::clone(&meshd),
        admins.clone(),
    )));
    for k in 0..load::KINDS.len() {
        tasks.push(tokio::spawn(load::client(Arc::clone(&shared), k)));
    }
    tasks.push(tokio::spawn(load::denied_prober(Arc::clone(&shared))));
    tasks.push(tokio::spawn({
        let (soak, shared) = (Arc::clone(&soak), Arc::clone(&shared));
        async move {
            while !shared.stop.load(Ordering::Relaxed) {
                Fleet::reconcile(&soak.fleet, &soak.sim).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }));

    // Warm-up: load only, then the baseline for RSS and descriptors.
    tokio::time::sleep(Duration::from_secs(10)).await;
    shared.warm.store(true, Ordering::Relaxed);
    let pids: Vec<u32> = meshd.lock().unwrap().iter().map(Proc::pid).collect();
    let rss_warm: Vec<u64> = pids
        .iter()
        .map(|p| watch::rss_kib(*p).unwrap_or(0))
        .collect();
    let fds_before: Vec<usize> = pids.iter().map(|p| watch::fds(*p).unwrap_or(0)).collect();

    // The driver.
    let mut rng = Rng(seed);
    let mut record: Vec<FaultRecord> = Vec::new();
    let end = shared_start + duration;
    // Rounds of every fault in a shuffled order: a short run still sees each.
    let mut round: Vec<&'static str> = Vec::new();
    while Instant::now() + QUIET_END < end {
        if round.is_empty() {
            round = chosen.clone();
            for i in (1..round.len()).rev() {
                round.swap(i, rng.below(i as u64 + 1) as usize);
            }
        }
        let mut name = round.pop().unwrap();
        if name == "cache-full" && soak.tmpfs.is_none() {
            continue;
        }
        if matches!(name, "scale" | "task-kill")
            && soak.launched.load(Ordering::Relaxed) > MAX_LAUNCHED
        {
            name = "backend-kill";
        }
        let start = shared.started.elapsed();
        let what = faults::inject(&soak, &shared, &mut rng, name).await;
        let stop = shared.started.elapsed();
        println!(
            "[{:7.1}s] fault {name}: {what} ({:.1}s)",
            start.as_secs_f64(),
            (stop - start).as_secs_f64()
        );
        record.push(FaultRecord {
            name,
            what,
            start,
            end: stop,
        });
        let pause = Duration::from_millis(300 + rng.below(1700));
        tokio::time::sleep(pause.min(end.saturating_duration_since(Instant::now()))).await;
    }
    tokio::time::sleep(end.saturating_duration_since(Instant::now())).await;
    shared.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    // Let client connections close before counting descriptors.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let fds_after: Vec<usize> = pids.iter().map(|p| watch::fds(*p).unwrap_or(0)).collect();
    let rss_end: Vec<u64> = pids
        .iter()
        .map(|p| watch::rss_kib(*p).unwrap_or(0))
        .collect();
    let alive: Vec<bool> = meshd
        .lock()
        .unwrap()
        .iter_mut()
        .map(Proc::running)
        .collect();

    // Invariant 4: a whole config in every cache file, the one running.
    for (node, admin) in NODES.iter().zip(&admins) {
        let path = cache.join(node).join(format!("{node}.yaml"));
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                match schemas::parse_node_config(&path.display().to_string(), &text) {
                    Err(e) => {
                        shared.breach(format!("I4 the cache file of {node} does not parse: {e:?}"))
                    }
                    Ok(c) => {
                        let running = status(*admin).await.map(|s| s["generation"].as_u64());
                        if running != Ok(Some(c.generation.0)) {
                            shared.breach(format!("I4 the cache of {node} holds generation {} but meshd runs {running:?}", c.generation.0));
                        }
                    }
                }
            }
            Err(e) => shared.breach(format!("I4 no cache file for {node}: {e}")),
        }
    }
    let ok = report(
        &shared,
        &record,
        Report {
            pids,
            rss_warm,
            rss_end,
            fds_before,
            fds_after,
            alive,
        },
    );
    if !ok {
        keep_logs(&soak.dir.0, seed);
    }
    ok
}

struct Report {
    pids: Vec<u32>,
    rss_warm: Vec<u64>,
    rss_end: Vec<u64>,
    fds_before: Vec<usize>,
    fds_after: Vec<usize>,
    alive: Vec<bool>,
}

fn report(shared: &Shared, record: &[FaultRecord], r: Report) -> bool {
    let mut ok = true;
    println!("\n==== soak report ====");
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for f in record {
        *counts.entry(f.name).or_default() += 1;
    }
    println!("faults injected: {} {counts:?}", record.len());
    let sent = shared.sent.lock().unwrap();
    let (total, failed) = sent.values().fold((0, 0), |(a, b), (s, f)| (a + s, b + f));
    println!("requests sent: {total}, failed: {failed}");
    for (kind, (s, f)) in sent.iter() {
        println!("  {kind:<10} sent {s:>7}  failed {f:>5}");
    }
    println!(
        "denied-source probes: {} (every one refused unless a breach says otherwise)",
        shared.denied_probes.load(Ordering::Relaxed)
    );
    let failures = shared.failures.lock().unwrap();
    let mut by_fault: BTreeMap<String, (usize, String)> = BTreeMap::new();
    let mut unexplained = Vec::new();
    for (at, kind, node, err) in failures.iter() {
        let cause = record
            .iter()
            .filter(|f| f.start.saturating_sub(BEFORE) <= *at && *at <= f.end + AFTER)
            .max_by_key(|f| f.start);
        match cause {
            Some(f) => {
                let e = by_fault
                    .entry(format!(
                        "{:7.1}s {} ({})",
                        f.start.as_secs_f64(),
                        f.name,
                        f.what
                    ))
                    .or_insert((0, String::new()));
                e.0 += 1;
                if e.1.is_empty() {
                    e.1 = format!("{kind} via {}: {err}", NODES[*node]);
                }
            }
            None => unexplained.push(format!(
                "{:7.1}s {kind} via {}: {err}",
                at.as_secs_f64(),
                NODES[*node]
            )),
        }
    }
    if !by_fault.is_empty() {
        println!("failures explained by a fault (start, fault, count, first):");
        for (f, (n, first)) in &by_fault {
            println!("  {f}: {n} failed, first: {first}");
        }
    }
    if !unexplained.is_empty() {
        ok = false;
        println!(
            "UNEXPLAINED failures (no fault within {BEFORE:?} before / {AFTER:?} after): {}",
            unexplained.len()
        );
        for u in unexplained.iter().take(30) {
            println!("  {u}");
        }
    }

    println!("meshd RSS (KiB) over time, nodes {NODES:?}:");
    let rss = shared.rss.lock().unwrap();
    let step = (rss.len() / 20).max(1);
    for (at, row) in rss.iter().step_by(step) {
        println!("  {:7.1}s {row:?}", at.as_secs_f64());
    }
    println!("  end      {:?}", r.rss_end);
    for (i, node) in NODES.iter().enumerate() {
        let bound = 2 * r.rss_warm[i] + 20 * 1024;
        let rss_ok = r.rss_end[i] <= bound;
        let fd_bound = r.fds_before[i] + 50;
        let fd_ok = r.fds_after[i] <= fd_bound;
        ok &= rss_ok && fd_ok;
        println!(
            "meshd {node} (pid {}): RSS warm {} KiB -> end {} KiB (bound 2x+20 MiB = {bound}) {}; fds {} -> {} (bound +50 = {fd_bound}) {}",
            r.pids[i], r.rss_warm[i], r.rss_end[i], if rss_ok { "ok" } else { "GREW" },
            r.fds_before[i], r.fds_after[i], if fd_ok { "ok" } else { "GREW" },
        );
    }

    let breaches = shared.breaches.lock().unwrap();
    let has = |prefix: &str| breaches.keys().filter(|k| k.contains(prefix)).count();
    let checks = [
        ("I1 a failed/partial/hung Marathon read never empties a node config (every app served throughout)", has("I1/I2")),
        ("I2 an invalid policy is refused, reported stale, and the last good config keeps running", has("I2 ")),
        ("I3 every service keeps its listener through reloads", has("I3 ")),
        ("I4 cache files are whole configs after the disk-full fault", has("I4 ")),
        ("I5 a denied source never gets through (HTTP 403, TCP closed)", has("I5 ")),
        ("I10 no meshd process died", has("I10 ") + r.alive.iter().filter(|a| !**a).count()),
        ("the generation a meshd runs never goes backwards", has("generation went backwards")),
        ("valid policy edits reach every meshd; configsrv restarts cleanly", has("valid policy edit") + has("configsrv ") + has("restored policy")),
    ];
    println!("invariants:");
    for (what, n) in checks {
        ok &= n == 0;
        println!("  [{}] {what}", if n == 0 { "ok" } else { "BROKEN" });
    }
    for (what, (n, at)) in breaches.iter() {
        println!("  breach at {:.1}s (x{n}): {what}", at.as_secs_f64());
    }
    ok &= breaches.is_empty();
    println!("soak: {}", if ok { "PASS" } else { "FAIL" });
    ok
}

/// Copies every process's log out of the scratch directory, which is
/// removed on exit, so a failed run can be read afterwards.
fn keep_logs(scratch: &std::path::Path, seed: u64) {
    let to = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/soak-logs")
        .join(seed.to_string());
    let _ = std::fs::create_dir_all(&to);
    let Ok(entries) = std::fs::read_dir(scratch) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().is_some_and(|x| x == "log") {
            let _ = std::fs::copy(&path, to.join(e.file_name()));
        }
    }
    println!("soak: logs kept in {}", to.display());
}
