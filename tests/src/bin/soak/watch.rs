//! What runs beside the load: the backends that follow the simulator's
//! tasks (as Mesos would start them), and the watcher that samples every
//! meshd's `/status`, RSS and descriptors and records invariant breaches.

use crate::{Shared, APPS, NODES};
use palisade_tests::backends::{self, Backend};
use palisade_tests::harness::{status, Proc};
use palisade_tests::marathon_sim::MarathonSim;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The task processes: one backend per simulator task, on its own address.
#[derive(Default)]
pub struct Fleet {
    running: BTreeMap<String, Backend>,
    /// Tasks whose backend is killed until then (a crashed process).
    down: BTreeMap<String, Instant>,
    /// Backends of tasks Marathon no longer lists, stopped a moment later.
    leaving: Vec<(Instant, Backend)>,
}

impl Fleet {
    /// Starts backends for new tasks, stops those of tasks gone a second ago.
    pub async fn reconcile(fleet: &Mutex<Fleet>, sim: &MarathonSim) {
        let mut want = BTreeMap::new();
        for (app, _, http) in APPS {
            for (task, _, ip) in sim.tasks(app) {
                want.insert(task, (ip, http));
            }
        }
        let now = Instant::now();
        let to_start: Vec<(String, String, bool)> = {
            let mut f = fleet.lock().unwrap();
            f.down.retain(|_, until| *until > now);
            let gone: Vec<String> = f
                .running
                .keys()
                .filter(|t| !want.contains_key(*t))
                .cloned()
                .collect();
            for t in gone {
                if let Some(b) = f.running.remove(&t) {
                    f.leaving.push((now + Duration::from_secs(1), b));
                }
            }
            f.leaving.retain(|(at, _)| *at > now);
            want.iter()
                .filter(|(t, _)| !f.running.contains_key(*t) && !f.down.contains_key(*t))
                .map(|(t, (ip, http))| (t.clone(), ip.clone(), *http))
                .collect()
        };
        for (task, ip, http) in to_start {
            let addr = format!("{ip}:8080");
            let (a, n) = (addr.clone(), task.clone());
            // Binding panics on failure; a task keeps that from stopping the soak.
            let started = tokio::spawn(async move {
                if http {
                    backends::http(&a, &n).await
                } else {
                    backends::tcp(&a, &n).await
                }
            })
            .await;
            match started {
                Ok(b) => {
                    fleet.lock().unwrap().running.insert(task, b);
                }
                Err(e) => eprintln!("soak: backend {task} at {addr} did not start: {e}"),
            }
        }
    }

    /// Kills one running backend (picked by `pick` among `n`) until `until`;
    /// returns its task id.
    pub fn kill(&mut self, pick: impl FnOnce(usize) -> usize, until: Instant) -> Option<String> {
        let n = self.running.len();
        if n == 0 {
            return None;
        }
        let task = self.running.keys().nth(pick(n))?.clone();
        self.running.remove(&task);
        self.down.insert(task.clone(), until);
        Some(task)
    }
}

/// RSS of a process in KiB, from `/proc/<pid>/status`.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Open descriptors of a process, from `/proc/<pid>/fd`.
pub fn fds(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// One node's last view, for the invariants over time.
#[derive(Default, Clone)]
pub struct NodeView {
    /// Highest generation seen.
    pub generation: u64,
    /// Apps served at the last sample.
    pub apps: BTreeSet<String>,
    /// `balance` of each app at the last sample.
    pub balance: BTreeMap<String, String>,
    /// Why the last sample failed, if it did: a lagging node's view is
    /// only as fresh as its last good sample, so a report must say so.
    pub sample_error: Option<String>,
}

/// Samples every meshd until `shared.stop`: process alive, generation
/// never backwards, every app still served and listening; RSS every 5 s.
pub async fn watcher(shared: Arc<Shared>, meshd: Arc<Mutex<Vec<Proc>>>, admins: Vec<SocketAddr>) {
    let mut last_rss = Instant::now() - Duration::from_secs(60);
    let mut dead = BTreeSet::new();
    while !shared.stop.load(Ordering::Relaxed) {
        let pids: Vec<(u32, bool)> = meshd
            .lock()
            .unwrap()
            .iter_mut()
            .map(|p| (p.pid(), p.running()))
            .collect();
        for (i, (_, alive)) in pids.iter().enumerate() {
            if !alive && dead.insert(i) {
                shared.breach(format!("I10 meshd {} died", NODES[i]));
            }
        }
        if last_rss.elapsed() >= Duration::from_secs(5) {
            last_rss = Instant::now();
            let row = pids.iter().map(|(p, _)| rss_kib(*p).unwrap_or(0)).collect();
            shared
                .rss
                .lock()
                .unwrap()
                .push((shared.started.elapsed(), row));
        }
        for (i, admin) in admins.iter().enumerate() {
            let s = match status(*admin).await {
                Ok(s) => s,
                Err(e) => {
                    let at = shared.started.elapsed().as_secs_f64();
                    shared.views.lock().unwrap()[i].sample_error =
                        Some(format!("at {at:.1}s: {e:.200}"));
                    continue;
                }
            };
            let g = s["generation"].as_u64().unwrap_or(0);
            let mut view = NodeView {
                generation: g,
                ..NodeView::default()
            };
            for svc in s["services"].as_array().into_iter().flatten() {
                let app = svc["app"].as_str().unwrap_or_default().to_owned();
                if svc["listening"] != true {
                    shared.breach(format!(
                        "I3 {} does not listen for {app}: {}",
                        NODES[i], svc["listen_error"]
                    ));
                }
                view.balance
                    .insert(app.clone(), svc["balance"].as_str().unwrap_or("").into());
                view.apps.insert(app);
            }
            let mut views = shared.views.lock().unwrap();
            let prev = &views[i];
            if g < prev.generation {
                let msg = format!(
                    "generation went backwards on {}: {} -> {g}",
                    NODES[i], prev.generation
                );
                drop(views);
                shared.breach(msg);
                continue;
            }
            if shared.warm.load(Ordering::Relaxed) {
                let missing: Vec<&str> = APPS
                    .iter()
                    .map(|(a, _, _)| *a)
                    .filter(|a| !view.apps.contains(*a))
                    .collect();
                if !missing.is_empty() {
                    let msg = format!(
                        "I1/I2 {} stopped serving {missing:?} at generation {g}",
                        NODES[i]
                    );
                    drop(views);
                    shared.breach(msg);
                    continue;
                }
            }
            views[i] = view;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
