//! A seeded, deterministic simulation of a cluster: 3 to 7 nodes and
//! dozens of vservers run the real decision code ([`decide`]) against a
//! model of the common volume with the store's compare-and-swap and
//! session semantics. Random creates, deletes, moves, stops, starts and
//! drains; faults at any step: a node crashes (also between two store
//! calls of one transfer), freezes and thaws, is cut off from the store; a
//! store call fails, or is applied but its answer is lost; a renewal is
//! delayed past the lease; reads are stale; clocks are skewed within the
//! lease bounds. Clients take and release byte-range locks on the
//! vservers through whoever serves them, with the lock table the server
//! runs (`vnas_locks`), recorded in the store under the owner's epoch
//! before each answer and restored by the next owner, as the node does.
//! After every step the invariants are checked (among them: no two
//! conflicting locks are ever granted, no acknowledged lock is lost);
//! after the faults stop, every wanted vserver must be served by exactly
//! one live node within a bounded time.
//!
//! One seed is one run: the same seed replays the same run, event for
//! event (`cargo run -p vnas-cluster --example sim -- --seed S --trace`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use vnas_store::{
    Desired, NodeInfo, NodeStatus, Ownership, Transfer, VserverConfig, VserverRecord, VserverState,
};

use vnas_locks::{LockTable, Outcome as Locked, Owner, Range};

use crate::decide::{decide, is_up, must_fence, Action, Local, View, Why};
use crate::fence::Fence;
use crate::placement::{place, Candidate};
use crate::records;

mod v4;

/// The settings of a run, drawn from the seed.
#[derive(Clone, Debug)]
pub struct Settings {
    pub nodes: usize,
    pub vservers: usize,
    /// Simulated time with faults and operations, then without.
    pub busy_ms: u64,
    pub quiet_ms: u64,
    pub lease_ms: u64,
    pub renew_ms: u64,
    pub tick_ms: u64,
    /// Largest clock difference between a node and the store.
    pub skew_max_ms: u64,
}

impl Settings {
    fn from_rng(rng: &mut Rng) -> Settings {
        Settings {
            nodes: 3 + rng.below(5) as usize,
            vservers: 8 + rng.below(33) as usize,
            busy_ms: 3_000 + rng.below(5_000),
            quiet_ms: 8_000,
            lease_ms: 800,
            renew_ms: 150,
            tick_ms: 100,
            skew_max_ms: 100,
        }
    }
}

/// splitmix64: small, fast, and the same everywhere.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5eed_0fc1_u64.rotate_left(17))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// True with probability `per_mille` / 1000.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        (!items.is_empty()).then(|| &items[self.below(items.len() as u64) as usize])
    }
}

