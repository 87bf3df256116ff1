//! The API's routes: each takes its request apart, calls the operation
//! (`crate::ops`) and answers with its result or its error's status. Any
//! node's API serves any request.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};

use super::error::ApiError;
use super::types::{
    CountersView, CreateVserver, LocalView, ModifyVserver, MoveResult, MoveVserver, NodeView, StatusView,
    VserverView,
};
use crate::node::Node;
use crate::ops;

type Shared = State<Arc<Node>>;

pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/api/openapi.json", get(openapi))
        .route("/api/status", get(status))
        .route("/api/nodes", get(list_nodes))
        .route("/api/node", get(local_node))
        .route("/api/vservers", get(list_vservers).post(create_vserver))
        .route("/api/vservers/{name}", get(show_vserver).delete(delete_vserver).patch(modify_vserver))
        .route("/api/vservers/{name}/start", post(start_vserver))
        .route("/api/vservers/{name}/stop", post(stop_vserver))
        .route("/api/vservers/{name}/move", post(move_vserver))
        .route("/api/vservers/{name}/history", get(vserver_history))
        .route("/api/vservers/{name}/counters", get(vserver_counters))
        .route("/api/vservers/{name}/locks", get(super::locks::list_locks))
        .route("/api/vservers/{name}/locks/break", post(super::locks::break_locks))
        .route("/api/nodes/{name}/drain", post(drain_node))
        .route("/api/nodes/{name}/undrain", post(undrain_node))
        .route("/api/cluster/rebalance", get(super::rebalance::plan))
        .route("/api/internal/wake", post(wake))
        // Prometheus's default path; it scrapes with the token too
        // (`authorization: {credentials_file: ...}` in its config).
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no_such_endpoint", "no such endpoint") })
        // Outermost: nothing, not even "no such endpoint", answers a caller
        // without a valid token.
        .layer(axum::middleware::from_fn_with_state(node.clone(), super::auth::require_token))
        .with_state(node)
}

async fn metrics(State(node): Shared) -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        node.metrics.encode(),
    )
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(super::openapi::document())
}

#[utoipa::path(get, path = "/api/status", responses((status = 200, body = StatusView)))]
async fn status(State(node): Shared) -> Result<Json<StatusView>, ApiError> {
    Ok(Json(ops::nodes::status(&node).await?))
}

/// Every node, with what the store says of it and what each node says it
/// serves.
#[utoipa::path(get, path = "/api/nodes", responses((status = 200, body = [NodeView])))]
async fn list_nodes(State(node): Shared) -> Result<Json<Vec<NodeView>>, ApiError> {
    Ok(Json(ops::nodes::list(&node).await?))
}

/// What this node answers for now, from its own running set.
#[utoipa::path(get, path = "/api/node", responses((status = 200, body = LocalView)))]
async fn local_node(State(node): Shared) -> Json<LocalView> {
    Json(ops::nodes::local(&node))
}

/// Another node asks this one to look at the store now.
async fn wake(State(node): Shared) -> StatusCode {
    node.wake.notify_one();
    StatusCode::NO_CONTENT
}

#[utoipa::path(post, path = "/api/vservers/{name}/move", params(("name" = String, Path)), request_body = MoveVserver,
    responses((status = 200, body = MoveResult), (status = 404, body = super::types::ErrorBody),
              (status = 409, body = super::types::ErrorBody), (status = 503, body = super::types::ErrorBody)))]
async fn move_vserver(
    State(node): Shared,
    Path(name): Path<String>,
    body: Result<Json<MoveVserver>, JsonRejection>,
) -> Result<Json<MoveResult>, ApiError> {
    let request = match body {
        Ok(Json(request)) => request,
        Err(JsonRejection::MissingJsonContentType(_)) => MoveVserver::default(),
        Err(e) => return Err(ApiError::bad_request("bad_json", e.body_text())),
    };
    Ok(Json(ops::vservers::move_to(&node, &name, request).await?))
}

#[utoipa::path(get, path = "/api/vservers/{name}/history", params(("name" = String, Path)),
    responses((status = 200, body = [vnas_store::Transfer]), (status = 404, body = super::types::ErrorBody)))]
async fn vserver_history(
    State(node): Shared,
    Path(name): Path<String>,
) -> Result<Json<Vec<vnas_store::Transfer>>, ApiError> {
    Ok(Json(ops::vservers::history(&node, &name).await?))
}

/// The vserver's NFS counters, read by the node that serves it.
#[utoipa::path(get, path = "/api/vservers/{name}/counters", params(("name" = String, Path)),
    responses((status = 200, body = CountersView), (status = 404, body = super::types::ErrorBody),
              (status = 409, body = super::types::ErrorBody)))]
