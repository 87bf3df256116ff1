//! The directory backend: the common volume as a directory every node can
//! reach (shared storage, or one machine's disk for a local cluster).
//!
//! Records are JSON files written atomically (temporary file, fsync,
//! rename, fsync of the directory). Changes that depend on what is stored
//! (uniqueness, compare-and-swap of the epoch) happen under an exclusive
//! flock on `store.lock`. A node's session is an flock on its own lock
//! file: the kernel releases it when the node's process dies.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{
    LoadReport, NodeInfo, NodeStatus, Ownership, ServiceState, Session, Store, StoreError, Transfer,
    VserverConfig, VserverRecord, FORMAT,
};

pub struct DirStore {
    root: PathBuf,
}

/// Transfers kept per vserver.
const HISTORY_MAX: usize = 1000;
/// A vserver's lock records: appended, the newest last.
const LOCK_LOG: &str = "locks.log";
/// The vserver's NFSv4 state, logged as its lock table is.
const NFS4_LOG: &str = "nfs4.log";
/// The NFSv4 clients holding state there, apart (who may reclaim).
const NFS4_CLIENTS_LOG: &str = "nfs4-clients.log";
/// Past this size the log is rewritten with its newest record alone.
const LOCK_LOG_MAX: u64 = 4 << 20;

#[derive(Serialize, Deserialize)]
struct Stored<T> {
    format: u32,
    data: T,
}

fn unavailable(what: &str, path: &Path, error: std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("{what} {}: {error}", path.display()))
}

/// Names become directory names: keep them plain.
pub fn check_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
        && !name.contains("..");
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidName(name.to_string()))
    }
}

