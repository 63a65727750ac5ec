//! configsrv's entry point: parse flags, set up logs, run, map errors to exit codes.

use anyhow::Context;
use clap::Parser;
use configsrv::cli::{Cli, Command, LogFormat};
use configsrv::sources::{offline, policy_dir};
use configsrv::{publish, render};
use std::path::Path;
use std::process::ExitCode;

// jemalloc, as meshd: a render of every node file and a round of long-polls
// allocate in bursts, which jemalloc gives back after its decay
// (`.cargo/config.toml`); glibc's arenas kept their peak (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    let result = match cli.command {
        Command::Validate { dir } => validate(&dir),
        Command::Serve(args) => serve(args),
        Command::Impact(args) => Ok(configsrv::impact_client::run(&args)),
        Command::Render {
            marathon_snapshot,
            mesos_snapshot,
            policies,
            out,
        } => render_once(
            &marathon_snapshot,
            mesos_snapshot.as_deref(),
            &policies,
            &out,
        ),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("configsrv: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: Box<configsrv::cli::ServeArgs>) -> anyhow::Result<ExitCode> {
    let args = *args;
    // A zero period would spin the collector (and panics tokio's interval).
    for (flag, d) in [
        ("--scrape-interval", args.scrape_interval),
        ("--scrape-timeout", args.scrape_timeout),
        ("--window", args.window),
        ("--mesos-interval", args.mesos_interval),
    ] {
        anyhow::ensure!(!d.0.is_zero(), "{flag} must be greater than zero");
    }
    // One TLS crypto provider for the whole process, chosen here, before any client exists.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let opts = configsrv::app::ServeOptions {
        marathon: configsrv::sources::marathon::rest::ClientOptions {
            urls: args.marathon,
            timeout: Some(args.marathon_timeout.0),
            ca_file: args.marathon_ca,
            token_file: args.marathon_token_file,
            max_body: args.source_max_bytes,
            max_event: args.event_max_bytes,
        },
        mesos: args.mesos,
        policies: match (args.policies, args.policies_git) {
            (Some(dir), _) => configsrv::app::PolicySource::Dir(dir),
            (None, Some(spec)) => configsrv::app::PolicySource::Git {
                repo: configsrv::sources::policy_git::PolicyRepo::parse(
                    &spec,
                    args.git_checkout,
                    args.git_timeout.0,
                )?,
                interval: args.git_interval.0,
            },
            (None, None) => anyhow::bail!("give --policies or --policies-git"),
        },
        api_token: read_token(args.api_token_file.as_deref(), "API")?,
        node_token: read_token(args.node_token_file.as_deref(), "node")?,
        out: args.out,
        listen: args.listen,
        follow: configsrv::sources::marathon::follow::FollowOptions {
            resync: args.resync_interval.0,
            silence: args.stream_silence.0,
            coalesce: args.coalesce.0,
        },
        coalesce: args.coalesce.0,
        scrape: configsrv::observe::scrape::ScrapeOptions {
            interval: args.scrape_interval.0,
            timeout: args.scrape_timeout.0,
            admin_port: args.meshd_admin_port,
        },
        window: args.window.0,
        mesos_interval: args.mesos_interval.0,
        // Checked before anything starts: a bad FILE is a start-up error naming it.
        ensure_meshd: args
            .ensure_meshd
            .as_deref()
            .map(configsrv::ensure_meshd::plan::load)
            .transpose()
            .context("--ensure-meshd")?,
        autoscale: args.autoscale,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(configsrv::app::serve(opts))?;
    Ok(ExitCode::SUCCESS)
}

/// A token file's content, trimmed; an empty file is an error, not "no token".
fn read_token(file: Option<&Path>, which: &str) -> anyhow::Result<Option<String>> {
    let Some(f) = file else { return Ok(None) };
    let token = std::fs::read_to_string(f)
        .with_context(|| format!("reading the {which} token file {}", f.display()))?
        .trim()
        .to_owned();
    anyhow::ensure!(
        !token.is_empty(),
        "the {which} token file {} is empty",
        f.display()
    );
    Ok(Some(token))
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn load_policies(
    dir: &Path,
) -> anyhow::Result<Result<schemas::PolicySet, Vec<schemas::ConfigError>>> {
    let files = policy_dir::read_policy_dir(dir)
        .with_context(|| format!("reading policy directory {}", dir.display()))?;
    Ok(policy_dir::load_policies(&files))
}

fn validate(dir: &Path) -> anyhow::Result<ExitCode> {
    match load_policies(dir)? {
        Ok(set) => {
            println!(
                "{}: {} app entries, no problems",
                dir.display(),
                set.apps.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            for e in &errors {
                println!("{e}");
            }
            eprintln!("{} problem(s) in {}", errors.len(), dir.display());
            Ok(ExitCode::FAILURE)
        }
    }
}

fn render_once(
    marathon: &Path,
    mesos: Option<&Path>,
    policies: &Path,
    out: &Path,
) -> anyhow::Result<ExitCode> {
    let policies = match load_policies(policies)? {
        Ok(set) => set,
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            anyhow::bail!(
                "{} problem(s) in policy directory {}; nothing written",
                errors.len(),
                policies.display()
            );
        }
    };
    let (state, app_errors) = offline::load_snapshot(marathon, mesos).context("nothing written")?;
    for e in &app_errors {
        tracing::warn!(file = %marathon.display(), "{e}; app left out");
    }
    let rendered = render::render(&state, &policies);
    for e in &rendered.errors {
        tracing::warn!("{e}");
    }
    let published = publish::files::publish_dir(out, rendered.nodes, schemas::Generation(1))
        .with_context(|| format!("publishing to {}", out.display()))?;
    for (p, _) in &published.published {
        let what = if p.changed { "written" } else { "unchanged" };
        println!("{} generation {} {what}", p.path.display(), p.generation.0);
    }
    for (_, e) in &published.failed {
        eprintln!("configsrv: error: {e}");
    }
    if !published.failed.is_empty() {
        anyhow::bail!(
            "{} node file(s) could not be written",
            published.failed.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}
