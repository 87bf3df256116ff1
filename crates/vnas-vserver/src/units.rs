//! Logical units: block volumes holding a filesystem (ext4, XFS) that only
//! the vserver's owner mounts, as NAS heads on a SAN do.
//!
//! Activating a vserver mounts each unit (the kernel replays the journal as
//! it mounts) at a mount point of this node; handing it over or stopping
//! it unmounts it after the final sync. Nodes run in mount namespaces of
//! their own (see `vnas node run`), so a node's mounts die with it.
//!
//! The guard on the unit itself: the owner writes its node, vserver and
//! epoch into an extended attribute of the filesystem's root
//! (`trusted.vnas.unit`, invisible to NFS clients), and a node refuses a
//! unit that shows a newer epoch than the one it activates with. It reads
//! the guard before mounting for writing, through a read-only mount that
//! neither replays the journal nor writes (ext4 `noload`, XFS
//! `norecovery`); after writing the guard, a freeze and thaw puts it in
//! its home location, where such a mount finds it.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::mount::{MountFlags, UnmountFlags};
use serde::{Deserialize, Serialize};
use vnas_store::{Volume, VolumeKind};

use crate::volumes::{Claim, Directories, Volumes};

/// The filesystems a unit may hold.
pub const UNIT_FILESYSTEMS: [&str; 2] = ["ext4", "xfs"];
const GUARD: &str = "trusted.vnas.unit";
/// How long an unmount may be refused as busy before the mount is detached.
const UNMOUNT_PATIENCE: Duration = Duration::from_secs(2);

/// How long a fence command may take.
const FENCE_TIMEOUT: Duration = Duration::from_secs(60);

/// What a unit's guard says: who mounted it last, under which epoch, and
/// whether it unmounted it (after its final sync).
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Guard {
    pub node: String,
    pub vserver: String,
    pub epoch: u64,
    #[serde(default)]
    pub released: bool,
}

/// Directories as they are, units mounted under `root` (one directory per
/// unit, named after its device path).
pub struct Units {
    node: String,
    root: PathBuf,
    /// Run before mounting a unit whose guard shows another node that
    /// never released it (dead, frozen or cut off): it must make sure that
    /// node writes nothing more to the unit (power it off, revoke its
    /// SCSI-3 persistent reservation). Exit status 0: done.
    fence_command: Option<String>,
}

impl Units {
    pub fn new(node: &str, root: impl Into<PathBuf>, fence_command: Option<String>) -> Units {
        Units { node: node.to_string(), root: root.into(), fence_command }
    }

