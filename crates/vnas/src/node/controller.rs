//! The controller makes this node serve exactly the vservers the store
//! gives it. It is a thin loop: read the store, ask `vnas_cluster::decide`
//! what to do, carry out each action, and read again. Every decision lives
//! in vnas-cluster; here are only its effects (store calls, servers started
//! and stopped) and fault points for the tests.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use vnas_cluster::{records, Action, FailureAction, Local, View, Why};
use vnas_store::{now_ms, NodeStatus, Session, VserverRecord, VserverState};

use vnas_vserver::network::{format_connection, parse_connection};
use vnas_vserver::{Failure, Params, Running};

use crate::metrics::Meters;

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

/// Fault injection for tests: `VNAS_FAULT=controller-stall` makes the
/// controller loop hang at its tenth round (the process lives on), as a
/// deadlock would.
async fn stall_point(round: u64) {
    if round == 10 && std::env::var("VNAS_FAULT").as_deref() == Ok("controller-stall") {
        tracing::error!("VNAS_FAULT: the controller loop stalls here");
        std::future::pending::<()>().await;
    }
}

/// After this long without a failure, a vserver's failure count restarts.
const FAILURES_FORGOTTEN: Duration = Duration::from_secs(60);
/// Vservers started at the same time.
const ACTIVATIONS_MAX: usize = 16;
/// The controller reads every record at least this often, even when the
/// store's generation says nothing changed (node liveness is not a record).
const FULL_READ_EVERY: Duration = Duration::from_millis(300);
/// How often the client connections of each vserver are recorded (when
/// they changed), for the tickle ACKs of a next owner after a failover.
const RECORD_CONNECTIONS_EVERY: Duration = Duration::from_millis(500);
/// How often the node publishes its load for the rebalancer.
const PUBLISH_LOAD_EVERY: Duration = Duration::from_secs(5);
/// How often its NFS counters are (when they changed): after a failover
/// the next owner continues from them, losing at most this much. A
/// hand-off records them exactly.
const RECORD_COUNTERS_EVERY: Duration = Duration::from_secs(10);

