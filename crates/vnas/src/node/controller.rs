//! The controller makes this node serve exactly the vservers the store
//! assigns to it. Decisions are written to the store first and acted on
//! second: ownership is taken with a compare-and-swap on the epoch before a
//! vserver starts, and given back after it stopped.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use vnas_store::{now_ms, Desired, Ownership, ServiceState, Session, VserverRecord, VserverState};

use super::monitor::Failure;
use super::vserver::Running;
use super::Node;

/// After this long without a failure, a vserver's failure count restarts.
const FAILURES_FORGOTTEN: Duration = Duration::from_secs(60);
/// Vservers started at the same time.
const ACTIVATIONS_MAX: usize = 16;
/// The controller reads every record at least this often, even when the
/// store's generation says nothing changed (node liveness is not a record).
const FULL_READ_EVERY: Duration = Duration::from_secs(2);

pub async fn run(node: Arc<Node>, session: Box<dyn Session>, shutdown: CancellationToken) {
    let session: Arc<dyn Session> = Arc::from(session);
    let (failures_tx, mut failures) = mpsc::channel::<Failure>(64);
    let mut running: HashMap<String, Running> = HashMap::new();
    let mut failed_recently: HashMap<String, (u32, Instant)> = HashMap::new();
    let mut seen_generation = None;
    let mut last_full_read = Instant::now();
    loop {
        let mut woken = false;
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = node.wake.notified() => woken = true,
            _ = tokio::time::sleep(node.settings.tick) => {}
            Some(failure) = failures.recv() => {
                handle_failure(&node, &mut running, &mut failed_recently, failure, &failures_tx).await;
                continue;
            }
        }
        let renew = session.clone();
        if let Err(error) = tokio::task::spawn_blocking(move || renew.renew()).await.unwrap_or(Ok(())) {
            tracing::error!(%error, "cannot renew this node's session");
        }
        let generation = node.store(|s| s.generation()).await.ok();
        if !woken
            && generation.is_some()
            && generation == seen_generation
            && last_full_read.elapsed() < FULL_READ_EVERY
        {
            continue;
        }
        match node.store(|s| Ok((s.vservers()?, s.nodes()?))).await {
            Ok((records, nodes)) => {
                seen_generation = generation;
                last_full_read = Instant::now();
                let alive: HashSet<String> =
                    nodes.into_iter().filter(|n| n.alive).map(|n| n.info.name).collect();
                reconcile(&node, &mut running, &records, &alive, &failures_tx).await;
            }
            Err(error) => tracing::error!(%error, "cannot read the store"),
        }
    }
    // Stopping the node: every vserver drains and stops; ownership is given
    // back so the vservers come up again when the node does.
    for (name, vserver) in running.drain() {
        let epoch = vserver.epoch;
        vserver.stop().await;
        release(&node, &name, epoch, VserverState::Stopped, Some(format!("node {} stopped", node.name)))
            .await;
    }
}

async fn reconcile(
    node: &Arc<Node>,
    running: &mut HashMap<String, Running>,
    records: &[VserverRecord],
    alive: &HashSet<String>,
    failures: &mpsc::Sender<Failure>,
) {
    let present: HashSet<&str> = records.iter().map(|r| r.config.name.as_str()).collect();
    // Deleted from the store while running here.
    let gone: Vec<String> = running.keys().filter(|n| !present.contains(n.as_str())).cloned().collect();
    for name in gone {
        if let Some(vserver) = running.remove(&name) {
            vserver.stop().await;
            tracing::info!(vserver = %name, "vserver stopped: deleted");
        }
    }
    let mut starting = tokio::task::JoinSet::<Option<Running>>::new();
    for record in records {
        let name = &record.config.name;
        let owner = record.ownership.owner.as_deref();
        let should_run = record.config.desired == Desired::Running
            && record.config.node == node.name
            && record.ownership.state != VserverState::Failed;
        if let Some(vserver) = running.get(name) {
            let still_mine = owner == Some(node.name.as_str()) && record.ownership.epoch == vserver.epoch;
            if !should_run || !still_mine {
                let vserver = running.remove(name).expect("present");
                let epoch = vserver.epoch;
                vserver.stop().await;
                if still_mine {
                    release(node, name, epoch, VserverState::Stopped, None).await;
                }
                tracing::info!(vserver = %name, epoch, "vserver stopped");
            } else if record.config != vserver.config {
                // A new configuration takes effect by restarting under the same
                // ownership.
                let vserver = running.remove(name).expect("present");
                let epoch = vserver.epoch;
                vserver.stop().await;
                if let Some(vserver) = activate(node, record, epoch, failures).await {
                    running.insert(name.clone(), vserver);
                }
            }
            continue;
        }
        let free = match owner {
            None => true,
            Some(owner) => owner == node.name || !alive.contains(owner),
        };
        if should_run && free {
            // Many vservers start at once after a node start: their store
            // writes (each ending in fsync) overlap.
            if starting.len() >= ACTIVATIONS_MAX {
                if let Some(Ok(Some(vserver))) = starting.join_next().await {
                    running.insert(vserver.config.name.clone(), vserver);
                }
            }
            starting.spawn(take(node.clone(), record.clone(), failures.clone()));
        }
    }
    while let Some(done) = starting.join_next().await {
        if let Ok(Some(vserver)) = done {
            running.insert(vserver.config.name.clone(), vserver);
        }
    }
}

