//! `GET /api/cluster/rebalance`: the plan (`ops::rebalance`).

use axum::extract::State;
use axum::Json;

use super::error::ApiError;
use super::types::RebalancePlan;
use crate::ops;

/// `?max_moves=N`: a cap for this plan other than the default (4);
/// `?by=ops|bytes|cpu`: what to even out (default ops).
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct PlanQuery {
    max_moves: Option<usize>,
    by: Option<String>,
}

#[utoipa::path(get, path = "/api/cluster/rebalance", params(PlanQuery),
    responses((status = 200, body = RebalancePlan), (status = 400, body = super::types::ErrorBody)))]
pub async fn plan(
    State(node): State<std::sync::Arc<crate::node::Node>>,
    query: Result<axum::extract::Query<PlanQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<RebalancePlan>, ApiError> {
    let query = query.map_err(|e| ApiError::bad_request("bad_query", e.body_text()))?;
    let settings = ops::rebalance::settings(query.max_moves, query.by.as_deref())?;
    Ok(Json(ops::rebalance::build(&node, settings).await?))
}
