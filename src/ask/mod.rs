//! Answers to plain-language questions about pipelines, runs and incidents.
//!
//! [`intent`] parses a question offline into an [`Intent`]; [`tools`] is the
//! read-only query layer over the store ([`QueryTools`]) that both the
//! offline answerer and a model's tool loop call; [`answer`] turns an intent
//! into an [`Answer`] with text for a terminal and structured facts for
//! chat; [`model`] is the Bedrock tool loop whose every number is checked
//! by [`numbers`]; [`visibility`] decides which pipelines a chat channel
//! sees. [`Asker`] is the one entry point: `pipemedic ask`, `POST /v1/ask`
//! and chat all call [`Asker::ask`], so the same question gets the same
//! facts everywhere. Nothing here writes to the store or runs anything.
//! Questions are untrusted text: they are parsed, never executed, spliced
//! into queries or echoed back, and reach a model only redacted and framed
//! as data.

pub mod answer;
pub mod asker;
pub mod intent;
pub mod model;
pub mod numbers;
pub mod tools;
pub mod visibility;

pub use answer::{
    answer_offline, answer_question, render_text, Answer, AskError, Fact, Source, SourceKind,
};
pub use asker::{AskSetupError, Asker};
pub use intent::{parse, Intent, Parsed, RankBy, Window};
pub use model::{BedrockAsker, ModelAnswer, ModelFailure, ModelSettings, ToolCall};
pub use tools::{QueryTools, ToolError, TOOLS};
pub use visibility::Visibility;
