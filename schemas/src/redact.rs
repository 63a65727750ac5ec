//! How a URL may be shown in logs, errors, API answers and metrics: its user
//! info (`user:password@`) becomes `***@`. The one redaction both binaries
//! use; pure string work, so it also covers URLs no parser accepts.

use std::fmt;

/// A URL with its credentials removed at construction: holding one cannot
/// leak what it hid. Build it from the raw URL; show it with `Display`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RedactedUrl(String);

impl RedactedUrl {
    /// `http://user:secret@host:8080/x` -> `http://***@host:8080/x`; text
    /// without `scheme://` or without user info is kept as it is.
    pub fn new(url: &str) -> RedactedUrl {
        RedactedUrl(redact(url))
    }

    /// The redacted text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RedactedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for RedactedUrl {
    fn from(url: &str) -> RedactedUrl {
        RedactedUrl::new(url)
    }
}

impl From<&String> for RedactedUrl {
    fn from(url: &String) -> RedactedUrl {
        RedactedUrl::new(url)
    }
}

/// Replaces the user info of every `scheme://user@host` in `text` with `***`,
/// for text that may quote a URL (a git error message, say).
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        // The authority ends at the path, query, fragment or whitespace.
        let end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(i) => {
                out.push_str("***");
                out.push_str(&authority[i..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_becomes_stars_and_nothing_else_changes() {
        for (raw, shown) in [
            ("http://user:secret@host:8080/", "http://***@host:8080/"),
            ("https://tok@h/v2/apps?x=1", "https://***@h/v2/apps?x=1"),
            ("http://a:b@c@h", "http://***@h"),
            ("http://host:8080/a@b", "http://host:8080/a@b"),
            ("http://host", "http://host"),
            ("/var/lib/policy", "/var/lib/policy"),
            ("git@github.com:org/repo", "git@github.com:org/repo"),
            (
                "fatal: 'https://u:p@h/r' and http://x:y@z",
                "fatal: 'https://***@h/r' and http://***@z",
            ),
        ] {
            assert_eq!(RedactedUrl::new(raw).to_string(), shown, "{raw}");
        }
    }
}
