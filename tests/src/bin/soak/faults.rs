//! The fault driver: from the seed, in random order, one fault at a time,
//! each recorded with its start and end so that failures can be explained.

use crate::watch::Fleet;
use crate::{policy, Rng, Shared, Soak, APPS, NODES};
use palisade_tests::harness::admin_get;
use palisade_tests::marathon_sim::Fault;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Every fault the driver knows; `cache-full` only with the tmpfs mounted.
pub const FAULTS: [&str; 10] = [
    "backend-kill",
    "scale",
    "task-kill",
    "marathon-500",
    "marathon-hang",
    "marathon-truncate",
    "configsrv-restart",
    "policy-rewrite",
    "policy-invalid",
    "cache-full",
];

/// Policy files that configsrv must refuse, keeping the last good policy.
const INVALID: [(&str, &str); 5] = [
    ("soak.yaml", "apiVersion: palisade/v1\nkind: Policy\napps:\n  /soak/web: [\n"),
    ("soak.yaml", "apiVersion: palisade/v1\nkind: Policy\ndefaults:\n  action: deny\napps:\n  /soak/web:\n    protocl: http\n  /soak/tcp:\n    protocol: tcp\n    allow:\n      - from_cidr: 127.0.202.0/24\n"),
    ("zz-extra.yaml", "apiVersion: palisade/v1\nkind: Policy\ndefaults:\n  action: allow\n"),
    ("zz-extra.yaml", "apiVersion: palisade/v1\nkind: Policy\napps:\n  /soak/tcp:\n    allow:\n      - from_cidr: 127.0.0.0/8\n"),
    ("zz-extra.yaml", "apiVersion: palisade/v1\nkind: Policy\napps:\n  /soak/other:\n    timeouts: { connect: 0s }\n"),
];

const CACHE_FAILURES: &str = "palisade_meshd_config_cache_write_failures_total";

const BALANCES: [&str; 3] = ["round_robin", "least_request", "p2c_ewma"];

/// configsrv's `/v1/status`.
async fn configsrv_status(soak: &Soak) -> Result<Value, String> {
    let (_, body) = admin_get(soak.api, "/v1/status").await?;
    serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))
}

