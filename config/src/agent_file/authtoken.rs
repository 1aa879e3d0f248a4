//! Writing the authtoken into a file in place, keeping its comments and
//! layout, and replacing files atomically.

use super::*;

/// A YAML scalar for `value`: plain when it reads back as the same string,
/// else double-quoted.
pub(super) fn yaml_scalar(value: &str) -> String {
    let safe = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        && !value.starts_with(['-', '.']);
    let reads_back =
        matches!(yaml_serde::from_str::<Value>(value), Ok(Value::String(s)) if s == value);
    if safe && reads_back {
        value.to_string()
    } else {
        serde_json::to_string(value).unwrap_or_default()
    }
}

/// Where a file's authtoken lives.
pub(super) fn authtoken_of(value: &Value, version: u8) -> Option<&str> {
    let holder = if version == 3 {
        value.get("agent")?
    } else {
        value
    };
    holder.get("authtoken")?.as_str()
}

/// The text of `text` with its authtoken set to `token`.
pub fn edit_authtoken(origin: &str, text: &str, token: &str) -> Result<String, AgentFileError> {
    let ctx = Ctx::new(origin, text);
    let value = ctx.parse_value(text)?;
    let scalar = yaml_scalar(token);
    let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let mut out = PhysicalLines::new(text, eol);
    let version = match &value {
        Value::Null => {
            // Empty or only comments: append a new document's settings.
            out.insert(out.len(), &format!("version: \"{NEW_FILE_VERSION}\""));
            out.insert(out.len(), "agent:");
            out.insert(out.len(), &format!("  authtoken: {scalar}"));
            NEW_FILE_VERSION
        }
        Value::Mapping(map) => {
            let version = ctx.version(map)?;
            let lines = &ctx.lines;
            let top_indent = lines.first().map_or(0, |l| l.indent);
            let top = |key: &str| {
                lines
                    .iter()
                    .position(|l| l.indent == top_indent && !l.item && key_matches(l.text, key))
            };
            // New top-level keys go after `version:`, else before the first key.
            let insert_at = top("version")
                .map_or_else(|| lines.first().map_or(0, |l| l.no - 1), |i| lines[i].no);
            let pad = " ".repeat(top_indent);
            if version == 2 {
                match top("authtoken") {
                    Some(i) => out.set_value(lines, i, &scalar),
                    None => out.insert(insert_at, &format!("{pad}authtoken: {scalar}")),
                }
            } else if let Some(a) = top("agent") {
                let agent = lines[a];
                let inline = inline_value(agent.text);
                if !inline.is_empty() && !["{}", "~", "null"].contains(&inline) {
                    let kind =
                        ErrorKind::Invalid("is written inline; set agent.authtoken by hand".into());
                    return Err(ctx.error(Some(agent.no), Some("agent".into()), kind));
                }
                if !inline.is_empty() {
                    out.replace(agent.no - 1, &format!("{pad}agent:"));
                }
                let nested = children(lines, a);
                let level = nested.first().map_or(agent.indent + 2, |l| l.indent);
                let existing = nested
                    .iter()
                    .position(|l| l.indent == level && !l.item && key_matches(l.text, "authtoken"));
                match existing {
                    // Index into `lines`: children start right after `a`.
                    Some(i) => out.set_value(lines, a + 1 + i, &scalar),
                    None => out.insert(
                        agent.no,
                        &format!("{}authtoken: {scalar}", " ".repeat(level)),
                    ),
                }
            } else {
                out.insert(insert_at, &format!("{pad}agent:"));
                out.insert(insert_at + 1, &format!("{pad}  authtoken: {scalar}"));
            }
            version
        }
        _ => return Err(ctx.not_a_mapping()),
    };
    let edited = out.finish();
    let written = yaml_serde::from_str::<Value>(&edited).ok();
    if written.as_ref().and_then(|v| authtoken_of(v, version)) != Some(token) {
        let kind = ErrorKind::Invalid("could not be updated in place; set it by hand".into());
        return Err(AgentFileError {
            origin: origin.to_string(),
            line: None,
            key: Some("authtoken".into()),
            kind,
        });
    }
    Ok(edited)
}

