//! A network namespace held by a file descriptor of this process alone:
//! nothing names it in /run/netns, so when the process dies, however it
//! dies, the kernel tears it down with everything in it (the vserver's
//! interface and addresses leave the wire with the node process).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use rustix::fs::{Mode, OFlags};
use rustix::thread::{LinkNameSpaceType, UnshareFlags};

pub struct NetNs {
    fd: OwnedFd,
}

impl NetNs {
    /// A new, empty namespace (only `lo`, down).
    pub fn new() -> io::Result<NetNs> {
        // A thread of its own enters it: the rest of the process stays in
        // the node's namespace.
        std::thread::scope(|scope| {
            scope
                .spawn(|| -> io::Result<NetNs> {
                    // SAFETY: CLONE_NEWNET changes only this thread's
                    // network namespace, which ends with the thread.
                    unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNET)? };
                    let fd = rustix::fs::open(
                        "/proc/thread-self/ns/net",
                        OFlags::RDONLY | OFlags::CLOEXEC,
                        Mode::empty(),
                    )?;
                    Ok(NetNs { fd })
                })
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the namespace thread panicked")))
        })
    }

    /// Runs `f` on a thread inside the namespace: sockets it opens, and
    /// /proc/sys/net it writes, are the namespace's.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> io::Result<T> {
        let fd = self.fd.as_fd();
        std::thread::scope(|scope| {
            scope
                .spawn(move || -> io::Result<T> {
                    rustix::thread::move_into_link_name_space(fd, Some(LinkNameSpaceType::Network))?;
                    Ok(f())
                })
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("a thread in the vserver's namespace panicked")))
        })
    }

    /// A command that runs inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let raw = self.fd.as_raw_fd();
        let mut command = Command::new(program);
        // SAFETY: setns is async-signal-safe; the descriptor stays open in
        // the child until exec (it is close-on-exec).
        unsafe {
            command.pre_exec(move || {
                let fd = BorrowedFd::borrow_raw(raw);
                rustix::thread::move_into_link_name_space(fd, Some(LinkNameSpaceType::Network))
                    .map_err(io::Error::from)
            });
        }
        command
    }

    /// A path by which another process of this host opens the namespace
    /// (for `ip link ... netns PATH`), valid while this value lives.
    pub fn path(&self) -> String {
        format!("/proc/{}/fd/{}", std::process::id(), self.fd.as_raw_fd())
    }
}