async fn vserver_counters(
    State(node): Shared,
    Path(name): Path<String>,
) -> Result<Json<CountersView>, ApiError> {
    Ok(Json(ops::vservers::counters(&node, &name).await?))
}

#[utoipa::path(post, path = "/api/nodes/{name}/drain", params(("name" = String, Path)),
    responses((status = 200, body = NodeView), (status = 404, body = super::types::ErrorBody)))]
async fn drain_node(State(node): Shared, Path(name): Path<String>) -> Result<Json<NodeView>, ApiError> {
    Ok(Json(ops::nodes::set_drained(&node, &name, true).await?))
}

#[utoipa::path(post, path = "/api/nodes/{name}/undrain", params(("name" = String, Path)),
    responses((status = 200, body = NodeView), (status = 404, body = super::types::ErrorBody)))]
async fn undrain_node(State(node): Shared, Path(name): Path<String>) -> Result<Json<NodeView>, ApiError> {
    Ok(Json(ops::nodes::set_drained(&node, &name, false).await?))
}

#[utoipa::path(get, path = "/api/vservers", responses((status = 200, body = [VserverView])))]
async fn list_vservers(State(node): Shared) -> Result<Json<Vec<VserverView>>, ApiError> {
    Ok(Json(ops::vservers::list(&node).await?))
}

#[utoipa::path(get, path = "/api/vservers/{name}", params(("name" = String, Path)),
    responses((status = 200, body = VserverView), (status = 404, body = super::types::ErrorBody)))]
async fn show_vserver(State(node): Shared, Path(name): Path<String>) -> Result<Json<VserverView>, ApiError> {
    Ok(Json(ops::vservers::show(&node, &name).await?))
}

#[utoipa::path(post, path = "/api/vservers", request_body = CreateVserver,
    responses((status = 201, body = VserverView), (status = 400, body = super::types::ErrorBody),
              (status = 404, body = super::types::ErrorBody), (status = 409, body = super::types::ErrorBody)))]
async fn create_vserver(
    State(node): Shared,
    body: Result<Json<CreateVserver>, JsonRejection>,
) -> Result<(StatusCode, Json<VserverView>), ApiError> {
    let Json(request) = body.map_err(|e| ApiError::bad_request("bad_json", e.body_text()))?;
    Ok((StatusCode::CREATED, Json(ops::vservers::create(&node, request).await?)))
}

#[utoipa::path(post, path = "/api/vservers/{name}/start", params(("name" = String, Path)),
    responses((status = 200, body = VserverView), (status = 404, body = super::types::ErrorBody)))]
async fn start_vserver(State(node): Shared, Path(name): Path<String>) -> Result<Json<VserverView>, ApiError> {
    Ok(Json(ops::vservers::start(&node, &name).await?))
}

#[utoipa::path(post, path = "/api/vservers/{name}/stop", params(("name" = String, Path)),
    responses((status = 200, body = VserverView), (status = 404, body = super::types::ErrorBody)))]
async fn stop_vserver(State(node): Shared, Path(name): Path<String>) -> Result<Json<VserverView>, ApiError> {
    Ok(Json(ops::vservers::stop(&node, &name).await?))
}

#[utoipa::path(delete, path = "/api/vservers/{name}", params(("name" = String, Path)),
    responses((status = 200, body = VserverView), (status = 404, body = super::types::ErrorBody)))]
async fn delete_vserver(
    State(node): Shared,
    Path(name): Path<String>,
) -> Result<Json<VserverView>, ApiError> {
    Ok(Json(ops::vservers::delete(&node, &name).await?))
}

#[utoipa::path(patch, path = "/api/vservers/{name}", params(("name" = String, Path)), request_body = ModifyVserver,
    responses((status = 200, body = VserverView), (status = 400, body = super::types::ErrorBody),
              (status = 404, body = super::types::ErrorBody)))]
async fn modify_vserver(
    State(node): Shared,
    Path(name): Path<String>,
    body: Result<Json<ModifyVserver>, JsonRejection>,
) -> Result<Json<VserverView>, ApiError> {
    let Json(change) = body.map_err(|e| ApiError::bad_request("bad_json", e.body_text()))?;
    Ok(Json(ops::vservers::modify(&node, &name, change).await?))
}

pub mod paths {
    //! Re-exports for the OpenAPI document.
    pub use super::{
        __path_create_vserver, __path_delete_vserver, __path_drain_node, __path_list_nodes,
        __path_list_vservers, __path_local_node, __path_modify_vserver, __path_move_vserver,
        __path_show_vserver, __path_start_vserver, __path_status, __path_stop_vserver, __path_undrain_node,
        __path_vserver_counters, __path_vserver_history,
    };
}
