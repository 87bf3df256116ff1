//! Lock state: the table (pure, `vnas_locks`), the kernel's copy, the manager that
//! records and answers, and the calls back to clients.

mod callback;
mod kernel;
mod manager;

pub use callback::{run_callbacks, Connector};
pub use kernel::{KernelLocks, Taken};
pub use manager::{no_kernel, Callback, LockCounters, LockJournal, LockManager, LockStats, NotRecorded};
pub use vnas_locks::{
    hex, unhex, Client, FileLocks, Grant, Limits, Lock, LockTable, Outcome, Owner, Range, Share,
    ShareOutcome, Waiter,
};