/// What follows `key:` on a line, without a trailing comment.
pub(super) fn inline_value(text: &str) -> &str {
    let after = text.split_once(':').map_or("", |(_, rest)| rest);
    let (value, _) = split_comment(after);
    value.trim()
}

/// Splits `s` before a ` #` comment outside quotes.
pub(super) fn split_comment(s: &str) -> (&str, Option<&str>) {
    let mut quote = None;
    let mut prev_space = true;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') if prev_space => return (&s[..i], Some(&s[i..])),
            _ => {}
        }
        prev_space = c == ' ' || c == '\t';
    }
    (s, None)
}

/// A file's physical lines, edited by line index.
pub(super) struct PhysicalLines {
    pub(super) lines: Vec<String>,
    pub(super) eol: &'static str,
}

impl PhysicalLines {
    pub(super) fn new(text: &str, eol: &'static str) -> Self {
        PhysicalLines {
            lines: text.split_inclusive('\n').map(str::to_owned).collect(),
            eol,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.lines.len()
    }

    /// Inserts `content` as a new line before index `at`.
    pub(super) fn insert(&mut self, at: usize, content: &str) {
        let at = at.min(self.lines.len());
        if let Some(prev) = at.checked_sub(1).and_then(|i| self.lines.get_mut(i)) {
            if !prev.ends_with('\n') {
                prev.push_str(self.eol);
            }
        }
        self.lines.insert(at, format!("{content}{}", self.eol));
    }

    /// Replaces line `at`'s content, keeping its line ending.
    pub(super) fn replace(&mut self, at: usize, content: &str) {
        if let Some(line) = self.lines.get_mut(at) {
            let ending = if line.ends_with("\r\n") {
                "\r\n"
            } else if line.ends_with('\n') {
                "\n"
            } else {
                ""
            };
            *line = format!("{content}{ending}");
        }
    }

    /// Sets the value of the key on content line `lines[at]`, keeping its
    /// comment, and drops the old value's continuation lines.
    pub(super) fn set_value(&mut self, lines: &[Line<'_>], at: usize, scalar: &str) {
        let line = lines[at];
        let index = line.no - 1;
        let Some(physical) = self.lines.get(index) else {
            return;
        };
        let body = physical.trim_end_matches(['\r', '\n']);
        let Some(colon) = body.find(':') else { return };
        let (_, comment) = split_comment(&body[colon + 1..]);
        let mut content = format!("{} {scalar}", &body[..=colon]);
        if let Some(comment) = comment {
            content.push(' ');
            content.push_str(comment);
        }
        self.replace(index, &content);
        let mut continuation: Vec<usize> = children(lines, at).iter().map(|l| l.no - 1).collect();
        continuation.dedup();
        for index in continuation.into_iter().rev() {
            if index < self.lines.len() {
                self.lines.remove(index);
            }
        }
    }

    pub(super) fn finish(self) -> String {
        self.lines.concat()
    }
}

/// Creates `path` (and its directory) readable by its owner only.
pub(super) fn create_file(path: &Path, text: &str) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)?;
    }
    let mut file = private_file(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// Replaces the file `path` points to (following symlinks) atomically,
/// keeping its permissions.
pub(super) fn replace_file(path: &Path, text: &str) -> io::Result<()> {
    let target = fs::canonicalize(path)?;
    let permissions = fs::metadata(&target)?.permissions();
    let name = target
        .file_name()
        .map_or_else(|| "config".into(), |n| n.to_string_lossy().into_owned());
    let temp = target.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let result = write_then_rename(&temp, &target, text, permissions);
    if result.is_err() {
        // Best effort: the temporary file is ours and useless now.
        let _ = fs::remove_file(&temp);
    }
    result
}

pub(super) fn write_then_rename(
    temp: &Path,
    target: &Path,
    text: &str,
    permissions: fs::Permissions,
) -> io::Result<()> {
    let mut file = private_file(temp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    fs::set_permissions(temp, permissions)?;
    fs::rename(temp, target)
}

pub(super) fn private_file(path: &Path) -> io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}
