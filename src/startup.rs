//! Wiring: builds the application from a loaded configuration (store,
//! services, router, background tasks), binds the listener, and runs until
//! a shutdown signal, finishing in-flight requests first.
//!
//! Start-up makes every channel between services and hands both ends out
//! when it builds them: detection → incidents (scored runs), incidents →
//! healing (handled runs), chat-ops → healing (decisions). No service is
//! wired after it is built; the receiving ends wait in [`Application`]
//! until [`Application::run_until_stopped`] starts the tasks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::approvals::{ApprovalService, ApprovalSettings};
use crate::aws::AwsSettings;
use crate::chat::outbox::OutboxSignal;
use crate::chat::{
    ChatEventSink, ChatPlatform, ChatSetupError, ChatState, GroupLookup, IdentityLookup,
};
use crate::chatops::ChatService;
use crate::clock::{Clock, SystemClock};
use crate::config::Loaded;
use crate::config::{DetectorBackend, PlannerBackend};
use crate::domain::Platform;
use crate::domain::ScoredRun;
use crate::healing::{DecisionEvent, HealingParts, HealingService};
use crate::http::serve::ConnectionLimits;
use crate::http::AppState;
use crate::incidents::{HandledRun, IncidentChannels, IncidentService};
use crate::ingest::IngestService;
use crate::metrics::Metrics;
use crate::plan::PlanService;
use crate::remediate::ExecutorRegistry;
use crate::scoring::ownership::OwnershipSettings;
use crate::scoring::{DetectionService, DetectionSettings, SagemakerScorer, ScorerSettings};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("refusing to listen on {addr}: it is not a loopback address and these routes have no secret: {routes}. Set the secrets (see `pipemedic config check`) or listen on 127.0.0.1")]
    UnauthenticatedPublic { addr: SocketAddr, routes: String },
    #[error("server.listen {0:?} is not an address")]
    BadListen(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot set up chat: {0}")]
    Chat(#[from] ChatSetupError),
    #[error("cannot set up planning: {0}")]
    Plan(#[from] crate::plan::PlanServiceError),
    #[error("cannot set up the remediation executors: {0}")]
    Executors(#[from] crate::remediate::ExecError),
    #[error("cannot set up question answering: {0}")]
    Ask(#[from] crate::ask::AskSetupError),
    #[error("planner.redact_patterns: {0}")]
    Redact(#[from] crate::redact::RedactError),
    #[error("cannot set up paging: {0}")]
    Paging(#[from] crate::paging::PagingSetupError),
    #[error("console.templates_dir: {0}")]
    ConsoleTemplates(#[from] crate::http::console::templates::TemplateError),
}

/// Routes that accept requests without a credential when its secret is
/// unset. The admin routes are never among them: without
/// `PIPEMEDIC_ADMIN_TOKEN` they refuse every request.
pub fn unauthenticated_routes(loaded: &Loaded) -> Vec<&'static str> {
    let s = &loaded.secrets;
    let mut open = Vec::new();
    if s.ingest_token.is_none() {
        open.push("/v1/runs (PIPEMEDIC_INGEST_TOKEN)");
    }
    if s.read_token.is_none() {
        open.push(
            "GET /v1/incidents, GET /v1/pipelines/{name}/health, POST /v1/ask (PIPEMEDIC_READ_TOKEN)",
        );
    }
    if s.github_webhook_secret.is_none() {
        open.push("/v1/webhooks/github (PIPEMEDIC_GITHUB_WEBHOOK_SECRET)");
    }
    if s.aws_webhook_secret.is_none() {
        open.push("/v1/webhooks/aws (PIPEMEDIC_AWS_WEBHOOK_SECRET)");
    }
    if s.gitlab_token.is_none() {
        open.push("/v1/webhooks/gitlab (PIPEMEDIC_GITLAB_TOKEN)");
    }
    open
}

/// A built application, bound to its port and ready to run.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    platforms: Vec<Arc<dyn ChatPlatform>>,
    outbox_signal: OutboxSignal,
    receivers: Receivers,
    console_templates: Arc<crate::http::console::templates::Templates>,
}

/// The receiving ends of the channels start-up made, until the tasks that
/// consume them start.
struct Receivers {
    scored: mpsc::Receiver<ScoredRun>,
    handled: mpsc::Receiver<HandledRun>,
    decisions: mpsc::Receiver<DecisionEvent>,
}

impl Application {
    /// Builds with the system clock.
    pub async fn build(loaded: Loaded) -> Result<Self, StartupError> {
        Self::build_with_clock(loaded, Arc::new(SystemClock)).await
    }

    /// Builds with a given clock (tests control time with it).
    pub async fn build_with_clock(
        loaded: Loaded,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartupError> {
        let aws = AwsSettings::from_config(&loaded.config.aws);
        Self::build_with(loaded, clock, aws).await
    }

    /// Builds with a given clock and AWS client settings (tests use static
    /// credentials and never read the host's AWS environment).
    pub async fn build_with(
        loaded: Loaded,
        clock: Arc<dyn Clock>,
        aws: AwsSettings,
    ) -> Result<Self, StartupError> {
        let platforms = crate::chat::configured_platforms(&loaded.config, &loaded.secrets)?;
        Self::build_with_platforms(loaded, clock, aws, platforms).await
    }

    /// Builds with the given outbound chat adapters instead of the
    /// configured ones (the demo passes `ConsoleChat` instances here).
    pub async fn build_with_platforms(
        loaded: Loaded,
        clock: Arc<dyn Clock>,
        aws: AwsSettings,
        platforms: Vec<Arc<dyn ChatPlatform>>,
    ) -> Result<Self, StartupError> {
        let addr: SocketAddr = loaded
            .config
            .listen_addr()
            .ok_or_else(|| StartupError::BadListen(loaded.config.server.listen.clone()))?;
        let open = unauthenticated_routes(&loaded);
        if !addr.ip().is_loopback() && !open.is_empty() {
            return Err(StartupError::UnauthenticatedPublic {
                addr,
                routes: open.join(", "),
            });
        }
        let console_templates = Arc::new(crate::http::console::templates::Templates::from_config(
            &loaded.config,
        )?);
        for route in &open {
            tracing::warn!(
                route,
                "Route accepts requests without a credential (loopback only)."
            );
        }
        let store = Store::connect(
            &loaded.config.store.url,
            loaded.config.store.max_connections,
        )
        .await?;
        let metrics = Arc::new(Metrics::new());
        let outbox_signal = OutboxSignal::default();
        let (scored_tx, scored) = mpsc::channel(crate::incidents::QUEUE);
        let (handled_tx, handled) = mpsc::channel(crate::healing::QUEUE);
        let (decisions_tx, decisions) = mpsc::channel(crate::healing::QUEUE);
        let receivers = Receivers {
            scored,
            handled,
            decisions,
        };
        let incidents = IncidentService::new(
            store.clone(),
            clock.clone(),
            metrics.clone(),
            &loaded.config,
            platforms.iter().map(|p| p.platform()).collect(),
            outbox_signal.clone(),
            IncidentChannels {
                scored: scored_tx,
                handled: handled_tx,
            },
        );
        let sagemaker = match loaded.config.detector.backend {
            DetectorBackend::Embedded => None,
            DetectorBackend::Sagemaker => {
                let clients = aws.clients().await;
                Some(Arc::new(SagemakerScorer::new(
                    &clients.sagemaker(),
                    ScorerSettings::from_config(&loaded.config.detector, aws.initial_backoff),
                    clock.clone(),
                )))
            }
        };
        let detection = DetectionService::start(
            store.clone(),
            metrics.clone(),
            clock.clone(),
            DetectionSettings {
                cache_models: loaded.config.detector.cache_models,
                model_cache_bytes: crate::scoring::service::mib_to_bytes(
                    loaded.config.detector.model_cache_mib,
                ),
                detector: loaded.config.detector.clone(),
                sagemaker,
                ownership: (store.backend() == crate::store::Backend::Postgres)
                    .then(|| OwnershipSettings::from_config(&loaded.config.store)),
                ..DetectionSettings::default()
            },
            Some(incidents.sender()),
        );
        let redactor = Arc::new(crate::redact::Redactor::new(
            &loaded.config.planner.redact_patterns,
        )?);
        let hold = crate::evidence::resources::ResourceHold::from_config(
            &loaded.config.evidence,
            &aws,
            store.clone(),
            metrics.clone(),
            clock.clone(),
            detection.clone(),
        );
        if let Some(hold) = &hold {
            // Before any run is ingested, so that none of their pipelines'
            // is scored ahead of them.
            if let Err(e) = hold.recover().await {
                metrics.background_error("resource_hold");
                tracing::warn!(error = %e, "Cannot find the runs that were waiting for their CodeBuild figures; they stay unscored.");
            }
        }
        let ingest = Arc::new(IngestService::with_hold(
            store.clone(),
            metrics.clone(),
            clock.clone(),
            Some(detection),
            redactor.clone(),
            hold,
        ));
        let evidence = (loaded.config.evidence.fetch_logs
            || loaded.config.evidence.codebuild_usage)
            .then(|| {
                let ci =
                    crate::evidence::CiLogSettings::from_config(&loaded.config, &loaded.secrets);
                if loaded.config.evidence.fetch_logs {
                    for off in ci.describe_off() {
                        tracing::info!(reason = off, "A CI log source is off.");
                    }
                }
                crate::evidence::EvidenceService::with_ci_logs(
                    loaded.config.evidence.clone(),
                    &aws,
                    store.clone(),
                    metrics.clone(),
                    redactor.clone(),
                    ci,
                )
            });
        let (planner, approvals) = build_healing(&loaded, &store, &metrics, &clock, &aws).await?;
        let paging = crate::paging::PagingService::new(
            store.clone(),
            clock.clone(),
            metrics.clone(),
            crate::paging::pager_from_config(&loaded.config, &loaded.secrets)?,
            crate::paging::PagingSettings::from_config(&loaded.config),
            outbox_signal.clone(),
        );
        let healing = HealingService::new(HealingParts {
            store: store.clone(),
            clock: clock.clone(),
            metrics: metrics.clone(),
            incidents: incidents.clone(),
            planner,
            approvals,
            plan_incidents: loaded.config.planner.plan_incidents,
            groups: GroupLookup::new(platforms.clone()),
            identities: IdentityLookup::new(
                platforms.clone(),
                loaded.config.approvals.identities.clone(),
            ),
            decisions: decisions_tx,
            paging,
            evidence,
        });
        let bedrock = match loaded.config.ask.backend {
            crate::config::AskBackend::Offline => None,
            crate::config::AskBackend::Bedrock => Some(aws.clients().await.bedrock()),
        };
        let asker = Arc::new(crate::ask::Asker::from_config(
            &loaded.config,
            store.clone(),
            metrics.clone(),
            bedrock,
        )?);
        let chat = ChatState::from_config(&loaded.config, &loaded.secrets, clock.clone());
        let sink = ChatService::new(
            store.clone(),
            clock.clone(),
            incidents.clone(),
            chat.clone(),
            asker.clone(),
            &loaded.config.chat,
            Some(healing.clone()),
        )
        .with_admins(crate::chatops::admin::ChatAdmins::new(
            &loaded.config.chat.admins,
            &loaded.config.approvals.groups,
            GroupLookup::new(platforms.clone()),
        ));
        let chat = chat.with_sink(Arc::new(sink));
        let shutdown = CancellationToken::new();
        let state = AppState {
            config: Arc::new(loaded.config),
            secrets: Arc::new(loaded.secrets),
            store,
            metrics,
            clock,
            ingest,
            aws: Arc::new(aws),
            chat,
            incidents,
            healing,
            asker,
            shutdown: shutdown.clone(),
        };
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartupError::Bind { addr, source })?;
        Ok(Self {
            listener,
            state,
            tracker: TaskTracker::new(),
            shutdown,
            platforms,
            outbox_signal,
            receivers,
            console_templates,
        })
    }

    /// The port actually bound (useful with port 0).
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Hands inbound chat events (Slack, Discord) to `sink`.
    pub fn set_chat_sink(&mut self, sink: Arc<dyn ChatEventSink>) {
        self.state.chat = self.state.chat.clone().with_sink(sink);
    }

    /// A token that stops the application when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until the shutdown token is cancelled, then keeps serving for
    /// `server.drain_s` while `/readyz` answers 503, then lets in-flight
    /// requests finish (up to `server.shutdown_grace_s`) and stops the
    /// background tasks. Raises the open-file limit and caps connections
    /// below it first (see [`crate::http::serve`]).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Self {
            listener,
            state,
            tracker,
            shutdown,
            platforms,
            outbox_signal,
            receivers,
            console_templates,
        } = self;
        let grace = Duration::from_secs(state.config.server.shutdown_grace_s);
        let drain = Duration::from_secs(state.config.server.drain_s);
        // What the listener and the background tasks obey: cancelled after
        // the drain that follows `shutdown`.
        let stop = CancellationToken::new();
        let store = state.store.clone();
        let ingest = state.ingest.clone();
        crate::ingest::start_background(
            &state.config,
            &state.aws,
            state.ingest.clone(),
            &tracker,
            &stop,
        );
        start_chat(
            &state,
            &platforms,
            &outbox_signal,
            receivers,
            &tracker,
            &stop,
        );
        let limits =
            ConnectionLimits::at_start(&state.config.server, state.config.store.max_connections);
        let app = crate::http::router(state, console_templates);
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "Listening.");
        let server = tokio::spawn(crate::http::serve::serve(
            listener,
            app,
            limits,
            stop.clone(),
        ));
        shutdown.cancelled().await;
        if !drain.is_zero() {
            tracing::info!(
                drain_s = drain.as_secs(),
                "Shutdown begun; not ready, still serving while load balancers drain."
            );
            tokio::time::sleep(drain).await;
        }
        stop.cancel();
        tracing::info!(
            grace_s = grace.as_secs(),
            "Shutting down; finishing in-flight requests."
        );
        tracker.close();
        let finished = tokio::time::timeout(grace, async {
            let _ = server.await;
            tracker.wait().await;
        })
        .await;
        if finished.is_err() {
            tracing::warn!("Shutdown grace period ended with work still in flight.");
        }
        if let Some(detection) = ingest.detection() {
            match detection.flush().await {
                Ok(saved) => tracing::info!(saved, "Models saved."),
                Err(e) => tracing::error!(error = %e, "Saving models at shutdown failed."),
            }
        }
        store.close().await;
        Ok(())
    }
}

/// What the healing loop works with: the plan service (playbooks, prompts,
/// the planner) and the approval service with its executors.
async fn build_healing(
    loaded: &Loaded,
    store: &Store,
    metrics: &Arc<Metrics>,
    clock: &Arc<dyn Clock>,
    aws: &AwsSettings,
) -> Result<(PlanService, Arc<ApprovalService>), StartupError> {
    let config = &loaded.config;
    // AWS is loaded here only for the Bedrock planner; the CodePipeline
    // executors load it on their first action.
    let bedrock = match config.planner.backend {
        PlannerBackend::Bedrock => Some(aws.clients().await.bedrock()),
        PlannerBackend::Offline => None,
    };
    let planner = PlanService::from_config(
        config,
        store.clone(),
        metrics.clone(),
        clock.clone(),
        bedrock,
    )?;
    let registry = ExecutorRegistry::from_settings(
        config,
        &loaded.secrets,
        aws,
        &crate::config::process_env(),
    )?;
    let approvals = ApprovalService::new(
        store.clone(),
        clock.clone(),
        ApprovalSettings::from_config(&config.approvals),
        Arc::new(registry),
    );
    Ok((planner, Arc::new(approvals)))
}

/// How long a chat connection that failed waits before trying again.
const CHAT_RETRY: Duration = Duration::from_secs(30);

/// Starts everything chat needs in the background: the incident service,
/// one outbox worker per platform, the bot identities (retried until the
/// platform answers) and the inbound connections (Socket Mode, the Discord
/// gateway). None of it can stop the server from serving.
fn start_chat(
    state: &AppState,
    platforms: &[Arc<dyn ChatPlatform>],
    signal: &OutboxSignal,
    receivers: Receivers,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) {
    state.incidents.start(receivers.scored, tracker, shutdown);
    state
        .healing
        .start(receivers.handled, receivers.decisions, tracker, shutdown);
    state.healing.paging().start(tracker, shutdown);
    crate::chat::outbox::start(
        &crate::chat::outbox::Workers {
            store: state.store.clone(),
            clock: state.clock.clone(),
            metrics: state.metrics.clone(),
            poll: Duration::from_millis(state.config.chat.outbox_poll_ms),
            signal: signal.clone(),
        },
        platforms,
        tracker,
        shutdown,
    );
    for platform in platforms {
        let platform = platform.clone();
        let chat = state.chat.clone();
        let stop = shutdown.clone();
        tracker.spawn(async move {
            let mut wait = Duration::from_secs(1);
            loop {
                match platform.whoami().await {
                    Ok(me) => {
                        tracing::info!(platform = %me.platform, user_id = %me.user_id, "Chat platform reached.");
                        chat.set_bot(me);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(platform = %platform.platform(), error = %e, retry_s = wait.as_secs(), "Chat platform unreachable; retrying in the background.");
                    }
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
                wait = (wait * 2).min(CHAT_RETRY * 10);
            }
        });
    }
    let config = state.config.clone();
    let secrets = state.secrets.clone();
    let has = |kind: Platform| platforms.iter().any(|p| p.platform() == kind);
    if config.slack.mode == "socket" && has(Platform::Slack) {
        if let (Some(bot), Some(app)) = (
            secrets.slack_bot_token.clone(),
            secrets.slack_app_token.clone(),
        ) {
            let chat = state.chat.clone();
            let stop = shutdown.clone();
            tracker.spawn(async move {
                let slack = match crate::chat::slack::SlackChat::new(&config.slack, &bot) {
                    Ok(slack) => slack.with_links(crate::chat::markup::LinkPolicy::from_config(&config)),
                    Err(e) => {
                        tracing::error!(error = %e, "Cannot build the Slack client for Socket Mode.");
                        return;
                    }
                };
                while !stop.is_cancelled() {
                    if let Err(e) = crate::chat::slack::socket::run(&slack, &app, chat.clone(), stop.clone()).await {
                        tracing::warn!(platform = "slack", error = %e, "Socket Mode failed; retrying.");
                    }
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(CHAT_RETRY) => {}
                    }
                }
            });
        }
    }
    if let Some(token) = secrets
        .discord_token
        .clone()
        .filter(|_| has(Platform::Discord) && state.config.discord.gateway)
    {
        let chat = state.chat.clone();
        let stop = shutdown.clone();
        let config = state.config.clone();
        tracker.spawn(async move {
            while !stop.is_cancelled() {
                if let Err(e) = crate::chat::discord::gateway::run(&config.discord, &token, chat.clone(), stop.clone()).await {
                    tracing::warn!(platform = "discord", error = %e, "Discord gateway failed; retrying.");
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(CHAT_RETRY) => {}
                }
            }
        });
    }
}

/// Cancels `token` on SIGINT or SIGTERM.
pub fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(error = %e, "Cannot listen for SIGTERM.");
                        let _ = ctrl_c.await;
                        token.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
        token.cancel();
    });
}
