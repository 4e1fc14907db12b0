//! # pipemedic
//!
//! A self-healing CI/CD chat-ops bot. pipemedic watches pipeline runs,
//! learns per pipeline what normal looks like, alerts the team in Slack or
//! Discord when a run is abnormal, drafts a remediation plan from the logs
//! and the team's playbooks, runs the chosen fix only with human approval,
//! and checks that the next run healed.
//!
//! ## Layers
//!
//! Dependencies run one way: a module imports its own layer and the layers
//! below it, never above, and there is no import circle between top-level
//! modules. `tests/layering.rs` reads every `crate::` path in `src/` and
//! keeps it so; the order is written here and in that test.
//!
//! ```text
//! main (the binary)
//!  └─ cli                                   the command line
//!      └─ demo · evaluate · check · untrusted   whole programs on the application; every untrusted-input parser by name
//!          └─ startup · iam                  makes every channel, builds and runs the services; the AWS grants by feature
//!              └─ http                       the edge: router, extractors, error table, handlers
//!                  └─ chatops                commands, decisions, questions from chat
//!                      └─ healing            plan → offer → decisions → run once → verify
//!                          └─ incidents · ingest
//!                              └─ plan · approvals · remediate · ask · scoring · health · charts · paging · evidence
//!                                  └─ chat (port + adapters, outbox, cards, routing) · store · playbooks
//!                                     · detect · aws · bedrock · config · standin · metrics · telemetry
//!                                      └─ domain · clock · redact   shared vocabulary, no I/O
//! ```
//!
//! When two modules need each other, the shared part is vocabulary that
//! belongs in [`domain`], or a narrow port the lower module defines and the
//! higher one uses (as [`chat::GroupLookup`] for a person's groups).
//!
//! ## Layout
//!
//! | module | owns |
//! | --- | --- |
//! | [`domain`] | the shared vocabulary (no I/O): runs, metric samples, verdicts, incidents, approvals ([`domain::Choice`], [`domain::Via`], [`domain::Approver`], [`domain::Vote`], [`domain::RequestStatus`]), chat messages ([`domain::Platform`], [`domain::MessageRef`]) |
//! | [`clock`] | the clock services read time from |
//! | [`redact`] | secret redaction of text that leaves for a model |
//! | [`config`] | layered configuration and secrets |
//! | [`aws`] | the AWS SDK clients (CodePipeline, Bedrock, SageMaker) and their error classes |
//! | [`bedrock`] | one Converse call, its errors and token counts, for the planner and for asking |
//! | [`store`] | SQLite / PostgreSQL persistence, one contract for both |
//! | [`chat`] | the chat port ([`chat::ChatPlatform`], [`chat::ChatEvent`]), its Slack, Discord and console adapters, the outbox, incident cards and routing |
//! | [`playbooks`] | runbooks with allowed actions: load, validate, match |
//! | [`detect`] | the thresholded Random Cut Forest (pure computation) |
//! | [`metrics`] | Prometheus metrics |
//! | [`telemetry`] | tracing set-up |
//! | [`standin`] | local CodePipeline, CloudWatch Logs and CloudWatch stand-ins for the demo and tests |
//! | [`health`] | health summaries shared by the CLI, HTTP and chat |
//! | [`charts`] | PNG charts of metric history for chat |
//! | [`scoring`] | per-pipeline models, the model bank, scoring every finished run (embedded forest, or a SageMaker RCF endpoint with the forest as fallback) |
//! | [`plan`] | remediation plans: facts, prompts, validation, the offline and Bedrock planners, the plan service (store + audit), chat text |
//! | [`approvals`] | approval policy (pure), votes, expiry, staleness and exactly-once execution of approved steps |
//! | [`remediate`] | the executors of approved actions (CodePipeline, GitHub, http, shell) and their dry runs |
//! | [`paging`] | paging the on-call person through PagerDuty or Opsgenie: the durable, exactly-once queue of triggers and resolves |
//! | [`ask`] | plain-language questions: the offline parser, read-only query tools, the Bedrock tool loop with its number check, per-channel visibility, and [`ask::Asker`], the one entry point for CLI, HTTP and chat |
//! | [`evidence`] | failing build logs and CodeBuild CPU/memory fetched from CloudWatch Logs and CloudWatch for abnormal runs |
//! | [`ingest`] | the sources of runs: generic API, webhooks, polling, backfill |
//! | [`incidents`] | abnormal runs → incidents (grouping, silences, status) → queued chat alerts |
//! | [`healing`] | the loop of an incident: plan → offer for approval → decisions → run once → verify on the next run → resolved |
//! | [`chatops`] | the application behind chat: commands, decisions handed to healing, questions handed to ask |
//! | [`http`] | the router, application state, extractors, the error table and its one shape, the request and connection limits, the accept loop and every handler |
//! | [`startup`] | wiring (every channel made here) and graceful shutdown |
//! | [`iam`] | the AWS permissions by feature, collected from the `IAM` grants each AWS caller declares; the policy files under `deploy/aws/` are tested against it |
//! | [`evaluate`] | detection quality on CI-shaped histories: the seeded, labelled corpus and its scoring (pure), and the driver that posts it through `POST /v1/runs` (`examples/ci_eval.rs`) |
//! | [`check`] | the post-build check client (`pipemedic check`) |
//! | [`demo`] | `pipemedic demo`: the whole loop locally with generated history |
//! | [`untrusted`] | every parser of untrusted input by name, for the fuzz targets in `fuzz/` and the property tests |
//! | [`cli`] | the command line |
//!
//! ## Data flow
//!
//! ```text
//! source payload --(pure adapter)--> Run --(IngestService, one transaction)--> store
//!        store --> health summaries --> CLI / HTTP
//! detection --ScoredRun--> incidents::IncidentService --(store: incident + chat_outbox rows, one transaction)
//!        chat_outbox --(chat::outbox worker per platform, in order per channel)--> chat::ChatPlatform
//!     question --(ask::Asker: ask::intent, pure)--> Intent --(ask::QueryTools, read-only, Visibility)--> Answer --> CLI / HTTP / chat
//!     bedrock: question (redacted, framed) --(ask::model: toolUse -> QueryTools -> toolResult, bounded)--> text
//!        --(ask::numbers: every number in a tool result, else retry once, else offline)--> Answer
//! services --ChatMessage--> chat::ChatPlatform (Slack / Discord / console)
//! Slack, Discord, console --(verify, translate)--> chat::ChatEvent --> chatops::ChatService
//!        (commands answered, decisions stored once per event, audit log)
//! ValidatedPlan --(ApprovalService::open_request: prepare + dry runs)--> approval request
//! chat decision --(adapter)--> healing: chat::IdentityLookup (Slack email, approvals.identities)
//!        --> Vote --(decide_vote: approvals::decide, author by email/login)--> Approved
//!        --> a task of its own: execute: claim each step once --> ExecutorRegistry --> outcome + audit
//! detection --(try_send, drop counted)--> incidents --(try_send, drop counted)--> healing
//! incident opened --(healing: PlanService, ApprovalService)--> plan + Approve/Reject in the thread
//!        next run --(healing)--> resolved (normal) or not healed → next plan
//! approved ActionCall --(ExecutorRegistry: describe = dry run, execute once)--> ExecutionOutcome
//! request status change --(same transaction)--> plan_outcomes row (offered … executed / failed)
//!        next run --(healing)--> healed / not healed --> track record (domain::TrackRecord)
//!        --> plan facts (prompt, offline ranking), plan cards, earned autonomy (approvals)
//! ```
//!
//! ## Testing
//!
//! Unit tests sit beside the code they test. `tests/api/` starts the real
//! application on `127.0.0.1:0` with a fresh database and drives it over
//! HTTP; the store contract suite runs against SQLite always and against
//! PostgreSQL when `PIPEMEDIC_TEST_POSTGRES_URL` is set.

/// Every binary that links the crate (the server and CLI, its tests,
/// benches and examples) allocates with mimalloc: under ingest, glibc's
/// malloc and free took about a fifth of the process's CPU. Fuzz builds
/// keep the system allocator, which the address sanitizer watches.
#[cfg(not(fuzzing))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod approvals;
pub mod ask;
pub mod aws;
pub mod bedrock;
pub mod charts;
pub mod chat;
pub mod chatops;
pub mod check;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod detect;
pub mod domain;
pub mod evaluate;
pub mod evidence;
pub mod healing;
pub mod health;
pub mod http;
pub mod iam;
pub mod incidents;
pub mod ingest;
pub mod metrics;
pub mod paging;
pub mod plan;
pub mod playbooks;
pub mod redact;
pub mod remediate;
pub mod scoring;
pub mod standin;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod untrusted;
