//! What only the node serving a vserver knows (its locks, its counters):
//! any other node forwards the call there, with its own token.

use std::sync::Arc;

use super::error::{Kind, OpsError};
use crate::node::Node;

/// The API of the node that owns `name` (not this one), to forward to.
async fn owner_api(node: &Arc<Node>, name: &str) -> Result<String, OpsError> {
    let name2 = name.to_string();
    let (record, nodes) = node.store(move |s| Ok((s.vserver(&name2)?, s.nodes()?))).await?;
    let not_served =
        || OpsError::conflict("not_running", format!("vserver {name} is not running: no node serves it"));
    let owner = record.ownership.owner.ok_or_else(not_served)?;
    if owner == node.name {
        // Owned here but not (yet, or any more) served here.
        return Err(not_served());
    }
    let owner = nodes.into_iter().find(|n| n.info.name == owner).ok_or_else(not_served)?;
    Ok(owner.info.api)
}

/// Forwards the call to the owner's API, with this node's token.
pub async fn to_owner<T: serde::de::DeserializeOwned>(
    node: &Arc<Node>,
    name: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<T, OpsError> {
    let api = owner_api(node, name).await?;
    let url = format!("{api}{path}");
    let request = match body {
        Some(body) => node.peers.post(&url).json(&body),
        None => node.peers.get(&url),
    };
    let unreachable = |e: reqwest::Error| {
        OpsError::new(
            Kind::Upstream,
            "owner_unreachable",
            format!("the node serving {name} did not answer: {e}"),
        )
    };
    let response = request
        .bearer_auth(&node.tokens.own().secret)
        .timeout(std::time::Duration::from_secs(5))
        .send()
        .await
        .map_err(unreachable)?;
    if !response.status().is_success() {
        // The owner's refusal, as the same kind of refusal here.
        let kind = match response.status().as_u16() {
            400 => Kind::Invalid,
            404 => Kind::NotFound,
            409 => Kind::Conflict,
            503 => Kind::Unavailable,
            504 => Kind::Timeout,
            _ => Kind::Upstream,
        };
        let body: super::types::ErrorBody = response.json().await.map_err(unreachable)?;
        return Err(OpsError::new(kind, "owner_refused", body.message));
    }
    response.json().await.map_err(unreachable)
}
