//! Self-fencing, as pure rules over a node's own clock (milliseconds as
//! values): when a node may answer calls, and when it must drop every
//! vserver. The node (`vnas::node::fence`) keeps one [`Fence`] behind its
//! clock; the simulation keeps one per simulated node; both run these
//! rules, so a regression seed tests what the node runs.
//!
//! - A renewal that began at `t` proves the session alive until
//!   `t + lease / 2`: calls are answered only before that, which is before
//!   the other nodes (who wait a whole lease) may take the vservers over.
//! - A renewal that began after the validity lapsed is no proof: the node
//!   stalled (a frozen process, a store that did not answer), others may
//!   own its vservers now, so it must drop them all ([`Fence::stalled`]).
//! - Once it dropped them ([`Fence::resume`]), only a renewal that began
//!   after that makes it fresh again; from then on it is an ordinary fresh
//!   node, and its next lapse is a stall like the first. (Remembering the
//!   fence for ever let a node frozen a second time count its first
//!   renewal after the thaw as proof: it answered calls for vservers
//!   another node had taken meanwhile.)

/// One node's fence, in that node's clock (ms).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    half_lease_ms: u64,
    /// Calls may be answered until then.
    valid_until_ms: u64,
    /// A renewal came after the validity had lapsed: every vserver must
    /// be dropped before the node serves again.
    stalled: bool,
    /// The node dropped everything then and waits for a renewal that
    /// began since.
    fenced_at_ms: Option<u64>,
}

impl Fence {
    /// A node that starts at `now_ms` (it proved its session by opening it).
    pub fn new(lease_ms: u64, now_ms: u64) -> Fence {
        let half_lease_ms = lease_ms / 2;
        Fence { half_lease_ms, valid_until_ms: now_ms + half_lease_ms, stalled: false, fenced_at_ms: None }
    }

    /// A renewal that began at `started_ms` succeeded.
    pub fn renewed(&mut self, started_ms: u64) {
        match self.fenced_at_ms {
            // Waiting for proof: only a renewal begun since the fence.
            Some(fenced) if started_ms >= fenced => {
                self.fenced_at_ms = None;
                self.stalled = false;
                self.valid_until_ms = self.valid_until_ms.max(started_ms + self.half_lease_ms);
            }
            Some(_) => {}
            None if started_ms > self.valid_until_ms => self.stalled = true,
            None if !self.stalled => {
                self.valid_until_ms = self.valid_until_ms.max(started_ms + self.half_lease_ms)
            }
            None => {}
        }
    }

    /// Whether calls may be answered at `now_ms`.
    pub fn serving(&self, now_ms: u64) -> bool {
        !self.stalled && self.fenced_at_ms.is_none() && now_ms < self.valid_until_ms
    }

    /// Whether the node must drop every vserver before serving again.
    pub fn stalled(&self) -> bool {
        self.stalled
    }

    /// Every vserver was dropped at `now_ms`: serve again once a renewal
    /// that begins from now on succeeds.
    pub fn resume(&mut self, now_ms: u64) {
        self.stalled = false;
        self.fenced_at_ms = Some(now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lapse_stops_serving() {
        let mut fence = Fence::new(100, 0);
        assert!(fence.serving(49) && !fence.serving(50), "half a lease");
        fence.renewed(40);
        assert!(fence.serving(89) && !fence.serving(90));
        // A renewal begun before an earlier one's end extends, never shortens.
        fence.renewed(10);
        assert!(fence.serving(89));
    }

    #[test]
    fn a_stall_needs_a_fence_and_a_renewal_since() {
        let mut fence = Fence::new(100, 0);
        fence.renewed(70);
        assert!(fence.stalled() && !fence.serving(70), "a renewal begun after the lapse");
        fence.resume(80);
        assert!(!fence.stalled() && !fence.serving(80), "dropping everything proves nothing");
        fence.renewed(75);
        assert!(!fence.serving(85), "a renewal begun before the fence is no proof");
        fence.renewed(81);
        assert!(fence.serving(85) && !fence.stalled(), "one begun since is");
    }

    /// The bug the bed found: a node frozen a second time served again on
    /// its first renewal after the thaw, without dropping its vservers.
    #[test]
    fn every_stall_counts_not_only_the_first() {
        let mut fence = Fence::new(100, 0);
        fence.renewed(70);
        fence.resume(80);
        fence.renewed(90);
        assert!(fence.serving(100));
        fence.renewed(120);
        assert!(fence.serving(150));
        // Frozen from 150 to 1,650; its first renewal begins at the thaw.
        fence.renewed(1_650);
        assert!(fence.stalled() && !fence.serving(1_651), "the second stall is a stall too");
        fence.resume(1_660);
        fence.renewed(1_670);
        assert!(fence.serving(1_680));
    }

    /// A stalled node stays stalled whatever renewals come, until it fences.
    #[test]
    fn stalled_until_resumed() {
        let mut fence = Fence::new(100, 0);
        fence.renewed(60);
        fence.renewed(61);
        fence.renewed(62);
        assert!(fence.stalled() && !fence.serving(63));
    }
}
