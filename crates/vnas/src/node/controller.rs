//! The controller makes this node serve exactly the vservers the store
//! gives it, and carries out transfers. Decisions are written to the store
//! first and acted on second, so any node may die at any step:
//!
//! - start: take ownership (epoch + 1, compare-and-swap), then serve;
//! - move A -> B: the API assigns the vserver to B; B prepares (listens,
//!   holding calls); A stops accepting, drains, syncs, and hands ownership
//!   to B with epoch + 1 in one compare-and-swap; B serves;
//! - failover: when the assigned node is down (or the vserver failed
//!   there), placement picks a survivor, which assigns the vserver to itself
//!   and takes ownership with a compare-and-swap on the epoch.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use vnas_store::{
    now_ms, Desired, NodeStatus, Ownership, ServiceState, Session, Transfer, VserverRecord, VserverState,
};

use super::monitor::Failure;
use super::placement::{place, Candidate};
use super::vserver::Running;
use super::Node;

/// Fault injection for tests: a node started with `VNAS_FAULT=STEP` dies
/// (abort, like a power cut) when it reaches that step of a transfer.
fn fault_point(step: &str) {
    static FAULT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if FAULT.get_or_init(|| std::env::var("VNAS_FAULT").ok()).as_deref() == Some(step) {
        tracing::error!(step, "VNAS_FAULT: dying here");
        std::process::abort();
    }
}

/// After this long without a failure, a vserver's failure count restarts.
const FAILURES_FORGOTTEN: Duration = Duration::from_secs(60);
/// Vservers started at the same time.
const ACTIVATIONS_MAX: usize = 16;
/// The controller reads every record at least this often, even when the
/// store's generation says nothing changed (node liveness is not a record).
const FULL_READ_EVERY: Duration = Duration::from_millis(300);

/// Renews the node's session; the fence turns lapses into self-fencing.
pub async fn keep_session(node: Arc<Node>, session: Box<dyn Session>, shutdown: CancellationToken) {
    let session: Arc<dyn Session> = Arc::from(session);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(node.settings.renew_every) => {}
        }
        let started = node.fence.now_ms();
        let renew = session.clone();
        match tokio::task::spawn_blocking(move || renew.renew()).await {
            Ok(Ok(())) => {
                node.fence.renewed(started);
                if node.fence.stalled() {
                    node.wake.notify_one();
                }
            }
            Ok(Err(error)) => tracing::error!(%error, "cannot renew this node's session"),
            Err(error) => tracing::error!(%error, "session renewal panicked"),
        }
    }
}

struct Controller {
    node: Arc<Node>,
    running: HashMap<String, Running>,
    failed_recently: HashMap<String, (u32, Instant)>,
    failures: mpsc::Sender<Failure>,
}

pub async fn run(node: Arc<Node>, shutdown: CancellationToken) {
    let (failures, mut failure_rx) = mpsc::channel::<Failure>(64);
    let mut controller =
        Controller { node: node.clone(), running: HashMap::new(), failed_recently: HashMap::new(), failures };
    let mut seen_generation = None;
    let mut last_full_read = Instant::now();
    loop {
        let mut woken = false;
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = node.wake.notified() => woken = true,
            _ = tokio::time::sleep(node.settings.tick) => {}
            Some(failure) = failure_rx.recv() => {
                controller.handle_failure(failure).await;
                continue;
            }
        }
        if node.fence.stalled() || (!node.fence.serving() && !controller.running.is_empty()) {
            controller.fence().await;
            continue;
        }
        let generation = node.store(|s| s.generation()).await.ok();
        let unchanged = generation.is_some() && generation == seen_generation;
        if !woken && unchanged && last_full_read.elapsed() < FULL_READ_EVERY {
            continue;
        }
        match node.store(|s| Ok((s.vservers()?, s.nodes()?))).await {
            Ok((records, nodes)) => {
                seen_generation = generation;
                last_full_read = Instant::now();
                controller.reconcile(&records, &nodes).await;
            }
            Err(error) => tracing::error!(%error, "cannot read the store"),
        }
    }
    // Stopping the node: every vserver drains and stops; ownership is given
    // back so the vservers come up again when the node does.
    for (name, vserver) in controller.running.drain() {
        let (epoch, serving) = (vserver.epoch, vserver.serving());
        vserver.stop_and_sync().await;
        if serving {
            release(&node, &name, epoch, VserverState::Stopped, Some(format!("node {} stopped", node.name)))
                .await;
        }
    }
}