/// What went wrong in a run.
#[derive(Debug)]
pub struct Violation {
    pub seed: u64,
    pub at_ms: u64,
    pub what: String,
    /// Every event of the run up to the violation.
    pub trace: Vec<String>,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "seed {} violated an invariant at {} ms: {}", self.seed, self.at_ms, self.what)?;
        writeln!(f, "replay: cargo run -p vnas-cluster --example sim -- --seed {} --trace", self.seed)?;
        let from = self.trace.len().saturating_sub(60);
        writeln!(f, "last {} events:", self.trace.len() - from)?;
        for line in &self.trace[from..] {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

/// What a run did, for the caller's statistics.
#[derive(Debug, Default)]
pub struct Outcome {
    pub steps: u64,
    /// Hand-offs (planned moves and drains) and takeovers after a
    /// failure; first starts are not counted.
    pub transfers: u64,
    /// Of those, takeovers of a vserver another node had owned.
    pub failovers: u64,
    pub faults: u64,
    pub writes: u64,
    /// Replies sent to calls read a step or more earlier (some across a
    /// freeze), each checked against the newest epoch granted.
    pub late_replies: u64,
    /// Replies withheld because the vserver left the node meanwhile.
    pub dropped_replies: u64,
    /// Locks granted and acknowledged to their client.
    pub locks_granted: u64,
    /// Lock requests refused (held by another client).
    pub locks_denied: u64,
    /// Lock changes not answered: the store refused or did not answer.
    pub locks_unrecorded: u64,
    /// NFSv4: opens granted and answered, calls answered from their slot
    /// (retries), sessions made (first and after a failover), replies held
    /// back because their state was not recorded.
    pub v4_opens: u64,
    pub v4_replays: u64,
    pub v4_sessions: u64,
    pub v4_unrecorded: u64,
}

impl Outcome {
    /// Adds another run's figures (the steps apart).
    pub fn add(&mut self, other: &Outcome) {
        self.transfers += other.transfers;
        self.failovers += other.failovers;
        self.faults += other.faults;
        self.writes += other.writes;
        self.late_replies += other.late_replies;
        self.dropped_replies += other.dropped_replies;
        self.locks_granted += other.locks_granted;
        self.locks_denied += other.locks_denied;
        self.locks_unrecorded += other.locks_unrecorded;
        self.v4_opens += other.v4_opens;
        self.v4_replays += other.v4_replays;
        self.v4_sessions += other.v4_sessions;
        self.v4_unrecorded += other.v4_unrecorded;
    }
}

// ---------------------------------------------------------------- the store

/// The common volume's model: the same compare-and-swap on the epoch and
/// the same sessions as `vnas_store::Store`.
#[derive(Default)]
struct Store {
    configs: BTreeMap<String, VserverConfig>,
    ownership: BTreeMap<String, Ownership>,
    history: BTreeMap<String, Vec<Transfer>>,
    service_epoch: BTreeMap<String, u64>,
    sessions: BTreeMap<String, Session>,
    /// Each vserver's lock table as its owner last recorded it.
    locks: BTreeMap<String, LockTable>,
    /// Each vserver's NFSv4 state as its owner last recorded it.
    nfs4: BTreeMap<String, vnas_locks::nfs4::Record>,
}

#[derive(Clone)]
struct Session {
    alive: bool,
    last_seen_ms: u64,
    drained: bool,
}

impl Store {
    fn records(&self) -> Vec<VserverRecord> {
        self.configs
            .values()
            .map(|config| VserverRecord {
                config: config.clone(),
                ownership: self.ownership[&config.name].clone(),
                service: None,
            })
            .collect()
    }

    fn nodes(&self) -> Vec<NodeStatus> {
        self.sessions
            .iter()
            .map(|(name, s)| NodeStatus {
                info: NodeInfo {
                    name: name.clone(),
                    api: String::new(),
                    labels: Default::default(),
                    started_ms: 0,
                },
                alive: s.alive,
                last_seen_ms: s.last_seen_ms,
                drained: s.drained,
            })
            .collect()
    }

    fn swap_ownership(&mut self, name: &str, expected: u64, new: &Ownership) -> Result<(), String> {
        let current = self.ownership.get_mut(name).ok_or("not found")?;
        if current.epoch != expected {
            return Err(format!("stale epoch {expected} (store has {})", current.epoch));
        }
        assert!(new.epoch >= expected, "an ownership write may not take the epoch back");
        *current = new.clone();
        Ok(())
    }

    fn put_service_state(&mut self, name: &str, epoch: u64) -> Result<(), String> {
        let current = self.ownership.get(name).ok_or("not found")?;
        if current.epoch != epoch {
            return Err("stale epoch".into());
        }
        self.service_epoch.insert(name.to_string(), epoch);
        Ok(())
    }

    /// `Store::put_locks`: the owner's alone, under the current epoch.
    fn put_locks(&mut self, name: &str, epoch: u64, table: &LockTable) -> Result<(), String> {
        let current = self.ownership.get(name).ok_or("not found")?;
        if current.epoch != epoch {
            return Err("stale epoch".into());
        }
        self.locks.insert(name.to_string(), table.clone());
        Ok(())
    }

    /// `Store::put_nfs4_state`: the owner's alone, under the current epoch.
    fn put_nfs4(&mut self, name: &str, epoch: u64, record: &vnas_locks::nfs4::Record) -> Result<(), String> {
        let current = self.ownership.get(name).ok_or("not found")?;
        if current.epoch != epoch {
            return Err("stale epoch".into());
        }
        self.nfs4.insert(name.to_string(), record.clone());
        Ok(())
    }

    fn append_history(&mut self, name: &str, transfer: Transfer) -> Result<(), String> {
        self.history.get_mut(name).ok_or("not found")?.push(transfer);
        Ok(())
    }

    fn update_node(&mut self, name: &str, to: &str) -> Result<(), String> {
        self.configs.get_mut(name).ok_or("not found")?.node = to.to_string();
        Ok(())
    }
}

// ---------------------------------------------------------------- the nodes

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Life {
    Up,
    Frozen,
    Crashed,
}

struct Node {
    name: String,
    life: Life,
    skew_ms: i64,
    local: BTreeMap<String, Local>,
    /// The fence the node runs (`vnas_cluster::Fence`), in its clock.
    fence: Fence,
    /// Calls it read and has not answered yet: (vserver, the epoch it
    /// served them under). Its kernel keeps them while it is frozen.
    pending: Vec<(String, u64)>,
    next_renew_ms: u64,
    next_tick_ms: u64,
    /// Cut off from the store: every call fails.
    cut_off: bool,
    /// A renewal under way: when it started (node clock) and when its
    /// answer arrives (true time).
    renewing: Option<(u64, u64)>,
    /// The last full read, for stale reads.
    last_read: Option<(Vec<VserverRecord>, Vec<NodeStatus>)>,
    /// Per vserver served here, its lock table and the epoch it was read
    /// from the store under (read when it starts serving, as `open` does).
    tables: BTreeMap<String, (u64, LockTable)>,
    /// Vservers whose last lock record failed here: the store may hold
    /// another table (a write applied, its answer lost), so the next call
    /// records even if it changes nothing (`LockManager`'s `dirty`).
    dirty: BTreeSet<String>,
    /// Answers to lock calls not sent yet: (vserver, epoch, the ack).
    lock_replies: Vec<(String, u64, Ack)>,
    /// Per vserver served here, its NFSv4 state (`v4`).
    v4: BTreeMap<String, v4::Held>,
    v4_replies: v4::Replies,
}

/// What a lock call's answer tells its client.
#[derive(Clone, Debug)]
struct Ack {
    client: u32,
    /// A lock granted: (exclusive, range).
    granted: Option<(bool, Range)>,
}

/// The one file every client locks in, per vserver.
const FILE: &[u8] = b"f";
/// Lock clients per vserver.
const CLIENTS: u32 = 3;

fn owner(client: u32) -> Owner {
    Owner { caller: format!("c{client}"), svid: client, oh: Vec::new() }
}

impl Node {
    fn clock(&self, now_ms: u64) -> u64 {
        (now_ms as i64 + self.skew_ms).max(0) as u64
    }

    fn fresh(&self, now_ms: u64) -> bool {
        self.fence.serving(self.clock(now_ms))
    }

    /// Whether this node answers a vserver's calls now.
    fn gate_open(&self, vserver: &str, now_ms: u64) -> bool {
        self.life == Life::Up && self.local.get(vserver).is_some_and(|l| l.serving) && self.fresh(now_ms)
    }

    /// What the server does with the reply to a call read under `epoch`
    /// (`vnas_nfs` asks the gate again before it sends): send it while
    /// the vserver is still served here under that epoch and the session
    /// fresh; drop it once the vserver was stopped here; else hold it.
    fn reply(&self, vserver: &str, epoch: u64, now_ms: u64) -> Reply {
        match self.local.get(vserver) {
            Some(local) if local.serving && local.epoch == epoch => {
                if self.life == Life::Up && self.fresh(now_ms) {
                    Reply::Send
                } else {
                    Reply::Hold
                }
            }
            _ => Reply::Drop,
        }
    }
}

#[derive(PartialEq, Eq)]
enum Reply {
    Send,
    Hold,
    Drop,
}

// ---------------------------------------------------------------- a run

/// How a store call went.
enum Call {
    Ok,
    /// Not applied.
    Failed,
    /// Applied, but the caller saw an error (it gave up waiting).
    Lost,
}

struct Sim {
    seed: u64,
    rng: Rng,
    settings: Settings,
    now_ms: u64,
    store: Store,
    nodes: Vec<Node>,
    faults_on: bool,
    trace: Vec<String>,
    next_vserver: usize,
    /// Per vserver, the highest epoch a write was acknowledged under.
    written: BTreeMap<String, u64>,
    /// Per vserver, the highest ownership epoch the store held.
    epochs: BTreeMap<String, u64>,
    /// Per vserver, the locks its clients were told they hold (and have
    /// not begun to let go of): the clients' view.
    believed: BTreeMap<String, LockTable>,
    /// (vserver, client) with a lock call unanswered: one at a time.
    outstanding: BTreeSet<(String, u32)>,
    /// NFSv4 clients and what they were told.
    v4: v4::World,
    outcome: Outcome,
}

/// Runs seed `seed`; `Err` carries the first violation and the trace.
pub fn run(seed: u64) -> Result<Outcome, Box<Violation>> {
    run_traced(seed).map(|(outcome, _)| outcome)
}

/// Like [`run`], with every event of the run.
pub fn run_traced(seed: u64) -> Result<(Outcome, Vec<String>), Box<Violation>> {
    let mut rng = Rng::new(seed);
    let settings = Settings::from_rng(&mut rng);
    let mut sim = Sim {
        seed,
        rng,
        now_ms: 0,
        store: Store::default(),
        nodes: Vec::new(),
        faults_on: true,
        trace: Vec::new(),
        next_vserver: 0,
        written: BTreeMap::new(),
        epochs: BTreeMap::new(),
        believed: BTreeMap::new(),
        outstanding: BTreeSet::new(),
        v4: v4::World::default(),
        outcome: Outcome::default(),
        settings,
    };
    sim.log(format!("settings {:?}", sim.settings));
    for i in 0..sim.settings.nodes {
        let skew = sim.rng.below(2 * sim.settings.skew_max_ms + 1) as i64 - sim.settings.skew_max_ms as i64;
        sim.add_node(format!("n{}", i + 1), skew);
    }
    for _ in 0..sim.settings.vservers {
        sim.create();
    }
    let end = sim.settings.busy_ms + sim.settings.quiet_ms;
    while sim.now_ms < end {
        if sim.faults_on && sim.now_ms >= sim.settings.busy_ms {
            sim.calm_down();
        }
        sim.step()?;
        sim.check()?;
    }
    sim.check_settled()?;
    Ok((sim.outcome, sim.trace))
}

impl Sim {
    fn log(&mut self, event: String) {
        self.trace.push(format!("{:>6} ms  {event}", self.now_ms));
    }

    fn violation(&self, what: String) -> Box<Violation> {
        Box::new(Violation { seed: self.seed, at_ms: self.now_ms, what, trace: self.trace.clone() })
    }

    fn add_node(&mut self, name: String, skew_ms: i64) {
        let now = self.now_ms;
        self.store.sessions.insert(name.clone(), Session { alive: true, last_seen_ms: now, drained: false });
        let mut node = Node {
            name,
            life: Life::Up,
            skew_ms,
            local: BTreeMap::new(),
            fence: Fence::new(self.settings.lease_ms, 0),
            pending: Vec::new(),
            next_renew_ms: now + self.settings.renew_ms,
            next_tick_ms: now + self.rng.below(self.settings.tick_ms),
            cut_off: false,
            renewing: None,
            last_read: None,
            tables: BTreeMap::new(),
            dirty: BTreeSet::new(),
            lock_replies: Vec::new(),
            v4: BTreeMap::new(),
            v4_replies: Vec::new(),
        };
        node.fence = Fence::new(self.settings.lease_ms, node.clock(now));
        self.nodes.push(node);
    }

    /// A store call by node `i`, with the faults of the moment.
    fn call(&mut self, i: usize) -> Call {
        if self.nodes[i].cut_off {
            return Call::Failed;
        }
        if self.faults_on && self.rng.chance(15) {
            self.outcome.faults += 1;
            return if self.rng.chance(500) { Call::Failed } else { Call::Lost };
        }
        Call::Ok
    }

    /// One step: time moves on, nodes renew and decide, operators and
    /// faults act.
    fn step(&mut self) -> Result<(), Box<Violation>> {
        self.now_ms += 1 + self.rng.below(20);
        self.outcome.steps += 1;
        let order = self.shuffled_nodes();
        for i in order {
            if self.nodes[i].life != Life::Up {
                continue;
            }
            // The node's tasks run in no set order: a process that thaws
            // may answer, renew or reconcile first.
            let mut tasks = [0, 1, 2];
            for k in (1..tasks.len()).rev() {
                tasks.swap(k, self.rng.below(k as u64 + 1) as usize);
            }
            for task in tasks {
                if self.nodes[i].life != Life::Up {
                    break;
                }
                match task {
                    0 => self.renew(i),
                    1 if self.now_ms >= self.nodes[i].next_tick_ms => {
                        self.nodes[i].next_tick_ms = self.now_ms + self.settings.tick_ms;
                        self.control(i)?;
                    }
                    1 => {}
                    _ => self.serve_calls(i)?,
                }
            }
        }
        if self.faults_on {
            self.operate();
            self.fault();
            self.drift();
        }
        Ok(())
    }

    /// Clocks wander, each within `skew_max_ms` of the store's.
    fn drift(&mut self) {
        if !self.rng.chance(100) {
            return;
        }
        let i = self.rng.below(self.nodes.len() as u64) as usize;
        let max = self.settings.skew_max_ms as i64;
        let step = self.rng.below(11) as i64 - 5;
        self.nodes[i].skew_ms = (self.nodes[i].skew_ms + step).clamp(-max, max);
    }

    fn shuffled_nodes(&mut self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.nodes.len()).collect();
        for k in (1..order.len()).rev() {
            let j = self.rng.below(k as u64 + 1) as usize;
            order.swap(k, j);
        }
        order
    }

    /// Session renewal, as `controller::keep_session` and `Fence` do it.
    fn renew(&mut self, i: usize) {
        let now = self.now_ms;
        if let Some((started, answer_at)) = self.nodes[i].renewing {
            if now < answer_at {
                return;
            }
            self.nodes[i].renewing = None;
            self.nodes[i].fence.renewed(started);
            return;
        }
        if now < self.nodes[i].next_renew_ms {
            return;
        }
        self.nodes[i].next_renew_ms = now + self.settings.renew_ms;
        let started = self.nodes[i].clock(now);
        match self.call(i) {
            Call::Failed => {}
            outcome => {
                // The store marks the node seen when the write lands; the
                // answer may come late, or never (`Lost`).
                let delay = if self.faults_on && self.rng.chance(20) {
                    self.rng.below(2 * self.settings.lease_ms)
                } else {
                    0
                };
                let name = self.nodes[i].name.clone();
                if let Some(session) = self.store.sessions.get_mut(&name) {
                    session.last_seen_ms = session.last_seen_ms.max(now);
                }
                if matches!(outcome, Call::Ok) {
                    if delay > 0 {
                        self.nodes[i].renewing = Some((started, now + delay));
                        self.log(format!("{name}: renewal answer delayed {delay} ms"));
                    } else {
                        self.nodes[i].fence.renewed(started);
                    }
                }
            }
        }
    }

    /// One pass of the node's controller (`controller::run`).
    fn control(&mut self, i: usize) -> Result<(), Box<Violation>> {
        let now = self.now_ms;
        let clock = self.nodes[i].clock(now);
        let node = &self.nodes[i];
        if must_fence(node.fence.stalled(), node.fresh(now), !node.local.is_empty()) {
            self.fence(i);
            return Ok(());
        }
        let read = match self.call(i) {
            Call::Ok => (self.store.records(), self.store.nodes()),
            _ => return Ok(()),
        };
        // Now and then the node acts on what it read a while ago.
        let (records, nodes) = match self.nodes[i].last_read.take() {
            Some(old) if self.faults_on && self.rng.chance(30) => {
                self.nodes[i].last_read = Some(read);
                old
            }
            _ => {
                self.nodes[i].last_read = Some(read.clone());
                read
            }
        };
        let actions = {
            let node = &self.nodes[i];
            let view = View {
                me: &node.name,
                now_ms: clock,
                lease_ms: self.settings.lease_ms,
                nodes: &nodes,
                records: &records,
                local: &node.local,
                session_fresh: node.fresh(now),
                stalled: node.fence.stalled(),
            };
            decide(&view)
        };
        for action in actions {
            if self.nodes[i].life != Life::Up {
                break;
            }
            let name = self.nodes[i].name.clone();
            self.log(format!("{name}: {action:?}"));
            let record = action.vserver().and_then(|v| records.iter().find(|r| r.config.name == v)).cloned();
            self.act(i, action, record)?;
            self.check()?;
            // A crash between two steps of a transfer (the tests' VNAS_FAULT).
            if self.faults_on && self.rng.chance(5) {
                self.crash(i);
            }
        }
        Ok(())
    }

    /// The node's server: answers the calls it read earlier where its
    /// gate lets the reply out, and reads new ones on the vservers it
    /// serves. No reply may leave under an epoch older than the newest
    /// one granted: a client would see a write acknowledged by a node
    /// that no longer owns the vserver.
    fn serve_calls(&mut self, i: usize) -> Result<(), Box<Violation>> {
        let now = self.now_ms;
        let pending = std::mem::take(&mut self.nodes[i].pending);
        for (vserver, epoch) in pending {
            match self.nodes[i].reply(&vserver, epoch, now) {
                Reply::Hold => self.nodes[i].pending.push((vserver, epoch)),
                Reply::Drop => self.outcome.dropped_replies += 1,
                Reply::Send => {
                    let stored = self.store.ownership.get(&vserver).map(|o| o.epoch);
                    let newest = stored.into_iter().chain(self.epochs.get(&vserver).copied()).max();
                    if let Some(newest) = newest.filter(|newest| *newest > epoch) {
                        return Err(self.violation(format!(
                            "{} answered a call for {vserver} under epoch {epoch} after epoch {newest} was granted",
                            self.nodes[i].name
                        )));
                    }
                    self.outcome.late_replies += 1;
                }
            }
        }
        self.answer_locks(i)?;
        self.v4_answer(i)?;
        let served: Vec<(String, u64)> = self.nodes[i]
            .local
            .iter()
            .filter(|(name, _)| self.nodes[i].gate_open(name, now))
            .map(|(name, local)| (name.clone(), local.epoch))
            .collect();
        for (vserver, epoch) in served {
            if self.nodes[i].pending.len() < 64 && self.rng.chance(300) {
                self.nodes[i].pending.push((vserver.clone(), epoch));
            }
            if self.rng.chance(25) {
                self.lock_call(i, &vserver, epoch);
            }
            if self.rng.chance(25) {
                self.v4_call(i, &vserver, epoch)?;
            }
        }
        Ok(())
    }

    /// A lock call from one of `vserver`'s clients, served by node `i`
    /// under `epoch` as `LockManager` serves it: the table decides, the
    /// change is recorded in the store before the answer, and a change
    /// that cannot be recorded is undone and not answered.
    fn lock_call(&mut self, i: usize, vserver: &str, epoch: u64) {
        let client = self.rng.below(CLIENTS as u64) as u32;
        let key = (vserver.to_string(), client);
        if self.outstanding.contains(&key) {
            return;
        }
        let who = owner(client);
        let start = self.rng.below(8);
        let range = Range::of(start, self.rng.below(4));
        let kind = self.rng.below(10);
        // The client relies on nothing it is changing until it is told.
        let believed = self.believed.entry(vserver.to_string()).or_default();
        if kind == 9 {
            believed.release_client(&who.caller);
        } else {
            believed.unlock(FILE, &who, range);
        }
        if self.nodes[i].tables.get(vserver).is_none_or(|(e, _)| *e != epoch) {
            let restored = self.store.locks.get(vserver).cloned().unwrap_or_default();
            self.nodes[i].dirty.remove(vserver);
            let node = self.nodes[i].name.clone();
            self.log(format!(
                "{node}: {vserver} lock table read, {} locks (epoch {epoch})",
                restored.locks().count()
            ));
            self.nodes[i].tables.insert(vserver.to_string(), (epoch, restored));
        }
        let mut table = self.nodes[i].tables[vserver].1.clone();
        let limits = vnas_locks::Limits::default();
        let ip = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
        let granted = match kind {
            0..=5 => {
                let exclusive = kind < 3;
                match table.lock(&limits, FILE, &who, exclusive, range, None, ip, self.now_ms) {
                    Locked::Granted => Some((exclusive, range)),
                    _ => {
                        self.outcome.locks_denied += 1;
                        None
                    }
                }
            }
            6..=8 => {
                table.unlock(FILE, &who, range);
                None
            }
            _ => {
                table.release_client(&who.caller);
                None
            }
        };
        if table != self.nodes[i].tables[vserver].1 || self.nodes[i].dirty.contains(vserver) {
            let recorded = match self.call(i) {
                Call::Failed => false,
                Call::Lost => {
                    let _ = self.store.put_locks(vserver, epoch, &table);
                    false
                }
                Call::Ok => self.store.put_locks(vserver, epoch, &table).is_ok(),
            };
            if !recorded {
                self.nodes[i].dirty.insert(vserver.to_string());
                self.outcome.locks_unrecorded += 1;
                let node = self.nodes[i].name.clone();
                self.log(format!(
                    "{node}: {vserver} lock call {kind} of c{client} {range:?} not recorded (epoch {epoch})"
                ));
                return;
            }
            self.nodes[i].dirty.remove(vserver);
            self.nodes[i].tables.insert(vserver.to_string(), (epoch, table));
        }
        self.outstanding.insert(key);
        let node = self.nodes[i].name.clone();
        self.log(format!(
            "{node}: {vserver} lock call {kind} of c{client} {range:?}: {granted:?} (epoch {epoch})"
        ));
        self.nodes[i].lock_replies.push((vserver.to_string(), epoch, Ack { client, granted }));
    }

    /// Sends the lock answers the gate lets out now; a grant becomes what
    /// its client relies on, and must not conflict with any other
    /// client's.
    fn answer_locks(&mut self, i: usize) -> Result<(), Box<Violation>> {
        let now = self.now_ms;
        let replies = std::mem::take(&mut self.nodes[i].lock_replies);
        for (vserver, epoch, ack) in replies {
            match self.nodes[i].reply(&vserver, epoch, now) {
                Reply::Hold => {
                    self.nodes[i].lock_replies.push((vserver, epoch, ack));
                    continue;
                }
                Reply::Drop => {}
                Reply::Send => {
                    if let Some((exclusive, range)) = ack.granted {
                        let who = owner(ack.client);
                        let believed = self.believed.entry(vserver.clone()).or_default();
                        let limits = vnas_locks::Limits::default();
                        let ip = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
                        if let Locked::Denied(other) =
                            believed.lock(&limits, FILE, &who, exclusive, range, None, ip, now)
                        {
                            return Err(self.violation(format!(
                                "{vserver}: {} granted c{} {range:?} (exclusive {exclusive}) while {} holds {:?} (exclusive {})",
                                self.nodes[i].name, ack.client, other.owner.caller, other.range, other.exclusive
                            )));
                        }
                        self.outcome.locks_granted += 1;
                        let node = self.nodes[i].name.clone();
                        self.log(format!(
                            "{node}: {vserver} grant to c{} {range:?} answered (epoch {epoch})",
                            ack.client
                        ));
                    }
                }
            }
            self.outstanding.remove(&(vserver, ack.client));
        }
        Ok(())
    }

    /// Drops every vserver (`Controller::fence`, `Fence::resume`).
    fn fence(&mut self, i: usize) {
        let clock = self.nodes[i].clock(self.now_ms);
        let name = self.nodes[i].name.clone();
        self.log(format!("{name}: fences itself ({} vservers)", self.nodes[i].local.len()));
        // Each stopped server writes its v4 state whole (refused by the
        // store once another node owns the vserver).
        let stopped: Vec<(String, u64)> =
            self.nodes[i].local.iter().map(|(n, l)| (n.clone(), l.epoch)).collect();
        for (vserver, epoch) in stopped {
            self.v4_hand_off(i, &vserver, epoch);
        }
        let node = &mut self.nodes[i];
        node.local.clear();
        node.fence.resume(clock);
    }

    fn act(&mut self, i: usize, action: Action, record: Option<VserverRecord>) -> Result<(), Box<Violation>> {
        let me = self.nodes[i].name.clone();
        let clock = self.nodes[i].clock(self.now_ms);
        match action {
            Action::Fence => self.fence(i),
            Action::Stop { name, release, .. } => {
                if let Some(local) = self.nodes[i].local.remove(&name) {
                    self.v4_hand_off(i, &name, local.epoch);
                    if let Some(epoch) = release {
                        let released = records::released(&me, epoch, VserverState::Stopped, None, clock);
                        self.store_swap(i, &name, epoch, released);
                    }
                }
            }
            Action::Reconfigure { name, epoch } => {
                if let (Some(local), Some(record)) = (self.nodes[i].local.get_mut(&name), record) {
                    if local.epoch == epoch {
                        local.config = record.config.clone();
                    }
                }
            }
            Action::HandOff { name, epoch, to, since_ms } => {
                self.nodes[i].local.remove(&name);
                self.v4_hand_off(i, &name, epoch);
                let handed = records::handed_over(&me, &to, epoch, since_ms.unwrap_or(clock));
                if self.store_swap(i, &name, epoch, handed) {
                    self.outcome.transfers += 1;
                }
            }
            Action::Release { name, epoch } => {
                let released = records::released(&me, epoch, VserverState::Stopped, None, clock);
                self.store_swap(i, &name, epoch, released);
            }
            Action::Open { name, epoch } => {
                let Some(record) = record else { return Ok(()) };
                let Some(local) = self.nodes[i].local.get_mut(&name) else { return Ok(()) };
                local.serving = true;
                local.epoch = epoch;
                // The gate opens before the store hears of it.
                self.check()?;
                if !self.confirm(i, &record, epoch, Why::Move) {
                    self.nodes[i].local.remove(&name);
                }
            }
            Action::Prepare { name, epoch } => {
                let Some(record) = record else { return Ok(()) };
                self.nodes[i].local.insert(name, Local { epoch, serving: false, config: record.config });
            }
            Action::Activate { epoch, why, .. } => {
                if let Some(record) = record {
                    self.activate(i, &record, epoch, why)?;
                }
            }
            Action::Take { name, expected, why, since_ms } => {
                let Some(mut record) = record else { return Ok(()) };
                let taken = records::taken(&me, expected, since_ms);
                let previous = record.ownership.owner.clone().filter(|owner| *owner != me);
                if self.store_swap(i, &name, expected, taken) {
                    record.ownership.since_ms = since_ms;
                    self.activate(i, &record, expected + 1, why)?;
                    if previous.is_some() {
                        self.outcome.transfers += 1;
                        self.outcome.failovers += 1;
                    }
                }
            }
            Action::Assign { moves, .. } => {
                for (name, to) in moves {
                    match self.call(i) {
                        Call::Failed => {}
                        _ => {
                            let _ = self.store.update_node(&name, &to);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// A compare-and-swap by node `i`; true if the node saw it succeed.
    fn store_swap(&mut self, i: usize, name: &str, expected: u64, new: Ownership) -> bool {
        match self.call(i) {
            Call::Failed => false,
            Call::Lost => {
                let _ = self.store.swap_ownership(name, expected, &new);
                false
            }
            Call::Ok => self.store.swap_ownership(name, expected, &new).is_ok(),
        }
    }

    fn activate(
        &mut self,
        i: usize,
        record: &VserverRecord,
        epoch: u64,
        why: Why,
    ) -> Result<(), Box<Violation>> {
        let name = record.config.name.clone();
        self.nodes[i]
            .local
            .insert(name.clone(), Local { epoch, serving: true, config: record.config.clone() });
        self.check()?;
        if !self.confirm(i, record, epoch, why) {
            self.nodes[i].local.remove(&name);
        }
        Ok(())
    }

    /// `controller::confirm`: service state, running, history; three store
    /// calls, each of which may fail.
    fn confirm(&mut self, i: usize, record: &VserverRecord, epoch: u64, why: Why) -> bool {
        let me = self.nodes[i].name.clone();
        let name = record.config.name.as_str();
        let clock = self.nodes[i].clock(self.now_ms);
        let (_, running, mut transfer) = records::confirmed(record, &me, epoch, "00", Vec::new(), why, clock);
        let steps = [0, 1, 2];
        for step in steps {
            let outcome = self.call(i);
            if matches!(outcome, Call::Failed) {
                return false;
            }
            let applied = match step {
                0 => self.store.put_service_state(name, epoch),
                1 => self.store.swap_ownership(name, epoch, &running),
                _ => {
                    let history = self.store.history.get(name).cloned().unwrap_or_default();
                    records::fill_from(&mut transfer, &history, record.ownership.owner.as_deref());
                    if records::already_recorded(&history, &transfer) {
                        Ok(())
                    } else {
                        self.store.append_history(name, transfer.clone())
                    }
                }
            };
            if applied.is_err() || matches!(outcome, Call::Lost) {
                return false;
            }
        }
        true
    }

    // ------------------------------------------------------- operators

    fn up_nodes(&self) -> Vec<String> {
        let clock = self.now_ms;
        self.store
            .nodes()
            .into_iter()
            .filter(|n| is_up(n, clock, self.settings.lease_ms))
            .map(|n| n.info.name)
            .collect()
    }

    fn create(&mut self) {
        let name = format!("v{}", self.next_vserver);
        self.next_vserver += 1;
        let nodes = self.store.nodes();
        let up = self.up_nodes();
        let candidates: Vec<Candidate> = nodes
            .iter()
            .map(|n| Candidate { name: &n.info.name, up: up.contains(&n.info.name), drained: n.drained })
            .collect();
        let mut loads = std::collections::HashMap::new();
        for config in self.store.configs.values() {
            *loads.entry(config.node.as_str()).or_insert(0) += 1;
        }
        let Some(node) = place(&candidates, &loads, None).map(str::to_string) else { return };
        let config = VserverConfig {
            name: name.clone(),
            addresses: vec![],
            volumes: vec![],
            exports: vec![],
            routes: vec![],
            node: node.clone(),
            desired: Desired::Running,
            home: None,
            allowed_nodes: vec![],
        };
        self.store.configs.insert(name.clone(), config);
        let mut unowned = Ownership::unowned();
        // A recreated name continues the epochs it had: never backwards.
        unowned.epoch = self.epochs.get(&name).copied().unwrap_or(0);
        unowned.since_ms = self.now_ms;
        self.store.ownership.insert(name.clone(), unowned);
        self.store.history.insert(name.clone(), Vec::new());
        self.log(format!("api: create {name} on {node}"));
    }

    /// What operators do through the API, now and then.
    fn operate(&mut self) {
        if !self.rng.chance(40) {
            return;
        }
        let names: Vec<String> = self.store.configs.keys().cloned().collect();
        let nodes: Vec<String> = self.nodes.iter().map(|n| n.name.clone()).collect();
        match self.rng.below(8) {
            0 => self.create(),
            1 | 2 => {
                // Move a running vserver to another live node.
                let Some(name) = self.rng.pick(&names).cloned() else { return };
                let up = self.up_nodes();
                let Some(to) = self.rng.pick(&up).cloned() else { return };
                let running = self.store.ownership[&name].state == VserverState::Running;
                if running && self.store.configs[&name].node != to {
                    self.store.configs.get_mut(&name).unwrap().node = to.clone();
                    self.log(format!("api: move {name} to {to}"));
                }
            }
            3 => {
                let Some(name) = self.rng.pick(&names).cloned() else { return };
                let desired = if self.rng.chance(500) { Desired::Stopped } else { Desired::Running };
                let record = self.store.ownership.get_mut(&name).unwrap();
                if desired == Desired::Running && record.state == VserverState::Failed {
                    record.owner = None;
                    record.state = VserverState::Stopped;
                }
                self.store.configs.get_mut(&name).unwrap().desired = desired;
                self.log(format!("api: {desired:?} {name}"));
            }
            4 => {
                // Delete: only once it is stopped and given back, as the API does.
                let Some(name) = self.rng.pick(&names).cloned() else { return };
                let stopped = self.store.configs[&name].desired == Desired::Stopped;
                if stopped && self.store.ownership[&name].owner.is_none() {
                    let epoch = self.store.ownership[&name].epoch;
                    self.epochs.insert(name.clone(), epoch);
                    self.store.configs.remove(&name);
                    self.store.ownership.remove(&name);
                    self.store.history.remove(&name);
                    self.store.locks.remove(&name);
                    self.store.nfs4.remove(&name);
                    self.v4_forget(&name);
                    self.believed.remove(&name);
                    self.written.remove(&name);
                    self.log(format!("api: delete {name}"));
                }
            }
            5 => {
                let Some(node) = self.rng.pick(&nodes).cloned() else { return };
                let drained = self.rng.chance(400);
                if let Some(session) = self.store.sessions.get_mut(&node) {
                    session.drained = drained;
                }
                self.log(format!("api: {} {node}", if drained { "drain" } else { "undrain" }));
            }
            _ => {}
        }
    }

    fn crash(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.life = Life::Crashed;
        node.local.clear();
        node.pending.clear();
        node.tables.clear();
        node.dirty.clear();
        for (vserver, _, ack) in std::mem::take(&mut node.lock_replies) {
            self.outstanding.remove(&(vserver, ack.client));
        }
        self.v4_crash(i);
        let node = &mut self.nodes[i];
        node.renewing = None;
        let name = node.name.clone();
        // The kernel drops a dead process's session lock at once.
        if let Some(session) = self.store.sessions.get_mut(&name) {
            session.alive = false;
        }
        self.outcome.faults += 1;
        self.log(format!("fault: {name} crashes"));
    }

    fn restart(&mut self, i: usize) {
        let now = self.now_ms;
        let settings = self.settings.clone();
        let node = &mut self.nodes[i];
        node.life = Life::Up;
        node.cut_off = false;
        node.last_read = None;
        node.fence = Fence::new(settings.lease_ms, node.clock(now));
        node.next_renew_ms = now + settings.renew_ms;
        let name = node.name.clone();
        if let Some(session) = self.store.sessions.get_mut(&name) {
            session.alive = true;
            session.last_seen_ms = now;
        }
        self.log(format!("fault: {name} restarts"));
    }

    fn fault(&mut self) {
        if !self.rng.chance(12) {
            return;
        }
        let i = self.rng.below(self.nodes.len() as u64) as usize;
        let live = self.nodes.iter().filter(|n| n.life == Life::Up).count();
        let name = self.nodes[i].name.clone();
        match (self.nodes[i].life, self.rng.below(4)) {
            (Life::Up, 0) if live > 1 => self.crash(i),
            (Life::Up, 1) if live > 1 => {
                self.nodes[i].life = Life::Frozen;
                self.log(format!("fault: {name} freezes"));
            }
            (Life::Up, 2) => {
                let cut = !self.nodes[i].cut_off;
                self.nodes[i].cut_off = cut;
                self.log(format!("fault: {name} {} the store", if cut { "cut off from" } else { "back to" }));
            }
            (Life::Frozen, _) => {
                self.nodes[i].life = Life::Up;
                self.log(format!("fault: {name} thaws"));
            }
            (Life::Crashed, _) => self.restart(i),
            _ => return,
        }
        self.outcome.faults += 1;
    }

    /// The faults stop: frozen nodes thaw, crashed ones come back, every
    /// node reaches the store, drains end.
    fn calm_down(&mut self) {
        self.faults_on = false;
        self.log("faults stop".into());
        for i in 0..self.nodes.len() {
            match self.nodes[i].life {
                Life::Frozen => self.nodes[i].life = Life::Up,
                Life::Crashed => self.restart(i),
                Life::Up => {}
            }
            self.nodes[i].cut_off = false;
        }
        for session in self.store.sessions.values_mut() {
            session.drained = false;
        }
    }

    // ------------------------------------------------------- checkers

    fn check(&mut self) -> Result<(), Box<Violation>> {
        let now = self.now_ms;
        for name in self.store.configs.keys() {
            let open: Vec<&Node> = self.nodes.iter().filter(|n| n.gate_open(name, now)).collect();
            if open.len() > 1 {
                let who: Vec<String> =
                    open.iter().map(|n| format!("{} (epoch {})", n.name, n.local[name].epoch)).collect();
                return Err(self.violation(format!("{name} is served by {} at once", who.join(" and "))));
            }
            // A client writes through whoever answers; a write acknowledged
            // under an older epoch after a newer one would be lost.
            if let Some(node) = open.first() {
                let epoch = node.local[name].epoch;
                let before = self.written.get(name).copied().unwrap_or(0);
                if epoch < before {
                    return Err(self.violation(format!(
                        "{name}: {} acknowledged a write under epoch {epoch} after one under {before}",
                        node.name
                    )));
                }
                self.written.insert(name.clone(), epoch);
                self.outcome.writes += 1;
            }
        }
        // Every lock a client was told it holds is in the table of whoever
        // answers for its vserver now, exactly (same kind, whole range).
        for node in &self.nodes {
            for (name, (epoch, table)) in &node.tables {
                let serving_now =
                    node.gate_open(name, now) && node.local.get(name).is_some_and(|l| l.epoch == *epoch);
                let Some(believed) = self.believed.get(name).filter(|_| serving_now) else { continue };
                for (_, lock) in believed.locks() {
                    let kept = table.locks().any(|(_, l)| {
                        l.owner == lock.owner
                            && l.exclusive == lock.exclusive
                            && l.range.start <= lock.range.start
                            && lock.range.end <= l.range.end
                    });
                    if !kept {
                        return Err(self.violation(format!(
                            "{name}: {} lost {}'s lock {:?} (exclusive {}) granted earlier",
                            node.name, lock.owner.caller, lock.range, lock.exclusive
                        )));
                    }
                }
            }
        }
        self.v4_check()?;
        // A deleted vserver (stopped and given back before the delete) is
        // served by nobody, ever.
        for node in &self.nodes {
            for name in node.local.keys().filter(|name| !self.store.configs.contains_key(*name)) {
                if node.gate_open(name, now) {
                    let what = format!("{} serves {name}, which was deleted", node.name);
                    return Err(self.violation(what));
                }
            }
        }
        for (name, ownership) in &self.store.ownership {
            let before = self.epochs.get(name).copied().unwrap_or(0);
            if ownership.epoch < before {
                return Err(
                    self.violation(format!("{name}: epoch went back from {before} to {}", ownership.epoch))
                );
            }
        }
        let epochs: Vec<(String, u64)> =
            self.store.ownership.iter().map(|(n, o)| (n.clone(), o.epoch)).collect();
        self.epochs.extend(epochs);
        for (name, history) in &self.store.history {
            for pair in history.windows(2) {
                let (a, b) = (&pair[0], &pair[1]);
                let chained = if b.why == Why::Restart.as_str() {
                    b.to == a.to && b.epoch >= a.epoch
                } else if b.why == Why::Start.as_str() {
                    // Started again after a stop: a new chain, later epochs.
                    b.epoch > a.epoch
                } else {
                    b.from.as_deref() == Some(a.to.as_str()) && b.epoch > a.epoch
                };
                if !chained {
                    return Err(self.violation(format!("{name}: history is not a chain: {a:?} then {b:?}")));
                }
            }
        }
        Ok(())
    }

    /// Once the faults stopped: every wanted vserver served by exactly one
    /// live node, which owns it in the store.
    fn check_settled(&self) -> Result<(), Box<Violation>> {
        let now = self.now_ms;
        let mut problems = Vec::new();
        for (name, config) in &self.store.configs {
            let ownership = &self.store.ownership[name];
            let open: BTreeSet<&str> =
                self.nodes.iter().filter(|n| n.gate_open(name, now)).map(|n| n.name.as_str()).collect();
            let wanted = config.desired == Desired::Running && ownership.state != VserverState::Failed;
            if !wanted {
                if !open.is_empty() {
                    problems.push(format!("{name} is not wanted but served by {open:?}"));
                }
                continue;
            }
            let owner = ownership.owner.as_deref().unwrap_or("-");
            if open.len() != 1 || !open.contains(owner) || ownership.state != VserverState::Running {
                let mut line = String::new();
                let _ = write!(
                    line,
                    "{name} (assigned {}) is served by {open:?}; the store says {owner} {:?} epoch {}",
                    config.node, ownership.state, ownership.epoch
                );
                problems.push(line);
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(self.violation(format!(
                "{} ms after the faults stopped: {}",
                self.settings.quiet_ms,
                problems.join("; ")
            )))
        }
    }
}
