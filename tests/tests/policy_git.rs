//! `--policies-git` hands git no option it did not mean: a branch that looks
//! like an option is refused before git runs, and a git that hangs (a
//! server that never answers) is killed after `--git-timeout`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_tests::harness::{free_port, Proc, Scratch};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits up to `deadline` for `p` to exit.
async fn exited(p: &mut Proc, deadline: Duration) -> bool {
    let end = Instant::now() + deadline;
    while p.running() {
        if Instant::now() > end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

fn serve_git(dir: &Scratch, spec: &str, extra: &[&str]) -> Proc {
    let api = format!("127.0.0.1:{}", free_port());
    let checkout = dir.path("checkout");
    let mut args = vec![
        "serve",
        "--marathon",
        "http://127.0.0.1:1",
        "--policies-git",
        spec,
        "--git-checkout",
        checkout.to_str().unwrap(),
        "--listen",
        &api,
    ];
    args.extend_from_slice(extra);
    Proc::spawn("configsrv", &args, &dir.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_that_looks_like_an_option_never_reaches_git() {
    let dir = Scratch::new("git-option");
    let repo = dir.path("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "--quiet", "-b", "main"]);
    dir.write(
        "repo/p.yaml",
        "apiVersion: palisade/v1\nkind: Policy\napps: {}\n",
    );
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "--quiet", "-m", "policy"]);
    let marker = dir.path("pwned");
    let spec = format!(
        "file://{}#--upload-pack=touch {};true",
        repo.display(),
        marker.display()
    );
    let mut cs = serve_git(&dir, &spec, &[]);
    assert!(
        exited(&mut cs, Duration::from_secs(10)).await,
        "configsrv must refuse the branch"
    );
    assert!(
        !marker.exists(),
        "git ran the branch as an option: {}",
        cs.stderr()
    );
    assert!(
        cs.stderr().contains("must not be empty or start with `-`"),
        "{}",
        cs.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_git_that_hangs_is_killed_after_the_timeout() {
    let dir = Scratch::new("git-hang");
    // Accepts and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let _held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            open.push(s);
        }
    });
    let spec = format!("http://{addr}/policies.git#main");
    let started = Instant::now();
    let mut cs = serve_git(&dir, &spec, &["--git-timeout", "1s"]);
    assert!(
        exited(&mut cs, Duration::from_secs(10)).await,
        "configsrv must give up on a hung git"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert!(cs.stderr().contains("timed out"), "{}", cs.stderr());
}
