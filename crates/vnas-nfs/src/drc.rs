//! The duplicate-request cache: a retransmitted non-idempotent call (same
//! client, transaction id, procedure and arguments) gets the reply of the
//! first execution instead of running again, so a retried REMOVE does not
//! fail with NOENT because the first one worked.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::limits::DRC_ENTRIES_MAX;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Key {
    client: IpAddr,
    xid: u32,
    proc_: u32,
    args_digest: u64,
}

impl Key {
    pub fn new(client: IpAddr, xid: u32, proc_: u32, args: &[u8]) -> Key {
        let mut hasher = siphasher::sip::SipHasher13::new();
        args.hash(&mut hasher);
        Key { client, xid, proc_, args_digest: hasher.finish() }
    }
}

enum Entry {
    InProgress,
    Done(Arc<Vec<u8>>),
}

pub enum Seen {
    /// First time: run it, then `finish`.
    New,
    /// The first copy is still running: drop this one, the reply will come.
    InProgress,
    /// Already answered: send this reply again.
    Done(Arc<Vec<u8>>),
}

#[derive(Default)]
pub struct Drc {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<Key, Entry>,
    order: VecDeque<Key>,
}

impl Drc {
    pub fn begin(&self, key: Key) -> Seen {
        let mut inner = self.inner.lock().unwrap();
        match inner.map.get(&key) {
            Some(Entry::InProgress) => return Seen::InProgress,
            Some(Entry::Done(reply)) => return Seen::Done(reply.clone()),
            None => {}
        }
        while inner.order.len() >= DRC_ENTRIES_MAX {
            let oldest = inner.order.pop_front().expect("not empty");
            inner.map.remove(&oldest);
        }
        inner.map.insert(key, Entry::InProgress);
        inner.order.push_back(key);
        Seen::New
    }

    pub fn finish(&self, key: Key, reply: &[u8]) {
        let mut inner = self.inner.lock().unwrap();
        if let Some(entry) = inner.map.get_mut(&key) {
            *entry = Entry::Done(Arc::new(reply.to_vec()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_and_bounds() {
        let drc = Drc::default();
        let client: IpAddr = "127.0.0.1".parse().unwrap();
        let key = Key::new(client, 1, 12, b"args");
        assert!(matches!(drc.begin(key), Seen::New));
        assert!(matches!(drc.begin(key), Seen::InProgress));
        drc.finish(key, b"reply");
        assert!(matches!(drc.begin(key), Seen::Done(r) if r.as_slice() == b"reply"));
        assert!(matches!(drc.begin(Key::new(client, 1, 12, b"other")), Seen::New));
        for xid in 2..(DRC_ENTRIES_MAX as u32 + 10) {
            drc.begin(Key::new(client, xid, 12, b"args"));
        }
        assert!(drc.inner.lock().unwrap().map.len() <= DRC_ENTRIES_MAX);
        assert!(matches!(drc.begin(key), Seen::New));
    }
}
