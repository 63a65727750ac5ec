//! `meshd run`, read as the startup order: metrics, admin endpoint, config
//! watch, then the reload loop (watch -> load -> swap -> listeners) until
//! SIGTERM or Ctrl-C, then a graceful drain.

use crate::admin;
use crate::cli::RunArgs;
use crate::config::file::{stamp, FileWatch, Stamp, Wake, FULL_READ_EVERY};
use crate::config::load::{generation_ceiling, load, Loaded};
use crate::config::poll::{cache_path, write_cache, Channel, Update};
use crate::error::ReloadError;
use crate::listen::Listeners;
use crate::swap::Runtime;
use anyhow::Context;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use std::sync::Arc;

/// Runs meshd until it is told to stop.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".into()),
            crate::metrics::SECONDS_BUCKETS,
        )
        .context("configuring histogram buckets")?
        .build_recorder();
    let prometheus = recorder.handle();
    // meshd's own timings are `metrics::Timing`s, folded as they are
    // recorded; the buckets and the upkeep below serve any histogram
    // recorded through the facade. Those keep raw samples until upkeep
    // folds them into buckets;
    // without it memory grows with every request between scrapes. Folding
    // costs about 6 ns a sample: on a runtime thread, every 5 s at 89k
    // requests/s, it stalled every connection for 6 ms (docs/benchmarks.md).
    // Its own thread, once a second, leaves the proxy's threads alone.
    let upkeep = prometheus.clone();
    std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
            upkeep.run_upkeep();
        })
        .context("starting the metrics upkeep thread")?;
    metrics::set_global_recorder(recorder).context("installing the metrics recorder")?;

    let access_log = match &args.access_log {
        Some(path) => Some(
            crate::access_log::AccessLog::open(path)
                .with_context(|| format!("opening the access log {}", path.display()))?,
        ),
        None => None,
    };
    let mut runtime = Runtime::new(args.node.clone(), args.bind, access_log);
    runtime.trusted_forwarders = args.trust_forwarded.clone();
    let runtime = Arc::new(runtime);
    let admin_addr = admin::spawn(args.admin, Arc::clone(&runtime), prometheus)
        .await
        .with_context(|| format!("binding the admin endpoint on {}", args.admin))?;
    tracing::info!(node = %args.node, admin = %admin_addr, "meshd started");

    // With --config-url the cache directory is the config directory: the
    // watch below starts from the last cached config, and the poller hands
    // each new body straight to this loop, which applies it, then caches it.
    let mut updates = None;
    let config_dir = match (&args.config_dir, &args.config_url) {
        (Some(dir), _) => dir.clone(),
        (None, Some(url)) => {
            let token = match &args.config_token_file {
                Some(f) => Some(read_token(f)?),
                None => None,
            };
            let channel = Channel::new(
                url,
                &args.node,
                token,
                args.config_ca.as_deref(),
                args.config_max_bytes,
            )?;
            std::fs::create_dir_all(&args.cache_dir).with_context(|| {
                format!("creating the cache directory {}", args.cache_dir.display())
            })?;
            let cache = cache_path(&args.cache_dir, &args.node);
            tracing::info!(url = %channel.shown, cache = %cache.display(), "following configsrv");
            let channel_url = channel.shown.to_string();
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            tokio::spawn(crate::config::poll::follow(channel, tx));
            updates = Some(Follow {
                rx,
                cache,
                url: channel_url,
            });
            args.cache_dir.clone()
        }
        (None, None) => anyhow::bail!("give --config-dir or --config-url"),
    };
    anyhow::ensure!(
        config_dir.is_dir(),
        "config directory {} does not exist (configsrv writes <node>.yaml there)",
        config_dir.display()
    );
    let file_name = args.node.file_name();
    let mut watch = FileWatch::start(&config_dir, &file_name)
        .with_context(|| format!("watching {}", config_dir.display()))?;
    let mut listeners = Listeners::new(Arc::clone(&runtime), args.drain_deadline.0);
    if let Some(addr) = args.edge_http {
        listeners
            .bind_edge(addr, None, args.edge_max_connections)
            .with_context(|| format!("binding the HTTP edge on {addr}"))?;
    }
    if let Some(addr) = args.edge_https {
        let certs = Arc::new(crate::proxy::edge::EdgeCerts {
            runtime: Arc::clone(&runtime),
        });
        let acceptor = crate::tls::acceptor_with(certs);
        listeners
            .bind_edge(addr, Some(acceptor), args.edge_max_connections)
            .with_context(|| format!("binding the HTTPS edge on {addr}"))?;
    }
    let mut seen: Option<Seen> = None;
    let mut wake = Wake::Event;

    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        seen = refresh(&runtime, &watch.path, seen, wake).await;
        if let Some(snapshot) = runtime.load() {
            listeners.reconcile(&snapshot);
            // Swapped first, so no accepted connection finds its service
            // missing; reported only now, once the listeners are open.
            runtime.with_report(|r| r.listening_generation = Some(snapshot.generation().0));
        }
        tokio::select! {
            w = watch.changed() => wake = w,
            (update, cache, url) = next_update(&mut updates) => {
                apply_update(&runtime, update, cache, url).await;
                // Only our own cache write can have changed the file: its stamp tells.
                wake = Wake::Poll;
            }
            () = &mut shutdown => break,
        }
    }
    tracing::info!("stopping: no new connections");
    listeners.shutdown(args.drain_deadline.0).await;
    tracing::info!("stopped");
    Ok(())
}