    /// Fences `guard.node` for `device`, by the fence command; the outcome
    /// for the history, or why the unit must not be mounted.
    fn fence(&self, device: &str, guard: &Guard) -> Result<String, String> {
        let Some(command) = &self.fence_command else {
            tracing::warn!(unit = %device, node = %guard.node,
                "unit not released by its last owner and no fence command is set: trusting its lease");
            return Ok(format!("{} not fenced (no fence command; its lease had expired)", guard.node));
        };
        let started = Instant::now();
        let mut child = std::process::Command::new("sh")
            .args(["-c", command])
            .env("VNAS_FENCE_NODE", &guard.node)
            .env("VNAS_FENCE_UNIT", device)
            .env("VNAS_FENCE_VSERVER", &guard.vserver)
            .env("VNAS_FENCE_EPOCH", guard.epoch.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("fence command: {e}"))?;
        let status = loop {
            if let Some(status) = child.try_wait().map_err(|e| format!("fence command: {e}"))? {
                break status;
            }
            if started.elapsed() > FENCE_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("fencing {} timed out after {FENCE_TIMEOUT:?}", guard.node));
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let ms = started.elapsed().as_millis();
        if !status.success() {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
            }
            let last = stderr.lines().last().unwrap_or("").trim().to_string();
            return Err(format!("fencing {} failed ({status}): {last}", guard.node));
        }
        tracing::warn!(unit = %device, node = %guard.node, ms = ms as u64, "previous owner fenced");
        Ok(format!("{} fenced in {ms} ms", guard.node))
    }

    /// Where this node mounts `device`.
    pub fn mount_point(&self, device: &str) -> PathBuf {
        self.root.join(device.trim_start_matches('/').replace('/', "-"))
    }

    fn mount(&self, volume: &Volume, claim: &Claim) -> Result<PathBuf, String> {
        let device = &volume.path;
        let unit = |what: String| format!("unit {device}: {what}");
        match std::fs::metadata(device) {
            Ok(meta) if meta.file_type().is_block_device() => {}
            Ok(_) => return Err(unit("not a block device".into())),
            Err(error) => return Err(unit(error.to_string())),
        }
        // A path whose device is gone (a LUN unmapped, a loop device
        // detached) still opens, with nothing behind it.
        let size = std::fs::File::open(device)
            .and_then(|mut file| std::io::Seek::seek(&mut file, std::io::SeekFrom::End(0)))
            .map_err(|e| unit(format!("cannot open it: {e}")))?;
        if size == 0 {
            return Err(unit("no medium: the device has size 0".into()));
        }
        let fstype = match &volume.fstype {
            Some(fstype) => fstype.clone(),
            None => detect(device).map_err(unit)?,
        };
        if !UNIT_FILESYSTEMS.contains(&fstype.as_str()) {
            return Err(unit(format!("holds {fstype}, not one of {}", UNIT_FILESYSTEMS.join(", "))));
        }
        let target = self.mount_point(device);
        std::fs::create_dir_all(&target)
            .map_err(|e| unit(format!("mount point {}: {e}", target.display())))?;
        if let Some(guard) = self.peek(device, &fstype, &target).map_err(unit)? {
            if guard.epoch > claim.epoch {
                return Err(unit(format!(
                    "its guard shows epoch {} (node {}, vserver {}), newer than this activation's {}: \
                     not mounting it",
                    guard.epoch, guard.node, guard.vserver, claim.epoch
                )));
            }
            if !guard.released && guard.node != self.node {
                let outcome = self.fence(device, &guard).map_err(|e| {
                    unit(format!(
                        "last mounted by {} (epoch {}) and not released; {e}",
                        guard.node, guard.epoch
                    ))
                })?;
                claim.notes.lock().unwrap().push(outcome);
            }
        }
        rustix::mount::mount(device.as_str(), &target, fstype.as_str(), MountFlags::NOATIME, None)
            .map_err(|e| unit(format!("mount ({fstype}) failed: {e}")))?;
        let guard = Guard {
            node: self.node.clone(),
            vserver: claim.vserver.clone(),
            epoch: claim.epoch,
            released: false,
        };
        if let Err(error) = write_guard(&target, &guard, true) {
            let _ = rustix::mount::unmount(&target, UnmountFlags::empty());
            return Err(unit(format!("writing its guard: {error}")));
        }
        claim.applied.lock().unwrap().push(format!("unit {device} {fstype} {}", target.display()));
        Ok(target)
    }

    /// The guard as it is on the unit, read through a mount that writes
    /// nothing (no journal replay).
    fn peek(&self, device: &str, fstype: &str, target: &Path) -> Result<Option<Guard>, String> {
        let peek = target.with_extension("peek");
        std::fs::create_dir_all(&peek).map_err(|e| format!("{}: {e}", peek.display()))?;
        let options = if fstype == "xfs" { c"norecovery" } else { c"noload" };
        rustix::mount::mount(device, &peek, fstype, MountFlags::RDONLY, options)
            .map_err(|e| format!("mount ({fstype}, read-only) failed: {e}"))?;
        let guard = read_guard(&peek);
        let _ = rustix::mount::unmount(&peek, UnmountFlags::empty());
        guard
    }
}

/// The guard on the filesystem mounted at `root`, if any.
pub fn read_guard(root: &Path) -> Result<Option<Guard>, String> {
    let mut buf = vec![0u8; 512];
    match rustix::fs::getxattr(root, GUARD, &mut buf[..]) {
        Ok(n) => serde_json::from_slice(&buf[..n]).map(Some).map_err(|e| format!("unreadable guard: {e}")),
        Err(rustix::io::Errno::NODATA) => Ok(None),
        Err(error) => Err(format!("reading its guard: {error}")),
    }
}