/// What a taken-over vserver's history says about why.
fn why(previous: &Ownership, me: &str, previous_owner_up: bool) -> &'static str {
    match &previous.owner {
        _ if previous.state == VserverState::Failed => "vserver failed",
        None => "start",
        Some(owner) if owner == me => "restart",
        Some(_) if !previous_owner_up => "node down",
        Some(_) => "move",
    }
}

impl Controller {
    /// After a stall or a lapse: drop everything; what is still ours is
    /// taken back (with a new epoch) by the next reconcile.
    async fn fence(&mut self) {
        if !self.running.is_empty() {
            tracing::warn!(node = %self.node.name, vservers = self.running.len(), "session lapsed: stopping every vserver (self-fencing)");
        }
        for (_, vserver) in self.running.drain() {
            vserver.stop().await;
        }
        self.node.fence.resume();
        self.node.wake.notify_one();
    }

    async fn reconcile(&mut self, records: &[VserverRecord], nodes: &[NodeStatus]) {
        let node = self.node.clone();
        let me = node.name.as_str();
        let up: HashMap<&str, &NodeStatus> =
            nodes.iter().filter(|n| node.is_up(n)).map(|n| (n.info.name.as_str(), n)).collect();
        let present: HashSet<&str> = records.iter().map(|r| r.config.name.as_str()).collect();
        let gone: Vec<String> =
            self.running.keys().filter(|n| !present.contains(n.as_str())).cloned().collect();
        for name in gone {
            if let Some(vserver) = self.running.remove(&name) {
                vserver.stop().await;
                tracing::info!(vserver = %name, "vserver stopped: deleted");
            }
        }
        let candidates: Vec<Candidate> = nodes
            .iter()
            .map(|n| Candidate {
                name: &n.info.name,
                up: up.contains_key(n.info.name.as_str()),
                drained: n.drained,
            })
            .collect();
        let mut loads: HashMap<&str, usize> = HashMap::new();
        for record in records {
            *loads.entry(record.config.node.as_str()).or_default() += 1;
        }

        let drained = nodes.iter().any(|n| n.info.name == me && n.drained);
        let mut reassign: Vec<(String, String)> = Vec::new();
        let mut starting = tokio::task::JoinSet::<Option<Running>>::new();
        for record in records {
            let name = record.config.name.as_str();
            let owner = record.ownership.owner.as_deref();
            let assigned = record.config.node.as_str();
            let wanted = record.config.desired == Desired::Running;

            if let Some(vserver) = self.running.get(name) {
                let mine = owner == Some(me) && record.ownership.epoch == vserver.epoch;
                if vserver.serving() {
                    if mine && wanted && assigned == me && drained {
                        // Draining: placement picks where each vserver goes;
                        // the moves themselves are ordinary hand-offs.
                        if let Some(target) = place(&candidates, &loads, Some(me)) {
                            *loads.entry(target).or_default() += 1;
                            reassign.push((name.to_string(), target.to_string()));
                        }
                    } else if mine && wanted && assigned != me && up.contains_key(assigned) {
                        self.hand_off(record).await;
                    } else if !mine || !wanted || record.ownership.state == VserverState::Failed {
                        let vserver = self.running.remove(name).expect("present");
                        let epoch = vserver.epoch;
                        vserver.stop().await;
                        if mine {
                            release(&node, name, epoch, VserverState::Stopped, None).await;
                        }
                        tracing::info!(vserver = %name, epoch, "vserver stopped");
                    } else if record.config != vserver.config {
                        // A new configuration: restart under the same ownership.
                        let vserver = self.running.remove(name).expect("present");
                        let epoch = vserver.epoch;
                        vserver.stop().await;
                        if let Some(v) = activate(&node, record, epoch, None, &self.failures).await {
                            self.running.insert(name.to_string(), v);
                        }
                    }
                } else if owner == Some(me) && record.ownership.state == VserverState::Starting {
                    // The hand-off arrived: answer the calls held so far.
                    let mut vserver = self.running.remove(name).expect("present");
                    fault_point("target-before-serving");
                    vserver.open(record.ownership.epoch);
                    if confirm(&node, record, &vserver, "move").await {
                        self.running.insert(name.to_string(), vserver);
                    } else {
                        vserver.stop().await;
                    }
                } else if assigned != me || !wanted {
                    // The move was called off.
                    self.running.remove(name).expect("present").stop().await;
                } else if owner.is_none_or(|o| o != me && !up.contains_key(o)) {
                    // The source died before handing over: take it as a
                    // failover (a fresh start after the held calls are dropped).
                    self.running.remove(name).expect("present").stop().await;
                    let previous_up = false;
                    starting.spawn(take(
                        node.clone(),
                        record.clone(),
                        previous_up,
                        nodes.to_vec(),
                        self.failures.clone(),
                    ));
                }
                continue;
            }

            if !wanted {
                continue;
            }
            let failed_there = record.ownership.state == VserverState::Failed && owner == Some(assigned);
            if !up.contains_key(assigned) || failed_there {
                // Failover: placement picks a survivor; only that node acts.
                let exclude = failed_there.then_some(assigned);
                if place(&candidates, &loads, exclude) == Some(me) && assigned != me {
                    let mut config = record.config.clone();
                    config.node = me.to_string();
                    let reason = if failed_there { "vserver failed" } else { "node down" };
                    tracing::warn!(vserver = %name, from = %assigned, %reason, "failing over to this node");
                    if let Err(error) = node.store(move |s| s.update_config(&config)).await {
                        tracing::warn!(vserver = %name, %error, "could not take the vserver over");
                    }
                    node.wake.notify_one();
                }
                continue;
            }
            if assigned != me || record.ownership.state == VserverState::Failed {
                continue;
            }
            match owner {
                Some(o) if o == me && record.ownership.state == VserverState::Starting => {
                    // Handed to us before we prepared: serve at once.
                    let vserver =
                        activate(&node, record, record.ownership.epoch, Some("move"), &self.failures).await;
                    if let Some(v) = vserver {
                        self.running.insert(name.to_string(), v);
                    }
                }
                Some(o) if o != me && up.contains_key(o) => {
                    // A move to this node: listen now, hold calls until the
                    // owner hands over (SO_REUSEPORT: reconnecting clients
                    // never find the port closed).
                    match Running::start(&node, record, record.ownership.epoch, false, self.failures.clone())
                    {
                        Ok(vserver) => {
                            self.running.insert(name.to_string(), vserver);
                            fault_point("target-prepared");
                        }
                        Err(reason) => {
                            tracing::warn!(vserver = %name, %reason, "cannot prepare for the move")
                        }
                    }
                }
                _ => {
                    if starting.len() >= ACTIVATIONS_MAX {
                        if let Some(Ok(Some(vserver))) = starting.join_next().await {
                            self.running.insert(vserver.config.name.clone(), vserver);
                        }
                    }
                    let previous_up = owner.is_some_and(|o| up.contains_key(o));
                    starting.spawn(take(
                        node.clone(),
                        record.clone(),
                        previous_up,
                        nodes.to_vec(),
                        self.failures.clone(),
                    ));
                }
            }
        }
        while let Some(done) = starting.join_next().await {
            if let Ok(Some(vserver)) = done {
                self.running.insert(vserver.config.name.clone(), vserver);
            }
        }
        if !reassign.is_empty() {
            let targets: Vec<String> = reassign.iter().map(|(_, t)| t.clone()).collect();
            let count = reassign.len();
            let result = node
                .store(move |s| {
                    for (name, target) in reassign {
                        let mut config = s.vserver(&name)?.config;
                        config.node = target;
                        s.update_config(&config)?;
                    }
                    Ok(())
                })
                .await;
            match result {
                Ok(()) => tracing::info!(node = %me, vservers = count, "draining: vservers reassigned"),
                Err(error) => tracing::warn!(%error, "draining: could not reassign vservers"),
            }
            node.wake.notify_one();
            node.wake_peers(targets).await;
        }
    }

