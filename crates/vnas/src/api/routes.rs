//! The API's routes. Any node's API serves any request: everything goes
//! through the common volume, and the node that hosts a vserver acts on it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use vnas_store::{Desired, Ownership, VserverRecord, VserverState};

use super::error::ApiError;
use super::types::{
    CreateVserver, LocalView, ModifyVserver, MoveResult, MoveVserver, NodeView, ServedView, StatusView,
    VserverView,
};
use crate::node::{validate, Node};

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

/// How long a call that changes a vserver waits for the hosting node.
const WAIT: Duration = Duration::from_secs(15);

async fn wait_for(
    node: &Arc<Node>,
    name: &str,
    done: impl Fn(&VserverRecord) -> bool,
) -> Result<VserverRecord, ApiError> {
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

#[utoipa::path(get, path = "/api/status", responses((status = 200, body = StatusView)))]
async fn status(State(node): Shared) -> Result<Json<StatusView>, ApiError> {
    let (records, nodes) = node.store(|s| Ok((s.vservers()?, s.nodes()?))).await?;
    let mut by_state = BTreeMap::new();
    for record in &records {
        let state = serde_json::to_value(record.ownership.state).unwrap().as_str().unwrap().to_string();
        *by_state.entry(state).or_insert(0) += 1;
    }
    Ok(Json(StatusView {
        nodes_alive: nodes.iter().filter(|n| node.is_up(n)).count(),
        nodes_total: nodes.len(),
        vservers_total: records.len(),
        vservers_by_state: by_state,
    }))
}

/// Every node, with what the store says of it and what each node says it
/// serves (asked of it, in parallel, for at most a second: a node the
/// store counts down may still be running, and would say so).
#[utoipa::path(get, path = "/api/nodes", responses((status = 200, body = [NodeView])))]
async fn list_nodes(State(node): Shared) -> Result<Json<Vec<NodeView>>, ApiError> {
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
        let mut view = node_view(&node, &records, n);
        view.serving = served;
        view
    });
    Ok(Json(views.collect()))
}

/// What this node answers for now, from its own running set.
#[utoipa::path(get, path = "/api/node", responses((status = 200, body = LocalView)))]
async fn local_node(State(node): Shared) -> Json<LocalView> {
    Json(local_view(&node))
}

fn local_view(node: &Node) -> LocalView {
    let answering = node.answering.read().unwrap_or_else(|e| e.into_inner());
    let serving =
        answering.iter().map(|(name, epoch)| ServedView { name: name.clone(), epoch: *epoch }).collect();
    LocalView { name: node.name.clone(), serving }
}

/// The names of the vservers node `name` says it serves; None if it did
/// not answer within a second.
async fn served_by(node: &Node, name: &str, api: &str) -> Option<Vec<String>> {
    let local = if name == node.name {
        local_view(node)
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

fn node_view(node: &Node, records: &[VserverRecord], n: vnas_store::NodeStatus) -> NodeView {
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
    let name2 = name.clone();
    let (record, records, nodes) =
        node.store(move |s| Ok((s.vserver(&name2)?, s.vservers()?, s.nodes()?))).await?;
    if record.ownership.state != VserverState::Running {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_running",
            format!("vserver {name} is not running"),
        ));
    }
    let from = record.ownership.owner.clone().unwrap_or_else(|| record.config.node.clone());
    let to = match request.to {
        Some(to) => {
            let status = nodes.iter().find(|n| n.info.name == to).ok_or_else(|| {
                ApiError::new(StatusCode::NOT_FOUND, "node_not_found", format!("node {to} not found"))
            })?;
            if !node.is_up(status) {
                return Err(ApiError::new(StatusCode::CONFLICT, "node_down", format!("node {to} is down")));
            }
            if !record.config.allowed_nodes.is_empty() && !record.config.allowed_nodes.contains(&to) {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
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
            .ok_or_else(|| {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no_node", "no other live node to move to")
            })?
            .to_string()
        }
    };
    if to == from {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_there",
            format!("vserver {name} is already on {to}"),
        ));
    }
    carry_out_move(&node, &name, record.ownership.epoch, from, to).await.map(Json)
}

/// Assigns `name` to `to` and waits until it serves there: the move of
/// `vnas vserver move`, the rebalancer's and failback's.
pub async fn carry_out_move(
    node: &Arc<Node>,
    name: &str,
    epoch_before: u64,
    from: String,
    to: String,
) -> Result<MoveResult, ApiError> {
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
        return Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
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

#[utoipa::path(get, path = "/api/vservers/{name}/history", params(("name" = String, Path)),
    responses((status = 200, body = [vnas_store::Transfer]), (status = 404, body = super::types::ErrorBody)))]
