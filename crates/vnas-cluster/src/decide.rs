//! What this node should do now, from what it sees: the transfer protocol
//! as a function.
//!
//! - start: take ownership (epoch + 1, compare-and-swap), then serve;
//! - move A -> B: the API assigns the vserver to B; B prepares (listens,
//!   holding calls); A stops accepting, drains, syncs, and hands ownership
//!   to B with epoch + 1 in one compare-and-swap; B opens its gate;
//! - failover: when the assigned node is down (or the vserver failed
//!   there), placement picks a survivor, which assigns the vserver to
//!   itself and takes ownership with a compare-and-swap on the epoch;
//! - self-fencing: a node whose session lapsed or stalled drops everything
//!   and takes back only what the store still gives it.
//!
//! Decisions are written to the store first and acted on second, so any
//! node may die between any two actions and the others finish or undo the
//! step.

use std::collections::{BTreeMap, HashMap, HashSet};

use vnas_store::{Desired, NodeStatus, Ownership, VserverConfig, VserverRecord, VserverState};

use crate::placement::{place_allowed, Candidate};

/// One vserver this node runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Local {
    /// The ownership epoch it runs under.
    pub epoch: u64,
    /// Answering calls. False: listening and holding calls, prepared as the
    /// target of a move.
    pub serving: bool,
    pub config: VserverConfig,
}

/// What a node knows when it decides.
pub struct View<'a> {
    pub me: &'a str,
    /// This node's clock.
    pub now_ms: u64,
    /// A node not seen for this long is down.
    pub lease_ms: u64,
    pub nodes: &'a [NodeStatus],
    pub records: &'a [VserverRecord],
    pub local: &'a BTreeMap<String, Local>,
    /// This node renewed its session within half a lease.
    pub session_fresh: bool,
    /// A renewal succeeded only after the session had lapsed: the node may
    /// have been frozen while others took its vservers.
    pub stalled: bool,
}

/// Why a vserver came to a node, as its history says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    Start,
    Restart,
    NodeDown,
    Move,
    VserverFailed,
}

