//! NFSv4.1 state in the simulation. Each vserver has v4 clients, each with
//! one session of one slot, opening and closing one file with share
//! reservations. Whoever serves the vserver runs the rules the server
//! runs (`vnas_locks::nfs4`: the slot's decision, share conflicts, what a
//! next owner restores): it records the state in the store before it
//! answers a change, writes it whole (slots included) when it hands the
//! vserver over, and a next owner that read a hand-off records it without
//! slots before it runs anything. A reply lost to a move is retried in
//! the same slot; a client told its session is gone makes a new one and
//! sends its call again there.
//!
//! Checked after every step: no two clients were told of opens whose
//! share reservations conflict; every open a client was told of is in the
//! state of whoever serves its vserver; and no call ran twice in one
//! session (its slot and sequence id).

use super::*;
use vnas_locks::nfs4::{self, Record, Restore, SlotCall};

/// v4 clients per vserver.
const CLIENTS: u32 = 2;
const FILE: &[u8] = b"f";

/// What a client asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Op {
    Open { access: u32, deny: u32 },
    Close,
}

/// A call a client waits on, and the (session, sequence id) it was last
/// sent with.
type Pending = (Op, Option<(Vec<u8>, u32)>);

/// A client as it sees itself.
#[derive(Clone, Debug, Default)]
pub(super) struct Client {
    session: Option<Vec<u8>>,
    /// The last sequence id its slot answered.
    seq: u32,
    pending: Option<Pending>,
}

/// An answer on its way to a client.
#[derive(Clone, Debug)]
pub(super) enum Answer {
    Session(Vec<u8>),
    BadSession,
    Done { seq: u32, op: Op, granted: bool },
}

#[derive(Default)]
pub(super) struct World {
    clients: BTreeMap<(String, u32), Client>,
    /// Per vserver, the opens its clients were told of: client, access, deny.
    believed: BTreeMap<String, BTreeMap<u32, (u32, u32)>>,
    /// (session, sequence id) of every call run.
    ran: BTreeSet<(Vec<u8>, u32)>,
    /// (vserver, client) with an answer on its way.
    outstanding: BTreeSet<(String, u32)>,
    next_session: u64,
}

/// A node's view of a vserver's v4 state: the epoch it read it under, the
/// state, and whether it must be recorded before anything is answered.
pub(super) struct Held {
    epoch: u64,
    record: Record,
    unrecorded: bool,
}

pub(super) type Replies = Vec<(String, u64, u32, Answer)>;

fn owner(client: u32) -> Vec<u8> {
    format!("v4c{client}").into_bytes()
}

