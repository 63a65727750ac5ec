//! Where in a file a problem is: `ConfigError` prints `file:line:col: message`,
//! and `locate` finds the line of a key path in block-style YAML for the
//! checks that run after serde has finished.

use std::fmt;

/// One problem in one file, printed as `file:line:col: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file as the caller named it.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// What is wrong, and where possible how to fix it.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.message
        )
    }
}

/// A position in a file, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
}

impl Location {
    /// The start of a file, for problems that belong to no line.
    pub const START: Location = Location { line: 1, col: 1 };

    /// An error at this location in `file`.
    pub fn error(self, file: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: file.to_owned(),
            line: self.line,
            col: self.col,
            message: message.into(),
        }
    }
}

/// One step of a path into a YAML document.
#[derive(Debug, Clone, Copy)]
pub enum Seg<'a> {
    /// A mapping key.
    Key(&'a str),
    /// A sequence item, 0-based.
    Index(usize),
}

/// Turns a serde error from yaml_serde into a located `ConfigError`.
pub fn from_yaml_error(file: &str, err: &yaml_serde::Error) -> ConfigError {
    let text = err.to_string();
    // yaml_serde appends " at line L column C"; we print the location first instead.
    let message = match text.rfind(" at line ") {
        Some(i) if err.location().is_some() => text[..i].to_owned(),
        _ => text,
    };
    let loc = err
        .location()
        .map(|l| Location {
            line: l.line(),
            col: l.column(),
        })
        .unwrap_or(Location::START);
    loc.error(file, message)
}

struct Line<'a> {
    number: usize,
    indent: usize,
    text: &'a str,
}

/// Non-blank, non-comment lines; `- key: v` becomes a dash line plus a
/// virtual line `key: v` two columns right, so sequence items nest like maps.
fn content_lines(source: &str) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    for (i, raw) in source.lines().enumerate() {
        let mut text = raw.trim_start();
        if text.is_empty() || text.starts_with('#') || text == "---" {
            continue;
        }
        let mut indent = raw.len() - text.len();
        while let Some(rest) = text
            .strip_prefix('-')
            .filter(|r| r.is_empty() || r.starts_with(' '))
        {
            out.push(Line {
                number: i + 1,
                indent,
                text: "-",
            });
            let item = rest.trim_start();
            if item.is_empty() {
                break;
            }
            indent += text.len() - item.len();
            text = item;
        }
        if text != "-" {
            out.push(Line {
                number: i + 1,
                indent,
                text,
            });
        }
    }
    out
}

fn key_matches(text: &str, key: &str) -> bool {
    [format!("\"{key}\""), format!("'{key}'"), key.to_owned()]
        .iter()
        .any(|k| {
            text.strip_prefix(k.as_str())
                .is_some_and(|r| r.trim_start().starts_with(':'))
        })
}

/// Where `key` opens a pair in a flow mapping of `text`, from byte `from` on:
/// `{connect: 2s, idle: 0s}` has `idle` after a `{` or `,`, followed by `:`.
fn flow_key(text: &str, from: usize, key: &str) -> Option<usize> {
    // An empty key is found everywhere and never advances the search.
    if key.is_empty() {
        return None;
    }
    let mut i = from;
    while let Some(p) = text.get(i..)?.find(key) {
        let at = i + p;
        let before = text[..at].trim_end();
        let after = text[at + key.len()..].trim_start();
        if (before.ends_with('{') || before.ends_with(',')) && after.starts_with(':') {
            return Some(at);
        }
        i = at + key.len();
    }
    None
}

