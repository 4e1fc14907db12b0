//! Writes the starting corpus of every fuzz target from `tests/fixtures`:
//! `fuzz/corpus/<target>/seed-<n>`, in the shape each parser reads.
//!
//! ```text
//! cargo run --example fuzz_seeds            # into fuzz/corpus
//! cargo run --example fuzz_seeds -- DIR     # into DIR/<target>
//! ```

use std::path::PathBuf;

use pipemedic::untrusted::Parser;

fn main() -> anyhow::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("fuzz/corpus"));
    for &parser in Parser::ALL {
        let dir = out.join(parser.name());
        std::fs::create_dir_all(&dir)?;
        let seeds = parser.seeds(&root.join("tests/fixtures"));
        for (n, seed) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{n}")), seed)?;
        }
        println!(
            "{:<20} {} seeds in {}",
            parser.name(),
            seeds.len(),
            dir.display()
        );
    }
    Ok(())
}