async fn vserver_history(
    State(node): Shared,
    Path(name): Path<String>,
) -> Result<Json<Vec<vnas_store::Transfer>>, ApiError> {
    Ok(Json(node.store(move |s| s.history(&name)).await?))
}

async fn set_drain(node: Arc<Node>, name: String, drained: bool) -> Result<Json<NodeView>, ApiError> {
    let name2 = name.clone();
    let (records, nodes) = node
        .store(move |s| {
            s.set_drained(&name2, drained)?;
            Ok((s.vservers()?, s.nodes()?))
        })
        .await?;
    node.wake.notify_one();
    node.wake_peers(vec![name.clone()]).await;
    let status = nodes.into_iter().find(|n| n.info.name == name).expect("set_drained checked it exists");
    tracing::info!(node = %name, drained, "node drain changed");
    Ok(Json(node_view(&node, &records, status)))
}

#[utoipa::path(post, path = "/api/nodes/{name}/drain", params(("name" = String, Path)),
    responses((status = 200, body = NodeView), (status = 404, body = super::types::ErrorBody)))]
async fn drain_node(State(node): Shared, Path(name): Path<String>) -> Result<Json<NodeView>, ApiError> {
    set_drain(node, name, true).await
}

#[utoipa::path(post, path = "/api/nodes/{name}/undrain", params(("name" = String, Path)),
    responses((status = 200, body = NodeView), (status = 404, body = super::types::ErrorBody)))]
async fn undrain_node(State(node): Shared, Path(name): Path<String>) -> Result<Json<NodeView>, ApiError> {
    set_drain(node, name, false).await
}

#[utoipa::path(get, path = "/api/vservers", responses((status = 200, body = [VserverView])))]
async fn list_vservers(State(node): Shared) -> Result<Json<Vec<VserverView>>, ApiError> {
    let records = node.store(|s| s.vservers()).await?;
    Ok(Json(records.into_iter().map(VserverView::from).collect()))
}

#[utoipa::path(get, path = "/api/vservers/{name}", params(("name" = String, Path)),
    responses((status = 200, body = VserverView), (status = 404, body = super::types::ErrorBody)))]
async fn show_vserver(State(node): Shared, Path(name): Path<String>) -> Result<Json<VserverView>, ApiError> {
    let record = node.store(move |s| s.vserver(&name)).await?;
    Ok(Json(record.into()))
}

#[utoipa::path(post, path = "/api/vservers", request_body = CreateVserver,
    responses((status = 201, body = VserverView), (status = 400, body = super::types::ErrorBody),
              (status = 404, body = super::types::ErrorBody), (status = 409, body = super::types::ErrorBody)))]
async fn create_vserver(
    State(node): Shared,
    body: Result<Json<CreateVserver>, JsonRejection>,
) -> Result<(StatusCode, Json<VserverView>), ApiError> {
    let Json(request) = body.map_err(|e| ApiError::bad_request("bad_json", e.body_text()))?;
    let (records, nodes) = node.store(|s| Ok((s.vservers()?, s.nodes()?))).await?;
    let allowed =
        |name: &str| request.allowed_nodes.is_empty() || request.allowed_nodes.iter().any(|a| a == name);
    let assigned = match request.node.as_ref().or(request.home.as_ref()) {
        Some(name) => {
            if !nodes.iter().any(|n| &n.info.name == name) {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "node_not_found",
                    format!("node {name} not found"),
                ));
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
            .ok_or_else(|| {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no_node", "no live node to host it")
            })?,
    };
    let config = validate::config(request, assigned, node.interface.is_some())?;
    let name = config.name.clone();
    node.store(move |s| s.create_vserver(&config)).await?;
    tracing::info!(vserver = %name, "vserver created");
    node.wake.notify_one();
    let record = wait_for(&node, &name, settled(Desired::Running)).await?;
    Ok((StatusCode::CREATED, Json(record.into())))
}

/// Sets what the vserver should be doing and waits for its node to do it.
async fn set_desired(node: &Arc<Node>, name: String, desired: Desired) -> Result<VserverRecord, ApiError> {
    let name2 = name.clone();
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
    wait_for(node, &name, settled(desired)).await
}

#[utoipa::path(post, path = "/api/vservers/{name}/start", params(("name" = String, Path)),
    responses((status = 200, body = VserverView), (status = 404, body = super::types::ErrorBody)))]