/// Finds the line and column of `path` in block-style YAML, and of keys in
/// a one-line flow mapping (`timeouts: {idle: 0s}`) under it. Anything
/// unexpected falls back to the deepest step found, so an error always
/// points somewhere useful.
pub fn locate(source: &str, path: &[Seg<'_>]) -> Location {
    let lines = content_lines(source);
    let mut best = Location::START;
    // The block searched for the next step: lines from `start` deeper than `parent`.
    let mut start = 0usize;
    let mut parent: Option<usize> = None;
    // Once a step is found inside a flow mapping: its line and byte offset.
    let mut flow: Option<(usize, usize)> = None;
    for seg in path {
        if let Some((li, from)) = flow {
            let line = &lines[li];
            let Seg::Key(key) = *seg else { return best };
            let Some(at) = flow_key(line.text, from, key) else {
                return best;
            };
            best = Location {
                line: line.number,
                col: line.indent + at + 1,
            };
            flow = Some((li, at + key.len()));
            continue;
        }
        let block_end = lines[start..]
            .iter()
            .position(|l| {
                // A sequence may sit at its key's own indentation, as
                // configsrv writes `services:` (`services:\n- app: ...`).
                let same_level_item = matches!(seg, Seg::Index(_)) && l.text == "-";
                parent.is_some_and(|p| l.indent < p || (l.indent == p && !same_level_item))
            })
            .map_or(lines.len(), |p| start + p);
        let block = &lines[start..block_end];
        let child_indent = block.iter().map(|l| l.indent).min();
        let at_level = block
            .iter()
            .enumerate()
            .filter(|(_, l)| Some(l.indent) == child_indent);
        let found = match *seg {
            Seg::Key(key) => at_level.clone().find(|(_, l)| key_matches(l.text, key)),
            Seg::Index(n) => at_level.filter(|(_, l)| l.text == "-").nth(n),
        };
        let Some((i, line)) = found else {
            // Not a block child: maybe a key of a flow mapping on the step's own line.
            if let (Seg::Key(key), Some(li)) = (*seg, start.checked_sub(1)) {
                if let Some(at) = flow_key(lines[li].text, 0, key) {
                    best = Location {
                        line: lines[li].number,
                        col: lines[li].indent + at + 1,
                    };
                    flow = Some((li, at + key.len()));
                    continue;
                }
            }
            return best;
        };
        best = Location {
            line: line.number,
            col: line.indent + 1,
        };
        parent = Some(line.indent);
        start += i + 1;
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "apiVersion: palisade/v1\nkind: Policy\napps:\n  /prod/web:\n    protocol: http\n    allow:\n      - from: /prod/edge\n      - from_cidr: 10.0.0.0/8\n        from: /x\n  \"/prod/api\":\n    balance: round_robin\n";

    #[test]
    fn finds_nested_keys_and_items() {
        let at = |p: &[Seg<'_>]| {
            let l = locate(DOC, p);
            (l.line, l.col)
        };
        assert_eq!(at(&[Seg::Key("apps")]), (3, 1));
        assert_eq!(at(&[Seg::Key("apps"), Seg::Key("/prod/web")]), (4, 3));
        assert_eq!(
            at(&[Seg::Key("apps"), Seg::Key("/prod/web"), Seg::Key("allow")]),
            (6, 5)
        );
        assert_eq!(
            at(&[
                Seg::Key("apps"),
                Seg::Key("/prod/web"),
                Seg::Key("allow"),
                Seg::Index(1)
            ]),
            (8, 7)
        );
        assert_eq!(
            at(&[
                Seg::Key("apps"),
                Seg::Key("/prod/web"),
                Seg::Key("allow"),
                Seg::Index(1),
                Seg::Key("from")
            ]),
            (9, 9)
        );
        assert_eq!(
            at(&[Seg::Key("apps"), Seg::Key("/prod/api"), Seg::Key("balance")]),
            (11, 5)
        );
        // A sequence at its key's own indentation, as serde writes it.
        let compact = "services:\n- app: /a\n  port: 1\n- app: /b\n  timeouts:\n    idle: 0s\nidentities: []\n";
        let l = locate(
            compact,
            &[
                Seg::Key("services"),
                Seg::Index(1),
                Seg::Key("timeouts"),
                Seg::Key("idle"),
            ],
        );
        assert_eq!((l.line, l.col), (6, 5));
        let l = locate(compact, &[Seg::Key("identities")]);
        assert_eq!((l.line, l.col), (7, 1));
        // Keys of a one-line flow mapping are found too.
        let flow = "apps:\n  /a:\n    timeouts: {connect: 2s, idle: 0s}\n    x: 1\n";
        let l = locate(
            flow,
            &[
                Seg::Key("apps"),
                Seg::Key("/a"),
                Seg::Key("timeouts"),
                Seg::Key("idle"),
            ],
        );
        assert_eq!((l.line, l.col), (3, 29));
        let l = locate(
            flow,
            &[
                Seg::Key("apps"),
                Seg::Key("/a"),
                Seg::Key("timeouts"),
                Seg::Key("nope"),
            ],
        );
        assert_eq!((l.line, l.col), (3, 5));
        // Missing keys fall back to the deepest step found.
        assert_eq!(at(&[Seg::Key("apps"), Seg::Key("/nope")]), (3, 1));
    }

    /// Found by the `policy` fuzz target: an empty key under a flow mapping
    /// was "found" at every offset and the search never advanced.
    #[test]
    fn an_empty_key_is_never_found_and_the_search_ends() {
        let doc = "apps:\n  /a: {idle: 0s}\n";
        let l = locate(doc, &[Seg::Key("apps"), Seg::Key("/a"), Seg::Key("")]);
        assert_eq!((l.line, l.col), (2, 3));
        let l = locate(doc, &[Seg::Key("apps"), Seg::Key("")]);
        assert_eq!((l.line, l.col), (1, 1));
    }
}
