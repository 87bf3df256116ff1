//! Self-fencing: a node serves only while its session in the store is
//! fresh. It stops answering calls when it could not renew for half a
//! lease — before the other nodes, which wait a whole lease, may declare it
//! down and take its vservers — and after any stall (a frozen process, a
//! store that did not answer) it drops every vserver and takes back only
//! those the store still gives it, once a renewal that began after it
//! dropped them proves its session alive. (Serving again on the strength
//! of the fence alone let a node whose renewals hung take vservers back
//! while the others, rightly, took them over: the simulation found it.)

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub struct Fence {
    origin: Instant,
    lease: Duration,
    /// Calls may be answered until then (ms since `origin`).
    valid_until_ms: AtomicU64,
    /// A renewal came after the validity had lapsed: the controller must
    /// drop every vserver before serving again.
    stalled: AtomicBool,
    /// When the node last dropped everything (`u64::MAX`: never). Only a
    /// renewal that began after it makes the node fresh again.
    fenced_at_ms: AtomicU64,
}

impl Fence {
    pub fn new(lease: Duration) -> Fence {
        let fence = Fence {
            origin: Instant::now(),
            lease,
            valid_until_ms: AtomicU64::new(0),
            stalled: AtomicBool::new(false),
            fenced_at_ms: AtomicU64::new(u64::MAX),
        };
        fence.extend_from(fence.now_ms());
        fence
    }

    pub fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    fn extend_from(&self, started_ms: u64) {
        let until = started_ms + (self.lease / 2).as_millis() as u64;
        self.valid_until_ms.fetch_max(until, Ordering::SeqCst);
    }

    /// A renewal that began at `started_ms` succeeded.
    pub fn renewed(&self, started_ms: u64) {
        let lapsed = started_ms > self.valid_until_ms.load(Ordering::SeqCst);
        let since_fence = started_ms >= self.fenced_at_ms.load(Ordering::SeqCst);
        if lapsed && !since_fence {
            self.stalled.store(true, Ordering::SeqCst);
        } else {
            self.extend_from(started_ms);
        }
    }

    /// Whether calls may be answered now.
    pub fn serving(&self) -> bool {
        !self.stalled.load(Ordering::SeqCst) && self.now_ms() < self.valid_until_ms.load(Ordering::SeqCst)
    }

    pub fn stalled(&self) -> bool {
        self.stalled.load(Ordering::SeqCst)
    }

    /// After every vserver was dropped: serve again once a renewal that
    /// begins from now on succeeds.
    pub fn resume(&self) {
        self.fenced_at_ms.store(self.now_ms(), Ordering::SeqCst);
        self.stalled.store(false, Ordering::SeqCst);
    }
}

impl vnas_vserver::Lease for Fence {
    fn serving(&self) -> bool {
        Fence::serving(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lapses_and_stalls() {
        let fence = Fence::new(Duration::from_millis(100));
        assert!(fence.serving());
        std::thread::sleep(Duration::from_millis(70));
        assert!(!fence.serving(), "half a lease without renewal: no serving");
        // A renewal that started after the lapse (a stall): stay fenced.
        let before_fence = fence.now_ms();
        fence.renewed(before_fence);
        assert!(fence.stalled() && !fence.serving());
        std::thread::sleep(Duration::from_millis(2));
        fence.resume();
        assert!(!fence.stalled() && !fence.serving(), "dropping everything proves nothing");
        fence.renewed(before_fence);
        assert!(fence.stalled(), "a renewal that began before the fence is no proof");
        fence.resume();
        fence.renewed(fence.now_ms());
        assert!(fence.serving() && !fence.stalled(), "a renewal since the fence is");
    }
}
