//! Property tests of every untrusted-input parser: arbitrary bytes, seeds
//! mutated byte by byte, and JSON seeds with a subtree swapped for an
//! arbitrary value must never panic. The fuzz targets in `fuzz/` search the
//! same entry points far longer; these keep the guarantee in every test run.

use std::path::PathBuf;

use proptest::prelude::*;
use serde_json::Value;

use super::Parser;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Every seed of every parser, loaded once per test.
fn all_seeds() -> Vec<(Parser, Vec<Vec<u8>>)> {
    Parser::ALL
        .iter()
        .map(|&p| (p, p.seeds(&fixtures())))
        .collect()
}

#[test]
fn every_parser_has_seeds_and_accepts_one_of_them() {
    // The harness is only worth something if it reaches past each parser's
    // first check: some seed must be accepted.
    let mut problems = Vec::new();
    for (parser, seeds) in all_seeds() {
        if seeds.is_empty() {
            problems.push(format!("{}: no seeds", parser.name()));
        } else if seeds.iter().all(|s| parser.feed(s) == 0) {
            problems.push(format!(
                "{}: none of {} seeds is accepted",
                parser.name(),
                seeds.len()
            ));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Inputs a fuzz target once crashed on, kept under
/// `tests/fixtures/fuzz-regressions/<parser name>/`: each must now be fed
/// without a panic. A crash found by `cargo fuzz` is added there.
#[test]
fn saved_crash_inputs_no_longer_panic() {
    let root = fixtures().join("fuzz-regressions");
    let mut fed = 0;
    for dir in super::dirs_in(&root) {
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let parser = Parser::from_name(name)
            .unwrap_or_else(|| panic!("{}: no parser is named {name}", dir.display()));
        for file in super::files_in(&dir) {
            parser.feed(&std::fs::read(&file).unwrap());
            fed += 1;
        }
    }
    assert!(fed > 0, "no saved inputs under {}", root.display());
}

#[test]
fn names_round_trip() {
    for &parser in Parser::ALL {
        assert_eq!(Parser::from_name(parser.name()), Some(parser));
    }
    assert_eq!(Parser::from_name("nope"), None);
}

#[test]
fn garbage_is_refused_not_accepted() {
    for &parser in Parser::ALL {
        if parser == Parser::Config || parser == Parser::SlackCommand {
            // An empty config is the defaults; a form tolerates anything.
            continue;
        }
        assert_eq!(parser.feed(b"\xff\xfe{[ not input"), 0, "{}", parser.name());
    }
}

/// One edit of a byte string.
#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    Truncate(usize),
    Duplicate(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Flip(i, b)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, b)| Edit::Insert(i, b)),
        (any::<usize>(), 1usize..64).prop_map(|(i, n)| Edit::Remove(i, n)),
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), 1usize..64).prop_map(|(i, n)| Edit::Duplicate(i, n)),
    ]
}

fn apply(mut data: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for edit in edits {
        let len = data.len().max(1);
        match edit {
            Edit::Flip(i, b) => {
                if let Some(byte) = data.get_mut(i % len) {
                    *byte ^= b | 1;
                }
            }
            Edit::Insert(i, bytes) => {
                let at = (i % (data.len() + 1)).min(data.len());
                data.splice(at..at, bytes.iter().copied());
            }
            Edit::Remove(i, n) => {
                let at = i % len;
                let end = (at + n).min(data.len());
                if at < end {
                    data.drain(at..end);
                }
            }
            Edit::Truncate(i) => data.truncate(i % len),
            Edit::Duplicate(i, n) => {
                let at = i % len;
                let end = (at + n).min(data.len());
                if at < end {
                    let copy = data[at..end].to_vec();
                    data.splice(end..end, copy);
                }
            }
        }
    }
    data
}

/// Arbitrary JSON, with the values parsers mishandle most: huge and
/// negative numbers, empty and long strings, control characters, deep
/// nesting.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop_oneof![Just(1.7e308), Just(-1.0), Just(0.0), Just(1e-300)].prop_map(Value::from),
        "\\PC{0,24}".prop_map(Value::String),
        "[\\x00-\\x1f<>@!&*_`]{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("0000-01-01T00:00:00Z"),
            Just("2026-13-40T99:99:99Z"),
            Just("9999-12-31T23:59:59Z"),
            Just("2026-11-20T10:00:00Z"),
        ]
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every JSON pointer in `value`, the root included.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                pointers(item, format!("{at}/{i}"), out);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let escaped = key.replace('~', "~0").replace('/', "~1");
                pointers(item, format!("{at}/{escaped}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// Swaps the subtree at the `pick`-th pointer of `seed` for `with`.
fn swap_subtree(seed: &Value, pick: usize, with: Value) -> Value {
    let mut all = Vec::new();
    pointers(seed, String::new(), &mut all);
    let mut out = seed.clone();
    let pointer = &all[pick % all.len()];
    if pointer.is_empty() {
        return with;
    }
    if let Some(slot) = out.pointer_mut(pointer) {
        *slot = with;
    }
    out
}

fn parser() -> impl Strategy<Value = Parser> {
    prop::sample::select(Parser::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(parser in parser(), data in prop::collection::vec(any::<u8>(), 0..512)) {
        parser.feed(&data);
    }

    #[test]
    fn mutated_seeds_never_panic(
        parser in parser(),
        pick in any::<usize>(),
        edits in prop::collection::vec(edit(), 1..8),
    ) {
        let seeds = parser.seeds(&fixtures());
        prop_assume!(!seeds.is_empty());
        let seed = seeds[pick % seeds.len()].clone();
        parser.feed(&apply(seed, &edits));
    }

    #[test]
    fn json_seeds_with_a_swapped_subtree_never_panic(
        parser in parser(),
        pick in any::<usize>(),
        at in any::<usize>(),
        with in json_value(),
    ) {
        prop_assume!(parser.reads_json());
        let seeds: Vec<Value> = parser
            .seeds(&fixtures())
            .iter()
            .filter_map(|s| serde_json::from_slice(s).ok())
            .collect();
        prop_assume!(!seeds.is_empty());
        let mutated = swap_subtree(&seeds[pick % seeds.len()], at, with);
        let bytes = serde_json::to_vec(&mutated).unwrap();
        parser.feed(&bytes);
    }
}
