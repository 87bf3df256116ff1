//! The management terminal in a browser, served by every node at `/` of
//! its API address (HTTPS off loopback, as the API). Pages are rendered
//! here (maud) and work without JavaScript; a few lines of it refresh the
//! live parts and draw a vserver's charts. Every action calls the
//! operations layer (`crate::ops`), as the REST API does.
//!
//! Signing in takes an admin token and gives a session (`session`); every
//! form that changes something carries the session's CSRF token or is
//! refused and changes nothing; the audit trail names the token's holder,
//! as for the API.

mod actions;
mod assets;
mod pages;
mod session;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::node::Node;
use session::{Session, Sessions};

pub struct Console {
    node: Arc<Node>,
    sessions: Sessions,
}

type Shared = axum::extract::State<Arc<Console>>;
type Form = axum::extract::Form<HashMap<String, String>>;

pub fn router(node: Arc<Node>) -> Router {
    let console = Arc::new(Console { node, sessions: Sessions::default() });
    Router::new()
        .route("/", get(pages::overview))
        .route("/login", get(pages::login).post(actions::login))
        .route("/logout", post(actions::logout))
        .route("/vservers/new", get(pages::new_vserver))
        .route("/vservers", post(actions::create))
        .route("/vservers/{name}", get(pages::vserver))
        .route("/vservers/{name}/move", post(actions::move_vserver))
        .route("/vservers/{name}/start", post(actions::start))
        .route("/vservers/{name}/stop", post(actions::stop))
        .route("/vservers/{name}/delete", post(actions::delete))
        .route("/vservers/{name}/modify", post(actions::modify))
        .route("/nodes/{name}/drain", post(actions::drain))
        .route("/nodes/{name}/undrain", post(actions::undrain))
        .route("/rebalance", get(pages::rebalance).post(actions::rebalance))
        .route("/parts/overview", get(pages::overview_part))
        .route("/parts/vservers/{name}/counters", get(pages::counters))
        .route("/static/console.css", get(assets::css))
        .route("/static/console.js", get(assets::js))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .with_state(console)
}

/// Cookies are Secure unless the caller is on loopback, where the console
/// may be plain HTTP (off loopback it never is).
fn secure(caller: &SocketAddr) -> bool {
    !caller.ip().is_loopback()
}

/// Why a request gets no page or no change.
enum Refused {
    /// No session: to the sign-in page.
    SignIn,
    /// Refused with this status and reason; nothing changed.
    Status(StatusCode, &'static str),
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::SignIn => Redirect::to("/login").into_response(),
            Refused::Status(status, why) => {
                (status, Html(pages::message("Refused", why).into_string())).into_response()
            }
        }
    }
}

/// The caller's session, or the way to sign in.
fn signed_in(console: &Console, headers: &HeaderMap) -> Result<Session, Refused> {
    console.sessions.of(headers).ok_or(Refused::SignIn)
}

/// A change asked by a form: the caller is signed in and the form carries
/// the session's CSRF token; otherwise it is refused and nothing changes.
fn may_change(
    console: &Console,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
    caller: SocketAddr,
    what: &str,
) -> Result<Session, Refused> {
    let Some(session) = console.sessions.of(headers) else {
        tracing::warn!(%caller, what, "console change refused: not signed in");
        return Err(Refused::Status(StatusCode::UNAUTHORIZED, "Sign in first: this change needs a session."));
    };
    let carried = form.get("csrf").map(String::as_str).unwrap_or_default();
    if !session::same_secret(carried, &session.csrf) {
        tracing::info!(target: "vnas::audit", who = %session.who, %caller, what,
            "console change refused: no valid CSRF token");
        return Err(Refused::Status(
            StatusCode::FORBIDDEN,
            "The form did not carry this session's CSRF token. Nothing was changed.",
        ));
    }
    Ok(session)
}

fn audit(session: &Session, caller: SocketAddr, what: &str, result: &Result<(), String>) {
    match result {
        Ok(()) => {
            tracing::info!(target: "vnas::audit", who = %session.who, %caller, what, "console change accepted")
        }
        Err(error) => {
            tracing::info!(target: "vnas::audit", who = %session.who, %caller, what, %error, "console change refused")
        }
    }
}
