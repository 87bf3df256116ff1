//! Who a request acts as, and switching the executing thread to it.
//!
//! When the server runs as root it performs namespace changes with the
//! client's (squashed) identity, so the kernel enforces permissions and new
//! files get the right owner. Linux keeps fsuid, fsgid and supplementary
//! groups per thread when set with the raw system calls (glibc's wrappers
//! for setgroups would change every thread), which is what this module uses.

use std::cell::RefCell;

use crate::config::{ClientRule, Squash};

/// The identity a request acts as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Creds {
    pub uid: u32,
    pub gid: u32,
    pub gids: Vec<u32>,
}

impl Creds {
    pub const ROOT: Creds = Creds { uid: 0, gid: 0, gids: Vec::new() };

    pub fn anonymous(rule: &ClientRule) -> Creds {
        Creds { uid: rule.anon_uid, gid: rule.anon_gid, gids: Vec::new() }
    }

    /// Applies an export rule's squashing to what the client claimed.
    pub fn squashed(&self, rule: &ClientRule) -> Creds {
        match rule.squash {
            Squash::All => Creds::anonymous(rule),
            Squash::Root if self.uid == 0 => Creds::anonymous(rule),
            Squash::Root | Squash::None => self.clone(),
        }
    }

    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.gids.contains(&gid)
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Creds>> = const { RefCell::new(None) };
}

/// Whether this process may switch identities (it runs as root).
pub fn can_switch() -> bool {
    static ROOT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ROOT.get_or_init(|| rustix::process::geteuid().is_root())
}

/// Makes the calling thread act as `creds` for filesystem access. A no-op
/// when the thread already does, or when the process is not root.
pub fn assume(creds: &Creds) {
    if !can_switch() {
        return;
    }
    CURRENT.with(|current| {
        let mut current = current.borrow_mut();
        if current.as_ref() == Some(creds) {
            return;
        }
        // SAFETY: plain system calls on the calling thread's credentials;
        // the gid list outlives the call.
        unsafe {
            libc::syscall(libc::SYS_setgroups, creds.gids.len(), creds.gids.as_ptr());
            libc::syscall(libc::SYS_setfsgid, creds.gid);
            libc::syscall(libc::SYS_setfsuid, creds.uid);
        }
        *current = Some(creds.clone());
    });
}
