//! The HTTP handlers, one file per capability. Each authenticates, reads
//! the body within the limit, calls the capability's service and answers
//! through the error table; none holds business logic.

pub mod admin;
pub mod ask;
pub mod discord;
pub mod health;
pub mod incidents;
pub mod ready;
pub mod runs;
pub mod slack;
pub mod webhooks;