impl Why {
    pub fn as_str(self) -> &'static str {
        match self {
            Why::Start => "start",
            Why::Restart => "restart",
            Why::NodeDown => "node down",
            Why::Move => "move",
            Why::VserverFailed => "vserver failed",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Stop every local vserver, then serve again from now (self-fencing).
    Fence,
    /// Stop the local instance. `release`: this node owns it under that
    /// epoch and gives it back, stopped.
    Stop { name: String, release: Option<u64>, reason: &'static str },
    /// A new configuration: apply it while serving (addresses, routes,
    /// volumes, exports, client rules).
    Reconfigure { name: String, epoch: u64 },
    /// The source of a move: stop accepting, drain, sync, then hand
    /// ownership to `to` with epoch + 1 (one compare-and-swap). Also for a
    /// vserver this node owns but no longer runs (it fenced itself, or
    /// restarted) while it is assigned elsewhere: the target waits for it.
    /// `since_ms`: when clients lost service, if before now (a node
    /// passing on a hand-off it never served).
    HandOff { name: String, epoch: u64, to: String, since_ms: Option<u64> },
    /// Give back a vserver this node owns but no longer runs, and which
    /// should not run: stopped, without an owner.
    Release { name: String, epoch: u64 },
    /// The target of a move: the hand-off arrived; answer under `epoch`
    /// and record it.
    Open { name: String, epoch: u64 },
    /// The target of a move: listen now and hold calls until the hand-off,
    /// so reconnecting clients never find the port closed.
    Prepare { name: String, epoch: u64 },
    /// Ownership was handed here before this node prepared: serve at once.
    Activate { name: String, epoch: u64, why: Why },
    /// Take ownership with a compare-and-swap from `expected` to
    /// `expected + 1`, then serve. `since_ms`: when clients lost service.
    Take { name: String, expected: u64, why: Why, since_ms: u64 },
    /// Assign vservers to other nodes (failover to this node, a drain).
    Assign { moves: Vec<(String, String)>, reason: &'static str },
}

impl Action {
    /// The vserver an action is about, if one.
    pub fn vserver(&self) -> Option<&str> {
        match self {
            Action::Fence | Action::Assign { .. } => None,
            Action::Stop { name, .. }
            | Action::Reconfigure { name, .. }
            | Action::HandOff { name, .. }
            | Action::Release { name, .. }
            | Action::Open { name, .. }
            | Action::Prepare { name, .. }
            | Action::Activate { name, .. }
            | Action::Take { name, .. } => Some(name),
        }
    }
}

/// Whether a node is up: it holds its session and renewed it within the
/// lease, as `now_ms` (the deciding node's clock) sees it.
pub fn is_up(node: &NodeStatus, now_ms: u64, lease_ms: u64) -> bool {
    node.alive && now_ms.saturating_sub(node.last_seen_ms) <= lease_ms
}

/// What a taken-over vserver's history says about why.
pub fn why(previous: &Ownership, me: &str, previous_owner_up: bool) -> Why {
    match &previous.owner {
        _ if previous.state == VserverState::Failed => Why::VserverFailed,
        None => Why::Start,
        Some(owner) if owner == me => Why::Restart,
        Some(_) if !previous_owner_up => Why::NodeDown,
        Some(_) => Why::Move,
    }
}

/// Whether the node must drop everything now: after a stall, or when its
/// session lapsed while it runs vservers. Checked before the store is read
/// too: the store may be what stopped answering.
pub fn must_fence(stalled: bool, session_fresh: bool, runs_any: bool) -> bool {
    stalled || (!session_fresh && runs_any)
}

pub fn decide(view: &View) -> Vec<Action> {
    if must_fence(view.stalled, view.session_fresh, !view.local.is_empty()) {
        return vec![Action::Fence];
    }
    if !view.session_fresh {
        // Nothing is taken, assigned or handed on by a node that cannot
        // show its session is alive: the others may be taking its place.
        return Vec::new();
    }
    let me = view.me;
    let up: HashMap<&str, &NodeStatus> = view
        .nodes
        .iter()
        .filter(|n| is_up(n, view.now_ms, view.lease_ms))
        .map(|n| (n.info.name.as_str(), n))
        .collect();
    let mut actions = Vec::new();
    let present: HashSet<&str> = view.records.iter().map(|r| r.config.name.as_str()).collect();
    for name in view.local.keys().filter(|n| !present.contains(n.as_str())) {
        actions.push(Action::Stop { name: name.clone(), release: None, reason: "deleted" });
    }
    let candidates: Vec<Candidate> = view
        .nodes
        .iter()
        .map(|n| Candidate {
            name: &n.info.name,
            up: up.contains_key(n.info.name.as_str()),
            drained: n.drained,
        })
        .collect();
    let mut loads: HashMap<&str, usize> = HashMap::new();
    for record in view.records {
        *loads.entry(record.config.node.as_str()).or_default() += 1;
    }
    let drained = view.nodes.iter().any(|n| n.info.name == me && n.drained);
    let mut drain_moves = Vec::new();
    for record in view.records {
        let name = record.config.name.as_str();
        let owner = record.ownership.owner.as_deref();
        let assigned = record.config.node.as_str();
        let wanted = record.config.desired == Desired::Running;
        let state = record.ownership.state;

        if let Some(local) = view.local.get(name) {
            let mine = owner == Some(me) && record.ownership.epoch == local.epoch;
            let stop =
                |release: Option<u64>, reason| Action::Stop { name: name.to_string(), release, reason };
            if local.serving {
                if mine && wanted && assigned == me && drained {
                    // Draining: placement picks where each vserver goes;
                    // the moves themselves are ordinary hand-offs.
                    let allowed = &record.config.allowed_nodes;
                    if let Some(target) = place_allowed(&candidates, &loads, Some(me), allowed) {
                        *loads.entry(target).or_default() += 1;
                        drain_moves.push((name.to_string(), target.to_string()));
                    }
                } else if mine && wanted && assigned != me && up.contains_key(assigned) {
                    actions.push(Action::HandOff {
                        name: name.to_string(),
                        epoch: local.epoch,
                        to: assigned.to_string(),
                        since_ms: None,
                    });
                } else if !mine || !wanted || state == VserverState::Failed {
                    let reason = if !mine { "no longer owned here" } else { "stopped" };
                    actions.push(stop(mine.then_some(local.epoch), reason));
                } else if record.config != local.config {
                    actions.push(Action::Reconfigure { name: name.to_string(), epoch: local.epoch });
                }
            } else if owner == Some(me) && state == VserverState::Starting {
                actions.push(Action::Open { name: name.to_string(), epoch: record.ownership.epoch });
            } else if assigned != me || !wanted {
                actions.push(stop(None, "move called off"));
            } else if owner.is_none_or(|o| o != me && !up.contains_key(o)) {
                // The source died before handing over: a failover, a fresh
                // start after the held calls are dropped.
                actions.push(stop(None, "source died before the hand-off"));
                actions.push(take(view, record, false));
            }
            continue;
        }

        // Owned here but not run here (after a fence or a restart): the
        // store must not be left saying so, or a target waits for ever.
        if owner == Some(me) && state != VserverState::Failed {
            let epoch = record.ownership.epoch;
            if !wanted {
                actions.push(Action::Release { name: name.to_string(), epoch });
                continue;
            }
            if assigned != me && up.contains_key(assigned) {
                let since_ms = (state == VserverState::Starting).then_some(record.ownership.since_ms);
                let to = assigned.to_string();
                actions.push(Action::HandOff { name: name.to_string(), epoch, to, since_ms });
                continue;
            }
        }
        if !wanted {
            continue;
        }
        let failed_there = state == VserverState::Failed && owner == Some(assigned);
        if !up.contains_key(assigned) || failed_there {
            // Failover: placement picks a survivor; only that node acts.
            // Every node computes the same placements in the same order.
            let exclude = failed_there.then_some(assigned);
            let target = place_allowed(&candidates, &loads, exclude, &record.config.allowed_nodes);
            if let Some(target) = target {
                *loads.entry(target).or_default() += 1;
            }
            if target == Some(me) && assigned != me {
                let reason = if failed_there { "vserver failed" } else { "node down" };
                actions.push(Action::Assign { moves: vec![(name.to_string(), me.to_string())], reason });
            }
            continue;
        }
        if assigned != me {
            continue;
        }
        match owner {
            // Failed elsewhere and given to this node: nobody runs it (the
            // node where it failed stopped it), so no hand-off will come.
            Some(o) if o != me && state == VserverState::Failed => {
                actions.push(take(view, record, false));
            }
            Some(o) if o == me && state == VserverState::Starting => actions.push(Action::Activate {
                name: name.to_string(),
                epoch: record.ownership.epoch,
                why: Why::Move,
            }),
            // A logical unit is mounted by one node at a time: the target
            // of a move mounts it once it owns the vserver, after the
            // source's unmount, so it cannot start the server beforehand.
            Some(o) if o != me && up.contains_key(o) => {
                if !record.config.volumes.iter().any(|v| v.kind == vnas_store::VolumeKind::Block) {
                    actions.push(Action::Prepare { name: name.to_string(), epoch: record.ownership.epoch })
                }
            }
            _ => {
                let previous_up = owner.is_some_and(|o| up.contains_key(o));
                actions.push(take(view, record, previous_up));
            }
        }
    }
    if !drain_moves.is_empty() {
        actions.push(Action::Assign { moves: drain_moves, reason: "drain" });
    }
    actions
}

fn take(view: &View, record: &VserverRecord, previous_up: bool) -> Action {
    let why = why(&record.ownership, view.me, previous_up);
    // For a failover the pause began when the old owner was last seen, or
    // at least a lease ago where the store does not say when (etcd: a
    // node's key vanishes with its lease; its last sight is then 0, which
    // made pauses of 56 years).
    let since_ms = match &record.ownership.owner {
        Some(o) if o != view.me && why == Why::NodeDown => {
            let seen = view.nodes.iter().find(|n| &n.info.name == o).map_or(view.now_ms, |n| n.last_seen_ms);
            seen.max(view.now_ms.saturating_sub(view.lease_ms))
        }
        _ => view.now_ms,
    };
    Action::Take { name: record.config.name.clone(), expected: record.ownership.epoch, why, since_ms }
}

/// What to do when a running vserver's monitor reports a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureAction {
    Restart,
    /// Give up here: mark it failed, so it fails over.
    MarkFailed,
}

/// `in_a_row`: failures without a long healthy stretch, this one included.
pub fn on_failure(in_a_row: u32, failures_max: u32) -> FailureAction {
    if in_a_row >= failures_max {
        FailureAction::MarkFailed
    } else {
        FailureAction::Restart
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vnas_store::{NodeInfo, VserverConfig};

    fn node(name: &str, up: bool, drained: bool) -> NodeStatus {
        NodeStatus {
            info: NodeInfo {
                name: name.into(),
                api: String::new(),
                labels: Default::default(),
                started_ms: 0,
            },
            alive: up,
            last_seen_ms: 1_000,
            drained,
        }
    }

    fn record(
        name: &str,
        assigned: &str,
        owner: Option<&str>,
        epoch: u64,
        state: VserverState,
    ) -> VserverRecord {
        VserverRecord {
            config: VserverConfig {
                name: name.into(),
                addresses: vec![],
                volumes: vec![],
                exports: vec![],
                routes: vec![],
                node: assigned.into(),
                desired: Desired::Running,
                home: None,
                allowed_nodes: vec![],
            },
            ownership: Ownership {
                owner: owner.map(str::to_string),
                epoch,
                state,
                reason: None,
                failures: 0,
                since_ms: 900,
            },
            service: None,
        }
    }

    /// What `me` decides, given the nodes, the records and what it runs.
    fn check(
        me: &str,
        nodes: &[NodeStatus],
        records: &[VserverRecord],
        local: &[(&str, u64, bool)],
        expected: &[Action],
    ) {
        let local: BTreeMap<String, Local> = local
            .iter()
            .map(|(name, epoch, serving)| {
                let config = records.iter().find(|r| r.config.name == *name).unwrap().config.clone();
                (name.to_string(), Local { epoch: *epoch, serving: *serving, config })
            })
            .collect();
        assert_eq!(decide(&view(me, nodes, records, &local)), expected);
    }

    /// `me`'s view at 1.1 s, lease 800 ms, its session fresh.
    fn view<'a>(
        me: &'a str,
        nodes: &'a [NodeStatus],
        records: &'a [VserverRecord],
        local: &'a BTreeMap<String, Local>,
    ) -> View<'a> {
        View { me, now_ms: 1_100, lease_ms: 800, nodes, records, local, session_fresh: true, stalled: false }
    }

    #[test]
    fn a_new_vserver_is_taken_by_its_node() {
        let nodes = [node("n1", true, false), node("n2", true, false)];
        let records = [record("v", "n1", None, 0, VserverState::Stopped)];
        check(
            "n1",
            &nodes,
            &records,
            &[],
            &[Action::Take { name: "v".into(), expected: 0, why: Why::Start, since_ms: 1_100 }],
        );
        check("n2", &nodes, &records, &[], &[]);
    }

    #[test]
    fn a_move_of_a_vserver_on_units_is_not_prepared_on_the_target() {
        let nodes = [node("n1", true, false), node("n2", true, false)];
        let mut records = [record("v", "n2", Some("n1"), 3, VserverState::Running)];
        records[0].config.volumes = vec![vnas_store::Volume::block("/data", "/dev/sdb", None)];
        check("n2", &nodes, &records, &[], &[]);
        let handoff = Action::HandOff { name: "v".into(), epoch: 3, to: "n2".into(), since_ms: None };
        check("n1", &nodes, &records, &[("v", 3, true)], &[handoff]);
        let mut handed = [record("v", "n2", Some("n2"), 4, VserverState::Starting)];
        handed[0].config.volumes = records[0].config.volumes.clone();
        let activate = Action::Activate { name: "v".into(), epoch: 4, why: Why::Move };
        check("n2", &nodes, &handed, &[], &[activate]);
    }

    #[test]
    fn any_change_to_a_served_vserver_is_made_live() {
        let nodes = [node("n1", true, false)];
        let records = [record("v", "n1", Some("n1"), 3, VserverState::Running)];
        let changes: [fn(&mut VserverConfig); 4] = [
            |c| c.addresses.push("127.0.9.2".into()),
            |c| {
                c.routes
                    .push(vnas_store::Route { destination: "default".into(), gateway: "127.0.9.254".into() })
            },
            |c| c.volumes.push(vnas_store::Volume::dir("/b", "/srv/b")),
            |c| c.exports.push(vnas_store::Export { path: "/b".into(), rules: vec![] }),
        ];
        for change in changes {
            let mut running = records[0].config.clone();
            change(&mut running);
            let local =
                BTreeMap::from([("v".to_string(), Local { epoch: 3, serving: true, config: running })]);
            let expected = [Action::Reconfigure { name: "v".into(), epoch: 3 }];
            assert_eq!(decide(&view("n1", &nodes, &records, &local)), expected);
        }
    }

    #[test]
    fn a_move_prepares_the_target_and_hands_off_from_the_source() {
        let nodes = [node("n1", true, false), node("n2", true, false)];
        let records = [record("v", "n2", Some("n1"), 3, VserverState::Running)];
        check("n2", &nodes, &records, &[], &[Action::Prepare { name: "v".into(), epoch: 3 }]);
        let handoff = Action::HandOff { name: "v".into(), epoch: 3, to: "n2".into(), since_ms: None };
        check("n1", &nodes, &records, &[("v", 3, true)], &[handoff]);
        let handed = [record("v", "n2", Some("n2"), 4, VserverState::Starting)];
        check("n2", &nodes, &handed, &[("v", 3, false)], &[Action::Open { name: "v".into(), epoch: 4 }]);
    }

    #[test]
    fn a_dead_nodes_vservers_go_to_the_least_loaded_survivors() {
        let nodes = [node("n1", false, false), node("n2", true, false), node("n3", true, false)];
        let records = [
            record("a", "n1", Some("n1"), 1, VserverState::Running),
            record("b", "n1", Some("n1"), 1, VserverState::Running),
            record("c", "n3", Some("n3"), 1, VserverState::Running),
        ];
        // n2 has nothing: it takes the first; then both have one each, and
        // the tie goes to the first name: n2 again.
        let to_n2 =
            |name: &str| Action::Assign { moves: vec![(name.into(), "n2".into())], reason: "node down" };
        check("n2", &nodes, &records, &[], &[to_n2("a"), to_n2("b")]);
        check("n3", &nodes, &records, &[("c", 1, true)], &[]);
    }

    #[test]
    fn a_vserver_that_failed_on_its_node_is_started_on_another() {
        let nodes = [node("n1", true, false), node("n2", true, false)];
        let failed = [record("v", "n1", Some("n1"), 2, VserverState::Failed)];
        let assign = Action::Assign { moves: vec![("v".into(), "n2".into())], reason: "vserver failed" };
        check("n2", &nodes, &failed, &[], &[assign]);
        check("n1", &nodes, &failed, &[], &[]);
        // Given to n2, it takes it: nothing runs it on n1, no hand-off comes.
        let given = [record("v", "n2", Some("n1"), 2, VserverState::Failed)];
        let take = Action::Take { name: "v".into(), expected: 2, why: Why::VserverFailed, since_ms: 1_100 };
        check("n2", &nodes, &given, &[], &[take]);
        check("n1", &nodes, &given, &[], &[]);
    }

    #[test]
    fn owned_but_not_run_is_handed_on_or_given_back() {
        let nodes = [node("n1", true, false), node("n2", true, false)];
        let moving = [record("v", "n2", Some("n1"), 5, VserverState::Running)];
        let handoff = Action::HandOff { name: "v".into(), epoch: 5, to: "n2".into(), since_ms: None };
        check("n1", &nodes, &moving, &[], &[handoff]);
        let mut stopped = record("v", "n1", Some("n1"), 5, VserverState::Running);
        stopped.config.desired = Desired::Stopped;
        check("n1", &nodes, &[stopped], &[], &[Action::Release { name: "v".into(), epoch: 5 }]);
    }

    #[test]
    fn a_node_without_a_fresh_session_takes_nothing_and_fences_what_it_runs() {
        let nodes = [node("n1", true, false)];
        let records = [record("v", "n1", None, 0, VserverState::Stopped)];
        let local = BTreeMap::new();
        let mut view = View { session_fresh: false, ..view("n1", &nodes, &records, &local) };
        assert_eq!(decide(&view), []);
        view.stalled = true;
        assert_eq!(decide(&view), [Action::Fence]);
    }
}
