//! Self-fencing on this node: the rules of `vnas_cluster::Fence` (the ones
//! the simulation checks) on the process's monotonic clock, which runs on
//! while the process is frozen. The gate of every vserver asks it before
//! each call and again before each reply, so a process that thaws answers
//! nothing until a renewal begun after the thaw proves its session alive
//! and the controller has dropped whatever others may have taken.

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Fence {
    origin: Instant,
    rules: Mutex<vnas_cluster::Fence>,
}

impl Fence {
    pub fn new(lease: Duration) -> Fence {
        Fence {
            origin: Instant::now(),
            rules: Mutex::new(vnas_cluster::Fence::new(lease.as_millis() as u64, 0)),
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    fn rules(&self) -> std::sync::MutexGuard<'_, vnas_cluster::Fence> {
        self.rules.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A renewal that began at `started_ms` succeeded.
    pub fn renewed(&self, started_ms: u64) {
        self.rules().renewed(started_ms)
    }

    /// Whether calls may be answered now.
    pub fn serving(&self) -> bool {
        let now = self.now_ms();
        self.rules().serving(now)
    }

    pub fn stalled(&self) -> bool {
        self.rules().stalled()
    }

    /// After every vserver was dropped: serve again once a renewal that
    /// begins from now on succeeds.
    pub fn resume(&self) {
        let now = self.now_ms();
        self.rules().resume(now)
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
    fn lapses_and_stalls_on_the_real_clock() {
        let fence = Fence::new(Duration::from_millis(100));
        assert!(fence.serving());
        std::thread::sleep(Duration::from_millis(70));
        assert!(!fence.serving(), "half a lease without renewal: no serving");
        let before_fence = fence.now_ms();
        fence.renewed(before_fence);
        assert!(fence.stalled() && !fence.serving());
        std::thread::sleep(Duration::from_millis(2));
        fence.resume();
        assert!(!fence.stalled() && !fence.serving(), "dropping everything proves nothing");
        fence.renewed(before_fence);
        assert!(!fence.serving(), "a renewal that began before the fence is no proof");
        fence.renewed(fence.now_ms());
        assert!(fence.serving() && !fence.stalled(), "a renewal since the fence is");
    }
}