impl DirStore {
    /// The newest record of one of a vserver's logs (its lock table,
    /// its NFSv4 state).
    fn read_log(&self, name: &str, log: &str) -> Result<Option<serde_json::Value>, StoreError> {
        check_name(name)?;
        if self.record(name)?.is_none() {
            return Err(StoreError::VserverNotFound(name.to_string()));
        }
        let path = self.vserver_dir(name).join(log);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(unavailable("cannot read", &path, e)),
        };
        // The newest whole record: the last line that parses. A line cut
        // short by a crash was never acknowledged (its sync never returned),
        // and the next record starts on a line of its own.
        let newest = bytes.split(|b| *b == b'\n').rev().filter(|line| !line.is_empty()).find_map(|line| {
            serde_json::from_slice::<Stored<serde_json::Value>>(line).ok().filter(|s| s.format == FORMAT)
        });
        match newest {
            Some(stored) => Ok(Some(stored.data)),
            None if bytes.iter().all(|b| *b == b'\n') => Ok(None),
            None => Err(StoreError::Corrupt {
                path: path.display().to_string(),
                reason: "no whole record in it".into(),
            }),
        }
    }

    fn append_log(
        &self,
        name: &str,
        log: &str,
        epoch: u64,
        data: &serde_json::Value,
    ) -> Result<(), StoreError> {
        check_name(name)?;
        let _lock = self.lock_vserver(name)?;
        let dir = self.vserver_dir(name);
        let ownership =
            self.read::<Ownership>(&dir.join("ownership.json"))?.unwrap_or_else(Ownership::unowned);
        if ownership.epoch != epoch {
            return Err(StoreError::StaleEpoch {
                name: name.to_string(),
                expected: epoch,
                actual: ownership.epoch,
            });
        }
        // One line, on a line of its own (after a record a crash cut short).
        let mut line = b"\n".to_vec();
        serde_json::to_writer(&mut line, &Stored { format: FORMAT, data }).expect("records serialize");
        line.push(b'\n');
        let path = dir.join(log);
        let size = fs::metadata(&path).map(|m| m.len()).ok();
        match size {
            // Appended and synced: one fdatasync, a third of a rewrite's
            // cost (a new file, its sync, a rename, the directory's sync).
            Some(size) if size + line.len() as u64 <= LOCK_LOG_MAX => {
                let append = || -> std::io::Result<()> {
                    let mut file = OpenOptions::new().append(true).open(&path)?;
                    file.write_all(&line)?;
                    file.sync_data()
                };
                append().map_err(|e| unavailable("cannot append to", &path, e))
            }
            // The first record, or a log grown long: rewritten with the
            // newest alone.
            _ => self.write_bytes(&path, &line),
        }
    }

    /// Opens (creating if needed) the store at `root`.
    /// Opens the store in `root`, which must exist: a missing one is a
    /// share not mounted yet (made here, it would be a store of this
    /// machine alone), so the store is unavailable until it is there.
    pub fn open(root: impl Into<PathBuf>) -> Result<DirStore, StoreError> {
        let root = root.into();
        if !root.is_dir() {
            return Err(StoreError::Unavailable(format!(
                "{} is not a directory (not made yet, or the share it is on not mounted)",
                root.display()
            )));
        }
        for dir in [root.join("nodes"), root.join("vservers")] {
            fs::create_dir_all(&dir).map_err(|e| unavailable("cannot create", &dir, e))?;
        }
        let store = DirStore { root };
        let format_path = store.root.join("format.json");
        match store.read::<u32>(&format_path)? {
            Some(_) => {}
            None => store.write(&format_path, &FORMAT)?,
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn vserver_dir(&self, name: &str) -> PathBuf {
        self.root.join("vservers").join(name)
    }

    /// Serializes changes to the set of vservers (names, addresses) across
    /// every process using the store.
    fn lock(&self) -> Result<File, StoreError> {
        self.lock_at(&self.root.join("store.lock"))
    }

    /// Serializes changes to one vserver's ownership and service state, so
    /// vservers change hands in parallel.
    fn lock_vserver(&self, name: &str) -> Result<File, StoreError> {
        let dir = self.vserver_dir(name);
        if !dir.join("config.json").exists() {
            return Err(StoreError::VserverNotFound(name.to_string()));
        }
        self.lock_at(&dir.join("owner.lock"))
    }

    fn lock_at(&self, path: &Path) -> Result<File, StoreError> {
        let path = path.to_path_buf();
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| unavailable("cannot open", &path, e))?;
        rustix::fs::flock(file.as_fd(), FlockOperation::LockExclusive)
            .map_err(|e| unavailable("cannot lock", &path, e.into()))?;
        Ok(file)
    }

    fn read<T: DeserializeOwned>(&self, path: &Path) -> Result<Option<T>, StoreError> {
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(unavailable("cannot read", path, e)),
        };
        let corrupt = |reason: String| StoreError::Corrupt { path: path.display().to_string(), reason };
        let stored: Stored<serde_json::Value> =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if stored.format != FORMAT {
            return Err(corrupt(format!("format {} is not {FORMAT}", stored.format)));
        }
        serde_json::from_value(stored.data).map(Some).map_err(|e| corrupt(e.to_string()))
    }

    /// Counts changes, so readers can tell nothing changed without reading
    /// every record. Bumped after each change, under that change's lock.
    /// A fresh random value rather than a counter: changes under different
    /// locks cannot race to the same value.
    fn bump_generation(&self) {
        let mut value = [0u8; 8];
        if getrandom::fill(&mut value).is_err() {
            return;
        }
        let path = self.root.join("generation");
        let tmp = self.root.join(format!(".generation-{:x}", u64::from_ne_bytes(value)));
        if fs::write(&tmp, u64::from_ne_bytes(value).to_string()).is_ok() {
            let _ = fs::rename(&tmp, &path);
        }
    }

    /// Replaces `path` with `bytes` durably (a new file synced, renamed over
    /// it, the directory synced).
    fn write_bytes(&self, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        let dir = path.parent().expect("records live in a directory");
        let mut suffix = [0u8; 8];
        getrandom::fill(&mut suffix).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let tmp = dir.join(format!(".tmp-{}", u64::from_ne_bytes(suffix)));
        let result = (|| {
            let mut file = File::create(&tmp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            fs::rename(&tmp, path)?;
            File::open(dir)?.sync_all()
        })();
        result.map_err(|e| {
            let _ = fs::remove_file(&tmp);
            unavailable("cannot write", path, e)
        })
    }

    fn write<T: Serialize>(&self, path: &Path, data: &T) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec_pretty(&Stored { format: FORMAT, data }).expect("records serialize");
        self.write_bytes(path, &bytes)
    }

    fn record(&self, name: &str) -> Result<Option<VserverRecord>, StoreError> {
        let dir = self.vserver_dir(name);
        let Some(config) = self.read::<VserverConfig>(&dir.join("config.json"))? else {
            return Ok(None);
        };
        let ownership = self.read(&dir.join("ownership.json"))?.unwrap_or_else(Ownership::unowned);
        let service = self.read(&dir.join("service.json"))?;
        Ok(Some(VserverRecord { config, ownership, service }))
    }

    fn history_at(&self, path: &Path) -> Result<Vec<Transfer>, StoreError> {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(unavailable("cannot read", path, e)),
        };
        let corrupt = |reason: String| StoreError::Corrupt { path: path.display().to_string(), reason };
        text.lines()
            .map(|line| {
                let stored: Stored<Transfer> =
                    serde_json::from_str(line).map_err(|e| corrupt(e.to_string()))?;
                if stored.format != FORMAT {
                    return Err(corrupt(format!("format {} is not {FORMAT}", stored.format)));
                }
                Ok(stored.data)
            })
            .collect()
    }

    fn names(&self) -> Result<Vec<String>, StoreError> {
        let dir = self.root.join("vservers");
        let mut names = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| unavailable("cannot list", &dir, e))? {
            let entry = entry.map_err(|e| unavailable("cannot list", &dir, e))?;
            if let Some(name) = entry.file_name().to_str() {
                if check_name(name).is_ok() {
                    names.push(name.to_string());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    /// Writes `config` over the vserver's, if that is still `expected`.
    fn replace_config(
        &self,
        config: &VserverConfig,
        expected: Option<&VserverConfig>,
    ) -> Result<(), StoreError> {
        check_name(&config.name)?;
        let _lock = self.lock()?;
        let Some(current) = self.record(&config.name)? else {
            return Err(StoreError::VserverNotFound(config.name.clone()));
        };
        if expected.is_some_and(|expected| *expected != current.config) {
            return Err(StoreError::ConfigChanged(config.name.clone()));
        }
        self.check_addresses(config)?;
        self.write(&self.vserver_dir(&config.name).join("config.json"), config)?;
        self.bump_generation();
        Ok(())
    }

    /// Names and addresses are unique: `config` may not reuse another
    /// vserver's address.
    fn check_addresses(&self, config: &VserverConfig) -> Result<(), StoreError> {
        for other in self.vservers()? {
            if other.config.name == config.name {
                continue;
            }
            let taken = |a: &&String| {
                other.config.addresses.iter().any(|o| crate::address_ip(o) == crate::address_ip(a))
            };
            if let Some(address) = config.addresses.iter().find(taken) {
                return Err(StoreError::AddressInUse {
                    address: address.clone(),
                    vserver: other.config.name,
                });
            }
        }
        Ok(())
    }
}

impl Store for DirStore {
    fn create_vserver(&self, config: &VserverConfig) -> Result<(), StoreError> {
        check_name(&config.name)?;
        let _lock = self.lock()?;
        if self.record(&config.name)?.is_some() {
            return Err(StoreError::VserverExists(config.name.clone()));
        }
        self.check_addresses(config)?;
        let dir = self.vserver_dir(&config.name);
        fs::create_dir_all(&dir).map_err(|e| unavailable("cannot create", &dir, e))?;
        // Leftovers of an earlier vserver of this name whose delete was cut short.
        let _ = fs::remove_file(dir.join("service.json"));
        self.write(&dir.join("ownership.json"), &Ownership::unowned())?;
        // The configuration last: its presence is what makes the vserver exist.
        self.write(&dir.join("config.json"), config)?;
        self.bump_generation();
        Ok(())
    }

    fn update_config(&self, config: &VserverConfig) -> Result<(), StoreError> {
        self.replace_config(config, None)
    }

    fn update_config_if(&self, expected: &VserverConfig, config: &VserverConfig) -> Result<(), StoreError> {
        self.replace_config(config, Some(expected))
    }

    fn delete_vserver(&self, name: &str) -> Result<(), StoreError> {
        check_name(name)?;
        let _lock = self.lock()?;
        let dir = self.vserver_dir(name);
        if self.record(name)?.is_none() {
            return Err(StoreError::VserverNotFound(name.to_string()));
        }
        let _owner = self.lock_vserver(name)?;
        // The configuration first: without it the vserver no longer exists,
        // whatever happens to the rest.
        fs::remove_file(dir.join("config.json")).map_err(|e| unavailable("cannot remove", &dir, e))?;
        fs::remove_dir_all(&dir).map_err(|e| unavailable("cannot remove", &dir, e))?;
        self.bump_generation();
        Ok(())
    }

    fn vserver(&self, name: &str) -> Result<VserverRecord, StoreError> {
        check_name(name)?;
        self.record(name)?.ok_or_else(|| StoreError::VserverNotFound(name.to_string()))
    }

    fn vservers(&self) -> Result<Vec<VserverRecord>, StoreError> {
        let mut records = Vec::new();
        for name in self.names()? {
            if let Some(record) = self.record(&name)? {
                records.push(record);
            }
        }
        Ok(records)
    }

    fn swap_ownership(&self, name: &str, expected_epoch: u64, new: &Ownership) -> Result<(), StoreError> {
        check_name(name)?;
        let _lock = self.lock_vserver(name)?;
        let record = self.record(name)?.ok_or_else(|| StoreError::VserverNotFound(name.to_string()))?;
        let actual = record.ownership.epoch;
        if actual != expected_epoch || new.epoch < actual {
            return Err(StoreError::StaleEpoch { name: name.to_string(), expected: expected_epoch, actual });
        }
        self.write(&self.vserver_dir(name).join("ownership.json"), new)?;
        self.bump_generation();
        Ok(())
    }

    fn put_service_state(&self, name: &str, state: &ServiceState) -> Result<(), StoreError> {
        check_name(name)?;
        let _lock = self.lock_vserver(name)?;
        let record = self.record(name)?.ok_or_else(|| StoreError::VserverNotFound(name.to_string()))?;
        if record.ownership.epoch != state.epoch {
            return Err(StoreError::StaleEpoch {
                name: name.to_string(),
                expected: state.epoch,
                actual: record.ownership.epoch,
            });
        }
        self.write(&self.vserver_dir(name).join("service.json"), state)?;
        self.bump_generation();
        Ok(())
    }

    fn locks(&self, name: &str) -> Result<Option<serde_json::Value>, StoreError> {
        self.read_log(name, LOCK_LOG)
    }

    fn put_locks(&self, name: &str, epoch: u64, locks: &serde_json::Value) -> Result<(), StoreError> {
        self.append_log(name, LOCK_LOG, epoch, locks)
    }

    fn nfs4_state(&self, name: &str) -> Result<Option<serde_json::Value>, StoreError> {
        self.read_log(name, NFS4_LOG)
    }

    fn put_nfs4_state(&self, name: &str, epoch: u64, state: &serde_json::Value) -> Result<(), StoreError> {
        self.append_log(name, NFS4_LOG, epoch, state)
    }

    fn nfs4_clients(&self, name: &str) -> Result<Option<serde_json::Value>, StoreError> {
        self.read_log(name, NFS4_CLIENTS_LOG)
    }

    fn put_nfs4_clients(
        &self,
        name: &str,
        epoch: u64,
        clients: &serde_json::Value,
    ) -> Result<(), StoreError> {
        self.append_log(name, NFS4_CLIENTS_LOG, epoch, clients)
    }

    fn generation(&self) -> Result<u64, StoreError> {
        let path = self.root.join("generation");
        match fs::read_to_string(&path) {
            Ok(text) => Ok(text.trim().parse().unwrap_or(0)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(unavailable("cannot read", &path, e)),
        }
    }

    fn append_history(&self, name: &str, entry: &Transfer) -> Result<(), StoreError> {
        check_name(name)?;
        let _lock = self.lock_vserver(name)?;
        let path = self.vserver_dir(name).join("history.jsonl");
        let mut entries = self.history_at(&path)?;
        entries.push(entry.clone());
        // Kept short: the last HISTORY_MAX transfers.
        let keep = entries.len().saturating_sub(HISTORY_MAX);
        let mut text = String::new();
        for entry in &entries[keep..] {
            text.push_str(
                &serde_json::to_string(&Stored { format: FORMAT, data: entry }).expect("serializes"),
            );
            text.push('\n');
        }
        let dir = self.vserver_dir(name);
        let tmp = dir.join(".history.tmp");
        let result = (|| {
            let mut file = File::create(&tmp)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            fs::rename(&tmp, &path)?;
            File::open(&dir)?.sync_all()
        })();
        result.map_err(|e| unavailable("cannot write", &path, e))?;
        self.bump_generation();
        Ok(())
    }

    fn history(&self, name: &str) -> Result<Vec<Transfer>, StoreError> {
        check_name(name)?;
        if self.record(name)?.is_none() {
            return Err(StoreError::VserverNotFound(name.to_string()));
        }
        self.history_at(&self.vserver_dir(name).join("history.jsonl"))
    }

    fn set_drained(&self, node: &str, drained: bool) -> Result<(), StoreError> {
        check_name(node)?;
        let nodes = self.root.join("nodes");
        if !nodes.join(format!("{node}.json")).exists() {
            return Err(StoreError::NodeNotFound(node.to_string()));
        }
        let marker = nodes.join(format!("{node}.drained"));
        let result = if drained { File::create(&marker).map(|_| ()) } else { fs::remove_file(&marker) };
        match result {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(unavailable("cannot mark", &marker, e)),
        }
        self.bump_generation();
        Ok(())
    }

    fn join(&self, node: &NodeInfo) -> Result<Box<dyn Session>, StoreError> {
        check_name(&node.name)?;
        let lock_path = self.root.join("nodes").join(format!("{}.lock", node.name));
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| unavailable("cannot open", &lock_path, e))?;
        match rustix::fs::flock(lock.as_fd(), FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                return Err(StoreError::NodeAlreadyRunning(node.name.clone()))
            }
            Err(e) => return Err(unavailable("cannot lock", &lock_path, e.into())),
        }
        self.write(&self.root.join("nodes").join(format!("{}.json", node.name)), node)?;
        let session = DirSession { lock, path: lock_path };
        session.renew()?;
        Ok(Box::new(session))
    }

    fn put_load(&self, load: &LoadReport) -> Result<(), StoreError> {
        check_name(&load.node)?;
        self.write(&self.root.join("nodes").join(format!("{}.load", load.node)), load)
    }

    fn loads(&self) -> Result<Vec<LoadReport>, StoreError> {
        let dir = self.root.join("nodes");
        let mut loads = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| unavailable("cannot list", &dir, e))? {
            let path = entry.map_err(|e| unavailable("cannot list", &dir, e))?.path();
            if path.extension().and_then(|e| e.to_str()) == Some("load") {
                loads.extend(self.read::<LoadReport>(&path)?);
            }
        }
        loads.sort_by(|a, b| a.node.cmp(&b.node));
        Ok(loads)
    }

    fn nodes(&self) -> Result<Vec<NodeStatus>, StoreError> {
        let dir = self.root.join("nodes");
        let mut nodes = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| unavailable("cannot list", &dir, e))? {
            let entry = entry.map_err(|e| unavailable("cannot list", &dir, e))?;
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let Some(info) = self.read::<NodeInfo>(&path)? else {
                continue;
            };
            let lock_path = path.with_extension("lock");
            let (alive, last_seen_ms) = probe_session(&lock_path);
            let drained = path.with_extension("drained").exists();
            nodes.push(NodeStatus { info, alive, last_seen_ms, drained });
        }
        nodes.sort_by(|a, b| a.info.name.cmp(&b.info.name));
        Ok(nodes)
    }
}