/// Renews the node's session; the fence turns lapses into self-fencing.
pub async fn keep_session(node: Arc<Node>, session: Box<dyn Session>, shutdown: CancellationToken) {
    let session: Arc<dyn Session> = Arc::from(session);
    let mut link_up = true;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(node.settings.renew_every) => {}
        }
        // A node cut off from its clients gives its vservers up: it stops
        // renewing, fences itself, and the others take over.
        if let Some(interface) = &node.interface {
            let up = vnas_vserver::Linux::link_up(interface);
            if up != link_up {
                link_up = up;
                if up {
                    tracing::warn!(node = %node.name, interface, "link up again: this node serves again");
                } else {
                    tracing::error!(node = %node.name, interface, "link down: giving up every vserver");
                }
            }
            if !up {
                continue;
            }
        }
        let started = node.fence.now_ms();
        let renew = session.clone();
        match tokio::task::spawn_blocking(move || renew.renew()).await {
            Ok(Ok(())) => {
                node.metrics.renewals.inc();
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
    /// The client connections last recorded, per vserver.
    recorded: HashMap<String, Vec<String>>,
    /// The NFS counters last recorded, per vserver.
    recorded_counters: HashMap<String, vnas_nfs::StatsSnapshot>,
    /// How this node runs a vserver (its network and volume parts).
    params: Params,
}

pub async fn run(node: Arc<Node>, shutdown: CancellationToken) {
    let (failures, mut failure_rx) = mpsc::channel::<Failure>(64);
    let params = Params {
        nfs_port: node.settings.nfs_port,
        monitor_interval: node.settings.monitor_interval,
        drain_timeout: Duration::from_secs(2),
        lease: node.fence.clone(),
        extra_ports: node.extra_ports.clone(),
        network: node.network.clone(),
        // Units mount in this node's own mount namespace, so the path
        // may be the same for every node on one machine.
        volumes: Arc::new(vnas_vserver::Units::new(
            &node.name,
            format!("/run/vnas/{}/units", node.name),
            node.fence_command.clone(),
        )),
        failures,
        locks: Some(Arc::new(super::locks::StoreLocks(node.store.clone()))),
        nfs4: node.settings.nfs4,
        nfs4_domain: node.settings.nfs4_domain.clone(),
    };
    let mut controller = Controller {
        node: node.clone(),
        running: HashMap::new(),
        failed_recently: HashMap::new(),
        recorded: HashMap::new(),
        recorded_counters: HashMap::new(),
        params,
    };
    let mut seen_generation = None;
    let mut last_full_read = Instant::now();
    let mut last_recorded = Instant::now();
    let mut last_counted = Instant::now();
    let mut load = super::load::LoadMeter::new();
    let mut last_published = Instant::now();
    let mut rounds = 0u64;
    loop {
        // One whole round done: systemd's watchdog may be fed (and, the
        // first time, the node has read the store and started its
        // vservers: ready).
        if rounds > 0 {
            if let Some(systemd) = &node.systemd {
                systemd.went_round();
            }
        }
        rounds += 1;
        stall_point(rounds).await;
        controller.publish();
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
        // Before reading the store: it may be what stopped answering.
        if vnas_cluster::must_fence(
            node.fence.stalled(),
            node.fence.serving(),
            !controller.running.is_empty(),
        ) {
            controller.fence().await;
            continue;
        }
        if last_published.elapsed() >= PUBLISH_LOAD_EVERY {
            last_published = Instant::now();
            controller.publish_load(&mut load).await;
        }
        if last_recorded.elapsed() >= RECORD_CONNECTIONS_EVERY {
            last_recorded = Instant::now();
            let with_counters = last_counted.elapsed() >= RECORD_COUNTERS_EVERY;
            if with_counters {
                last_counted = Instant::now();
            }
            controller.record_connections(with_counters).await;
        }
        // A store that watches wakes the controller itself; another is
        // asked whether anything changed.
        let watching = node.watching.load(std::sync::atomic::Ordering::Relaxed);
        let generation = if watching { None } else { node.store(|s| s.generation()).await.ok() };
        let unchanged = watching || (generation.is_some() && generation == seen_generation);
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

impl Controller {
    /// After a stall or a lapse: drop everything; what is still ours is
    /// taken back (with a new epoch) by the next reconcile.
    async fn fence(&mut self) {
        self.node.metrics.lapses.inc();
        if !self.running.is_empty() {
            tracing::warn!(node = %self.node.name, vservers = self.running.len(), "session lapsed: stopping every vserver (self-fencing)");
        }
        // Every vserver silent first, then each stopped: a stop waits for
        // its calls in flight, whose replies the gates now withhold.
        for vserver in self.running.values() {
            vserver.cut_off();
        }
        for (_, vserver) in self.running.drain() {
            vserver.stop().await;
        }
        self.node.fence.resume();
        self.node.wake.notify_one();
    }

    /// Records each served vserver's client connections where they
    /// changed since the last time and, `with_counters`, its NFS counters
    /// where they changed (a next owner continues from them).
    async fn record_connections(&mut self, with_counters: bool) {
        self.recorded.retain(|name, _| self.running.contains_key(name));
        self.recorded_counters.retain(|name, _| self.running.contains_key(name));
        type Change = (String, u64, Vec<String>, Option<vnas_nfs::StatsSnapshot>);
        let changed: Vec<Change> = self
            .running
            .iter()
            .filter(|(_, vserver)| vserver.serving())
            .map(|(name, vserver)| {
                let connections = vserver.connections().into_iter().map(format_connection).collect();
                let counters = with_counters
                    .then(|| vserver.stats.snapshot())
                    .filter(|now| self.recorded_counters.get(name) != Some(now));
                (name.clone(), vserver.epoch, connections, counters)
            })
            .filter(|(name, _, now, counters)| counters.is_some() || self.recorded.get(name) != Some(now))
            .collect();
        if changed.is_empty() {
            return;
        }
        let written = self
            .node
            .store(move |s| {
                let mut written = Vec::new();
                for (name, epoch, connections, counters) in changed {
                    let Ok(record) = s.vserver(&name) else { continue };
                    let Some(mut service) = record.service.filter(|state| state.epoch == epoch) else {
                        continue;
                    };
                    service.connections = connections.clone();
                    if let Some(counters) = &counters {
                        service.counters = serde_json::to_value(counters).ok();
                    }
                    service.updated_ms = now_ms();
                    if s.put_service_state(&name, &service).is_ok() {
                        written.push((name, connections, counters));
                    }
                }
                Ok(written)
            })
            .await;
        if let Ok(written) = written {
            for (name, connections, counters) in written {
                if let Some(counters) = counters {
                    self.recorded_counters.insert(name.clone(), counters);
                }
                self.recorded.insert(name, connections);
            }
        }
    }

    /// Publishes this node's load (smoothed) to the store.
    async fn publish_load(&self, meter: &mut super::load::LoadMeter) {
        let serving: Vec<(String, vnas_nfs::StatsSnapshot)> = self
            .running
            .iter()
            .filter(|(_, vserver)| vserver.serving())
            .map(|(name, vserver)| (name.clone(), vserver.stats.snapshot()))
            .collect();
        let report = meter.report(&self.node.name, &serving);
        if let Err(error) = self.node.store(move |s| s.put_load(&report)).await {
            tracing::warn!(%error, "cannot publish this node's load");
        }
    }

    /// What `/metrics` and `GET /api/node` read: the vservers served here.
    fn publish(&self) {
        let mut answering: Vec<(String, u64)> = self
            .running
            .iter()
            .filter(|(_, vserver)| vserver.answering())
            .map(|(name, vserver)| (name.clone(), vserver.epoch))
            .collect();
        answering.sort();
        *self.node.answering.write().unwrap_or_else(|e| e.into_inner()) = answering;
        let meters = self
            .running
            .iter()
            .filter(|(_, vserver)| vserver.serving())
            .map(|(name, vserver)| {
                let meters = Meters {
                    stats: vserver.stats.clone(),
                    connections: vserver.connection_table(),
                    locks: vserver.locks.clone(),
                    control: vserver.control().downgrade(),
                };
                (name.clone(), meters)
            })
            .collect();
        self.node.metrics.serving(meters);
    }

    async fn reconcile(&mut self, records: &[VserverRecord], nodes: &[NodeStatus]) {
        let node = self.node.clone();
        let mut owned: BTreeMap<&'static str, i64> = ["running", "starting", "stopping", "stopped", "failed"]
            .into_iter()
            .map(|state| (state, 0))
            .collect();
        for record in records.iter().filter(|r| r.ownership.owner.as_deref() == Some(node.name.as_str())) {
            *owned.entry(state_name(record.ownership.state)).or_default() += 1;
        }
        node.metrics.owned(&owned);
        let local: BTreeMap<String, Local> = self
            .running
            .iter()
            .map(|(name, r)| {
                (name.clone(), Local { epoch: r.epoch, serving: r.serving(), config: r.config.clone() })
            })
            .collect();
        let view = View {
            me: &node.name,
            now_ms: now_ms(),
            lease_ms: node.settings.lease.as_millis() as u64,
            nodes,
            records,
            local: &local,
            session_fresh: node.fence.serving(),
            stalled: node.fence.stalled(),
        };
        let actions = vnas_cluster::decide(&view);
        let by_name: HashMap<&str, &VserverRecord> =
            records.iter().map(|r| (r.config.name.as_str(), r)).collect();
        let mut starting = tokio::task::JoinSet::<Option<Running>>::new();
        let mut assigns: BTreeMap<&'static str, Vec<(String, String)>> = BTreeMap::new();
        for action in actions {
            let record = action.vserver().and_then(|name| by_name.get(name).copied());
            match action {
                Action::Fence => self.fence().await,
                Action::Stop { name, release: owned, reason } => {
                    if let Some(vserver) = self.running.remove(&name) {
                        let epoch = vserver.epoch;
                        vserver.stop().await;
                        if let Some(epoch) = owned {
                            release(&node, &name, epoch, VserverState::Stopped, None).await;
                        }
                        tracing::info!(vserver = %name, epoch, reason, "vserver stopped");
                    }
                }
                Action::Reconfigure { name, epoch } => {
                    let Some(record) = record else { continue };
                    let Some(vserver) = self.running.get_mut(&name).filter(|v| v.epoch == epoch) else {
                        continue;
                    };
                    match tokio::task::block_in_place(|| vserver.reconfigure(&record.config)) {
                        Ok(()) => {
                            tracing::info!(vserver = %name, epoch, "vserver changed while serving");
                            // What is served now, for whoever waits on the change.
                            let (name2, config, devices) =
                                (name.clone(), record.config.clone(), vserver.devices.clone());
                            let written = node
                                .store(move |s| {
                                    let record = s.vserver(&name2)?;
                                    if let Some(mut service) =
                                        record.service.filter(|state| state.epoch == epoch)
                                    {
                                        records::reconfigured(&mut service, &config, devices, now_ms());
                                        s.put_service_state(&name2, &service)?;
                                    }
                                    Ok(())
                                })
                                .await;
                            if let Err(error) = written {
                                tracing::warn!(vserver = %name, %error, "cannot record what it serves now");
                            }
                        }
                        Err(reason) => {
                            // Not live after all: the slow way, a restart.
                            tracing::warn!(vserver = %name, %reason, "cannot change it live; restarting it");
                            if let Some(vserver) = self.running.remove(&name) {
                                vserver.stop().await;
                                if let Some(v) = activate(&node, record, epoch, None, &self.params).await {
                                    self.running.insert(name, v);
                                }
                            }
                        }
                    }
                }
                Action::HandOff { name, epoch, to, since_ms } => {
                    self.hand_off(&name, epoch, &to, since_ms).await
                }
                Action::Release { name, epoch } => {
                    release(&node, &name, epoch, VserverState::Stopped, None).await;
                    tracing::info!(vserver = %name, epoch, "vserver given back: owned here, not run here");
                }
                Action::Open { name, epoch } => {
                    let (Some(record), Some(mut vserver)) = (record, self.running.remove(&name)) else {
                        continue;
                    };
                    fault_point("target-before-serving");
                    // The source's final counters, recorded at its hand-off.
                    if let Some(counters) = counters_of(record) {
                        vserver.stats.restore(&counters);
                    }
                    if let Err(reason) = vserver.open(epoch) {
                        tracing::error!(vserver = %name, epoch, %reason, "vserver failed to start");
                        vserver.stop().await;
                        release(&node, &name, epoch, VserverState::Failed, Some(reason)).await;
                        continue;
                    }
                    if confirm(&node, record, &vserver, Why::Move).await {
                        vserver.announce(&recorded_connections(record), false);
                        self.running.insert(name, vserver);
                    } else {
                        vserver.stop().await;
                    }
                }
                Action::Prepare { name, epoch } => {
                    let Some(record) = record else { continue };
                    let params = &self.params;
                    // Off the async workers' hands: it runs `ip`, `nft`, mounts.
                    let started = tokio::task::block_in_place(|| {
                        Running::start(&record.config, epoch, false, params, counters_of(record))
                    });
                    match started {
                        Ok(vserver) => {
                            self.running.insert(name, vserver);
                            fault_point("target-prepared");
                        }
                        Err(reason) => {
                            tracing::warn!(vserver = %name, %reason, "cannot prepare for the move")
                        }
                    }
                }
                Action::Activate { name, epoch, why } => {
                    let Some(record) = record else { continue };
                    if let Some(v) = activate(&node, record, epoch, Some(why), &self.params).await {
                        self.running.insert(name, v);
                    }
                }
                Action::Take { expected, why, since_ms, .. } => {
                    let Some(record) = record else { continue };
                    if starting.len() >= ACTIVATIONS_MAX {
                        if let Some(Ok(Some(vserver))) = starting.join_next().await {
                            self.running.insert(vserver.config.name.clone(), vserver);
                        }
                    }
                    let (node, record, params) = (node.clone(), record.clone(), self.params.clone());
                    starting.spawn(take(node, record, expected, why, since_ms, params));
                }
                // Gathered, and written in one store call below.
                Action::Assign { moves, reason } => assigns.entry(reason).or_default().extend(moves),
            }
        }
        for (reason, moves) in assigns {
            self.assign(moves, reason).await;
        }
        while let Some(done) = starting.join_next().await {
            if let Ok(Some(vserver)) = done {
                self.running.insert(vserver.config.name.clone(), vserver);
            }
        }
    }

    /// Assigns vservers to nodes (a failover to this node, or a drain's
    /// moves), then wakes the nodes concerned.
    async fn assign(&self, moves: Vec<(String, String)>, reason: &'static str) {
        let node = &self.node;
        let targets: Vec<String> = moves.iter().map(|(_, to)| to.clone()).collect();
        let count = moves.len();
        for (name, to) in &moves {
            if to == &node.name {
                tracing::warn!(vserver = %name, reason, "failing over to this node");
            }
        }
        let result = node
            .store(move |s| {
                for (name, target) in moves {
                    vnas_store::change_config(s, &name, |config| {
                        config.node = target.clone();
                        Ok(())
                    })?;
                }
                Ok(())
            })
            .await;
        match result {
            Ok(()) if reason == "drain" => {
                tracing::info!(node = %node.name, vservers = count, "draining: vservers reassigned")
            }
            Ok(()) => {}
            Err(error) => tracing::warn!(%error, reason, "could not assign vservers"),
        }
        node.wake.notify_one();
        node.wake_peers(targets).await;
    }

    /// The source side of a move: stop accepting, drain, sync, record the
    /// service state, and hand ownership to the target in one
    /// compare-and-swap (epoch + 1).
    async fn hand_off(&mut self, name: &str, epoch: u64, target: &str, since_ms: Option<u64>) {
        if let Some(vserver) = self.running.get(name) {
            vserver.presync().await;
        }
        // Clients stop getting answers from here on: the pause starts now
        // (or began earlier, for a hand-off this node never served).
        let stopped_ms = since_ms.unwrap_or_else(now_ms);
        let mut connections = None;
        let mut counters = None;
        if let Some(vserver) = self.running.remove(name) {
            fault_point("handoff-before-stop");
            connections = Some(vserver.connections());
            let stats = vserver.stats.clone();
            vserver.stop_and_sync().await;
            // After the drain: every call it answered is counted.
            counters = serde_json::to_value(stats.snapshot()).ok();
            fault_point("handoff-after-stop");
        }
        let handed = records::handed_over(&self.node.name, target, epoch, stopped_ms);
        let name2 = name.to_string();
        let handing = move |s: &dyn vnas_store::Store| {
            // The target wakes these clients once it serves.
            if let Some(connections) = connections {
                if let Some(mut service) = s.vserver(&name2)?.service.filter(|state| state.epoch == epoch) {
                    service.connections = connections.into_iter().map(format_connection).collect();
                    service.counters = counters.or(service.counters);
                    s.put_service_state(&name2, &service)?;
                }
            }
            s.swap_ownership(&name2, epoch, &handed)
        };
        match self.node.store(handing).await {
            Ok(()) => {
                fault_point("handoff-after-cas");
                tracing::info!(vserver = %name, from = %self.node.name, to = %target, epoch = epoch + 1, "vserver handed over");
                self.node.wake_peers(vec![target.to_string()]).await;
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
        if vnas_cluster::on_failure(count, node.settings.failures_max) == FailureAction::MarkFailed {
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
        if let Some(vserver) = activate(&node, &record, epoch, None, &self.params).await {
            self.running.insert(name, vserver);
        }
    }
}

/// Takes ownership of a vserver assigned here (compare-and-swap on the
/// epoch), then starts it.
async fn take(
    node: Arc<Node>,
    mut record: VserverRecord,
    expected: u64,
    why: Why,
    since_ms: u64,
    params: Params,
) -> Option<Running> {
    let name = record.config.name.clone();
    let taking = records::taken(&node.name, expected, since_ms);
    let name2 = name.clone();
    match node.store(move |s| s.swap_ownership(&name2, expected, &taking)).await {
        Ok(()) => {
            record.ownership.since_ms = since_ms;
            activate(&node, &record, expected + 1, Some(why), &params).await
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
    why: Option<Why>,
    params: &Params,
) -> Option<Running> {
    let name = record.config.name.clone();
    if why == Some(Why::Move) {
        // A move's target that starts only once it owns the vserver (its
        // units must be unmounted by the source first).
        fault_point("target-activating");
    }
    // Off the async workers' hands: it runs `ip`, `nft`, mounts.
    let started = tokio::task::block_in_place(|| {
        Running::start(&record.config, epoch, true, params, counters_of(record))
    });
    match started {
        Ok(vserver) => {
            if confirm(node, record, &vserver, why.unwrap_or(Why::Restart)).await {
                // After a takeover the previous owner may still be on the
                // wire (a frozen process's kernel): announce for a while.
                let takeover = matches!(why, Some(Why::NodeDown | Why::VserverFailed));
                vserver.announce(&recorded_connections(record), takeover);
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
async fn confirm(node: &Arc<Node>, record: &VserverRecord, vserver: &Running, why: Why) -> bool {
    let name = record.config.name.clone();
    let epoch = vserver.epoch;
    let verifier: String = vserver.write_verifier.iter().map(|b| format!("{b:02x}")).collect();
    let (service, running, mut transfer) =
        records::confirmed(record, &node.name, epoch, &verifier, vserver.devices.clone(), why, now_ms());
    if !vserver.notes.is_empty() {
        transfer.fence = Some(vserver.notes.join("; "));
    }
    transfer.locks = vserver.restored.clone();
    let pause_ms = transfer.pause_ms;
    let name2 = name.clone();
    let previous_owner = record.ownership.owner.clone();
    let written = node
        .store(move |s| {
            s.put_service_state(&name2, &service)?;
            s.swap_ownership(&name2, epoch, &running)?;
            let mut transfer = transfer;
            let history = s.history(&name2)?;
            records::fill_from(&mut transfer, &history, previous_owner.as_deref());
            if records::already_recorded(&history, &transfer) {
                return Ok(());
            }
            s.append_history(&name2, &transfer)
        })
        .await;
    match written {
        Ok(()) => {
            let why = why.as_str();
            tracing::info!(vserver = %name, epoch, why, pause_ms, addresses = ?record.config.addresses, "vserver serving");
            node.metrics.transfer(why, pause_ms);
            true
        }
        Err(error) => {
            // Someone else owns it now: never serve without ownership.
            tracing::warn!(vserver = %name, %error, "lost ownership while starting; stopping");
            false
        }
    }
}

/// The client connections the previous owner recorded.
fn recorded_connections(record: &VserverRecord) -> Vec<(SocketAddr, SocketAddr)> {
    let recorded = record.service.as_ref().map(|s| s.connections.as_slice()).unwrap_or_default();
    recorded.iter().filter_map(|c| parse_connection(c)).collect()
}

/// Gives ownership back (stopped), or keeps it marked failed with a reason.
async fn release(node: &Arc<Node>, name: &str, epoch: u64, state: VserverState, reason: Option<String>) {
    let ownership = records::released(&node.name, epoch, state, reason, now_ms());
    let name_owned = name.to_string();
    if let Err(error) = node.store(move |s| s.swap_ownership(&name_owned, epoch, &ownership)).await {
        tracing::warn!(vserver = %name, %error, "could not record the vserver's state");
    }
}

/// The NFS counters a vserver's previous owner recorded.
fn counters_of(record: &VserverRecord) -> Option<vnas_nfs::StatsSnapshot> {
    let counters = record.service.as_ref()?.counters.clone()?;
    serde_json::from_value(counters).ok()
}

fn state_name(state: VserverState) -> &'static str {
    match state {
        VserverState::Running => "running",
        VserverState::Starting => "starting",
        VserverState::Stopped => "stopped",
        VserverState::Stopping => "stopping",
        VserverState::Failed => "failed",
    }
}