    /// The source side of a move: stop accepting, drain, sync, record the
    /// service state, and hand ownership to the target in one
    /// compare-and-swap (epoch + 1).
    async fn hand_off(&mut self, record: &VserverRecord) {
        let name = record.config.name.clone();
        let target = record.config.node.clone();
        let vserver = self.running.remove(&name).expect("present");
        let epoch = vserver.epoch;
        // Clients stop getting answers from here on: the pause starts now.
        let stopped_ms = now_ms();
        fault_point("handoff-before-stop");
        vserver.stop_and_sync().await;
        fault_point("handoff-after-stop");
        let handed = Ownership {
            owner: Some(target.clone()),
            epoch: epoch + 1,
            state: VserverState::Starting,
            reason: Some(format!("moving from {}", self.node.name)),
            failures: 0,
            since_ms: stopped_ms,
        };
        let name2 = name.clone();
        match self.node.store(move |s| s.swap_ownership(&name2, epoch, &handed)).await {
            Ok(()) => {
                fault_point("handoff-after-cas");
                tracing::info!(vserver = %name, from = %self.node.name, to = %target, epoch = epoch + 1, "vserver handed over");
                self.node.wake_peers(vec![target]).await;
            }
            Err(error) => tracing::warn!(vserver = %name, %error, "hand-off refused; not serving it"),
        }
    }

