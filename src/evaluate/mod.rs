//! Evaluation of detection on CI-shaped histories: a seeded corpus of
//! labelled pipeline histories ([`corpus`], pure), the arithmetic of recall
//! and false alarms over graded runs ([`score`], pure), and the client that
//! sends a corpus through `POST /v1/runs` one run per request and collects
//! the verdicts ([`drive`], HTTP only; it starts nothing).
//!
//! `cargo run --release --example ci_eval` puts the three together against
//! an application started in-process.

pub mod corpus;
pub mod drive;
#[cfg(test)]
mod pinned_verdicts;
pub mod score;
