//! meshd's entry point: parse flags, set up logs and the runtime, run, map errors to exit codes.

use clap::Parser;
use meshd::cli::{Cli, Command, LogFormat};
use std::process::ExitCode;

// jemalloc: its thread caches serve the kilobyte-sized futures and
// buffers of each request as cheaply as mimalloc did (mimalloc's Rust
// binding takes its slow aligned path above 1 KiB), and its background
// threads give freed memory back to the system within about a second
// (`.cargo/config.toml` sets the decay) where mimalloc kept the peak of a
// burst of connections for good (docs/benchmarks.md, issue 17).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    match cli.command {
        Command::Check { file } => check(&file),
        Command::Run(args) => {
            let args = *args;
            // One TLS crypto provider for the whole process, chosen before any TLS config exists.
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            // One thread: a current-thread runtime skips the work-stealing
            // machinery and cross-thread wakeups that one worker cannot use.
            let mut builder = match args.threads {
                Some(1) => tokio::runtime::Builder::new_current_thread(),
                Some(n) => {
                    let mut b = tokio::runtime::Builder::new_multi_thread();
                    b.worker_threads(n.max(1));
                    b
                }
                None => tokio::runtime::Builder::new_multi_thread(),
            };
            builder
                .enable_all()
                .on_thread_park(meshd::proxy::buffers::on_park);
            let runtime = match builder.build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("meshd: error: starting the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(meshd::app::run(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("meshd: error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
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

fn check(file: &std::path::Path) -> ExitCode {
    let name = file.display().to_string();
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match schemas::parse_node_config(&name, &text) {
        Ok(c) => {
            let backends: usize = c.services.iter().map(|s| s.backends.len()).sum();
            println!(
                "{name}: ok: node {} generation {}, {} services, {backends} backends, {} identities",
                c.node,
                c.generation.0,
                c.services.len(),
                c.identities.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors {
                println!("{e}");
            }
            ExitCode::FAILURE
        }
    }
}
