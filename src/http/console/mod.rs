//! The read-only web console under `/ui`: server-rendered HTML pages of
//! pipelines, incidents and the audit trail, signed in with the read token
//! (or through a trusted proxy). It owns sign-in ([`auth`], [`session`]),
//! the templates and stylesheet ([`templates`]), inline SVG charts
//! ([`svg`]) and the pages ([`pages`]). It reads the store and never
//! changes anything: there is no form here but sign-in and sign-out.
//!
//! Every answer under `/ui` carries a strict Content-Security-Policy (no
//! script at all), `X-Frame-Options: DENY`, `Referrer-Policy: no-referrer`
//! and `X-Content-Type-Options: nosniff`. Signed out, pages answer 303 to
//! `/ui/login`.

pub mod auth;
mod pages;
pub mod session;
pub mod svg;
pub mod templates;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};

use self::auth::{Auth, Via, Viewer};
use self::templates::{Templates, STYLESHEET};
use super::limits::WebhookRateLimit;
use super::{ApiError, AppState, ErrorCode};

/// What the console's handlers share.
#[derive(Clone)]
pub struct ConsoleState {
    pub app: AppState,
    pub auth: Arc<Auth>,
    pub templates: Arc<Templates>,
}

impl ConsoleState {
    /// The console of `app` with `templates` (see [`Templates::from_config`]).
    pub fn new(app: AppState, templates: Arc<Templates>) -> Self {
        Self {
            auth: Arc::new(Auth::from_config(&app.config, &app.secrets)),
            templates,
            app,
        }
    }

    /// Renders a page into an HTML answer.
    fn page(&self, name: &str, context: &impl Serialize) -> Response {
        match self.templates.render(name, context) {
            Ok(html) => Html(html).into_response(),
            Err(e) => {
                tracing::error!(error = %e, "A console page did not render.");
                ApiError::internal().into_response()
            }
        }
    }
}

/// The console's routes, rendering with `templates` (loaded at start-up,
/// where a broken one stops the process). `POST /ui/login` shares the
/// webhook routes' per-address limit.
pub fn router(
    app: &AppState,
    templates: Arc<Templates>,
    rate_limit: &WebhookRateLimit,
) -> Router<AppState> {
    let state = ConsoleState::new(app.clone(), templates);
    Router::new()
        .route("/ui", get(pages::overview))
        .route("/ui/", get(pages::overview))
        .route("/ui/pipelines/{name}", get(pages::pipeline))
        .route("/ui/incidents", get(pages::incidents))
        .route("/ui/incidents/{id}", get(pages::incident))
        .route("/ui/audit", get(pages::audit))
        .route("/ui/audit.jsonl", get(pages::audit_jsonl))
        .route("/ui/static/console.css", get(stylesheet))
        .route("/ui/logout", post(logout))
        .merge(rate_limit.apply(Router::new().route("/ui/login", post(login))))
        .route("/ui/login", get(login_form))
        .layer(middleware::from_fn(auth::security_headers))
        .with_state(state)
}

/// A signed-in viewer; signed out, the request is answered with 303 to
/// the sign-in page.
pub struct SignedIn(pub Viewer);

impl FromRequestParts<ConsoleState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        state
            .auth
            .viewer(&parts.headers, peer, state.app.clock.now())
            .map(SignedIn)
            .ok_or_else(|| Redirect::to("/ui/login").into_response())
    }
}

/// What the layout shows about who is signed in.
#[derive(Debug, Serialize)]
pub struct Who {
    pub name: String,
    /// Whether a sign-out button makes sense (a session cookie).
    pub can_sign_out: bool,
}

impl From<&Viewer> for Who {
    fn from(v: &Viewer) -> Self {
        Self {
            name: v.name.clone(),
            can_sign_out: v.via == Via::Session,
        }
    }
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLESHEET,
    )
}

#[derive(Serialize)]
struct LoginPage<'a> {
    title: &'a str,
    who: Option<Who>,
    error: Option<&'a str>,
    sign_in_needed: bool,
}

async fn login_form(State(state): State<ConsoleState>) -> Response {
    state.page(
        "login",
        &LoginPage {
            title: "Sign in",
            who: None,
            error: None,
            sign_in_needed: state.auth.sign_in_needed(),
        },
    )
}

/// A refusal rendered as the sign-in page, kept as HTML (the error code
/// marks it as already answered for the JSON error layer and the metrics).
fn login_refused(state: &ConsoleState, status: StatusCode, code: ErrorCode, why: &str) -> Response {
    let mut response = state.page(
        "login",
        &LoginPage {
            title: "Sign in",
            who: None,
            error: Some(why),
            sign_in_needed: state.auth.sign_in_needed(),
        },
    );
    *response.status_mut() = status;
    response.extensions_mut().insert(code);
    response
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
}

/// `POST /ui/login` (`token=…`, form-encoded): with the read token, a
/// session cookie and 303 to `/ui`; anything else, 401 and the form again.
async fn login(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if !state.auth.same_origin(&headers) {
        return login_refused(
            &state,
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "This form was sent from another site.",
        );
    }
    if !state.auth.sign_in_needed() {
        return Redirect::to("/ui").into_response();
    }
    let body = match super::extract::body_or_413(body) {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    let form: LoginForm = serde_urlencoded::from_bytes(&body).unwrap_or(LoginForm {
        token: String::new(),
    });
    let token = form.token.trim();
    let now = state.app.clock.now();
    if !state.auth.is_read_token(token) {
        tracing::warn!("Console sign-in refused: not the read token.");
        return login_refused(
            &state,
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "That is not the read token.",
        );
    }
    let Some(cookie) = state.auth.session_cookie("read token", now) else {
        return Redirect::to("/ui").into_response();
    };
    tracing::info!("Console sign-in with the read token.");
    let mut response = Redirect::to("/ui").into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// `POST /ui/logout`: clears the session cookie, 303 to the sign-in page.
async fn logout(State(state): State<ConsoleState>, headers: HeaderMap) -> Response {
    if !state.auth.same_origin(&headers) {
        return login_refused(
            &state,
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "This form was sent from another site.",
        );
    }
    let mut response = Redirect::to("/ui/login").into_response();
    if let Ok(value) = HeaderValue::from_str(&state.auth.cleared_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}
