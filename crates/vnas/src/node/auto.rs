//! Transfer by load and failback without an admin, both off by default
//! (`--rebalance auto`, `--failback-after-s`). One node acts: the live node
//! with the lowest name. It looks every `--rebalance-every-s`, sends each
//! vserver whose home node has been up for the settle time back home, then
//! carries out the rebalancer's plan, one move at a time (the same moves as
//! `vnas vserver move`).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use vnas_store::{Desired, VserverState};

use super::Node;
use crate::ops::vservers::carry_out_move;

pub async fn run(node: Arc<Node>, shutdown: CancellationToken) {
    let settings = node.settings.clone();
    if !settings.rebalance_auto && settings.failback_after.is_none() {
        return;
    }
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(settings.rebalance_every) => {}
        }
        let Ok((records, nodes)) = node.store(|s| Ok((s.vservers()?, s.nodes()?))).await else { continue };
        let leader = nodes.iter().filter(|n| node.is_up(n)).map(|n| n.info.name.as_str()).min();
        if leader != Some(node.name.as_str()) {
            continue;
        }
        if let Some(settle) = settings.failback_after {
            let now = vnas_store::now_ms();
            for record in &records {
                let (Some(home), Some(owner)) = (&record.config.home, &record.ownership.owner) else {
                    continue;
                };
                let home_ready = nodes.iter().any(|n| {
                    &n.info.name == home
                        && node.is_up(n)
                        && !n.drained
                        && now.saturating_sub(n.info.started_ms) >= settle.as_millis() as u64
                });
                if owner == home
                    || !home_ready
                    || record.ownership.state != VserverState::Running
                    || record.config.desired != Desired::Running
                {
                    continue;
                }
                let name = &record.config.name;
                tracing::info!(vserver = %name, from = %owner, to = %home, "failing back to the home node");
                if let Err(error) =
                    carry_out_move(&node, name, record.ownership.epoch, owner.clone(), home.clone()).await
                {
                    tracing::warn!(vserver = %name, %error, "failback did not complete");
                }
            }
        }
        if settings.rebalance_auto {
            let plan_settings =
                vnas_cluster::rebalance::Settings { measure: settings.rebalance_by, ..Default::default() };
            let plan = match crate::ops::rebalance::build(&node, plan_settings).await {
                Ok(plan) => plan,
                Err(error) => {
                    tracing::warn!(%error, "cannot plan a rebalance");
                    continue;
                }
            };
            for planned in plan.moves {
                let name = planned.vserver.clone();
                let Ok(record) = node.store(move |s| s.vserver(&name)).await else { continue };
                if record.ownership.owner.as_deref() != Some(planned.from.as_str()) {
                    continue;
                }
                tracing::info!(vserver = %planned.vserver, from = %planned.from, to = %planned.to,
                    reason = %planned.reason, "rebalancing");
                if let Err(error) =
                    carry_out_move(&node, &planned.vserver, record.ownership.epoch, planned.from, planned.to)
                        .await
                {
                    tracing::warn!(vserver = %planned.vserver, %error, "rebalancing move did not complete");
                }
            }
        }
    }
}