/// Starts a vserver this node owns under `epoch` and records the result.
async fn activate(
    node: &Arc<Node>,
    record: &VserverRecord,
    epoch: u64,
    failures: &mpsc::Sender<Failure>,
) -> Option<Running> {
    let name = record.config.name.clone();
    match Running::start(node, record, epoch, failures.clone()) {
        Ok(vserver) => {
            let service = ServiceState {
                epoch,
                node: node.name.clone(),
                mount_table: record.config.volumes.clone(),
                routing_table: record.config.routes.clone(),
                devices: record.config.addresses.iter().map(|a| format!("lo {a}")).collect(),
                write_verifier: vserver.write_verifier.iter().map(|b| format!("{b:02x}")).collect(),
                updated_ms: now_ms(),
            };
            let now_running = Ownership {
                owner: Some(node.name.clone()),
                epoch,
                state: VserverState::Running,
                reason: None,
                failures: 0,
                since_ms: now_ms(),
            };
            let name2 = name.clone();
            let written = node
                .store(move |s| {
                    s.put_service_state(&name2, &service)?;
                    s.swap_ownership(&name2, epoch, &now_running)
                })
                .await;
            match written {
                Ok(()) => {
                    tracing::info!(vserver = %name, epoch, addresses = ?record.config.addresses, "vserver started");
                    Some(vserver)
                }
                Err(error) => {
                    // Someone else owns it now: never serve without ownership.
                    tracing::warn!(vserver = %name, %error, "lost ownership while starting; stopping");
                    vserver.stop().await;
                    None
                }
            }
        }
        Err(reason) => {
            tracing::error!(vserver = %name, epoch, %reason, "vserver failed to start");
            release(node, &name, epoch, VserverState::Failed, Some(reason)).await;
            None
        }
    }
}

/// Takes ownership of a free vserver assigned here (compare-and-swap on
/// the epoch), then starts it.
async fn take(node: Arc<Node>, record: VserverRecord, failures: mpsc::Sender<Failure>) -> Option<Running> {
    let name = record.config.name.clone();
    let epoch = record.ownership.epoch + 1;
    let taking = Ownership {
        owner: Some(node.name.clone()),
        epoch,
        state: VserverState::Starting,
        reason: None,
        failures: 0,
        since_ms: now_ms(),
    };
    let expected = record.ownership.epoch;
    let name_owned = name.clone();
    match node.store(move |s| s.swap_ownership(&name_owned, expected, &taking)).await {
        Ok(()) => activate(&node, &record, epoch, &failures).await,
        Err(error) => {
            tracing::warn!(vserver = %name, %error, "could not take ownership");
            None
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

async fn handle_failure(
    node: &Arc<Node>,
    running: &mut HashMap<String, Running>,
    failed_recently: &mut HashMap<String, (u32, Instant)>,
    failure: Failure,
    failures: &mpsc::Sender<Failure>,
) {
    let Some(vserver) = running.get(&failure.name) else {
        return;
    };
    if vserver.epoch != failure.epoch {
        return;
    }
    // Failures count in a row: a vserver healthy for a while starts over.
    let entry = failed_recently.entry(failure.name.clone()).or_insert((0, Instant::now()));
    if entry.1.elapsed() > FAILURES_FORGOTTEN {
        entry.0 = 0;
    }
    *entry = (entry.0 + 1, Instant::now());
    let count = entry.0;
    let vserver = running.remove(&failure.name).expect("present");
    let epoch = vserver.epoch;
    vserver.stop().await;
    let name = failure.name.clone();
    if count >= node.settings.failures_max {
        tracing::error!(vserver = %name, failures = count, reason = %failure.reason, "vserver failed; not restarting");
        failed_recently.remove(&name);
        release(node, &name, epoch, VserverState::Failed, Some(failure.reason)).await;
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
    if let Some(vserver) = activate(node, &record, epoch, failures).await {
        running.insert(name, vserver);
    }
}
