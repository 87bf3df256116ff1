//! How a vserver's volumes come to this node and leave it.

use std::path::PathBuf;

use vnas_store::Volume;

/// Who attaches a volume: the vserver and the ownership epoch it is
/// activated under (written to a unit's guard).
#[derive(Debug, Default)]
pub struct Claim {
    pub vserver: String,
    pub epoch: u64,
    /// What attaching took that the transfer's history should tell (a
    /// previous owner fenced).
    pub notes: std::sync::Mutex<Vec<String>>,
    /// Units as mounted (device, filesystem, mount point), for the
    /// service state.
    pub applied: std::sync::Mutex<Vec<String>>,
}

/// The storage side of a vserver: make each volume of its mount table
/// available here, flush it, give it up.
pub trait Volumes: Send + Sync {
    /// Where the volume's files are on this node.
    fn attach(&self, volume: &Volume, claim: &Claim) -> Result<PathBuf, String>;
    /// Whether an attached volume is still there (for the monitor).
    fn present(&self, volume: &Volume) -> bool;
    /// Makes what clients wrote reach stable storage (before a hand-off).
    fn sync(&self, volume: &Volume);
    /// After the server stopped: the volume leaves this node.
    fn detach(&self, volume: &Volume);
}

/// The embedded default: volumes are directories every node reaches.
pub struct Directories;

impl Volumes for Directories {
    fn attach(&self, volume: &Volume, _claim: &Claim) -> Result<PathBuf, String> {
        Ok(PathBuf::from(&volume.path))
    }

    fn present(&self, volume: &Volume) -> bool {
        std::fs::metadata(&volume.path).map(|m| m.is_dir()).unwrap_or(false)
    }

    fn sync(&self, volume: &Volume) {
        if let Ok(dir) = std::fs::File::open(&volume.path) {
            let _ = rustix::fs::syncfs(&dir);
        }
    }

    fn detach(&self, _volume: &Volume) {}
}
