//! Every management call is authenticated, on every address: the node runs
//! as root, so loopback is no boundary. A call carries a bearer token from
//! the node's token file; without a valid one it gets 401 and changes
//! nothing. Accepted changes go to the audit trail with who asked.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::node::Node;

/// Paths anyone may read: the API's own description holds no secret.
const PUBLIC: &[&str] = &["/api/openapi.json"];

/// Calls that change nothing a storage admin audits (a peer's nudge).
const NOT_AUDITED: &[&str] = &["/api/internal/wake"];

pub async fn require_token(
    State(node): State<Arc<Node>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_string();
    if PUBLIC.contains(&path.as_str()) {
        return next.run(request).await;
    }
    let method = request.method().clone();
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(token) = presented.and_then(|secret| node.tokens.check(secret)) else {
        let why = if presented.is_some() { "a wrong token" } else { "no token" };
        tracing::warn!(caller = %addr, %method, %path, "api call refused: {why}");
        let mut response = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!("{why}: send the admin token as `Authorization: Bearer TOKEN` (see --token-file)"),
        )
        .into_response();
        response.headers_mut().insert(header::WWW_AUTHENTICATE, "Bearer realm=\"vnas\"".parse().unwrap());
        return response;
    };
    let who = token.name.clone();
    let response = next.run(request).await;
    if method != Method::GET && !NOT_AUDITED.contains(&path.as_str()) {
        let status = response.status().as_u16();
        if response.status().is_success() {
            tracing::info!(target: "vnas::audit", %who, caller = %addr, %method, %path, status, "change accepted");
        } else {
            tracing::info!(target: "vnas::audit", %who, caller = %addr, %method, %path, status, "change refused");
        }
    }
    response
}