/// Writes the guard; with `checkpoint`, also to its home location at once
/// (a release needs not: the unmount that follows checkpoints the journal).
fn write_guard(root: &Path, guard: &Guard, checkpoint: bool) -> Result<(), String> {
    let value = serde_json::to_vec(guard).expect("guards serialize");
    rustix::fs::setxattr(root, GUARD, &value, rustix::fs::XattrFlags::empty()).map_err(|e| e.to_string())?;
    if !checkpoint {
        return Ok(());
    }
    let dir = rustix::fs::open(root, rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY, 0.into())
        .map_err(|e| e.to_string())?;
    rustix::fs::syncfs(&dir).map_err(|e| e.to_string())?;
    // A freeze checkpoints the journal: the guard reaches its home
    // location, where a mount without journal replay reads it.
    freeze(&dir, true).map_err(|e| format!("freeze: {e}"))?;
    freeze(&dir, false).map_err(|e| format!("thaw: {e}"))
}

fn freeze(dir: &impl rustix::fd::AsFd, freeze: bool) -> rustix::io::Result<()> {
    const FIFREEZE: rustix::ioctl::Opcode = rustix::ioctl::opcode::read_write::<i32>(b'X', 119);
    const FITHAW: rustix::ioctl::Opcode = rustix::ioctl::opcode::read_write::<i32>(b'X', 120);
    let mut arg = 0i32;
    // SAFETY: both take an int they do not use.
    unsafe {
        if freeze {
            rustix::ioctl::ioctl(dir, rustix::ioctl::Updater::<FIFREEZE, i32>::new(&mut arg))
        } else {
            rustix::ioctl::ioctl(dir, rustix::ioctl::Updater::<FITHAW, i32>::new(&mut arg))
        }
    }
}

/// The filesystem on `device`, as blkid probes it (no cache).
fn detect(device: &str) -> Result<String, String> {
    let output = std::process::Command::new("blkid")
        .args(["-p", "-o", "value", "-s", "TYPE", device])
        .output()
        .map_err(|e| format!("blkid: {e}"))?;
    let fstype = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if fstype.is_empty() {
        return Err("no filesystem found on it (blkid)".into());
    }
    Ok(fstype)
}

impl Volumes for Units {
    fn attach(&self, volume: &Volume, claim: &Claim) -> Result<PathBuf, String> {
        match volume.kind {
            VolumeKind::Dir => Directories.attach(volume, claim),
            VolumeKind::Block => {
                let started = Instant::now();
                let target = self.mount(volume, claim)?;
                tracing::info!(vserver = %claim.vserver, unit = %volume.path, mount = %target.display(),
                    ms = started.elapsed().as_millis() as u64, "unit mounted");
                Ok(target)
            }
        }
    }

    fn present(&self, volume: &Volume) -> bool {
        use std::os::unix::fs::MetadataExt;
        match volume.kind {
            VolumeKind::Dir => Directories.present(volume),
            VolumeKind::Block => {
                let device = std::fs::metadata(&volume.path).map(|m| m.rdev());
                let mounted = std::fs::metadata(self.mount_point(&volume.path)).map(|m| m.dev());
                matches!((device, mounted), (Ok(d), Ok(m)) if d == m)
            }
        }
    }

    fn sync(&self, volume: &Volume) {
        match volume.kind {
            VolumeKind::Dir => Directories.sync(volume),
            VolumeKind::Block => {
                if let Ok(dir) = std::fs::File::open(self.mount_point(&volume.path)) {
                    let _ = rustix::fs::syncfs(&dir);
                }
            }
        }
    }

    fn detach(&self, volume: &Volume) {
        if volume.kind != VolumeKind::Block || !self.present(volume) {
            return;
        }
        let target = self.mount_point(&volume.path);
        let started = Instant::now();
        // Released: the next owner need not fence this node.
        match read_guard(&target) {
            Ok(Some(mut guard)) if guard.node == self.node => {
                guard.released = true;
                if let Err(error) = write_guard(&target, &guard, false) {
                    tracing::error!(unit = %volume.path, %error, "cannot mark the unit released");
                }
            }
            _ => {}
        }
        loop {
            match rustix::mount::unmount(&target, UnmountFlags::empty()) {
                Ok(()) => {
                    tracing::info!(unit = %volume.path, ms = started.elapsed().as_millis() as u64, "unit unmounted");
                    return;
                }
                Err(rustix::io::Errno::BUSY) if started.elapsed() < UNMOUNT_PATIENCE => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(error) => {
                    // Detached from this node's tree; the kernel finishes
                    // when the last file closes.
                    let _ = rustix::mount::unmount(&target, UnmountFlags::DETACH);
                    tracing::error!(unit = %volume.path, %error, "unit still busy: detached lazily");
                    return;
                }
            }
        }
    }
}
