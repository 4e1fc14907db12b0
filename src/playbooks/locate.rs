//! Field locations in front matter: the line of `actions[1].with.mode`.
//!
//! serde_norway reports a position only for the first structural error, so
//! the semantic checks place their errors by walking the front matter's text
//! along the field path, in block and flow style. Best effort by design: a
//! field that cannot be found is placed at its nearest parent. This module
//! only reads text; it does not parse or judge YAML.

#[derive(Debug, PartialEq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

pub(crate) fn path_segments(path: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (name, rest) = part.split_once('[').unwrap_or((part, ""));
        if !name.is_empty() {
            out.push(Seg::Key(name.to_string()));
        }
        for idx in rest.split('[') {
            if let Some(n) = idx
                .trim_end_matches(']')
                .parse()
                .ok()
                .filter(|_| !idx.is_empty())
            {
                out.push(Seg::Index(n));
            }
        }
    }
    out
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_content(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#')
}

/// Column of the first key on a line, past any `- ` sequence markers.
fn key_column(line: &str) -> usize {
    let mut col = indent_of(line);
    let bytes = line.as_bytes();
    while col < bytes.len() && bytes[col] == b'-' && bytes.get(col + 1).is_some_and(|b| *b == b' ')
    {
        col += 2;
        while col < bytes.len() && bytes[col] == b' ' {
            col += 1;
        }
    }
    col
}

fn key_at(line: &str, col: usize, key: &str) -> bool {
    let rest = line.get(col..).unwrap_or_default();
    [
        format!("{key}:"),
        format!("\"{key}\":"),
        format!("'{key}':"),
    ]
    .iter()
    .any(|k| rest.starts_with(k.as_str()))
}

fn key_in_flow(line: &str, from: usize, key: &str) -> bool {
    let rest = line.get(from..).unwrap_or_default();
    let Some(open) = rest.find('{') else {
        return false;
    };
    let flow = &rest[open..];
    ["{", ","].iter().any(|sep| {
        flow.match_indices(sep).any(|(i, _)| {
            let after = flow[i + 1..].trim_start();
            after.starts_with(&format!("{key}:")) || after.starts_with(&format!("\"{key}\":"))
        })
    })
}

/// 1-based line of the field at `path` in `yaml`, or of its nearest parent
/// that can be found (line 1 at worst).
pub(crate) fn locate(yaml: &str, path: &[Seg]) -> usize {
    let lines: Vec<&str> = yaml.lines().collect();
    // (line index of the parent node, column of the parent's children, or
    // None at the root)
    let mut parent: Option<(usize, usize, bool)> = None;
    let mut found = 0usize;
    for seg in path {
        let next = match seg {
            Seg::Key(key) => find_key(&lines, parent, key),
            Seg::Index(i) => parent.and_then(|p| find_index(&lines, p, *i)),
        };
        match next {
            Some((line, col)) => {
                found = line;
                parent = Some((line, col, matches!(seg, Seg::Index(_))));
            }
            None => break,
        }
    }
    found + 1
}

fn find_key(
    lines: &[&str],
    parent: Option<(usize, usize, bool)>,
    key: &str,
) -> Option<(usize, usize)> {
    let Some((start, parent_col, item)) = parent else {
        return lines
            .iter()
            .position(|l| indent_of(l) == 0 && key_at(l, 0, key))
            .map(|i| (i, 0));
    };
    // Inline on the parent line: `- id: x` (key after a sequence marker) or
    // `with: { stage: x }` (flow mapping).
    let first = lines.get(start)?;
    let first_key = key_column(first);
    if first_key > parent_col.min(indent_of(first)) && key_at(first, first_key, key) {
        return Some((start, first_key));
    }
    if key_in_flow(first, parent_col, key) {
        return Some((start, parent_col));
    }
    let mut child_col = None;
    for (i, line) in lines.iter().enumerate().skip(start + 1) {
        if !is_content(line) {
            continue;
        }
        let ind = indent_of(line);
        if ind < parent_col
            || (!item && ind == parent_col && !line.trim_start().starts_with("- "))
            || (item && ind == parent_col.saturating_sub(2) && line.trim_start().starts_with("- "))
        {
            break;
        }
        let col = key_column(line);
        let child = *child_col.get_or_insert(col);
        if col == child && key_at(line, col, key) {
            return Some((i, col));
        }
        if key_in_flow(line, 0, key) && col == child {
            return Some((i, col));
        }
    }
    None
}

fn find_index(
    lines: &[&str],
    (start, parent_col, _): (usize, usize, bool),
    index: usize,
) -> Option<(usize, usize)> {
    let first = lines.get(start)?;
    if first
        .get(parent_col..)
        .is_some_and(|rest| rest.contains('['))
    {
        return Some((start, parent_col));
    }
    let mut seq_col = None;
    let mut count = 0;
    for (i, line) in lines.iter().enumerate().skip(start + 1) {
        if !is_content(line) {
            continue;
        }
        let ind = indent_of(line);
        let dash = line.trim_start().starts_with("- ") || line.trim() == "-";
        if ind < parent_col || (ind == parent_col && !dash) {
            break;
        }
        if dash && *seq_col.get_or_insert(ind) == ind {
            if count == index {
                return Some((i, key_column(line)));
            }
            count += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = "id: a\nwhen:\n  - { metric: x, direction: sideways }\n  - status: failed\n    stage: Test\nactions:\n- id: one\n  uses: shell\n  with: { stage: \"{{stage}}\" }\n- id: two\n  uses: http\n  with:\n    url: x\n    method: GET\n";

    #[test]
    fn locates_block_and_flow_fields() {
        let at = |p: &str| locate(YAML, &path_segments(p));
        assert_eq!(at("id"), 1);
        assert_eq!(at("when"), 2);
        assert_eq!(at("when[0].direction"), 3);
        assert_eq!(at("when[1].status"), 4);
        assert_eq!(at("when[1].stage"), 5);
        assert_eq!(at("actions[0]"), 7);
        assert_eq!(at("actions[0].id"), 7);
        assert_eq!(at("actions[0].uses"), 8);
        assert_eq!(at("actions[0].with.stage"), 9);
        assert_eq!(at("actions[1].uses"), 11);
        assert_eq!(at("actions[1].with.method"), 14);
        // Unknown leaves fall back to their nearest parent.
        assert_eq!(at("actions[1].risk"), 10);
    }

    #[test]
    fn path_segments_split_keys_and_indices() {
        assert_eq!(
            path_segments("actions[2].with.argv[0]"),
            vec![
                Seg::Key("actions".into()),
                Seg::Index(2),
                Seg::Key("with".into()),
                Seg::Key("argv".into()),
                Seg::Index(0)
            ]
        );
    }
}
