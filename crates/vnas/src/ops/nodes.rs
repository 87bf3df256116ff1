//! What is read of the nodes and done to them: the cluster's status, each
//! node with what it says it serves, drain and undrain.

use std::collections::BTreeMap;
use std::sync::Arc;

use vnas_store::{NodeStatus, VserverRecord};

use super::error::OpsError;
use super::types::{LocalView, NodeView, ServedView, StatusView};
use crate::node::Node;

pub async fn status(node: &Arc<Node>) -> Result<StatusView, OpsError> {
    let (records, nodes) = node.store(|s| Ok((s.vservers()?, s.nodes()?))).await?;
    let mut by_state = BTreeMap::new();
    for record in &records {
        let state = serde_json::to_value(record.ownership.state).unwrap().as_str().unwrap().to_string();
        *by_state.entry(state).or_insert(0) += 1;
    }
    Ok(StatusView {
        nodes_alive: nodes.iter().filter(|n| node.is_up(n)).count(),
        nodes_total: nodes.len(),
        vservers_total: records.len(),
        vservers_by_state: by_state,
    })
}

/// Every node, with what the store says of it and what each node says it
/// serves (asked of it, in parallel, for at most a second: a node the
/// store counts down may still be running, and would say so).
pub async fn list(node: &Arc<Node>) -> Result<Vec<NodeView>, OpsError> {
    let (records, nodes) = node.store(|s| Ok((s.vservers()?, s.nodes()?))).await?;
    let mut asking = tokio::task::JoinSet::new();
    for (i, n) in nodes.iter().enumerate() {
        let (node, name, api) = (node.clone(), n.info.name.clone(), n.info.api.clone());
        asking.spawn(async move { (i, served_by(&node, &name, &api).await) });
    }
    let mut serving = vec![None; nodes.len()];
    while let Some(Ok((i, served))) = asking.join_next().await {
        serving[i] = served;
    }
    let views = nodes.into_iter().zip(serving).map(|(n, served)| {
        let mut view = view(node, &records, n);
        view.serving = served;
        view
    });
    Ok(views.collect())
}

/// What this node answers for now, from its own running set.
pub fn local(node: &Node) -> LocalView {
    let answering = node.answering.read().unwrap_or_else(|e| e.into_inner());
    let serving =
        answering.iter().map(|(name, epoch)| ServedView { name: name.clone(), epoch: *epoch }).collect();
    LocalView { name: node.name.clone(), serving }
}

/// The names of the vservers node `name` says it serves; None if it did
/// not answer within a second.
async fn served_by(node: &Node, name: &str, api: &str) -> Option<Vec<String>> {
    let local = if name == node.name {
        local(node)
    } else {
        let request = node
            .peers
            .get(format!("{api}/api/node"))
            .bearer_auth(&node.tokens.own().secret)
            .timeout(std::time::Duration::from_secs(1));
        let local: LocalView = request.send().await.ok()?.error_for_status().ok()?.json().await.ok()?;
        (local.name == name).then_some(local)?
    };
    Some(local.serving.into_iter().map(|s| s.name).collect())
}

fn view(node: &Node, records: &[VserverRecord], n: NodeStatus) -> NodeView {
    NodeView {
        serving: None,
        vservers: records.iter().filter(|r| r.ownership.owner.as_deref() == Some(&n.info.name)).count(),
        alive: node.is_up(&n),
        drained: n.drained,
        name: n.info.name,
        api: n.info.api,
        last_seen_ms: n.last_seen_ms,
    }
}

/// Each node's published load: calls/s and CPU (cores), by node name.
pub async fn loads(node: &Arc<Node>) -> Result<BTreeMap<String, (f64, f64)>, OpsError> {
    let reports = node.store(|s| s.loads()).await?;
    Ok(reports.into_iter().map(|r| (r.node, (r.ops_per_s, r.cpu))).collect())
}

/// Drains node `name` (its vservers move to the others, and none is placed
/// on it) or undrains it.
pub async fn set_drained(node: &Arc<Node>, name: &str, drained: bool) -> Result<NodeView, OpsError> {
    let name2 = name.to_string();
    let (records, nodes) = node
        .store(move |s| {
            s.set_drained(&name2, drained)?;
            Ok((s.vservers()?, s.nodes()?))
        })
        .await?;
    node.wake.notify_one();
    node.wake_peers(vec![name.to_string()]).await;
    let status = nodes.into_iter().find(|n| n.info.name == name).expect("set_drained checked it exists");
    tracing::info!(node = %name, drained, "node drain changed");
    Ok(view(node, &records, status))
}
