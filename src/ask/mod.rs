//! Answers to plain-language questions about pipelines, runs and incidents.
//!
//! [`intent`] parses a question offline into an [`Intent`]; [`tools`] is the
//! read-only query layer over the store ([`QueryTools`]) that both the
//! offline answerer and a model's tool loop call; [`answer`] turns an intent
//! into an [`Answer`] with text for a terminal and structured facts for
//! chat. `pipemedic ask`, `POST /v1/ask` and chat all call
//! [`answer_question`]. Nothing here writes to the store. Questions are
//! untrusted text: they are parsed, never executed, spliced into queries or
//! echoed back.

pub mod answer;
pub mod intent;
pub mod routes;
pub mod tools;

pub use answer::{answer_question, render_text, Answer, AskError, Fact, Source, SourceKind};
pub use intent::{parse, Intent, Parsed, RankBy, Window};
pub use tools::{QueryTools, ToolError, TOOLS};
