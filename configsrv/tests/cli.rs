//! The command-line contracts of `configsrv validate` and `configsrv render`,
//! driven through the real binary.

#![allow(clippy::unwrap_used)] // a failing step should fail the test loudly

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn configsrv(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_configsrv"))
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A scratch directory removed on drop, failures included.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("palisade-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn write(&self, rel: &str, body: &str) -> PathBuf {
        let p = self.0.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, body).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn validate_accepts_the_example_policy_repo() {
    let out = configsrv(&["validate", s(&examples().join("policies"))]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn validate_prints_every_problem_with_file_line_col_and_exits_1() {
    let dir = Scratch::new("validate");
    dir.write(
        "a.yaml",
        "apiVersion: palisade/v1\nkind: Policy\napps:\n  /prod/web:\n    protocol: tcp\n",
    );
    dir.write(
        "team/b.yaml",
        "apiVersion: palisade/v1\nkind: Policy\napps:\n  /prod/web:\n    balance: random\n",
    );
    dir.write("team/c.yml", "apiVersion: palisade/v1\nkind: Policy\napps:\n  /prod/db:\n    protocol: tcp\n  /prod/web:\n    protocol: http\n");
    dir.write(".git/ignored.yaml", "not: [valid");
    let out = configsrv(&["validate", s(&dir.0)]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let b = dir.0.join("team/b.yaml");
    assert!(
        lines[0].starts_with(&format!("{}:5:", b.display())),
        "{stdout}"
    );
    assert!(lines[0].contains("round_robin"), "{stdout}");
    let c = dir.0.join("team/c.yml");
    assert!(
        lines[1].starts_with(&format!("{}:6:3:", c.display())),
        "{stdout}"
    );
    assert!(
        lines[1].contains(&format!("{}:4:3", dir.0.join("a.yaml").display())),
        "{stdout}"
    );
}

/// A file with a misspelt value and, two lines below, a misspelt field.
const TWO_TYPOS: &str = "apiVersion: palisade/v1\nkind: Policy\napps:\n  /prod/web:\n    protocol: htttp\n    allow:\n      - form: /prod/edge\n  /prod/db:\n    timeouts: {connect: 0s}\n";

#[test]
fn validate_reports_every_problem_of_a_file_not_only_the_first() {
    let dir = Scratch::new("validate-every");
    let bad = dir.write("team/web.yaml", TWO_TYPOS);
    dir.write(
        "ok.yaml",
        "apiVersion: palisade/v1\nkind: Policy\napps:\n  /prod/edge:\n    protocol: http\n",
    );
    let out = configsrv(&["validate", s(&dir.0)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let bad = bad.display();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].starts_with(&format!(
            "{bad}:5:5: apps./prod/web.protocol: unknown variant `htttp`"
        )),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "{bad}:7:9: apps./prod/web.allow[0].form: unknown field `form`"
        )),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with(&format!("{bad}:9:16: apps./prod/db.timeouts.connect:")),
        "{stdout}"
    );
    assert!(
        text(&out.stderr).contains("3 problem(s)"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn validate_exits_0_on_a_clean_directory() {
    let dir = Scratch::new("validate-clean");
    dir.write(
        "ok.yaml",
        "apiVersion: palisade/v1\nkind: Policy\napps:\n  /prod/edge:\n    protocol: http\n    allow:\n      - from: /prod/web\n",
    );
    let out = configsrv(&["validate", s(&dir.0)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("no problems"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn serve_refuses_to_start_on_invalid_policies_with_every_problem_on_its_own_line() {
    let dir = Scratch::new("serve-invalid");
    let bad = dir.write("web.yaml", TWO_TYPOS);
    // Policies are read before anything is bound or contacted.
    let out = configsrv(&[
        "serve",
        "--marathon",
        "http://127.0.0.1:9",
        "--policies",
        s(&dir.0),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    let bad = bad.display();
    for at in [":5:5: ", ":7:9: ", ":9:16: "] {
        let line = format!("{bad}{at}");
        assert!(
            stderr.lines().any(|l| l.starts_with(&line)),
            "no line starts with {line}: {stderr}"
        );
    }
    assert!(stderr.ends_with('\n'), "{stderr:?}");
}

#[test]
fn render_writes_one_file_per_node_and_rewrites_only_on_change() {
    let dir = Scratch::new("render");
    let out_dir = dir.0.join("out");
    let cluster = examples().join("cluster");
    let args = |marathon: &Path| {
        vec![
            "render".to_owned(),
            "--marathon-snapshot".into(),
            s(marathon).into(),
            "--mesos-snapshot".into(),
            s(&cluster.join("mesos-state.json")).into(),
            "--policies".into(),
            s(&examples().join("policies")).into(),
            "--out".into(),
            s(&out_dir).into(),
        ]
    };
    let run = |marathon: &Path| {
        let a = args(marathon);
        let out = configsrv(&a.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(out.status.success(), "{}", text(&out.stderr));
    };
    let marathon = cluster.join("marathon-apps.json");
    run(&marathon);
    let read = |node: &str| std::fs::read_to_string(out_dir.join(format!("{node}.yaml"))).unwrap();
    let first: Vec<String> = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
        .iter()
        .map(|n| read(n))
        .collect();
    for t in &first {
        assert!(schemas::parse_node_config("x", t).unwrap().generation.0 == 1);
    }

    // Same input: byte-identical, nothing rewritten, also into a fresh directory.
    run(&marathon);
    let again: Vec<String> = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
        .iter()
        .map(|n| read(n))
        .collect();
    assert_eq!(first, again);

    // One more task on 127.0.0.3 changes every node's backends, but the
    // identity table of 127.0.0.3 only: generations move to 2.
    let mut apps: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&marathon).unwrap()).unwrap();
    let mut task = apps["apps"][0]["tasks"][1].clone();
    task["id"] = "shop_web.5a0b0c0d-7f61-11f0-9d2b-0242ac110002".into();
    task["ipAddresses"][0]["ipAddress"] = "127.0.1.9".into();
    apps["apps"][0]["tasks"].as_array_mut().unwrap().push(task);
    let changed = dir.write("apps2.json", &apps.to_string());
    run(&changed);
    for node in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
        let c = schemas::parse_node_config("x", &read(node)).unwrap();
        assert_eq!(c.generation.0, 2, "{node}");
        assert!(c.services[0]
            .backends
            .iter()
            .any(|b| b.address.to_string() == "127.0.1.9:8080"));
    }
}

#[test]
fn render_with_bad_input_names_the_file_and_writes_nothing() {
    let dir = Scratch::new("bad");
    let out_dir = dir.0.join("out");
    let truncated = dir.write("apps.json", "{\"apps\": [{\"id\": \"/a\", ");
    let policies = examples().join("policies");
    let out = configsrv(&[
        "render",
        "--marathon-snapshot",
        s(&truncated),
        "--policies",
        s(&policies),
        "--out",
        s(&out_dir),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains(s(&truncated)), "{err}");
    assert!(!out_dir.exists() || std::fs::read_dir(&out_dir).unwrap().next().is_none());

    let bad_policy = dir.0.join("policies");
    dir.write("policies/p.yaml", "apiVersion: palisade/v1\nkind: Policy\napps:\n  /a:\n    allow:\n      - from_cidr: 10.0.0.1/8\n");
    let good_apps = examples().join("cluster/marathon-apps.json");
    let out = configsrv(&[
        "render",
        "--marathon-snapshot",
        s(&good_apps),
        "--policies",
        s(&bad_policy),
        "--out",
        s(&out_dir),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("{}:6:", dir.0.join("policies/p.yaml").display())),
        "{err}"
    );
    assert!(err.contains("host bits"), "{err}");
    assert!(!out_dir.exists() || std::fs::read_dir(&out_dir).unwrap().next().is_none());

    let missing = dir.0.join("nope.json");
    let out = configsrv(&[
        "render",
        "--marathon-snapshot",
        s(&missing),
        "--policies",
        s(&policies),
        "--out",
        s(&out_dir),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains(s(&missing)));
}

#[test]
fn serve_refuses_zero_scrape_periods_and_impact_refuses_bad_input_with_exit_2() {
    for flag in ["--scrape-interval", "--scrape-timeout", "--window"] {
        let out = configsrv(&[
            "serve",
            "--marathon",
            "http://127.0.0.1:1",
            "--policies",
            "/nonexistent",
            flag,
            "0s",
        ]);
        assert_eq!(out.status.code(), Some(1), "{flag}");
        assert!(text(&out.stderr).contains(&format!("{flag} must be greater than zero")));
    }
    let dir = Scratch::new("impact-bad");
    dir.write(
        "p/shop.yaml",
        "apiVersion: palisade/v1\nkind: Policy\napps:\n  /shop/web:\n    alow: []\n",
    );
    let p = dir.0.join("p");
    // Bad input is found before anything is sent (the API here is never reached).
    let out = configsrv(&["impact", "--policies", s(&p), "--api", "http://127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("shop.yaml:5:"),
        "{}",
        text(&out.stderr)
    );
    // A clean directory and no API: exit 2 too, naming the URL.
    dir.write("q/ok.yaml", "apiVersion: palisade/v1\nkind: Policy\n");
    let q = dir.0.join("q");
    let out = configsrv(&["impact", "--policies", s(&q), "--api", "http://127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("127.0.0.1:1/v1/policy/impact"),
        "{}",
        text(&out.stderr)
    );
}
