//! `configsrv impact`: sends a candidate policy directory to a running
//! configsrv (`POST /v1/policy/impact`) and prints the flows whose verdict
//! would change. Exit 0: nothing observed newly denied; 1: something would
//! be; 2: bad input (`file:line:col: message`) or no answer from the API.

use crate::cli::ImpactArgs;
use crate::observe::impact::{CandidateFile, ImpactReport, ImpactRequest, Verdict};
use crate::sources::policy_dir;
use std::process::ExitCode;

/// Exit code for bad input or an API that cannot answer.
const BAD_INPUT: u8 = 2;

/// Runs `configsrv impact`; every outcome is an exit code.
pub fn run(args: &ImpactArgs) -> ExitCode {
    match check(args) {
        Ok(report) => {
            if report.newly_denied > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(lines) => {
            for l in lines {
                eprintln!("{l}");
            }
            ExitCode::from(BAD_INPUT)
        }
    }
}

fn verdict(v: Verdict) -> &'static str {
    match v {
        Verdict::Allow => "allow",
        Verdict::Deny => "deny",
        Verdict::WouldDeny => "would_deny",
    }
}

/// Validates locally, asks the API, prints the answer; `Err` is bad input.
fn check(args: &ImpactArgs) -> Result<ImpactReport, Vec<String>> {
    let dir = &args.policies;
    let files =
        policy_dir::read_policy_dir(dir).map_err(|e| vec![format!("configsrv: error: {e}")])?;
    // The same checks as `configsrv validate`, before anything is sent.
    policy_dir::load_policies(&files)
        .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    let token = match &args.api_token_file {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .map_err(|e| vec![format!("configsrv: error: reading {}: {e}", f.display())])?
                .trim()
                .to_owned(),
        ),
        None => None,
    };
    let request = ImpactRequest {
        files: files
            .iter()
            .map(|f| CandidateFile {
                name: f
                    .path
                    .strip_prefix(dir)
                    .unwrap_or(&f.path)
                    .display()
                    .to_string(),
                text: f.text.clone(),
            })
            .collect(),
    };
    let url = format!("{}/v1/policy/impact", args.api.trim_end_matches('/'));
    let shown = schemas::RedactedUrl::new(&url).to_string();
    let fail = |what: String| vec![format!("configsrv: error: {shown}: {what}")];
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let (status, body) = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| fail(e.to_string()))?;
        let mut req = client.post(&url).json(&request);
        if let Some(t) = &token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| fail(e.to_string()))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| fail(e.to_string()))?;
        Ok::<_, Vec<String>>((status, body))
    })?;
    if !status.is_success() {
        let answer: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let mut lines: Vec<String> = answer["problems"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_str().map(str::to_owned))
            .collect();
        let error = answer["error"].as_str().map_or_else(
            || String::from_utf8_lossy(&body).trim().to_owned(),
            str::to_owned,
        );
        lines.push(format!(
            "configsrv: error: {shown} answered {status}: {error}"
        ));
        return Err(lines);
    }
    let report: ImpactReport =
        serde_json::from_slice(&body).map_err(|e| fail(format!("not an impact report: {e}")))?;
    if args.json {
        println!("{}", String::from_utf8_lossy(&body));
    } else {
        for c in &report.changes {
            println!(
                "{} -> {}: {} -> {}, {} requests",
                c.source,
                c.destination,
                verdict(c.from),
                verdict(c.to),
                c.requests
            );
        }
        for u in &report.unjudged {
            println!(
                "{u}: cannot tell (a CIDR rule decides, and the source's address is not known)"
            );
        }
        eprintln!(
            "{} flow(s) would change, {} newly denied",
            report.changes.len(),
            report.newly_denied
        );
    }
    Ok(report)
}
