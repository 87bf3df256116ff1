//! What a server counts: NFS calls by procedure, their errors and
//! latencies, bytes in and out. Plain atomics, read by whoever exports
//! them (the node's `/metrics`), and a snapshot that a vserver's next
//! owner starts from, so its counters continue across a move.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Upper bounds of the latency buckets, in seconds (Prometheus `le`).
pub const LATENCY_BUCKETS: [f64; 14] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
/// NFSv3 procedures, by number (RFC 1813).
pub const PROCEDURES: [&str; 22] = [
    "null",
    "getattr",
    "setattr",
    "lookup",
    "access",
    "readlink",
    "read",
    "write",
    "create",
    "mkdir",
    "symlink",
    "mknod",
    "remove",
    "rmdir",
    "rename",
    "link",
    "readdir",
    "readdirplus",
    "fsstat",
    "fsinfo",
    "pathconf",
    "commit",
];

#[derive(Default)]
struct Procedure {
    calls: AtomicU64,
    errors: AtomicU64,
    /// Calls at or under each bucket's bound (not cumulative here).
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_sum_ns: AtomicU64,
}

/// A server's counters.
#[derive(Default)]
pub struct Stats {
    procedures: [Procedure; PROCEDURES.len()],
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

/// One procedure's counters as read.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcedureSnapshot {
    pub calls: u64,
    pub errors: u64,
    /// Cumulative counts per bucket of [`LATENCY_BUCKETS`] (then +Inf is
    /// `calls`).
    pub buckets: Vec<u64>,
    pub latency_sum_seconds: f64,
}

/// All of a server's counters as read; what the next owner starts from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    /// By procedure name; procedures never called are left out.
    pub procedures: std::collections::BTreeMap<String, ProcedureSnapshot>,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl Stats {
    /// Counters that start where `snapshot` left them.
    pub fn from_snapshot(snapshot: &StatsSnapshot) -> Stats {
        let stats = Stats::default();
        stats.restore(snapshot);
        stats
    }

    /// Sets every counter to `snapshot`'s values (a prepared server, before
    /// it answers anything, takes its source's final counters).
    pub fn restore(&self, snapshot: &StatsSnapshot) {
        for (i, name) in PROCEDURES.iter().enumerate() {
            let p = &self.procedures[i];
            let Some(seen) = snapshot.procedures.get(*name) else {
                p.calls.store(0, Ordering::Relaxed);
                p.errors.store(0, Ordering::Relaxed);
                p.latency_sum_ns.store(0, Ordering::Relaxed);
                p.buckets.iter().for_each(|b| b.store(0, Ordering::Relaxed));
                continue;
            };
            p.calls.store(seen.calls, Ordering::Relaxed);
            p.errors.store(seen.errors, Ordering::Relaxed);
            p.latency_sum_ns.store((seen.latency_sum_seconds * 1e9) as u64, Ordering::Relaxed);
            let mut below = 0;
            for (bucket, cumulative) in p.buckets.iter().zip(&seen.buckets) {
                bucket.store(cumulative.saturating_sub(below), Ordering::Relaxed);
                below = *cumulative;
            }
        }
        self.bytes_in.store(snapshot.bytes_in, Ordering::Relaxed);
        self.bytes_out.store(snapshot.bytes_out, Ordering::Relaxed);
    }

    /// One NFS call of procedure `proc_`: how long it ran, whether it
    /// failed (an error status or no result at all).
    pub fn call(&self, proc_: usize, took: Duration, failed: bool) {
        let Some(p) = self.procedures.get(proc_) else { return };
        p.calls.fetch_add(1, Ordering::Relaxed);
        if failed {
            p.errors.fetch_add(1, Ordering::Relaxed);
        }
        let seconds = took.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|bound| seconds <= *bound) {
            p.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        p.latency_sum_ns.fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Bytes of a call received and of its reply sent.
    pub fn bytes(&self, received: usize, sent: usize) {
        self.bytes_in.fetch_add(received as u64, Ordering::Relaxed);
        self.bytes_out.fetch_add(sent as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let mut procedures = std::collections::BTreeMap::new();
        for (i, name) in PROCEDURES.iter().enumerate() {
            let p = &self.procedures[i];
            let calls = p.calls.load(Ordering::Relaxed);
            if calls == 0 {
                continue;
            }
            let mut cumulative = 0;
            let buckets = p
                .buckets
                .iter()
                .map(|b| {
                    cumulative += b.load(Ordering::Relaxed);
                    cumulative
                })
                .collect();
            procedures.insert(
                name.to_string(),
                ProcedureSnapshot {
                    calls,
                    errors: p.errors.load(Ordering::Relaxed),
                    buckets,
                    latency_sum_seconds: p.latency_sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
                },
            );
        }
        StatsSnapshot {
            procedures,
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_continues_from_a_snapshot() {
        let stats = Stats::default();
        stats.call(6, Duration::from_micros(300), false);
        stats.call(6, Duration::from_millis(30), true);
        stats.call(7, Duration::from_secs(5), false);
        stats.bytes(100, 4196);
        let seen = stats.snapshot();
        let read = &seen.procedures["read"];
        assert_eq!((read.calls, read.errors), (2, 1));
        // 0.3 ms is in the 0.5 ms bucket and above; 30 ms from 50 ms on.
        assert_eq!(read.buckets[1], 0);
        assert_eq!(read.buckets[2], 1);
        assert_eq!(read.buckets[8], 2);
        assert_eq!(seen.procedures["write"].buckets.last(), Some(&0), "5 s is only in +Inf");
        assert_eq!((seen.bytes_in, seen.bytes_out), (100, 4196));
        let next = Stats::from_snapshot(&seen);
        let again = next.snapshot();
        assert_eq!((again.procedures["read"].buckets.clone(), again.bytes_in), (read.buckets.clone(), 100));
        assert!((again.procedures["write"].latency_sum_seconds - 5.0).abs() < 1e-6);
        next.call(6, Duration::from_micros(300), false);
        assert_eq!(next.snapshot().procedures["read"].calls, 3);
    }
}
