//! The cluster's decisions, as pure code: which vservers this node should
//! start, prepare, hand off, take over or stop; where a vserver goes when
//! its node fails or is drained; what each transfer writes to the store.
//!
//! *Architecture invariant:* no I/O, no clock, no runtime here. A [`View`]
//! (the records, node liveness, what this node runs, the time as a value)
//! goes in; [`Action`]s come out. The node's controller carries them out
//! and reads the store again; the [`sim`] carries them out against a model
//! of the store, with faults, and checks the invariants after every step.

pub mod decide;
pub mod fence;
pub mod placement;
pub mod rebalance;
pub mod records;
pub mod sim;

pub use decide::{decide, is_up, must_fence, on_failure, Action, FailureAction, Local, View, Why};
pub use fence::Fence;
