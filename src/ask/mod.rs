//! Answers to plain-language questions about pipelines, runs and incidents.
//!
//! [`intent`] parses a question offline into an [`Intent`]; [`tools`] is the
//! read-only query layer over the store that both the offline answerer and a
//! model's tool loop call; [`answer`] turns an intent into an [`Answer`] with
//! text for a terminal and structured facts for chat. Nothing here writes to
//! the store. Questions are untrusted text: they are parsed, never executed
//! or spliced into queries.

pub mod intent;

pub use intent::{parse, Intent, Parsed, RankBy, Window};
