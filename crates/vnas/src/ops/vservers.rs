//! What is done to a vserver: create, modify, move, start, stop, delete,
//! and what is read of it. Any node does any of it: everything goes through
//! the common volume, and the node that hosts a vserver acts on it; a call
//! that changes a vserver returns once its node has done it (or the wait
//! ran out).

use std::sync::Arc;
use std::time::{Duration, Instant};

use vnas_store::{Desired, Export, Ownership, Transfer, VserverConfig, VserverRecord, VserverState};

use super::error::{Kind, OpsError};
use super::types::{CountersView, CreateVserver, ModifyVserver, MoveResult, MoveVserver, VserverView};
use super::validate;
use crate::node::Node;

/// How long a call that changes a vserver waits for the hosting node.
const WAIT: Duration = Duration::from_secs(15);

async fn wait_for(
    node: &Arc<Node>,
    name: &str,
    done: impl Fn(&VserverRecord) -> bool,
) -> Result<VserverRecord, OpsError> {
    let deadline = Instant::now() + WAIT;
    loop {
        let name = name.to_string();
        let record = node.store(move |s| s.vserver(&name)).await?;
        if done(&record) || Instant::now() > deadline {
            return Ok(record);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Settled: running or failed, or stopped and given back.
fn settled(desired: Desired) -> impl Fn(&VserverRecord) -> bool {
    move |r| match desired {
        Desired::Running => matches!(r.ownership.state, VserverState::Running | VserverState::Failed),
        Desired::Stopped => r.ownership.owner.is_none() || r.ownership.state == VserverState::Failed,
    }
}

pub async fn list(node: &Arc<Node>) -> Result<Vec<VserverView>, OpsError> {
    let records = node.store(|s| s.vservers()).await?;
    Ok(records.into_iter().map(VserverView::from).collect())
}

pub async fn show(node: &Arc<Node>, name: &str) -> Result<VserverView, OpsError> {
    let name = name.to_string();
    Ok(node.store(move |s| s.vserver(&name)).await?.into())
}

pub async fn history(node: &Arc<Node>, name: &str) -> Result<Vec<Transfer>, OpsError> {
    let name = name.to_string();
    Ok(node.store(move |s| s.history(&name)).await?)
}

/// Its counters, read by the node that serves it (asked there if that is
/// another node).
pub async fn counters(node: &Arc<Node>, name: &str) -> Result<CountersView, OpsError> {
    vnas_store::check_name(name)?;
    let Some(meters) = node.metrics.served(name) else {
        let path = format!("/api/vservers/{name}/counters");
        return super::forward::to_owner(node, name, &path, None).await;
    };
    let snapshot = meters.stats.snapshot();
    let procedures = snapshot.procedures.values();
    Ok(CountersView {
        vserver: name.to_string(),
        node: node.name.clone(),
        at_ms: vnas_store::now_ms(),
        calls: procedures.clone().map(|p| p.calls).sum(),
        errors: procedures.clone().map(|p| p.errors).sum(),
        latency_sum_seconds: procedures.map(|p| p.latency_sum_seconds).sum(),
        bytes_in: snapshot.bytes_in,
        bytes_out: snapshot.bytes_out,
    })
}

/// Creates the vserver on the node it names, else its home, else the
/// least loaded live node it may run on; back once it runs (or failed).
pub async fn create(node: &Arc<Node>, request: CreateVserver) -> Result<VserverView, OpsError> {
    let (records, nodes) = node.store(|s| Ok((s.vservers()?, s.nodes()?))).await?;
    let allowed =
        |name: &str| request.allowed_nodes.is_empty() || request.allowed_nodes.iter().any(|a| a == name);
    let assigned = match request.node.as_ref().or(request.home.as_ref()) {
        Some(name) => {
            if !nodes.iter().any(|n| &n.info.name == name) {
                return Err(OpsError::not_found("node_not_found", format!("node {name} not found")));
            }
            name.clone()
        }
        None => nodes
            .iter()
            .filter(|n| node.is_up(n) && !n.drained && allowed(&n.info.name))
            .min_by_key(|n| {
                (records.iter().filter(|r| r.config.node == n.info.name).count(), n.info.name.clone())
            })
            .map(|n| n.info.name.clone())
            .ok_or_else(|| OpsError::new(Kind::Unavailable, "no_node", "no live node to host it"))?,
    };
    let config = validate::config(request, assigned, node.interface.is_some())?;
    let name = config.name.clone();
    node.store(move |s| s.create_vserver(&config)).await?;
    tracing::info!(vserver = %name, "vserver created");
    node.wake.notify_one();
    Ok(wait_for(node, &name, settled(Desired::Running)).await?.into())
}

/// Sets what the vserver should be doing and waits for its node to do it.
async fn set_desired(node: &Arc<Node>, name: &str, desired: Desired) -> Result<VserverRecord, OpsError> {
    let name2 = name.to_string();
    node.store(move |s| {
        let record = s.vserver(&name2)?;
        if desired == Desired::Running && record.ownership.state == VserverState::Failed {
            // Starting again clears the failure.
            let cleared = Ownership { owner: None, state: VserverState::Stopped, ..record.ownership.clone() };
            s.swap_ownership(&name2, record.ownership.epoch, &cleared)?;
        }
        vnas_store::change_config(s, &name2, |config| {
            config.desired = desired;
            Ok(())
        })
    })
    .await?;
    node.wake.notify_one();
    wait_for(node, name, settled(desired)).await
}

pub async fn start(node: &Arc<Node>, name: &str) -> Result<VserverView, OpsError> {
    Ok(set_desired(node, name, Desired::Running).await?.into())
}

pub async fn stop(node: &Arc<Node>, name: &str) -> Result<VserverView, OpsError> {
    Ok(set_desired(node, name, Desired::Stopped).await?.into())
}

/// Stops the vserver, then forgets it: its record, history and lock state.
pub async fn delete(node: &Arc<Node>, name: &str) -> Result<VserverView, OpsError> {
    let record = set_desired(node, name, Desired::Stopped).await?;
    let owner_alive = match &record.ownership.owner {
        None => false,
        Some(owner) => {
            let owner = owner.clone();
            node.store(move |s| Ok(s.nodes()?.iter().any(|n| n.info.name == owner && n.alive))).await?
        }
    };
    if owner_alive && record.ownership.state != VserverState::Failed {
        return Err(OpsError::conflict(
            "still_running",
            format!("vserver {name} did not stop in time; try again"),
        ));
    }
    let name2 = name.to_string();
    node.store(move |s| s.delete_vserver(&name2)).await?;
    node.wake.notify_one();
    tracing::info!(vserver = %name, "vserver deleted");
    Ok(record.into())
}

/// Moves a running vserver to the node asked for, or to the one placement
/// picks; back once it serves there, with the pause its clients saw.
pub async fn move_to(node: &Arc<Node>, name: &str, request: MoveVserver) -> Result<MoveResult, OpsError> {
    let name2 = name.to_string();
    let (record, records, nodes) =
        node.store(move |s| Ok((s.vserver(&name2)?, s.vservers()?, s.nodes()?))).await?;
    if record.ownership.state != VserverState::Running {
        return Err(OpsError::conflict("not_running", format!("vserver {name} is not running")));
    }
    let from = record.ownership.owner.clone().unwrap_or_else(|| record.config.node.clone());
    let to = match request.to {
        Some(to) => {
            let status = nodes
                .iter()
                .find(|n| n.info.name == to)
                .ok_or_else(|| OpsError::not_found("node_not_found", format!("node {to} not found")))?;
            if !node.is_up(status) {
                return Err(OpsError::conflict("node_down", format!("node {to} is down")));
            }
            if !record.config.allowed_nodes.is_empty() && !record.config.allowed_nodes.contains(&to) {
                return Err(OpsError::conflict(
                    "node_not_allowed",
                    format!("vserver {name} may run on {} only", record.config.allowed_nodes.join(", ")),
                ));
            }
            to
        }
        None => {
            let candidates: Vec<_> = nodes
                .iter()
                .map(|n| vnas_cluster::placement::Candidate {
                    name: &n.info.name,
                    up: node.is_up(n),
                    drained: n.drained,
                })
                .collect();
            let mut loads = std::collections::HashMap::new();
            for r in &records {
                *loads.entry(r.config.node.as_str()).or_default() += 1;
            }
            vnas_cluster::placement::place_allowed(
                &candidates,
                &loads,
                Some(&from),
                &record.config.allowed_nodes,
            )
            .ok_or_else(|| OpsError::new(Kind::Unavailable, "no_node", "no other live node to move to"))?
            .to_string()
        }
    };
    if to == from {
        return Err(OpsError::conflict("already_there", format!("vserver {name} is already on {to}")));
    }
    carry_out_move(node, name, record.ownership.epoch, from, to).await
}

/// Assigns `name` to `to` and waits until it serves there: the move of
/// `vnas vserver move`, the rebalancer's and failback's.
pub async fn carry_out_move(
    node: &Arc<Node>,
    name: &str,
    epoch_before: u64,
    from: String,
    to: String,
) -> Result<MoveResult, OpsError> {
    let name = name.to_string();
    let (name2, to2) = (name.clone(), to.clone());
    node.store(move |s| {
        vnas_store::change_config(s, &name2, |config| {
            config.node = to2.clone();
            Ok(())
        })
    })
    .await?;
    node.wake.notify_one();
    node.wake_peers(vec![from.clone(), to.clone()]).await;
    let to2 = to.clone();
    let record = wait_for(node, &name, move |r| {
        r.ownership.epoch > epoch_before
            && ((r.ownership.owner.as_deref() == Some(&to2) && r.ownership.state == VserverState::Running)
                || r.ownership.state == VserverState::Failed)
    })
    .await?;
    if record.ownership.owner.as_deref() != Some(&to) || record.ownership.state != VserverState::Running {
        return Err(OpsError::new(
            Kind::Timeout,
            "move_incomplete",
            format!("vserver {name} is {:?} on {:?}", record.ownership.state, record.ownership.owner),
        ));
    }
    let name2 = name.clone();
    let history = node.store(move |s| s.history(&name2)).await?;
    let pause_ms = history.last().map_or(0, |t| t.pause_ms);
    tracing::info!(vserver = %name, %from, %to, pause_ms, "vserver moved");
    Ok(MoveResult { vserver: record.into(), from, to, pause_ms })
}

/// Paths name the same export or volume with or without a trailing `/`.
fn same_path(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// Removes from `items` what each of `keys` names; a key that names
/// nothing is refused (not found, `code`, saying `missing`).
fn remove_each<T, K>(
    items: &mut Vec<T>,
    keys: &[K],
    names: impl Fn(&T, &K) -> bool,
    code: &'static str,
    missing: impl Fn(&K) -> String,
) -> Result<(), OpsError> {
    for key in keys {
        let before = items.len();
        items.retain(|item| !names(item, key));
        if items.len() == before {
            return Err(OpsError::not_found(code, missing(key)));
        }
    }
    Ok(())
}

/// `current` with `change` applied and checked: the configuration a
/// `vserver modify` asks for.
fn modified(
    name: &str,
    current: &VserverConfig,
    change: &ModifyVserver,
    linux: bool,
) -> Result<VserverConfig, OpsError> {
    let mut config = current.clone();
    let no_export = |path: &String| format!("vserver {name} has no export {path}");
    remove_each(
        &mut config.exports,
        &change.remove_exports,
        |e, p| same_path(&e.path, p),
        "export_not_found",
        no_export,
    )?;
    for export in change.add_exports.iter().cloned() {
        match config.exports.iter_mut().find(|e| same_path(&e.path, &export.path)) {
            Some(existing) => *existing = export,
            None => config.exports.push(export),
        }
    }
    let find = |exports: &mut Vec<Export>, path: &String| {
        exports
            .iter()
            .position(|e| same_path(&e.path, path))
            .ok_or_else(|| OpsError::not_found("export_not_found", no_export(path)))
    };
    for rule in &change.remove_rules {
        let at = find(&mut config.exports, &rule.path)?;
        let rules = &mut config.exports[at].rules;
        remove_each(
            rules,
            std::slice::from_ref(&rule.clients),
            |r, c| r.clients == *c,
            "rule_not_found",
            |c| format!("export {} has no rule for clients {}", rule.path, c.join("+")),
        )?;
        if rules.is_empty() {
            return Err(OpsError::invalid(
                "bad_export",
                format!("export {} keeps at least one rule (remove the export instead)", rule.path),
            ));
        }
    }
    for added in change.add_rules.iter().cloned() {
        let at = find(&mut config.exports, &added.path)?;
        let rules = &mut config.exports[at].rules;
        for rule in added.rules.into_iter().rev() {
            // One rule per set of clients: a new one replaces the old.
            rules.retain(|r| r.clients != rule.clients);
            rules.insert(0, rule);
        }
    }
    remove_each(
        &mut config.volumes,
        &change.remove_volumes,
        |v, m| same_path(&v.mount, m),
        "volume_not_found",
        |m| format!("vserver {name} has no volume at {m}"),
    )?;
    config.volumes.extend(change.add_volumes.iter().cloned());
    let same_address = |a: &String, b: &String| vnas_store::address_ip(a) == vnas_store::address_ip(b);
    remove_each(&mut config.addresses, &change.remove_addresses, same_address, "address_not_found", |a| {
        format!("vserver {name} has no address {a}")
    })?;
    config.addresses.extend(change.add_addresses.iter().cloned());
    remove_each(
        &mut config.routes,
        &change.remove_routes,
        |r, d| r.destination == *d,
        "route_not_found",
        |d| format!("vserver {name} has no route to {d}"),
    )?;
    config.routes.extend(change.add_routes.iter().cloned());
    validate::check_addresses(&config.addresses, linux)?;
    validate::check_volumes(&config.volumes)?;
    validate::check_exports(&config, &config.exports)?;
    validate::check_routes(&config, linux)?;
    Ok(config)
}

/// Changes addresses, routes, volumes, exports or client rules; a running
/// vserver takes the change live, and this returns once its owner serves
/// it, so the caller's next call sees it.
pub async fn modify(node: &Arc<Node>, name: &str, change: ModifyVserver) -> Result<VserverView, OpsError> {
    let linux = node.interface.is_some();
    // Computed from the configuration read, written only if that is still
    // the one in the store: a change made meanwhile (a move) is kept, and
    // this one computed again on top of it.
    let mut tries = 0;
    let (record, config) = loop {
        let name2 = name.to_string();
        let record = node.store(move |s| s.vserver(&name2)).await?;
        let config = modified(name, &record.config, &change, linux)?;
        let (old, new) = (record.config.clone(), config.clone());
        match node.store(move |s| s.update_config_if(&old, &new)).await {
            Ok(()) => break (record, config),
            Err(vnas_store::StoreError::ConfigChanged(_)) if tries < 8 => tries += 1,
            Err(error) => return Err(error.into()),
        }
    };
    let (exports, volumes, addresses, routes) =
        (config.exports.clone(), config.volumes.clone(), config.addresses.clone(), config.routes.clone());
    tracing::info!(vserver = %name, "vserver changed");
    node.wake.notify_one();
    if let Some(owner) = record.ownership.owner.clone() {
        node.wake_peers(vec![owner]).await;
    }
    let record = if record.ownership.state == VserverState::Running {
        wait_for(node, name, move |r| {
            r.ownership.state != VserverState::Running
                || r.service.as_ref().is_some_and(|s| {
                    s.exports == exports
                        && s.mount_table == volumes
                        && s.addresses == addresses
                        && s.routing_table == routes
                })
        })
        .await?
    } else {
        record
    };
    Ok(record.into())
}
