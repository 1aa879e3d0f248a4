//! Key paths (`tunnels.web.addr`) and finding a key's line in the text
//! by its indentation.

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seg {
    Key(String),
    Index(usize),
}

impl From<&str> for Seg {
    fn from(key: &str) -> Self {
        Seg::Key(key.to_string())
    }
}

impl From<&String> for Seg {
    fn from(key: &String) -> Self {
        Seg::Key(key.clone())
    }
}

impl From<usize> for Seg {
    fn from(index: usize) -> Self {
        Seg::Index(index)
    }
}

macro_rules! path {
    ($($seg:expr),* $(,)?) => { [$(Seg::from($seg)),*] };
}

/// `a.b[1].c`, the form `serde_path_to_error` prints.
pub(super) fn render(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

pub(super) fn join(base: &[Seg], more: impl Into<Seg>) -> Vec<Seg> {
    let mut path = base.to_vec();
    path.push(more.into());
    path
}

// ------------------------------------------------ locating keys in the text

/// A line of content (not blank, not a comment). A sequence item
/// `  - name: x` becomes two: the item marker (`item`, indent 2) and
/// `name: x` at indent 4.
#[derive(Debug, Clone, Copy)]
pub(super) struct Line<'a> {
    /// 1-based line number in the file.
    pub(super) no: usize,
    pub(super) indent: usize,
    pub(super) text: &'a str,
    pub(super) item: bool,
}

pub(super) fn content_lines(text: &str) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let raw = if i == 0 {
            raw.strip_prefix('\u{feff}').unwrap_or(raw)
        } else {
            raw
        };
        let trimmed = raw.trim_start_matches(' ');
        let mut indent = raw.len() - trimmed.len();
        let mut rest = trimmed.trim_end();
        let marker = rest == "---" || rest.starts_with("--- ") || rest == "...";
        if rest.is_empty() || rest.starts_with('#') || (indent == 0 && marker) {
            continue;
        }
        loop {
            if rest == "-" || rest.starts_with("- ") {
                out.push(Line {
                    no: i + 1,
                    indent,
                    text: "-",
                    item: true,
                });
                let after = &rest[1..];
                let value = after.trim_start_matches(' ');
                indent += 1 + after.len() - value.len();
                rest = value;
                if rest.is_empty() || rest.starts_with('#') {
                    break;
                }
            } else {
                out.push(Line {
                    no: i + 1,
                    indent,
                    text: rest,
                    item: false,
                });
                break;
            }
        }
    }
    out
}

/// Whether `text` (a line's content) is the mapping key `key`, plain or
/// quoted.
pub(super) fn key_matches(text: &str, key: &str) -> bool {
    let rest = if let Some(quoted) = text.strip_prefix('"') {
        quoted.strip_prefix(key).and_then(|r| r.strip_prefix('"'))
    } else if let Some(quoted) = text.strip_prefix('\'') {
        quoted.strip_prefix(key).and_then(|r| r.strip_prefix('\''))
    } else {
        text.strip_prefix(key)
    };
    match rest.map(|r| r.trim_start_matches(' ')) {
        Some(r) => r == ":" || r.starts_with(": ") || r.starts_with(":\t"),
        None => false,
    }
}

/// The lines nested under `scope[at]`: deeper ones, plus sequence items at
/// the same indent under a key (`key:\n- a`).
pub(super) fn children<'s, 'a>(scope: &'s [Line<'a>], at: usize) -> &'s [Line<'a>] {
    let head = scope[at];
    let rest = &scope[at + 1..];
    let end = rest
        .iter()
        .position(|l| {
            !(l.indent > head.indent || (l.indent == head.indent && l.item && !head.item))
        })
        .unwrap_or(rest.len());
    &rest[..end]
}

/// Line of the key at `path`, or of its nearest ancestor found (so a
/// missing key points at its parent). `nth` picks among several matches of
/// the last key (duplicates).
pub(super) fn locate_nth(lines: &[Line<'_>], path: &[Seg], nth: usize) -> Option<usize> {
    let mut scope = lines;
    let mut found = None;
    for (depth, seg) in path.iter().enumerate() {
        let Some(first) = scope.first() else { break };
        let level = first.indent;
        let last = depth + 1 == path.len();
        let pos = match seg {
            Seg::Key(key) => scope
                .iter()
                .enumerate()
                .filter(|(_, l)| l.indent == level && !l.item && key_matches(l.text, key))
                .map(|(i, _)| i)
                .nth(if last { nth } else { 0 }),
            Seg::Index(n) => scope
                .iter()
                .enumerate()
                .filter(|(_, l)| l.indent == level && l.item)
                .map(|(i, _)| i)
                .nth(*n),
        };
        let Some(at) = pos else { break };
        found = Some(scope[at].no);
        scope = children(scope, at);
    }
    found
}

pub(super) fn locate(lines: &[Line<'_>], path: &[Seg]) -> Option<usize> {
    locate_nth(lines, path, 0)
}
