//! The Prometheus text format (0.0.4) as meshd's `/metrics` writes it, read as
//! hostile input: bounded size and sample count, no panics, and an error that
//! names the line. Comments (`# HELP`, `# TYPE`) are skipped: names say enough.

/// Largest body taken from one `/metrics` answer; a bigger one is an error.
pub const MAX_BODY: usize = 16 * 1024 * 1024;
/// Most samples taken from one body.
pub const MAX_SAMPLES: usize = 500_000;
/// Most labels on one sample.
pub const MAX_LABELS: usize = 32;

/// One sample: a series (name and labels) and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric name, e.g. `palisade_meshd_requests_total`.
    pub name: String,
    /// Labels in the order written.
    pub labels: Vec<(String, String)>,
    /// The value (`+Inf`, `-Inf` and `NaN` included).
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, if present.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a body is not Prometheus text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The body is over `MAX_BODY`.
    #[error("the metrics body is larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// More than `MAX_SAMPLES` samples.
    #[error("the metrics body has more than {limit} samples")]
    TooManySamples {
        /// The limit.
        limit: usize,
    },
    /// A line that is not a comment, blank, or a sample.
    #[error("line {line}: {message} (not Prometheus text format)")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// Parses a whole body into its samples.
pub fn parse(body: &[u8]) -> Result<Vec<Sample>, ParseError> {
    if body.len() > MAX_BODY {
        return Err(ParseError::TooLarge { limit: MAX_BODY });
    }
    let mut out = Vec::new();
    for (i, raw) in body.split(|&b| b == b'\n').enumerate() {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        let trimmed = trim(line);
        if trimmed.is_empty() || trimmed[0] == b'#' {
            continue;
        }
        if out.len() >= MAX_SAMPLES {
            return Err(ParseError::TooManySamples { limit: MAX_SAMPLES });
        }
        let sample = parse_line(trimmed).map_err(|message| ParseError::Line {
            line: i + 1,
            message,
        })?;
        out.push(sample);
    }
    Ok(out)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// A cursor over one line's bytes.
struct Cursor<'a> {
    s: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn skip_ws(&mut self) -> usize {
        let start = self.at;
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.at += 1;
        }
        self.at - start
    }

    /// A metric or label name: `[a-zA-Z_:][a-zA-Z0-9_:]*` (`:` only in metric names).
    fn name(&mut self, colons: bool) -> Result<String, String> {
        let start = self.at;
        while let Some(c) = self.peek() {
            let ok = c.is_ascii_alphabetic()
                || c == b'_'
                || (colons && c == b':')
                || (self.at > start && c.is_ascii_digit());
            if !ok {
                break;
            }
            self.at += 1;
        }
        if self.at == start {
            return Err(format!("expected a name at column {}", self.at + 1));
        }
        // Only ASCII was taken, so this cannot fail; map it anyway rather than unwrap.
        String::from_utf8(self.s[start..self.at].to_vec()).map_err(|e| e.to_string())
    }

    /// A quoted label value with `\\`, `\"` and `\n` escapes.
    fn quoted(&mut self) -> Result<String, String> {
        if self.peek() != Some(b'"') {
            return Err(format!("expected `\"` at column {}", self.at + 1));
        }
        self.at += 1;
        let mut value = Vec::new();
        loop {
            match self.peek() {
                None => return Err("unterminated label value".into()),
                Some(b'"') => {
                    self.at += 1;
                    break;
                }
                Some(b'\\') => {
                    let escaped = match self.s.get(self.at + 1) {
                        Some(b'\\') => b'\\',
                        Some(b'"') => b'"',
                        Some(b'n') => b'\n',
                        _ => return Err(format!("bad escape at column {}", self.at + 1)),
                    };
                    value.push(escaped);
                    self.at += 2;
                }
                Some(c) => {
                    value.push(c);
                    self.at += 1;
                }
            }
        }
        String::from_utf8(value).map_err(|_| "a label value is not UTF-8".to_owned())
    }

    /// The next run of non-blank bytes.
    fn word(&mut self) -> &[u8] {
        let start = self.at;
        while matches!(self.peek(), Some(c) if c != b' ' && c != b'\t') {
            self.at += 1;
        }
        &self.s[start..self.at]
    }
}

fn parse_line(line: &[u8]) -> Result<Sample, String> {
    let mut c = Cursor { s: line, at: 0 };
    let name = c.name(true)?;
    let mut labels = Vec::new();
    let mut blank = c.skip_ws();
    if c.peek() == Some(b'{') {
        c.at += 1;
        loop {
            c.skip_ws();
            if c.peek() == Some(b'}') {
                c.at += 1;
                break;
            }
            if labels.len() >= MAX_LABELS {
                return Err(format!("more than {MAX_LABELS} labels"));
            }
            let key = c.name(false)?;
            c.skip_ws();
            if c.peek() != Some(b'=') {
                return Err(format!("expected `=` after label `{key}`"));
            }
            c.at += 1;
            c.skip_ws();
            let value = c.quoted()?;
            labels.push((key, value));
            c.skip_ws();
            match c.peek() {
                Some(b',') => c.at += 1,
                Some(b'}') => {}
                _ => return Err(format!("expected `,` or `}}` at column {}", c.at + 1)),
            }
        }
        blank = c.skip_ws();
    }
    if blank == 0 {
        return Err(format!("expected a blank before the value of `{name}`"));
    }
    let value = parse_value(c.word())?;
    if c.skip_ws() > 0 && c.peek().is_some() {
        let ts = c.word();
        std::str::from_utf8(ts)
            .ok()
            .and_then(|t| t.parse::<i64>().ok())
            .ok_or_else(|| format!("bad timestamp after the value of `{name}`"))?;
    }
    if c.peek().is_some() {
        return Err(format!("unexpected text after the sample of `{name}`"));
    }
    Ok(Sample {
        name,
        labels,
        value,
    })
}

fn parse_value(word: &[u8]) -> Result<f64, String> {
    let text = std::str::from_utf8(word).map_err(|_| "the value is not text".to_owned())?;
    match text {
        "" => Err("a sample without a value".into()),
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => text
            .parse::<f64>()
            .ok()
            // Rust also reads `inf`, `infinity` and `nan`; Prometheus spells them as above.
            .filter(|v| v.is_finite())
            .ok_or_else(|| format!("`{}` is not a number", text.escape_debug())),
    }
}

#[cfg(test)]
#[path = "prom_text_tests.rs"]
mod tests;