async fn policy_stale(soak: &Soak, want: bool, within: Duration) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if let Ok(s) = configsrv_status(soak).await {
            if s["sources"]["policy"]["stale"].as_bool() == Some(want) {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Waits until every meshd serves `/soak/web` with `balance`.
async fn balance_applied(shared: &Shared, balance: &str, within: Duration) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        let all = shared
            .views
            .lock()
            .unwrap()
            .iter()
            .all(|v| v.balance.get(APPS[0].0).map(String::as_str) == Some(balance));
        if all {
            return true;
        }
        if Instant::now() + Duration::from_millis(100) >= end {
            let behind: Vec<String> = shared
                .views
                .lock()
                .unwrap()
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    format!(
                        "{} {:?} gen {}{}",
                        NODES[i],
                        v.balance.get(APPS[0].0),
                        v.generation,
                        v.sample_error
                            .as_ref()
                            .map(|e| format!(" (last failed sample {e})"))
                            .unwrap_or_default()
                    )
                })
                .collect();
            eprintln!("soak: balance {balance} not everywhere: {behind:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn scale(soak: &Soak, app: &str, instances: usize) {
    let r = reqwest::Client::new()
        .put(format!("{}/v2/apps{app}", soak.sim.url))
        .json(&json!({ "instances": instances }))
        .send()
        .await;
    if let Err(e) = r {
        eprintln!("soak: scaling {app}: {e}");
    }
}

/// Writes the good policy with `balance` and waits until every node runs it.
async fn rewrite_policy(soak: &Soak, shared: &Shared, balance: &'static str) {
    *soak.balance.lock().unwrap() = balance;
    soak.dir.write("policies/soak.yaml", &policy(balance));
    if !balance_applied(shared, balance, Duration::from_secs(8)).await {
        shared.breach(format!(
            "a valid policy edit (balance {balance}) did not reach every meshd in 8s"
        ));
    }
}

/// Applies one fault; returns what it did, for the log.
pub async fn inject(soak: &Soak, shared: &Arc<Shared>, rng: &mut Rng, name: &str) -> String {
    match name {
        "backend-kill" => {
            let down = Duration::from_millis(1000 + rng.below(2000));
            let task = soak
                .fleet
                .lock()
                .unwrap()
                .kill(|n| rng.below(n as u64) as usize, Instant::now() + down);
            tokio::time::sleep(down).await;
            Fleet::reconcile(&soak.fleet, &soak.sim).await;
            format!("{task:?} down for {down:?}")
        }
        "scale" => {
            let (app, _, _) = APPS[rng.below(2) as usize];
            let from = soak.sim.tasks(app).len();
            let to = 1 + rng.below(3) as usize;
            soak.launched
                .fetch_add(to.saturating_sub(from), Ordering::Relaxed);
            scale(soak, app, to).await;
            tokio::time::sleep(Duration::from_millis(1500)).await;
            format!("{app} {from} -> {to}")
        }
        "task-kill" => {
            let (app, _, _) = APPS[rng.below(2) as usize];
            let tasks = soak.sim.tasks(app);
            if tasks.len() < 2 {
                scale(soak, app, 2).await;
                soak.launched.fetch_add(1, Ordering::Relaxed);
                return format!("{app} had one task: scaled to 2 instead");
            }
            let (task, _, _) = tasks[rng.below(tasks.len() as u64) as usize].clone();
            soak.sim
                .kill_task(app, &task, Duration::from_millis(1000))
                .await;
            // Marathon replaces a killed task.
            scale(soak, app, tasks.len()).await;
            soak.launched.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(1000)).await;
            format!("{app} {task} (TASK_KILLING, killed after 1s, replaced)")
        }
        "marathon-500" | "marathon-hang" | "marathon-truncate" => {
            let fault = match name {
                "marathon-500" => Fault::ServerError,
                "marathon-hang" => Fault::Hang,
                _ => Fault::Truncated,
            };
            let hold = Duration::from_millis(2000 + rng.below(2000));
            soak.sim.set_fault(fault);
            tokio::time::sleep(hold).await;
            soak.sim.set_fault(Fault::None);
            tokio::time::sleep(Duration::from_millis(1000)).await;
            format!("held {hold:?}")
        }
        "configsrv-restart" => {
            let code = soak
                .configsrv
                .lock()
                .unwrap()
                .terminate(Duration::from_secs(10));
            if code != Some(0) {
                shared.breach(format!(
                    "configsrv did not exit cleanly on SIGTERM: {code:?}"
                ));
            }
            let gap = Duration::from_millis(500 + rng.below(1500));
            tokio::time::sleep(gap).await;
            *soak.configsrv.lock().unwrap() = (soak.spawn_configsrv)();
            let end = Instant::now() + Duration::from_secs(10);
            while configsrv_status(soak).await.is_err() {
                if Instant::now() > end {
                    shared.breach("configsrv did not answer 10s after a restart".into());
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            tokio::time::sleep(Duration::from_millis(1000)).await;
            format!("down for {gap:?}")
        }
        "policy-rewrite" => {
            let now = *soak.balance.lock().unwrap();
            let next = BALANCES
                .iter()
                .copied()
                .filter(|b| *b != now)
                .nth(rng.below(2) as usize)
                .unwrap();
            rewrite_policy(soak, shared, next).await;
            format!("balance {now} -> {next}")
        }
        "policy-invalid" => {
            let (file, body) = INVALID[rng.below(INVALID.len() as u64) as usize];
            let good = *soak.balance.lock().unwrap();
            // Settled first: no generation moved for a second (earlier renders are done).
            let mut before: Vec<u64> = Vec::new();
            for _ in 0..50 {
                let now: Vec<u64> = shared
                    .views
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|v| v.generation)
                    .collect();
                if now == before {
                    break;
                }
                before = now;
                tokio::time::sleep(Duration::from_millis(1000)).await;
            }
            soak.dir.write(&format!("policies/{file}"), body);
            if !policy_stale(soak, true, Duration::from_secs(5)).await {
                shared.breach(format!(
                    "I2 invalid policy {file} not reported stale by configsrv within 5s: {body:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(1000)).await;
            // The last good policy still runs everywhere, unchanged.
            let views = shared.views.lock().unwrap().clone();
            for (i, v) in views.iter().enumerate() {
                if v.generation != before[i] {
                    shared.breach(format!(
                        "I2 {} moved from generation {} to {} while only an invalid policy changed",
                        NODES[i], before[i], v.generation
                    ));
                }
                if v.balance.get(APPS[0].0).map(String::as_str) != Some(good) {
                    shared.breach(format!(
                        "I2 {} no longer runs the last good policy: {:?}",
                        NODES[i], v.balance
                    ));
                }
            }
            if file == "soak.yaml" {
                soak.dir.write("policies/soak.yaml", &policy(good));
            } else {
                let _ = std::fs::remove_file(soak.dir.path(&format!("policies/{file}")));
            }
            if !policy_stale(soak, false, Duration::from_secs(5)).await {
                shared.breach("the restored policy was not taken within 5s".into());
            }
            format!("{file}: {:?}", body.lines().last().unwrap_or_default())
        }
        "cache-full" => {
            let Some(cache) = &soak.tmpfs else {
                return "skipped: no tmpfs".into();
            };
            let failures = |soak: &Soak| {
                let admins = soak.admins.clone();
                async move {
                    let mut n = 0.0;
                    for a in admins {
                        // Not `harness::metric`: a dead meshd must not stop the report.
                        let body = admin_get(a, "/metrics")
                            .await
                            .map(|(_, b)| b)
                            .unwrap_or_default();
                        n += body
                            .lines()
                            .find_map(|l| {
                                l.strip_prefix(CACHE_FAILURES)?.trim().parse::<f64>().ok()
                            })
                            .unwrap_or(0.0);
                    }
                    n
                }
            };
            let failed_before = failures(soak).await;
            let filler = cache.join("filler");
            let written = fill(&filler);
            // A config change now: every meshd applies it, then fails to cache it.
            let now = *soak.balance.lock().unwrap();
            let next = BALANCES.iter().copied().find(|b| *b != now).unwrap();
            rewrite_policy(soak, shared, next).await;
            tokio::time::sleep(Duration::from_millis(1000)).await;
            let failed = failures(soak).await - failed_before;
            let _ = std::fs::remove_file(&filler);
            // And another, cached again.
            rewrite_policy(soak, shared, now).await;
            format!("filled with {written} bytes; balance {now} -> {next} -> {now}; cache writes refused meanwhile: {failed}")
        }
        other => format!("unknown fault {other}"),
    }
}

/// Writes zeros into `path` until the filesystem is full; returns the bytes written.
fn fill(path: &std::path::Path) -> u64 {
    use std::io::Write;
    let Ok(mut f) = std::fs::File::create(path) else {
        return 0;
    };
    let chunk = vec![0u8; 64 * 1024];
    let mut n = 0u64;
    while f.write_all(&chunk).is_ok() {
        n += chunk.len() as u64;
    }
    // Fill the last partial chunk's worth too.
    while f.write_all(&[0u8; 512]).is_ok() {
        n += 512;
    }
    let _ = f.flush();
    n
}