async fn start_vserver(State(node): Shared, Path(name): Path<String>) -> Result<Json<VserverView>, ApiError> {
    Ok(Json(set_desired(&node, name, Desired::Running).await?.into()))
}

#[utoipa::path(post, path = "/api/vservers/{name}/stop", params(("name" = String, Path)),
    responses((status = 200, body = VserverView), (status = 404, body = super::types::ErrorBody)))]
async fn stop_vserver(State(node): Shared, Path(name): Path<String>) -> Result<Json<VserverView>, ApiError> {
    Ok(Json(set_desired(&node, name, Desired::Stopped).await?.into()))
}

#[utoipa::path(delete, path = "/api/vservers/{name}", params(("name" = String, Path)),
    responses((status = 200, body = VserverView), (status = 404, body = super::types::ErrorBody)))]
async fn delete_vserver(
    State(node): Shared,
    Path(name): Path<String>,
) -> Result<Json<VserverView>, ApiError> {
    let record = set_desired(&node, name.clone(), Desired::Stopped).await?;
    let owner_alive = match &record.ownership.owner {
        None => false,
        Some(owner) => {
            let owner = owner.clone();
            node.store(move |s| Ok(s.nodes()?.iter().any(|n| n.info.name == owner && n.alive))).await?
        }
    };
    if owner_alive && record.ownership.state != VserverState::Failed {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "still_running",
            format!("vserver {name} did not stop in time; try again"),
        ));
    }
    let name2 = name.clone();
    node.store(move |s| s.delete_vserver(&name2)).await?;
    node.wake.notify_one();
    tracing::info!(vserver = %name, "vserver deleted");
    Ok(Json(record.into()))
}

/// Paths name the same export or volume with or without a trailing `/`.
fn same_path(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// Removes from `items` what each of `keys` names; a key that names
/// nothing is refused (404 `code`, saying `missing`).
fn remove_each<T, K>(
    items: &mut Vec<T>,
    keys: &[K],
    names: impl Fn(&T, &K) -> bool,
    code: &'static str,
    missing: impl Fn(&K) -> String,
) -> Result<(), ApiError> {
    for key in keys {
        let before = items.len();
        items.retain(|item| !names(item, key));
        if items.len() == before {
            return Err(ApiError::new(StatusCode::NOT_FOUND, code, missing(key)));
        }
    }
    Ok(())
}

/// `current` with `change` applied and checked: the configuration a
/// `vserver modify` asks for.
fn modified(
    name: &str,
    current: &vnas_store::VserverConfig,
    change: &ModifyVserver,
    linux: bool,
) -> Result<vnas_store::VserverConfig, ApiError> {
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
    let find = |exports: &mut Vec<vnas_store::Export>, path: &String| {
        exports
            .iter()
            .position(|e| same_path(&e.path, path))
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "export_not_found", no_export(path)))
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
            return Err(ApiError::bad_request(
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

#[utoipa::path(patch, path = "/api/vservers/{name}", params(("name" = String, Path)), request_body = ModifyVserver,
    responses((status = 200, body = VserverView), (status = 400, body = super::types::ErrorBody),
              (status = 404, body = super::types::ErrorBody)))]
async fn modify_vserver(
    State(node): Shared,
    Path(name): Path<String>,
    body: Result<Json<ModifyVserver>, JsonRejection>,
) -> Result<Json<VserverView>, ApiError> {
    let Json(change) = body.map_err(|e| ApiError::bad_request("bad_json", e.body_text()))?;
    let linux = node.interface.is_some();
    // Computed from the configuration read, written only if that is still
    // the one in the store: a change made meanwhile (a move) is kept, and
    // this one computed again on top of it.
    let mut tries = 0;
    let (record, config) = loop {
        let name2 = name.clone();
        let record = node.store(move |s| s.vserver(&name2)).await?;
        let config = modified(&name, &record.config, &change, linux)?;
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
    // A running vserver: back once its owner serves the change, so the
    // caller's next call sees it.
    let record = if record.ownership.state == VserverState::Running {
        wait_for(&node, &name, move |r| {
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
    Ok(Json(record.into()))
}

pub mod paths {
    //! Re-exports for the OpenAPI document.
    pub use super::{
        __path_create_vserver, __path_delete_vserver, __path_drain_node, __path_list_nodes,
        __path_list_vservers, __path_local_node, __path_modify_vserver, __path_move_vserver,
        __path_show_vserver, __path_start_vserver, __path_status, __path_stop_vserver, __path_undrain_node,
        __path_vserver_history,
    };
}
