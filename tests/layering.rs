//! The layering test: dependencies between the crate's top-level modules
//! run one way.
//!
//! It reads every `src/**/*.rs`, collects the `crate::…` paths each file
//! names (in `use` lines, grouped or not, and inline in code; comments and
//! string literals are skipped), maps each file to its top-level module and
//! checks two things:
//!
//! 1. no module imports a module of a higher layer ([`LAYERS`]);
//! 2. there is no import circle between top-level modules, whatever the
//!    layers say (modules of one layer may use each other, one way).
//!
//! The layer order is written here and in the crate guide (`src/lib.rs`);
//! change both together.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The layers, from the top. A module may import modules of its own layer
/// and of any layer below it, never above. `main` is the binary
/// (`src/main.rs`), which names the library as `pipemedic::`.
const LAYERS: &[&[&str]] = &[
    &["main"],
    &["cli"],
    // Whole programs built on the running application.
    &["demo", "evaluate", "check", "untrusted"],
    &["startup", "iam"],
    // The edge: router, extractors, error table.
    &["http"],
    // The application behind chat: commands, decisions, questions.
    &["chatops"],
    &["healing"],
    &["incidents", "ingest"],
    &[
        "plan",
        "approvals",
        "remediate",
        "ask",
        "scoring",
        "health",
        "charts",
        "paging",
        "evidence",
    ],
    &[
        "chat",
        "store",
        "playbooks",
        "detect",
        "aws",
        "bedrock",
        "config",
        "standin",
        "metrics",
        "telemetry",
    ],
    &["domain", "clock", "redact"],
];

/// One `crate::` reference: which file, which line, which module it names.
#[derive(Debug, Clone)]
struct Reference {
    file: String,
    line: usize,
    target: String,
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to: `src/chat/slack/mod.rs` →
/// `chat`, `src/aws.rs` → `aws`, `src/main.rs` → `main`; `src/lib.rs` has
/// none (it only declares the modules).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).expect("file under src/");
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    if rel.components().count() > 1 {
        return Some(first);
    }
    let stem = first.strip_suffix(".rs")?.to_string();
    (stem != "lib").then_some(stem)
}

