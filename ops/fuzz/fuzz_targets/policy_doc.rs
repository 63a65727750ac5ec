//! `policy` with structure: a policy document built from arbitrary parts
//! (app keys, rules, timeouts, vhosts, TLS) and written as YAML, so the
//! mutations reach validation and the merge instead of dying in the syntax.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use std::fmt::Write;

/// A scalar: one of the words the format knows, or anything.
#[derive(Debug, Arbitrary)]
enum Word {
    App(u8, u8),
    Group(u8),
    Cidr([u8; 4], u8),
    Duration(u32, u8),
    Number(i64),
    Known(u8),
    Any(String),
}

const KNOWN: &[&str] = &[
    "tcp",
    "http",
    "round_robin",
    "least_request",
    "p2c_ewma",
    "source_hash",
    "allow",
    "deny",
    "enforce",
    "audit",
    "true",
    "false",
    "null",
    "~",
    "",
    "/",
    "/*",
    "*",
    "0s",
    "1ms",
    "example.com",
    "*.example.com",
    "/api",
    "a/../b",
];

impl Word {
    fn text(&self) -> String {
        let parts = ["shop", "web", "edge", "dev", "Db", "a.b", "x_y"];
        match self {
            Word::App(a, d) => (0..=d % 3)
                .map(|i| parts[usize::from(a.wrapping_add(i)) % parts.len()])
                .fold(String::new(), |s, p| s + "/" + p),
            Word::Group(a) => format!("/{}/*", parts[usize::from(*a) % parts.len()]),
            Word::Cidr(b, p) => format!("{}.{}.{}.{}/{p}", b[0], b[1], b[2], b[3]),
            Word::Duration(n, u) => {
                format!("{n}{}", ["ms", "s", "m", "h", "d", ""][usize::from(*u) % 6])
            }
            Word::Number(n) => n.to_string(),
            Word::Known(k) => KNOWN[usize::from(*k) % KNOWN.len()].to_owned(),
            Word::Any(s) => s.clone(),
        }
    }

    /// As a YAML scalar (double-quoted when it would not read as itself).
    fn yaml(&self) -> String {
        let t = self.text();
        match self {
            Word::Any(_) => format!("{t:?}"),
            _ => t,
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Field {
    Protocol(Word),
    Balance(Word),
    Allow(Vec<(bool, Word)>),
    Deny(Vec<(bool, Word)>),
    Timeouts(Vec<(u8, Word)>),
    MaxConnections(Word),
    Vhost(Vec<Word>),
    PathPrefix(Word),
    Tls {
        cert: Word,
        key: Word,
        redirect: bool,
        hsts: Option<Word>,
    },
    UpstreamTls(Vec<(Word, Word)>),
    Autoscale(Vec<(Word, Word)>),
    Unknown(Word, Word),
}

#[derive(Debug, Arbitrary)]
struct Doc {
    defaults: Option<(Word, Word)>,
    apps: Vec<(Word, Vec<Field>)>,
}

fn rules(out: &mut String, name: &str, rules: &[(bool, Word)]) {
    let _ = writeln!(out, "    {name}:");
    for (cidr, w) in rules {
        let key = if *cidr { "from_cidr" } else { "from" };
        let _ = writeln!(out, "      - {key}: {}", w.yaml());
    }
}

impl Doc {
    fn yaml(&self) -> String {
        let mut out = String::from("apiVersion: palisade/v1\nkind: Policy\n");
        if let Some((action, mode)) = &self.defaults {
            let _ = writeln!(
                out,
                "defaults:\n  action: {}\n  mode: {}",
                action.yaml(),
                mode.yaml()
            );
        }
        out.push_str("apps:\n");
        for (key, fields) in &self.apps {
            let _ = writeln!(out, "  {}:", key.yaml());
            if fields.is_empty() {
                out.push_str("    {}\n");
            }
            for f in fields {
                match f {
                    Field::Protocol(w) => {
                        let _ = writeln!(out, "    protocol: {}", w.yaml());
                    }
                    Field::Balance(w) => {
                        let _ = writeln!(out, "    balance: {}", w.yaml());
                    }
                    Field::Allow(r) => rules(&mut out, "allow", r),
                    Field::Deny(r) => rules(&mut out, "deny", r),
                    Field::Timeouts(t) => {
                        out.push_str("    timeouts:\n");
                        let names = [
                            "connect",
                            "request_header",
                            "idle",
                            "response",
                            "tunnel_idle",
                        ];
                        for (n, w) in t {
                            let _ =
                                writeln!(out, "      {}: {}", names[usize::from(*n) % 5], w.yaml());
                        }
                    }
                    Field::MaxConnections(w) => {
                        let _ = writeln!(out, "    max_connections: {}", w.yaml());
                    }
                    Field::Vhost(v) => {
                        let list: Vec<String> = v.iter().map(Word::yaml).collect();
                        let _ = writeln!(out, "    vhost: [{}]", list.join(", "));
                    }
                    Field::PathPrefix(w) => {
                        let _ = writeln!(out, "    path_prefix: {}", w.yaml());
                    }
                    Field::Tls {
                        cert,
                        key,
                        redirect,
                        hsts,
                    } => {
                        let _ = writeln!(out, "    tls:\n      cert: {}\n      key: {}\n      redirect_https: {redirect}", cert.yaml(), key.yaml());
                        if let Some(h) = hsts {
                            let _ = writeln!(out, "      hsts: {}", h.yaml());
                        }
                    }
                    Field::UpstreamTls(kv) | Field::Autoscale(kv) => {
                        let name = if matches!(f, Field::UpstreamTls(_)) {
                            "upstream_tls"
                        } else {
                            "autoscale"
                        };
                        let _ = writeln!(out, "    {name}:");
                        for (k, v) in kv {
                            let _ = writeln!(out, "      {}: {}", k.yaml(), v.yaml());
                        }
                    }
                    Field::Unknown(k, v) => {
                        let _ = writeln!(out, "    {}: {}", k.yaml(), v.yaml());
                    }
                }
            }
        }
        out
    }
}

fuzz_target!(|doc: Doc| palisade_fuzz::check_policy(&doc.yaml()));
