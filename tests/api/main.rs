//! Integration tests: the real application on 127.0.0.1:0 with a fresh
//! database, driven over HTTP, and the store contract suite on SQLite and
//! (when `PIPEMEDIC_TEST_POSTGRES_URL` is set) PostgreSQL.

#[path = "../fakes/mod.rs"]
mod fakes;

mod approvals;
mod approvals_store;
mod ask;
mod ask_model;
mod aws_lazy;
mod backup;
mod chat_commands;
mod chat_discord;
mod chat_outbox;
mod chat_slack;
mod chat_support;
mod ci_eval;
mod cli_json;
mod codepipeline_poll;
mod console;
mod console_browser;
mod demo;
mod detection;
mod edge;
#[cfg(feature = "ci-evidence")]
mod evidence;
mod evidence_ci;
mod export;
mod handoffs;
mod healing;
mod healing_tasks;
mod helpers;
mod identities;
mod incidents;
mod ingest_batch;
mod ingest_generic;
mod ingest_limits;
mod lifecycle;
mod links;
mod metrics;
mod outcomes;
mod paging;
mod planner;
mod readiness;
mod remediate;
mod replica_scoring;
mod replicas;
mod resource_hold;
mod sagemaker;
mod secrets;
mod store_contract;
mod store_incidents;
mod tokens;
mod training;
mod webhooks;
