//! `GET /api/vservers/{name}/locks` and `POST .../locks/break`
//! (`ops::locks`).

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::Json;

use super::error::ApiError;
use crate::node::Node;
use crate::ops;
pub use crate::ops::locks::{BreakLocks, BreakResult, LockClientView, LockView, LocksView, Nfs4View};

type Shared = State<Arc<Node>>;

#[utoipa::path(get, path = "/api/vservers/{name}/locks", params(("name" = String, Path)),
    responses((status = 200, body = LocksView), (status = 404, body = super::types::ErrorBody),
              (status = 409, body = super::types::ErrorBody)))]
pub async fn list_locks(State(node): Shared, Path(name): Path<String>) -> Result<Json<LocksView>, ApiError> {
    Ok(Json(ops::locks::list(&node, &name).await?))
}

#[utoipa::path(post, path = "/api/vservers/{name}/locks/break", params(("name" = String, Path)),
    request_body = BreakLocks,
    responses((status = 200, body = BreakResult), (status = 400, body = super::types::ErrorBody),
              (status = 404, body = super::types::ErrorBody), (status = 409, body = super::types::ErrorBody)))]
pub async fn break_locks(
    State(node): Shared,
    Path(name): Path<String>,
    body: Result<Json<BreakLocks>, JsonRejection>,
) -> Result<Json<BreakResult>, ApiError> {
    vnas_store::check_name(&name)?;
    let Json(request) = body.map_err(|e| ApiError::bad_request("bad_body", e.body_text()))?;
    Ok(Json(ops::locks::break_client(&node, &name, request).await?))
}
