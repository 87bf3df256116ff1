//! The rebalance plan: the store's records, node liveness and published
//! loads in, `vnas_cluster::rebalance::plan` over them, the plan out. The
//! CLI carries a plan out with ordinary moves.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use vnas_cluster::rebalance::{self, NodeLoad, Settings, VserverLoad};
use vnas_store::VserverState;

use super::error::ApiError;
use super::types::{NodeLoadView, PlannedMove, RebalancePlan};

/// `?max_moves=N`: a cap for this plan other than the default (4).
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct PlanQuery {
    max_moves: Option<usize>,
}

#[utoipa::path(get, path = "/api/cluster/rebalance", params(PlanQuery),
    responses((status = 200, body = RebalancePlan), (status = 400, body = super::types::ErrorBody)))]
pub async fn plan(
    State(node): State<std::sync::Arc<crate::node::Node>>,
    query: Result<axum::extract::Query<PlanQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<RebalancePlan>, ApiError> {
    let query = query.map_err(|e| ApiError::bad_request("bad_query", e.body_text()))?;
    let mut settings = Settings::default();
    match query.max_moves {
        Some(0) | Some(1001..) => {
            return Err(ApiError::bad_request("bad_query", "max_moves is 1 to 1000"));
        }
        Some(max) => settings.max_moves = max,
        None => {}
    }
    let (records, nodes, loads) = node.store(|s| Ok((s.vservers()?, s.nodes()?, s.loads()?))).await?;
    // When each vserver last moved (a start is no move).
    let names: Vec<String> = records.iter().map(|r| r.config.name.clone()).collect();
    let moved: BTreeMap<String, Option<u64>> = node
        .store(move |s| {
            Ok(names
                .into_iter()
                .map(|name| {
                    let history = s.history(&name).unwrap_or_default();
                    let last = history.iter().rev().find(|t| t.why != "start").map(|t| t.at_ms);
                    (name, last)
                })
                .collect())
        })
        .await?;
    let loads: BTreeMap<&str, &vnas_store::LoadReport> = loads.iter().map(|l| (l.node.as_str(), l)).collect();
    let eligible: Vec<NodeLoad> = nodes
        .iter()
        .filter(|n| node.is_up(n) && !n.drained)
        .map(|n| NodeLoad {
            name: n.info.name.clone(),
            vservers: records
                .iter()
                .filter(|r| {
                    r.ownership.owner.as_deref() == Some(n.info.name.as_str())
                        && r.ownership.state == VserverState::Running
                })
                .map(|r| VserverLoad {
                    name: r.config.name.clone(),
                    load: loads
                        .get(n.info.name.as_str())
                        .and_then(|l| l.vservers.get(&r.config.name))
                        .map_or(0.0, |v| v.ops_per_s),
                    moved_ms: moved.get(&r.config.name).copied().flatten(),
                    allowed: vec![],
                })
                .collect(),
        })
        .collect();
    let moves = rebalance::plan(&eligible, vnas_store::now_ms(), &settings)
        .into_iter()
        .map(|m| PlannedMove { vserver: m.vserver, from: m.from, to: m.to, reason: m.reason })
        .collect();
    let views = eligible
        .iter()
        .map(|n| {
            let load = loads.get(n.name.as_str());
            NodeLoadView {
                node: n.name.clone(),
                ops_per_s: n.vservers.iter().map(|v| v.load).sum(),
                bytes_per_s: load.map_or(0.0, |l| l.bytes_per_s),
                cpu: load.map_or(0.0, |l| l.cpu),
                vservers: n.vservers.len(),
            }
        })
        .collect();
    Ok(Json(RebalancePlan {
        spread: rebalance::spread(&eligible),
        start: settings.start,
        stop: settings.stop,
        nodes: views,
        moves,
    }))
}
