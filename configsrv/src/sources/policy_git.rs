//! GitOps: configsrv keeps its own checkout of the policy repository,
//! fetches the branch on an interval and when the push webhook kicks it,
//! validates each new commit as a whole, and hands over only commits that
//! pass. A bad commit leaves the previous one running. Uses the `git` CLI,
//! never interactively, within a deadline, with no argument read as an option.

use crate::error::SourceError;
use crate::sources::{policy_dir, SourceEvent};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::process::Command;
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
    /// How long one git command may run before it is killed.
    pub timeout: Duration,
}

impl PolicyRepo {
    /// Reads `REPO[#BRANCH]` (branch `main` when left out). A branch that
    /// git could take for an option (`-...`) is refused.
    pub fn parse(
        spec: &str,
        checkout: PathBuf,
        timeout: Duration,
    ) -> Result<PolicyRepo, SourceError> {
        let (url, branch) = spec.rsplit_once('#').unwrap_or((spec, "main"));
        if branch.is_empty() || branch.starts_with('-') {
            return Err(SourceError::Config(format!(
                "--policies-git {}: branch `{branch}` must not be empty or start with `-`",
                schemas::RedactedUrl::new(url)
            )));
        }
        Ok(PolicyRepo {
            url: url.to_owned(),
            branch: branch.to_owned(),
            checkout,
            timeout,
        })
    }

    /// The repository URL as logs and errors may show it: without credentials.
    pub fn shown(&self) -> schemas::RedactedUrl {
        schemas::RedactedUrl::new(&self.url)
    }

    /// Runs `git [-C checkout] args`: no terminal prompt (a missing
    /// credential fails instead of waiting for a human), killed after the
    /// timeout (a server that never answers must not hold configsrv).
    async fn git(&self, in_checkout: bool, args: &[&str]) -> Result<String, SourceError> {
        let mut cmd = Command::new("git");
        if in_checkout {
            cmd.arg("-C").arg(&self.checkout);
        }
        cmd.args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let failed = |message: String| SourceError::Http {
            origin: self.shown(),
            // The arguments and git's own words may quote the URL.
            message: schemas::redact::redact(&format!("git {}: {message}", args.join(" "))),
        };
        let out = match tokio::time::timeout(self.timeout, cmd.output()).await {
            Ok(out) => out.map_err(|e| SourceError::Config(format!("running git: {e}")))?,
            // Dropping the future kills git (kill_on_drop); tokio reaps it.
            Err(_) => {
                return Err(failed(format!(
                    "timed out after {:?}; killed",
                    self.timeout
                )))
            }
        };
        if !out.status.success() {
            return Err(failed(
                String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Clones the repository unless the checkout exists; returns the branch's commit.
    pub async fn fetch(&self) -> Result<String, SourceError> {
        if !self.checkout.join(".git").exists() {
            let checkout = self.checkout.display().to_string();
            // `--`: the URL and the directory are never options.
            self.git(
                false,
                &[
                    "clone",
                    "--quiet",
                    "--no-checkout",
                    "--",
                    &self.url,
                    &checkout,
                ],
            )
            .await?;
        }
        self.git(true, &["fetch", "--quiet", "--", "origin", &self.branch])
            .await?;
        let commit = self.git(true, &["rev-parse", "FETCH_HEAD"]).await?;
        if commit.is_empty() || !commit.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(SourceError::Config(format!(
                "git rev-parse FETCH_HEAD gave `{commit}`, not a commit id"
            )));
        }
        Ok(commit)
    }

    /// Checks `commit` out and validates its policy files as a whole.
    pub async fn load(&self, commit: &str) -> Result<schemas::PolicySet, LoadError> {
        if commit.is_empty() || !commit.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(LoadError::Read(format!("`{commit}` is not a commit id")));
        }
        // The trailing `--`: no path follows the commit.
        self.git(
            true,
            &["checkout", "--quiet", "--detach", "--force", commit, "--"],
        )
        .await
        .map_err(|e| LoadError::Read(e.to_string()))?;
        let (checkout, commit) = (self.checkout.clone(), commit.to_owned());
        tokio::task::spawn_blocking(move || {
            let files = policy_dir::read_policy_dir(&checkout)
                .map_err(|e| LoadError::Read(e.to_string()))?;
            let mut set =
                policy_dir::load_policies(&files).map_err(|errors| LoadError::Invalid {
                    commit: commit.clone(),
                    problems: errors.iter().map(ToString::to_string).collect(),
                })?;
            set.commit = Some(commit);
            Ok(set)
        })
        .await
        .unwrap_or_else(|e| Err(LoadError::Read(format!("reading the checkout failed: {e}"))))
    }
}

/// Why a commit's policies cannot run.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Git or the checkout failed.
    #[error("{0}")]
    Read(String),
    /// The commit's policy files have problems.
    #[error("commit {commit} is invalid; the previous commit keeps running: {}", .problems.join("; "))]
    Invalid {
        /// The commit.
        commit: String,
        /// Every problem, `file:line:col: message`.
        problems: Vec<String>,
    },
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
        let commit = match repo.fetch().await {
            Ok(c) => c,
            Err(e) => {
                let _ = tx.send(SourceEvent::PolicyCommit(Err(e.to_string()))).await;
                continue;
            }
        };
        if commit == current {
            continue;
        }
        match repo.load(&commit).await {
            Ok(set) => {
                current = commit;
                if tx.send(SourceEvent::PolicyCommit(Ok(set))).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                // Leave the checkout on the commit that runs, so the next read starts from it.
                let _ = repo.load(&current).await;
                let _ = tx.send(SourceEvent::PolicyCommit(Err(e.to_string()))).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_branch_git_could_read_as_an_option_is_refused() {
        let parse = |spec: &str| PolicyRepo::parse(spec, "/c".into(), Duration::from_secs(1));
        let repo = parse("https://u:tok@git.example/p.git#prod").unwrap();
        assert_eq!(
            (repo.url.as_str(), repo.branch.as_str()),
            ("https://u:tok@git.example/p.git", "prod")
        );
        assert_eq!(parse("/srv/p").unwrap().branch, "main");
        for bad in [
            "/srv/p#--upload-pack=touch x",
            "/srv/p#-b",
            "https://u:tok@h/p#",
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains("must not be empty or start with `-`"), "{e}");
            assert!(!e.contains("tok"), "{e}");
        }
    }
}
