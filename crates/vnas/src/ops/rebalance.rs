//! The rebalance plan: the store's records, node liveness and published
//! loads in, `vnas_cluster::rebalance::plan` over them, the plan out. Its
//! moves are carried out as ordinary moves (`vservers::carry_out_move`),
//! by the CLI or by the automatic rebalancer.

use std::collections::BTreeMap;
use std::sync::Arc;

use vnas_cluster::rebalance::{self, Measure, NodeLoad, Settings, VserverLoad};
use vnas_store::VserverState;

use super::error::OpsError;
use super::types::{NodeLoadView, PlannedMove, RebalancePlan};
use crate::node::Node;

/// The settings of a plan asked for: a cap on its moves other than the
/// default (4), and what to even out (ops, bytes or cpu; default ops).
pub fn settings(max_moves: Option<usize>, by: Option<&str>) -> Result<Settings, OpsError> {
    let mut settings = Settings::default();
    match max_moves {
        Some(0) | Some(1001..) => return Err(OpsError::invalid("bad_query", "max_moves is 1 to 1000")),
        Some(max) => settings.max_moves = max,
        None => {}
    }
    if let Some(by) = by {
        settings.measure = by.parse().map_err(|e: String| OpsError::invalid("bad_query", e))?;
    }
    Ok(settings)
}

/// The plan now, from the store.
pub async fn build(node: &Arc<Node>, settings: Settings) -> Result<RebalancePlan, OpsError> {
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
    // A vserver's load from the newest report that measured it: right
    // after a move its new node has not measured it yet, its old node's
    // last report still has it.
    let mut measured: BTreeMap<&str, (u64, &vnas_store::VserverLoadReport)> = BTreeMap::new();
    for report in &loads {
        for (name, load) in &report.vservers {
            let entry = measured.entry(name.as_str()).or_insert((report.at_ms, load));
            if report.at_ms > entry.0 {
                *entry = (report.at_ms, load);
            }
        }
    }
    let load_of = |load: &vnas_store::VserverLoadReport| match settings.measure {
        Measure::Ops => load.ops_per_s,
        Measure::Bytes => load.bytes_per_s,
        Measure::Cpu => load.cpu,
    };
    let loads: BTreeMap<&str, &vnas_store::LoadReport> = loads.iter().map(|l| (l.node.as_str(), l)).collect();
    let mut waiting = Vec::new();
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
                    load: measured.get(r.config.name.as_str()).map_or_else(
                        || {
                            waiting.push(r.config.name.clone());
                            0.0
                        },
                        |(_, load)| load_of(load),
                    ),
                    moved_ms: moved.get(&r.config.name).copied().flatten(),
                    allowed: r.config.allowed_nodes.clone(),
                })
                .collect(),
        })
        .collect();
    // A plan on loads not all measured would move too much.
    let moves =
        if waiting.is_empty() { rebalance::plan(&eligible, vnas_store::now_ms(), &settings) } else { vec![] };
    let moves = moves
        .into_iter()
        .map(|m| PlannedMove { vserver: m.vserver, from: m.from, to: m.to, reason: m.reason })
        .collect();
    let views = eligible
        .iter()
        .map(|n| {
            let load = loads.get(n.name.as_str());
            let ops =
                n.vservers.iter().filter_map(|v| measured.get(v.name.as_str())).map(|(_, l)| l.ops_per_s);
            NodeLoadView {
                node: n.name.clone(),
                ops_per_s: ops.sum::<f64>() + 0.0,
                bytes_per_s: load.map_or(0.0, |l| l.bytes_per_s),
                cpu: load.map_or(0.0, |l| l.cpu),
                vservers: n.vservers.len(),
            }
        })
        .collect();
    Ok(RebalancePlan {
        by: settings.measure.as_str().to_string(),
        idle: rebalance::idle(&eligible, settings.measure),
        spread: rebalance::spread(&eligible),
        start: settings.start,
        stop: settings.stop,
        nodes: views,
        moves,
        waiting,
    })
}
