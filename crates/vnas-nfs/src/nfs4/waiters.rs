//! NFSv4.1 lock waiters: the clients whose blocking LOCK (READW or
//! WRITEW) was denied, by file, so that when a lock on the file goes they
//! are told at once (CB_NOTIFY_LOCK) instead of polling. A client that
//! may be notified waits up to 30 s between polls (Linux), so a waiter
//! forgotten costs it that long, never the lock: each entry is a hint.
//! Bounded: a full table takes no more, and entries older than a client's
//! longest poll interval go (the client asked again meanwhile, or left).

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Waiters held at once, over all files.
pub const WAITERS_MAX: usize = 4096;
/// Waiters on one file.
pub const PER_FILE_MAX: usize = 64;
/// A waiter is forgotten this long after its last denied LOCK: Linux asks
/// again at least every 30 s.
pub const AGE_MAX: Duration = Duration::from_secs(60);

/// A lock owner: its client ID and the owner's bytes, as the client sent
/// them in LOCK (a notification must name them exactly).
pub type LockOwner = (u64, Vec<u8>);

/// What a waiter asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiter {
    pub owner: LockOwner,
    pub exclusive: bool,
    pub range: vnas_locks::Range,
}

#[derive(Default)]
pub struct Waiters {
    by_file: HashMap<Vec<u8>, Vec<(Waiter, Instant)>>,
    count: usize,
}

impl Waiters {
    /// `owner`'s blocking LOCK on `file` was denied at `now`; false if the
    /// table is full (the client then polls).
    pub fn add(&mut self, file: &[u8], waiter: Waiter, now: Instant) -> bool {
        let same = |(w, _): &&mut (Waiter, Instant)| w.owner == waiter.owner;
        if let Some(entry) = self.by_file.get_mut(file).and_then(|w| w.iter_mut().find(same)) {
            *entry = (waiter, now);
            return true;
        }
        if self.count >= WAITERS_MAX {
            self.purge(now);
        }
        let waiting = self.by_file.get(file).map_or(0, Vec::len);
        if self.count >= WAITERS_MAX || waiting >= PER_FILE_MAX {
            return false;
        }
        self.by_file.entry(file.to_vec()).or_default().push((waiter, now));
        self.count += 1;
        true
    }

    /// A lock on `file` went: its waiters, taken from the table (each asks
    /// again; one denied again is added again).
    pub fn take(&mut self, file: &[u8], now: Instant) -> Vec<Waiter> {
        let Some(waiting) = self.by_file.remove(file) else { return Vec::new() };
        self.count -= waiting.len();
        waiting
            .into_iter()
            .filter(|(_, since)| now.duration_since(*since) < AGE_MAX)
            .map(|(o, _)| o)
            .collect()
    }

    /// Whether anyone waits on `file`.
    pub fn any(&self, file: &[u8]) -> bool {
        self.by_file.contains_key(file)
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn purge(&mut self, now: Instant) {
        self.by_file.retain(|_, waiting| {
            waiting.retain(|(_, since)| now.duration_since(*since) < AGE_MAX);
            !waiting.is_empty()
        });
        self.count = self.by_file.values().map(Vec::len).sum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(n: u8) -> Waiter {
        waiter(7, n)
    }

    fn waiter(clientid: u64, n: u8) -> Waiter {
        Waiter { owner: (clientid, vec![n]), exclusive: true, range: vnas_locks::Range { start: 0, end: 1 } }
    }

    #[test]
    fn a_release_takes_the_files_waiters_once() {
        let mut w = Waiters::default();
        let now = Instant::now();
        assert!(w.add(b"f", owner(1), now));
        assert!(w.add(b"f", owner(1), now), "the same owner again is one waiter");
        assert!(w.add(b"f", owner(2), now));
        assert!(w.add(b"g", owner(3), now));
        assert_eq!(w.len(), 3);
        assert_eq!(w.take(b"f", now), vec![owner(1), owner(2)]);
        assert!(w.take(b"f", now).is_empty(), "told once");
        assert!(w.any(b"g") && !w.any(b"f"));
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn bounded_and_old_waiters_go() {
        let mut w = Waiters::default();
        let then = Instant::now();
        for n in 0..PER_FILE_MAX {
            assert!(w.add(b"f", waiter(n as u64, 0), then));
        }
        assert!(!w.add(b"f", waiter(u64::MAX, 0), then), "one file holds at most PER_FILE_MAX");
        for n in 0..(WAITERS_MAX - PER_FILE_MAX) {
            assert!(w.add(&n.to_be_bytes(), owner(0), then));
        }
        assert!(!w.add(b"new", owner(0), then), "full");
        let later = then + AGE_MAX;
        assert!(w.add(b"new", owner(0), later), "old entries make room");
        assert_eq!(w.len(), 1);
        assert!(w.take(b"f", later).is_empty());
    }
}