/// The source with comments, string and character literals blanked out
/// (newlines kept, so line numbers still hold).
fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if (c == 'r' || (c == 'b' && next == Some('r')))
            && !is_ident(chars.get(i.wrapping_sub(1)).copied().filter(|_| i > 0))
            && raw_string_start(&chars, i).is_some()
        {
            let (open_len, hashes) = raw_string_start(&chars, i).expect("checked above");
            for _ in 0..open_len {
                out.push(' ');
            }
            i += open_len;
            let closing: String = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            let closing: Vec<char> = closing.chars().collect();
            while i < chars.len() && !chars[i..].starts_with(&closing) {
                out.push(blank(chars[i]));
                i += 1;
            }
            for _ in 0..closing.len().min(chars.len() - i) {
                out.push(' ');
            }
            i += closing.len();
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{1F600}') or a lifetime ('a).
            let end = if next == Some('\\') {
                chars[i + 2..]
                    .iter()
                    .position(|&c| c == '\'')
                    .map(|p| i + 2 + p)
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(end) => {
                    for _ in i..=end {
                        out.push(' ');
                    }
                    i = end + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// At `i`, `r"`, `r#"`, `br"`…: the length of the opening and the number
/// of `#`.
fn raw_string_start(chars: &[char], i: usize) -> Option<(usize, usize)> {
    let mut j = i;
    if chars[j] == 'b' {
        j += 1;
    }
    if chars.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let mut hashes = 0;
    while chars.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    (chars.get(j) == Some(&'"')).then_some((j + 1 - i, hashes))
}

fn is_ident(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || c == '_')
}

/// The top-level modules named right after `root::` (`crate::` in the
/// library, `pipemedic::` in the binary), with their line numbers. A group
/// `crate::{a, b::c, d::{e}}` names `a`, `b` and `d`.
fn references(code: &str, root: &str) -> Vec<(usize, String)> {
    let chars: Vec<char> = code.chars().collect();
    let root: Vec<char> = root.chars().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i + root.len() <= chars.len() {
        let at_root = chars[i..].starts_with(&root)
            && !(i > 0 && (is_ident(Some(chars[i - 1])) || chars[i - 1] == ':'));
        if !at_root {
            i += 1;
            continue;
        }
        let line = chars[..i].iter().filter(|&&c| c == '\n').count() + 1;
        let mut j = i + root.len();
        skip_space(&chars, &mut j);
        if chars.get(j) == Some(&'{') {
            // A group: the first segment of every item at depth one.
            j += 1;
            let mut depth = 1;
            let mut expecting_item = true;
            while j < chars.len() && depth > 0 {
                skip_space(&chars, &mut j);
                match chars.get(j) {
                    Some('{') => {
                        depth += 1;
                        j += 1;
                    }
                    Some('}') => {
                        depth -= 1;
                        j += 1;
                    }
                    Some(',') => {
                        if depth == 1 {
                            expecting_item = true;
                        }
                        j += 1;
                    }
                    Some(c) if is_ident(Some(*c)) => {
                        let name = ident_at(&chars, &mut j);
                        if depth == 1 && expecting_item {
                            found.push((line, name));
                            expecting_item = false;
                        }
                    }
                    Some(_) => j += 1,
                    None => break,
                }
            }
        } else {
            let name = ident_at(&chars, &mut j);
            if !name.is_empty() {
                found.push((line, name));
            }
        }
        i = j.max(i + 1);
    }
    found
}

fn skip_space(chars: &[char], j: &mut usize) {
    while chars.get(*j).is_some_and(|c| c.is_whitespace()) {
        *j += 1;
    }
}

fn ident_at(chars: &[char], j: &mut usize) -> String {
    let start = *j;
    while is_ident(chars.get(*j).copied()) {
        *j += 1;
    }
    chars[start..*j].iter().collect()
}

/// Every cross-module reference in `src/`.
fn all_references() -> Vec<(String, Reference)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut out = Vec::new();
    for file in files {
        let Some(module) = module_of(&src, &file) else {
            continue;
        };
        let source =
            fs::read_to_string(&file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
        let code = code_only(&source);
        let root = if module == "main" {
            "pipemedic::"
        } else {
            "crate::"
        };
        let shown = file
            .strip_prefix(src.parent().expect("src/ has a parent"))
            .expect("file under the crate")
            .display()
            .to_string();
        for (line, target) in references(&code, root) {
            if target != module {
                out.push((
                    module.clone(),
                    Reference {
                        file: shown.clone(),
                        line,
                        target,
                    },
                ));
            }
        }
    }
    out
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// Modules that exist in `src/`, for checking that every one has a layer.
fn modules() -> BTreeSet<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.iter().filter_map(|f| module_of(&src, f)).collect()
}

/// The graph between top-level modules, each edge with its first reference.
fn graph(refs: &[(String, Reference)]) -> BTreeMap<String, BTreeMap<String, Reference>> {
    let mut graph: BTreeMap<String, BTreeMap<String, Reference>> = BTreeMap::new();
    for (from, reference) in refs {
        graph
            .entry(from.clone())
            .or_default()
            .entry(reference.target.clone())
            .or_insert_with(|| reference.clone());
    }
    graph
}

/// The strongly connected components with more than one module (Tarjan).
fn circles(graph: &BTreeMap<String, BTreeMap<String, Reference>>) -> Vec<Vec<String>> {
    struct Walk<'g> {
        graph: &'g BTreeMap<String, BTreeMap<String, Reference>>,
        index: BTreeMap<String, usize>,
        low: BTreeMap<String, usize>,
        stack: Vec<String>,
        on_stack: BTreeSet<String>,
        next: usize,
        found: Vec<Vec<String>>,
    }
    impl Walk<'_> {
        fn visit(&mut self, v: &str) {
            self.index.insert(v.to_string(), self.next);
            self.low.insert(v.to_string(), self.next);
            self.next += 1;
            self.stack.push(v.to_string());
            self.on_stack.insert(v.to_string());
            let targets: Vec<String> = self
                .graph
                .get(v)
                .map(|t| t.keys().cloned().collect())
                .unwrap_or_default();
            for w in targets {
                if !self.index.contains_key(&w) {
                    self.visit(&w);
                    let low = self.low[v].min(self.low[&w]);
                    self.low.insert(v.to_string(), low);
                } else if self.on_stack.contains(&w) {
                    let low = self.low[v].min(self.index[&w]);
                    self.low.insert(v.to_string(), low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(&w);
                    let done = w == v;
                    component.push(w);
                    if done {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !walk.index.contains_key(v) {
            walk.visit(v);
        }
    }
    walk.found
}

/// One circle through `start` inside `component`, as a path of edges
/// (breadth-first, so it is a shortest one).
fn circle_path(
    graph: &BTreeMap<String, BTreeMap<String, Reference>>,
    component: &[String],
    start: &str,
) -> Vec<Reference> {
    let inside: BTreeSet<&str> = component.iter().map(String::as_str).collect();
    let mut came_from: BTreeMap<String, String> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start.to_string()]);
    while let Some(v) = queue.pop_front() {
        for w in graph.get(&v).into_iter().flat_map(|t| t.keys()) {
            if !inside.contains(w.as_str()) {
                continue;
            }
            if w == start {
                let mut path = vec![graph[&v][w].clone()];
                let mut at = v.clone();
                while at != start {
                    let prev = came_from[&at].clone();
                    path.push(graph[&prev][&at].clone());
                    at = prev;
                }
                path.reverse();
                return path;
            }
            if !came_from.contains_key(w) {
                came_from.insert(w.clone(), v.clone());
                queue.push_back(w.clone());
            }
        }
    }
    Vec::new()
}

#[test]
fn every_module_has_a_layer() {
    let missing: Vec<String> = modules()
        .into_iter()
        .filter(|m| layer_of(m).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "modules without a layer in tests/layering.rs (and the crate guide): {missing:?}"
    );
}

#[test]
fn imports_point_down() {
    let mut violations = Vec::new();
    for (from, reference) in all_references() {
        let (Some(from_layer), Some(to_layer)) = (layer_of(&from), layer_of(&reference.target))
        else {
            continue;
        };
        if to_layer < from_layer {
            violations.push(format!(
                "{}:{}: `{from}` imports `{}`, a higher layer",
                reference.file, reference.line, reference.target
            ));
        }
    }
    assert!(
        violations.is_empty(),
        "{} upward imports:\n{}",
        violations.len(),
        violations.join("\n")
    );
}

#[test]
fn no_import_circles() {
    let refs = all_references();
    let graph = graph(&refs);
    let mut report = Vec::new();
    for component in circles(&graph) {
        let path = circle_path(&graph, &component, &component[0]);
        let steps: Vec<String> = path
            .iter()
            .map(|r| format!("  → {} ({}:{})", r.target, r.file, r.line))
            .collect();
        report.push(format!(
            "circle among {component:?}:\n  {}\n{}",
            component[0],
            steps.join("\n")
        ));
    }
    assert!(
        report.is_empty(),
        "{} import circles between top-level modules:\n{}",
        report.len(),
        report.join("\n")
    );
}

#[test]
fn the_reader_sees_grouped_and_inline_paths() {
    let code = code_only(
        "use crate::{a, b::c, d::{e, f::g}};\n\
         // use crate::commented;\n\
         let s = \"crate::in_string\";\n\
         let r = r#\"crate::raw\"#;\n\
         fn f<'a>(x: &'a crate::h::T) -> char { crate::i::f(); 'x' }\n\
         pub(crate) fn g() {}\n",
    );
    let names: Vec<String> = references(&code, "crate::")
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    assert_eq!(names, ["a", "b", "d", "h", "i"]);
}