    async fn handle_failure(&mut self, failure: Failure) {
        let node = self.node.clone();
        let Some(vserver) = self.running.get(&failure.name) else { return };
        if vserver.epoch != failure.epoch {
            return;
        }
        // Failures count in a row: a vserver healthy for a while starts over.
        let entry = self.failed_recently.entry(failure.name.clone()).or_insert((0, Instant::now()));
        if entry.1.elapsed() > FAILURES_FORGOTTEN {
            entry.0 = 0;
        }
        *entry = (entry.0 + 1, Instant::now());
        let count = entry.0;
        let vserver = self.running.remove(&failure.name).expect("present");
        let epoch = vserver.epoch;
        vserver.stop().await;
        let name = failure.name.clone();
        if count >= node.settings.failures_max {
            tracing::error!(vserver = %name, failures = count, reason = %failure.reason, "vserver failed; not restarting here");
            self.failed_recently.remove(&name);
            release(&node, &name, epoch, VserverState::Failed, Some(failure.reason)).await;
            return;
        }
        tracing::warn!(vserver = %name, failures = count, reason = %failure.reason, "vserver unhealthy; restarting");
        let name2 = name.clone();
        let record = match node.store(move |s| s.vserver(&name2)).await {
            Ok(record) => record,
            Err(error) => {
                tracing::error!(vserver = %name, %error, "cannot read the store to restart");
                return;
            }
        };
        let mut noted = record.ownership.clone();
        noted.failures = count;
        noted.reason = Some(failure.reason);
        let name3 = name.clone();
        let _ = node.store(move |s| s.swap_ownership(&name3, epoch, &noted)).await;
        if let Some(vserver) = activate(&node, &record, epoch, None, &self.failures).await {
            self.running.insert(name, vserver);
        }
    }
}

/// Takes ownership of a vserver assigned here whose owner is gone (or none),
/// then starts it.
async fn take(
    node: Arc<Node>,
    record: VserverRecord,
    previous_up: bool,
    nodes: Vec<NodeStatus>,
    failures: mpsc::Sender<Failure>,
) -> Option<Running> {
    let name = record.config.name.clone();
    let epoch = record.ownership.epoch + 1;
    let reason = why(&record.ownership, &node.name, previous_up);
    let taking = Ownership {
        owner: Some(node.name.clone()),
        epoch,
        state: VserverState::Starting,
        reason: None,
        failures: 0,
        // For a failover the pause began when the old owner was last seen.
        since_ms: match &record.ownership.owner {
            Some(o) if o != &node.name && reason == "node down" => {
                nodes.iter().find(|n| &n.info.name == o).map_or(now_ms(), |n| n.last_seen_ms)
            }
            _ => now_ms(),
        },
    };
    let expected = record.ownership.epoch;
    let name_owned = name.clone();
    let since = taking.since_ms;
    match node.store(move |s| s.swap_ownership(&name_owned, expected, &taking)).await {
        Ok(()) => {
            let mut record = record;
            record.ownership.since_ms = since;
            activate(&node, &record, epoch, Some(reason), &failures).await
        }
        Err(error) => {
            tracing::warn!(vserver = %name, %error, "could not take ownership");
            None
        }
    }
}