/// One pass of the reload loop, steps 1-4 (read, load, compile, swap), on
/// the blocking pool: a 10,000-service node file takes about 120 ms to
/// parse and validate, and on a proxy thread every connection of that
/// thread would wait that long at every reload; so would the re-read every
/// poll. Returns what the next pass compares with.
async fn refresh(
    runtime: &Arc<Runtime>,
    path: &std::path::Path,
    seen: Option<Seen>,
    wake: Wake,
) -> Option<Seen> {
    let (runtime, path) = (Arc::clone(runtime), path.to_owned());
    match tokio::task::spawn_blocking(move || check_and_apply(&runtime, &path, seen, wake)).await {
        Ok(seen) => seen,
        Err(e) => {
            // A panic is a bug; the running snapshot stays, and the next
            // pass reads the file afresh.
            tracing::error!(error = %e, "reading the config failed");
            None
        }
    }
}

/// The file as last read.
#[derive(Debug)]
struct Seen {
    text: String,
    /// Taken just before that read.
    stamp: Option<Stamp>,
    /// Polls since then that trusted an unchanged stamp instead of reading.
    trusted_polls: u32,
}

/// A poll whose stamp matches the last read skips the read: a 10,000-service
/// file is 4.3 MB, and reading and comparing it every 2 s took about 3 ms
/// of CPU. Events, changed stamps and every FULL_READ_EVERY-th poll read.
/// Picks up renewed certificate files on every pass.
fn check_and_apply(
    runtime: &Runtime,
    path: &std::path::Path,
    seen: Option<Seen>,
    wake: Wake,
) -> Option<Seen> {
    // Taken before the read: a write racing with it changes the stamp
    // again, so the next poll reads.
    let now = stamp(path);
    let trusted = matches!(&seen, Some(s) if wake == Wake::Poll
        && now.is_some()
        && now == s.stamp
        && s.trusted_polls < FULL_READ_EVERY);
    let seen = if trusted {
        seen.map(|s| Seen {
            trusted_polls: s.trusted_polls + 1,
            ..s
        })
    } else {
        read_and_apply(runtime, path, seen.map(|s| s.text)).map(|text| Seen {
            text,
            stamp: now,
            trusted_polls: 0,
        })
    };
    runtime.certs.refresh();
    seen
}

/// Reads the file; if its text changed, loads it and swaps it in.
fn read_and_apply(
    runtime: &Runtime,
    path: &std::path::Path,
    mut last_text: Option<String>,
) -> Option<String> {
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && last_text.is_none() => {
            tracing::debug!(path = %path.display(), "waiting for the config file");
            return None;
        }
        Err(error) => {
            if last_text.is_some() {
                runtime.refuse(&ReloadError::Read {
                    path: path.to_owned(),
                    error,
                });
            }
            return None;
        }
    };
    if last_text.as_deref() != Some(text.as_str()) {
        let current = runtime.load();
        let running = current.as_ref().map(|s| (s.generation(), s.revision()));
        let ceiling = generation_ceiling(std::time::SystemTime::now());
        match load(
            &runtime.node,
            &path.display().to_string(),
            &text,
            running,
            ceiling,
        ) {
            Ok(Loaded::Apply(config)) => {
                runtime.apply(*config);
            }
            Ok(Loaded::Same) => {}
            Err(e) => runtime.refuse(&e),
        }
        last_text = Some(text);
    }
    last_text
}

/// The node token from `--config-token-file`, trimmed; never logged.
fn read_token(path: &std::path::Path) -> anyhow::Result<String> {
    let token = std::fs::read_to_string(path)
        .with_context(|| format!("reading the node token file {}", path.display()))?
        .trim()
        .to_owned();
    anyhow::ensure!(
        !token.is_empty(),
        "the node token file {} is empty",
        path.display()
    );
    Ok(token)
}

/// With --config-url: what the poller sends, where it is cached, and the
/// URL (without credentials) that errors name.
struct Follow {
    rx: tokio::sync::mpsc::Receiver<Update>,
    cache: std::path::PathBuf,
    url: String,
}

/// The poller's next update with its cache and URL; never resolves without
/// --config-url, or once the poller is gone.
async fn next_update(follow: &mut Option<Follow>) -> (Update, std::path::PathBuf, String) {
    if let Some(f) = follow {
        if let Some(u) = f.rx.recv().await {
            return (u, f.cache.clone(), f.url.clone());
        }
    }
    *follow = None;
    std::future::pending().await
}

/// Loads and applies a body from configsrv on the blocking pool (as
/// `refresh` does for files), then caches it. A cache that cannot be
/// written is logged and counted, never a reason to leave the config unapplied.
async fn apply_update(
    runtime: &Arc<Runtime>,
    update: Update,
    cache: std::path::PathBuf,
    url: String,
) {
    let body = match update {
        Update::Config(body) => body,
        Update::Refused(why) => return runtime.refuse(&why),
    };
    let runtime = Arc::clone(runtime);
    let done = tokio::task::spawn_blocking(move || {
        let text = String::from_utf8_lossy(&body);
        let current = runtime.load();
        let running = current.as_ref().map(|s| (s.generation(), s.revision()));
        let ceiling = generation_ceiling(std::time::SystemTime::now());
        match load(&runtime.node, &url, &text, running, ceiling) {
            Ok(Loaded::Apply(config)) => {
                runtime.apply(*config);
                write_cache(&cache, &body);
            }
            Ok(Loaded::Same) => {}
            Err(e) => runtime.refuse(&e),
        }
    })
    .await;
    if let Err(e) = done {
        tracing::error!(error = %e, "applying configsrv's config failed");
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