/// Whether a live process holds the lock, and when it last renewed.
fn probe_session(lock_path: &Path) -> (bool, u64) {
    let Ok(file) = File::open(lock_path) else {
        return (false, 0);
    };
    let last_seen_ms = file
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64);
    // Taking the lock succeeds only if no live process holds it; dropping
    // the file releases it again at once.
    let alive = matches!(
        rustix::fs::flock(file.as_fd(), FlockOperation::NonBlockingLockShared),
        Err(rustix::io::Errno::WOULDBLOCK)
    );
    (alive, last_seen_ms)
}

struct DirSession {
    lock: File,
    path: PathBuf,
}

impl Session for DirSession {
    fn renew(&self) -> Result<(), StoreError> {
        let now = std::time::SystemTime::now();
        self.lock
            .set_times(fs::FileTimes::new().set_modified(now))
            .map_err(|e| unavailable("cannot renew", &self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_the_store_suite() {
        let dirs = std::cell::RefCell::new(Vec::new());
        crate::suite::run_all(
            || {
                let dir = tempfile::tempdir().unwrap();
                let store = DirStore::open(dir.path()).unwrap();
                dirs.borrow_mut().push(dir);
                store
            },
            |store| DirStore::open(store.root()).unwrap(),
        );
    }

    #[test]
    fn lock_records_survive_a_record_cut_short_and_the_log_is_compacted() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::open(dir.path()).unwrap();
        store.create_vserver(&crate::suite::config("a", "127.0.0.10")).unwrap();
        let mut owned = Ownership::unowned();
        owned.owner = Some("n1".into());
        owned.epoch = 1;
        store.swap_ownership("a", 0, &owned).unwrap();
        let log = dir.path().join("vservers/a").join(LOCK_LOG);
        for i in 0..3 {
            store.put_locks("a", 1, &serde_json::json!({ "n": i })).unwrap();
        }
        assert_eq!(store.locks("a").unwrap(), Some(serde_json::json!({ "n": 2 })));
        // A crash in the middle of the next record: the last whole one
        // stands, and the record after it is read whole.
        let mut file = OpenOptions::new().append(true).open(&log).unwrap();
        file.write_all(b"\n{\"format\":1,\"data\":{\"n\":").unwrap();
        assert_eq!(store.locks("a").unwrap(), Some(serde_json::json!({ "n": 2 })));
        store.put_locks("a", 1, &serde_json::json!({ "n": 3 })).unwrap();
        assert_eq!(store.locks("a").unwrap(), Some(serde_json::json!({ "n": 3 })));
        // Grown past its limit, it starts again from the newest record.
        let big = serde_json::json!({ "pad": "x".repeat(1 << 20) });
        for _ in 0..5 {
            store.put_locks("a", 1, &big).unwrap();
        }
        assert!(fs::metadata(&log).unwrap().len() <= LOCK_LOG_MAX, "compacted");
        assert_eq!(store.locks("a").unwrap(), Some(big));
        // Nothing whole in it at all: unreadable, said so.
        fs::write(&log, b"{\"format\":1,").unwrap();
        assert!(matches!(store.locks("a"), Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn unreachable_store_is_a_clear_error() {
        let err = DirStore::open("/proc/vnas-cannot-be-here").err().expect("refused");
        assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
        assert!(err.to_string().contains("/proc/vnas-cannot-be-here"), "{err}");
    }

    #[test]
    fn unknown_record_formats_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::open(dir.path()).unwrap();
        store.create_vserver(&crate::suite::config("a", "127.0.0.10")).unwrap();
        let path = dir.path().join("vservers/a/config.json");
        let text = fs::read_to_string(&path).unwrap().replace("\"format\": 1", "\"format\": 99");
        fs::write(&path, text).unwrap();
        assert!(matches!(store.vserver("a"), Err(StoreError::Corrupt { .. })));
    }
}