impl Sim {
    /// A call of one of `vserver`'s v4 clients to node `i`, which serves
    /// it under `epoch`.
    pub(super) fn v4_call(&mut self, i: usize, vserver: &str, epoch: u64) -> Result<(), Box<Violation>> {
        let c = self.rng.below(u64::from(CLIENTS)) as u32;
        let key = (vserver.to_string(), c);
        if self.v4.outstanding.contains(&key) {
            return Ok(());
        }
        let node = self.nodes[i].name.clone();
        if self.nodes[i].v4.get(vserver).is_none_or(|h| h.epoch != epoch) {
            let read = Ok(self.store.nfs4.get(vserver).cloned());
            let Restore::Serve(record) = nfs4::restore(read, &[]) else {
                unreachable!("a model record reads")
            };
            self.log(format!(
                "{node}: {vserver} v4 state read (hand-off {}, {} sessions, {} opens; epoch {epoch})",
                record.handoff,
                record.sessions.len(),
                record.opens.len()
            ));
            let handoff = record.handoff;
            self.nodes[i].v4.insert(vserver.to_string(), Held { epoch, record, unrecorded: handoff });
        }
        // A hand-off read is recorded without its slots before anything runs.
        if self.nodes[i].v4[vserver].record.handoff && !self.v4_record(i, vserver, epoch) {
            return Ok(());
        }
        let client = self.v4.clients.entry(key.clone()).or_default().clone();
        let in_session = client
            .session
            .clone()
            .filter(|id| self.nodes[i].v4[vserver].record.sessions.iter().any(|s| &s.id == id));
        // The call: in its session, the one pending (again, if it was sent
        // in this session) or a new one.
        let call = match (&client.session, in_session) {
            (_, Some(id)) => {
                let (op, seq) = match &client.pending {
                    Some((op, Some((sent_in, seq)))) if *sent_in == id => (*op, *seq),
                    Some((op, _)) => (*op, client.seq + 1),
                    None => (self.v4_new_op(vserver, c), client.seq + 1),
                };
                Some((id, op, seq))
            }
            (Some(_), None) => None,
            (None, _) => {
                self.v4.next_session += 1;
                None
            }
        };
        let new_session = self.v4.next_session.to_be_bytes().to_vec();
        let held = &mut self.nodes[i].v4.get_mut(vserver).expect("read above").record;
        let (answer, changed) = match (call, &client.session) {
            (None, None) => {
                // CREATE_SESSION (under the client's ID, made if new).
                if !held.clients41.iter().any(|k| k.owner == owner(c)) {
                    held.clients41.push(nfs4::Client41 {
                        id: u64::from(c),
                        owner: owner(c),
                        verifier: vec![0; 8],
                        confirmed: true,
                        create_seq: 1,
                        last_create: None,
                    });
                }
                held.sessions.push(nfs4::Session {
                    id: new_session.clone(),
                    clientid: u64::from(c),
                    max_request: 0,
                    max_response: 0,
                    max_response_cached: 0,
                    max_operations: 0,
                    slots: vec![nfs4::Slot { seqid: 0, reply: None }],
                    callback: None,
                });
                (Answer::Session(new_session), true)
            }
            (None, Some(_)) => (Answer::BadSession, false),
            (Some((id, op, seq)), _) => {
                let session = held.sessions.iter_mut().find(|s| s.id == id).expect("in session");
                let slot = session.slots[0].clone();
                match nfs4::slot_call(slot.seqid, false, slot.reply.is_some(), seq) {
                    SlotCall::Replay => {
                        self.outcome.v4_replays += 1;
                        let granted = slot.reply.as_ref().is_some_and(|r| r.0 == [1]);
                        (Answer::Done { seq, op, granted }, false)
                    }
                    SlotCall::New => {
                        session.slots[0] = nfs4::Slot { seqid: seq, reply: None };
                        let mine = |s: &nfs4::State| s.owner == owner(c) && s.fh == FILE;
                        let granted = match op {
                            Op::Open { access, deny } => {
                                let denied = held.opens.iter().any(|s| {
                                    !mine(s) && s.fh == FILE && nfs4::share_conflict(s.access, s.deny, access, deny)
                                });
                                if !denied {
                                    match held.opens.iter_mut().find(|s| mine(s)) {
                                        Some(s) => {
                                            s.access |= access;
                                            s.deny |= deny;
                                        }
                                        None => held.opens.push(nfs4::State {
                                            other: vec![c as u8; 12],
                                            clientid: u64::from(c),
                                            owner: owner(c),
                                            fh: FILE.to_vec(),
                                            seqid: 1,
                                            access,
                                            deny,
                                        }),
                                    }
                                }
                                !denied
                            }
                            Op::Close => {
                                held.opens.retain(|s| !mine(s));
                                true
                            }
                        };
                        let session = held.sessions.iter_mut().find(|s| s.id == id).expect("in session");
                        session.slots[0].reply = Some(nfs4::Hex(vec![u8::from(granted)]));
                        if !self.v4.ran.insert((id.clone(), seq)) {
                            return Err(self.violation(format!(
                                "{vserver}: {node} ran v4c{c}'s call {seq} a second time in one session"
                            )));
                        }
                        let sent = self.v4.clients.get_mut(&key).expect("made above");
                        sent.pending = Some((op, Some((id, seq))));
                        (Answer::Done { seq, op, granted }, true)
                    }
                    other => {
                        return Err(self.violation(format!(
                            "{vserver}: {node}'s slot for v4c{c} is out of step: {other:?} for {seq} (slot at {})",
                            slot.seqid
                        )))
                    }
                }
            }
        };
        if changed {
            self.nodes[i].v4.get_mut(vserver).expect("read above").unrecorded = true;
        }
        // Every reply waits for the state it tells of to be recorded.
        if self.nodes[i].v4[vserver].unrecorded && !self.v4_record(i, vserver, epoch) {
            self.outcome.v4_unrecorded += 1;
            self.log(format!("{node}: {vserver} v4 reply to v4c{c} held back: not recorded"));
            return Ok(());
        }
        self.log(format!("{node}: {vserver} v4 answer to v4c{c}: {answer:?} (epoch {epoch})"));
        self.v4.outstanding.insert(key);
        self.nodes[i].v4_replies.push((vserver.to_string(), epoch, c, answer));
        Ok(())
    }

    /// What a client asks next: to close its open, or to open the file.
    fn v4_new_op(&mut self, vserver: &str, c: u32) -> Op {
        let has = self.v4.believed.get(vserver).is_some_and(|b| b.contains_key(&c));
        if has && self.rng.chance(400) {
            // It relies on nothing it is letting go of.
            self.v4.believed.entry(vserver.to_string()).or_default().remove(&c);
            let client = self.v4.clients.entry((vserver.to_string(), c)).or_default();
            client.pending = Some((Op::Close, None));
            return Op::Close;
        }
        let op = Op::Open { access: 1 + self.rng.below(3) as u32, deny: self.rng.below(4) as u32 };
        self.v4.clients.entry((vserver.to_string(), c)).or_default().pending = Some((op, None));
        op
    }