/// Starts serving a vserver this node owns under `epoch` and records it.
async fn activate(
    node: &Arc<Node>,
    record: &VserverRecord,
    epoch: u64,
    why: Option<&str>,
    failures: &mpsc::Sender<Failure>,
) -> Option<Running> {
    let name = record.config.name.clone();
    match Running::start(node, record, epoch, true, failures.clone()) {
        Ok(vserver) => {
            if confirm(node, record, &vserver, why.unwrap_or("restart")).await {
                Some(vserver)
            } else {
                vserver.stop().await;
                None
            }
        }
        Err(reason) => {
            tracing::error!(vserver = %name, epoch, %reason, "vserver failed to start");
            release(node, &name, epoch, VserverState::Failed, Some(reason)).await;
            None
        }
    }
}

/// Records a vserver this node now serves: service state, running, and a
/// history entry with the pause. False if the store refused (someone else
/// owns it now): the caller must stop serving it.
async fn confirm(node: &Arc<Node>, record: &VserverRecord, vserver: &Running, why: &str) -> bool {
    let name = record.config.name.clone();
    let epoch = vserver.epoch;
    let serving_ms = now_ms();
    let service = ServiceState {
        epoch,
        node: node.name.clone(),
        mount_table: record.config.volumes.clone(),
        routing_table: record.config.routes.clone(),
        devices: record.config.addresses.iter().map(|a| format!("lo {a}")).collect(),
        write_verifier: vserver.write_verifier.iter().map(|b| format!("{b:02x}")).collect(),
        updated_ms: serving_ms,
    };
    let running = Ownership {
        owner: Some(node.name.clone()),
        epoch,
        state: VserverState::Running,
        reason: None,
        failures: 0,
        since_ms: serving_ms,
    };
    let pause_ms = match why {
        "start" | "restart" => 0,
        _ => serving_ms.saturating_sub(record.ownership.since_ms),
    };
    let from = match why {
        "move" => record
            .ownership
            .reason
            .as_deref()
            .and_then(|r| r.strip_prefix("moving from "))
            .map(str::to_string),
        _ => None,
    };
    let transfer =
        Transfer { at_ms: serving_ms, from, to: node.name.clone(), why: why.to_string(), epoch, pause_ms };
    let name2 = name.clone();
    let previous_owner = record.ownership.owner.clone();
    let written = node
        .store(move |s| {
            s.put_service_state(&name2, &service)?;
            s.swap_ownership(&name2, epoch, &running)?;
            let mut transfer = transfer;
            if transfer.from.is_none() && transfer.why != "start" {
                transfer.from = s.history(&name2)?.last().map(|t| t.to.clone()).or(previous_owner);
            }
            s.append_history(&name2, &transfer)
        })
        .await;
    match written {
        Ok(()) => {
            tracing::info!(vserver = %name, epoch, why, pause_ms, addresses = ?record.config.addresses, "vserver serving");
            true
        }
        Err(error) => {
            // Someone else owns it now: never serve without ownership.
            tracing::warn!(vserver = %name, %error, "lost ownership while starting; stopping");
            false
        }
    }
}

/// Gives ownership back (stopped), or keeps it marked failed with a reason.
async fn release(node: &Arc<Node>, name: &str, epoch: u64, state: VserverState, reason: Option<String>) {
    let owner = (state == VserverState::Failed).then(|| node.name.clone());
    let ownership = Ownership { owner, epoch, state, reason, failures: 0, since_ms: now_ms() };
    let name_owned = name.to_string();
    if let Err(error) = node.store(move |s| s.swap_ownership(&name_owned, epoch, &ownership)).await {
        tracing::warn!(vserver = %name, %error, "could not record the vserver's state");
    }
}
