//! The chat-ops application: what people say and do in chat, carried out.
//!
//! [`commands`] parses `/medic …` and mentions; [`service::ChatService`]
//! is the [`ChatEventSink`](crate::chat::ChatEventSink) that answers
//! commands (with [`answers`] for health and questions, and [`admin`] for
//! silences and baselines, which need `chat.admins`; [`autonomy`] for
//! stopping automatic runs, which anyone who sees the pipeline may), hands questions to
//! [`crate::ask`] and stored approve / reject decisions to
//! [`crate::healing`]. It sits above healing, incidents and ask, and below
//! `http` and `startup`; the chat port and its adapters (`chat`) know
//! nothing of it.

pub mod admin;
pub mod answers;
pub mod autonomy;
pub mod commands;
pub mod service;

pub use service::{ChatService, CommandAnswer};
