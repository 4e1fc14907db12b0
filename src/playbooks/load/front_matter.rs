//! Splitting a playbook file into YAML front matter and Markdown body, and
//! placing YAML parse errors at their file line.

use std::path::Path;

use super::PlaybookError;
use crate::playbooks::locate::{locate, path_segments};

pub(super) struct FrontMatter<'a> {
    pub(super) yaml: &'a str,
    /// Lines before the YAML's first line.
    pub(super) offset: usize,
    pub(super) body: &'a str,
    pub(super) body_line: usize,
}

pub(super) fn split_front_matter(text: &str) -> Result<FrontMatter<'_>, (usize, String)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.split_inclusive('\n');
    let first = lines.next().unwrap_or_default();
    if first.trim_end() != "---" {
        return Err((
            1,
            "a playbook starts with a `---` line, then YAML front matter, then `---`".to_string(),
        ));
    }
    let start = first.len();
    let mut pos = start;
    let mut line_no = 1;
    for line in lines {
        line_no += 1;
        let trimmed = line.trim_end();
        if trimmed == "---" || trimmed == "..." {
            return Ok(FrontMatter {
                yaml: &text[start..pos],
                offset: 1,
                body: &text[pos + line.len()..],
                body_line: line_no + 1,
            });
        }
        pos += line.len();
    }
    Err((
        1,
        "the front matter is not closed by a `---` line".to_string(),
    ))
}

pub(super) fn yaml_error(
    file: &Path,
    front: &FrontMatter<'_>,
    e: &serde_norway::Error,
) -> PlaybookError {
    let text = e.to_string();
    let text = match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    };
    let (parent, message) = match text.split_once(": ") {
        Some((path, rest)) if !path.is_empty() && !path.contains(' ') => {
            (Some(path.to_string()), rest.to_string())
        }
        _ => (None, text),
    };
    // Name the offending key itself for unknown and missing fields.
    let key = ["unknown field `", "missing field `"]
        .iter()
        .find_map(|p| message.strip_prefix(p))
        .and_then(|rest| rest.split('`').next())
        .map(str::to_string);
    let field = match (parent, key) {
        (Some(parent), Some(key)) => format!("{parent}.{key}"),
        (None, Some(key)) => key,
        (Some(parent), None) => parent,
        (None, None) => "front matter".to_string(),
    };
    let line = e
        .location()
        .map(|l| l.line() + front.offset)
        .unwrap_or_else(|| locate(front.yaml, &path_segments(&field)) + front.offset);
    PlaybookError {
        file: file.to_path_buf(),
        line,
        field,
        message,
    }
}