    /// Records node `i`'s v4 state of `vserver` under `epoch` (a journal
    /// record: no slots); false if the store did not take it.
    fn v4_record(&mut self, i: usize, vserver: &str, epoch: u64) -> bool {
        let mut record = self.nodes[i].v4[vserver].record.clone();
        record.handoff = false;
        record.sessions.clear();
        let recorded = match self.call(i) {
            Call::Failed => false,
            Call::Lost => {
                let _ = self.store.put_nfs4(vserver, epoch, &record);
                false
            }
            Call::Ok => self.store.put_nfs4(vserver, epoch, &record).is_ok(),
        };
        if recorded {
            let held = self.nodes[i].v4.get_mut(vserver).expect("held");
            held.unrecorded = false;
            held.record.handoff = false;
        }
        recorded
    }

    /// A node that stopped serving `vserver` for a hand-off writes its v4
    /// state whole, slots and their replies included.
    pub(super) fn v4_hand_off(&mut self, i: usize, vserver: &str, epoch: u64) {
        let Some(held) = self.nodes[i].v4.remove(vserver) else { return };
        if held.epoch != epoch {
            return;
        }
        let mut record = held.record;
        record.handoff = true;
        match self.call(i) {
            Call::Failed => {}
            _ => {
                let _ = self.store.put_nfs4(vserver, epoch, &record);
            }
        }
    }

    /// Sends the v4 answers the gate lets out now.
    pub(super) fn v4_answer(&mut self, i: usize) -> Result<(), Box<Violation>> {
        let now = self.now_ms;
        let replies = std::mem::take(&mut self.nodes[i].v4_replies);
        for (vserver, epoch, c, answer) in replies {
            let key = (vserver.clone(), c);
            match self.nodes[i].reply(&vserver, epoch, now) {
                Reply::Hold => {
                    self.nodes[i].v4_replies.push((vserver, epoch, c, answer));
                    continue;
                }
                Reply::Drop => {}
                Reply::Send => {
                    let client = self.v4.clients.entry(key.clone()).or_default();
                    match answer {
                        Answer::Session(id) => {
                            self.outcome.v4_sessions += 1;
                            client.session = Some(id);
                            client.seq = 0;
                        }
                        Answer::BadSession => client.session = None,
                        Answer::Done { seq, op, granted } => {
                            client.seq = seq;
                            client.pending = None;
                            if let (Op::Open { access, deny }, true) = (op, granted) {
                                let believed = self.v4.believed.entry(vserver.clone()).or_default();
                                let conflict = believed
                                    .iter()
                                    .find(|(other, (a, d))| {
                                        **other != c && nfs4::share_conflict(*a, *d, access, deny)
                                    })
                                    .map(|(other, held)| (*other, *held));
                                if let Some((other, held)) = conflict {
                                    return Err(self.violation(format!(
                                        "{vserver}: {} opened the file for v4c{c} (access {access}, deny {deny}) \
                                         while v4c{other} holds {held:?}",
                                        self.nodes[i].name
                                    )));
                                }
                                self.outcome.v4_opens += 1;
                                let mine = self
                                    .v4
                                    .believed
                                    .entry(vserver.clone())
                                    .or_default()
                                    .entry(c)
                                    .or_insert((0, 0));
                                *mine = (mine.0 | access, mine.1 | deny);
                            }
                        }
                    }
                }
            }
            self.v4.outstanding.remove(&key);
        }
        Ok(())
    }

    /// Every open a client was told of is in the state of whoever answers
    /// for its vserver now, with at least its access and deny.
    pub(super) fn v4_check(&self) -> Result<(), Box<Violation>> {
        let now = self.now_ms;
        for node in &self.nodes {
            for (name, held) in &node.v4 {
                let serving_now =
                    node.gate_open(name, now) && node.local.get(name).is_some_and(|l| l.epoch == held.epoch);
                let Some(believed) = self.v4.believed.get(name).filter(|_| serving_now) else { continue };
                for (c, (access, deny)) in believed {
                    let kept = held.record.opens.iter().any(|s| {
                        s.owner == owner(*c) && s.access & access == *access && s.deny & deny == *deny
                    });
                    if !kept {
                        return Err(self.violation(format!(
                            "{name}: {} lost v4c{c}'s open (access {access}, deny {deny}) answered earlier",
                            node.name
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// A node that crashed loses what it held; its answers are lost.
    pub(super) fn v4_crash(&mut self, i: usize) {
        self.nodes[i].v4.clear();
        for (vserver, _, c, _) in std::mem::take(&mut self.nodes[i].v4_replies) {
            self.v4.outstanding.remove(&(vserver, c));
        }
    }

    pub(super) fn v4_forget(&mut self, vserver: &str) {
        self.v4.believed.remove(vserver);
        self.v4.clients.retain(|(v, _), _| v != vserver);
    }
}
