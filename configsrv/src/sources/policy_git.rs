//! GitOps: configsrv keeps its own checkout of the policy repository,
//! fetches the branch on an interval and when the push webhook kicks it,
//! validates each new commit as a whole, and hands over only commits that
//! pass. A bad commit leaves the previous one running. Uses the `git` CLI.

use crate::error::SourceError;
use crate::sources::{policy_dir, SourceEvent};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};

/// A policy repository and the branch to follow.
#[derive(Debug, Clone)]
pub struct PolicyRepo {
    /// Anything `git clone` takes: a path, `file://`, `https://`, `ssh://`.
    pub url: String,
    /// The branch.
    pub branch: String,
    /// configsrv's own checkout.
    pub checkout: PathBuf,
}

impl PolicyRepo {
    /// Reads `REPO[#BRANCH]` (branch `main` when left out).
    pub fn parse(spec: &str, checkout: PathBuf) -> PolicyRepo {
        let (url, branch) = spec.rsplit_once('#').unwrap_or((spec, "main"));
        PolicyRepo {
            url: url.to_owned(),
            branch: branch.to_owned(),
            checkout,
        }
    }

    /// The repository URL as logs and errors may show it: without credentials.
    pub fn shown(&self) -> schemas::RedactedUrl {
        schemas::RedactedUrl::new(&self.url)
    }

    fn git(&self, dir: Option<&Path>, args: &[&str]) -> Result<String, SourceError> {
        let mut cmd = Command::new("git");
        if let Some(d) = dir {
            cmd.arg("-C").arg(d);
        }
        let out = cmd
            .args(args)
            .output()
            .map_err(|e| SourceError::Config(format!("running git: {e}")))?;
        if !out.status.success() {
            // The arguments and git's own words may quote the URL.
            return Err(SourceError::Http {
                origin: self.shown(),
                message: schemas::redact::redact(&format!(
                    "git {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                )),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Clones the repository unless the checkout exists; returns the branch's commit.
    pub fn fetch(&self) -> Result<String, SourceError> {
        if !self.checkout.join(".git").exists() {
            let checkout = self.checkout.display().to_string();
            self.git(
                None,
                &["clone", "--quiet", "--no-checkout", &self.url, &checkout],
            )?;
        }
        self.git(
            Some(&self.checkout),
            &["fetch", "--quiet", "origin", &self.branch],
        )?;
        self.git(Some(&self.checkout), &["rev-parse", "FETCH_HEAD"])
    }

    /// Checks `commit` out and validates its policy files as a whole.
    pub fn load(&self, commit: &str) -> Result<schemas::PolicySet, String> {
        self.git(
            Some(&self.checkout),
            &["checkout", "--quiet", "--detach", "--force", commit],
        )
        .map_err(|e| e.to_string())?;
        let files = policy_dir::read_policy_dir(&self.checkout).map_err(|e| e.to_string())?;
        let mut set = policy_dir::load_policies(&files).map_err(|errors| {
            let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
            format!(
                "commit {commit} is invalid; the previous commit keeps running: {}",
                lines.join("; ")
            )
        })?;
        set.commit = Some(commit.to_owned());
        Ok(set)
    }
}

/// Fetches every `interval` and whenever `kick` is notified; sends each new
/// commit's policies, or why the commit was refused.
pub async fn follow(
    repo: PolicyRepo,
    mut current: String,
    interval: Duration,
    kick: Arc<Notify>,
    tx: mpsc::Sender<SourceEvent>,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = kick.notified() => {}
        }
        let r = repo.clone();
        let fetched = tokio::task::spawn_blocking(move || r.fetch()).await;
        let commit = match fetched {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                let _ = tx.send(SourceEvent::PolicyCommit(Err(e.to_string()))).await;
                continue;
            }
            Err(e) => {
                let _ = tx
                    .send(SourceEvent::PolicyCommit(Err(format!(
                        "git fetch task failed: {e}"
                    ))))
                    .await;
                continue;
            }
        };
        if commit == current {
            continue;
        }
        let (r, c) = (repo.clone(), commit.clone());
        let loaded = tokio::task::spawn_blocking(move || r.load(&c))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
        match loaded {
            Ok(set) => {
                current = commit;
                if tx.send(SourceEvent::PolicyCommit(Ok(set))).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                // Leave the checkout on the commit that runs, so the next read starts from it.
                let (r, good) = (repo.clone(), current.clone());
                let _ = tokio::task::spawn_blocking(move || r.load(&good)).await;
                let _ = tx.send(SourceEvent::PolicyCommit(Err(e))).await;
            }
        }
    }
}
