//! One exported tree: its root, its handle key, and how handles resolve to
//! objects inside it and never outside.
//!
//! Every path the server walks is resolved with openat2 under the export's
//! root with RESOLVE_BENEATH and RESOLVE_NO_SYMLINKS: `..` cannot climb out,
//! and a symlink is never followed on the server (clients read it with
//! READLINK and resolve it themselves).

use std::collections::{HashMap, VecDeque};
use std::hash::Hasher;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nfs3_types::nfs3::{nfs_fh3, nfsstat3};
use nfs3_types::xdr_codec::Opaque;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, RawDir, ResolveFlags, Statx};
use rustix::io::Errno;

use super::attr::{self, STATX_MASK};
use super::error::{errno_stat, NfsResult};
use super::kernel_handle::KernelHandle;
use super::nodes::Nodes;
use super::open_files::{OpenFile, OpenFiles};
use crate::config::{ClientRule, ExportConfig};
use crate::handle::{FileHandle, HandleKey};
use crate::limits::{DEPTH_MAX, NAME_MAX, OPEN_DIRS_MAX};

const BENEATH: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);
const KEY_XATTR: &str = "user.vnas.handle-key";
/// How long one search of the tree for an unknown handle may take.
const SEARCH_TIME_MAX: Duration = Duration::from_secs(10);
/// How long a handle that was searched for and not found stays stale
/// without a new search.
const MISS_REMEMBERED: Duration = Duration::from_secs(2);
const MISSES_MAX: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("export name {0:?} must be an absolute path such as /data")]
    BadName(String),
    #[error("export {name}: cannot open {path}: {source}")]
    Open { name: String, path: PathBuf, source: std::io::Error },
    #[error("export {name}: {path} is not a directory")]
    NotDir { name: String, path: PathBuf },
    #[error(
        "export {name}: cannot keep the handle key in extended attribute {KEY_XATTR} of {path}: {source}"
    )]
    Key { name: String, path: PathBuf, source: std::io::Error },
}

/// An object reached through a handle: a path-only descriptor and its
/// attributes at the time it was reached.
pub struct Obj {
    pub fd: Arc<OwnedFd>,
    pub stat: Statx,
}

impl Obj {
    pub fn ino(&self) -> u64 {
        self.stat.stx_ino
    }

    /// The attributes now.
    pub fn restat(&self) -> NfsResult<Statx> {
        stat_fd(&self.fd)
    }

    /// A name through which system calls that take a path reach exactly
    /// this object (chmod, utimensat, truncate, link).
    pub fn proc_path(&self) -> String {
        format!("/proc/self/fd/{}", self.fd.as_raw_fd())
    }
}

pub fn stat_fd(fd: impl AsFd) -> NfsResult<Statx> {
    rustix::fs::statx(fd, "", AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW, STATX_MASK).map_err(errno_stat)
}

fn stripe(ino: u64) -> usize {
    (ino.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize % DIR_STRIPES
}

/// Checks one path component a client sent.
pub fn check_name(name: &[u8]) -> NfsResult<()> {
    if name.is_empty() {
        return Err(nfsstat3::NFS3ERR_NOENT);
    }
    if name.len() > NAME_MAX {
        return Err(nfsstat3::NFS3ERR_NAMETOOLONG);
    }
    if name.contains(&b'/') || name.contains(&0) {
        return Err(nfsstat3::NFS3ERR_ACCES);
    }
    Ok(())
}

/// For procedures that create or remove a name: `.` and `..` are not names
/// one can create or remove.
pub fn check_new_name(name: &[u8]) -> NfsResult<()> {
    check_name(name)?;
    if name == b"." || name == b".." {
        return Err(nfsstat3::NFS3ERR_EXIST);
    }
    Ok(())
}

pub struct Export {
    pub id: u32,
    pub name: String,
    pub path: PathBuf,
    /// Replaced in place when the vserver's rules change (the next call
    /// sees the new ones).
    pub rules: std::sync::RwLock<Arc<Vec<ClientRule>>>,
    root: Arc<OwnedFd>,
    root_stat: Statx,
    /// Directories reached before, by inode: a directory's descriptor stays
    /// valid across renames, and resolving through it costs one system call.
    dirs: Mutex<HashMap<u64, Arc<OwnedFd>>>,
    key: HandleKey,
    /// The root opened for reading, for open_by_handle_at; `None` where the
    /// kernel will not resolve handles for us (not root, or a filesystem
    /// without export support): then handles are found by a search.
    mount_fd: Option<OwnedFd>,
    nodes: Mutex<Nodes>,
    files: OpenFiles,
    misses: Mutex<HashMap<(u64, u32), Instant>>,
    /// Changes to one directory go one at a time (striped by inode), so
    /// its attributes before and after a change bracket that change alone:
    /// NFSv4 then tells clients so (change_info4's `atomic`), and they keep
    /// their caches of the directory instead of looking every name up again.
    dir_changes: Box<[Mutex<()>]>,
}

/// Stripes of the directory-change lock.
const DIR_STRIPES: usize = 64;

/// A directory change in progress: others of the same directory wait.
pub type DirChange<'a> = std::sync::MutexGuard<'a, ()>;

impl std::fmt::Debug for Export {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Export").field("name", &self.name).field("path", &self.path).finish()
    }
}

impl Export {
    pub fn open(config: &ExportConfig) -> Result<Export, ExportError> {
        let name = config.name.clone();
        if !name.starts_with('/') || name.contains('\0') {
            return Err(ExportError::BadName(name));
        }
        let path = config.path.clone();
        let open_err =
            |source: std::io::Error| ExportError::Open { name: name.clone(), path: path.clone(), source };
        let root = rustix::fs::open(&path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| open_err(e.into()))?;
        let root_stat =
            rustix::fs::statx(&root, "", AtFlags::EMPTY_PATH, STATX_MASK).map_err(|e| open_err(e.into()))?;
        if !attr::is_dir(&root_stat) {
            return Err(ExportError::NotDir { name, path });
        }
        let key = load_key(&path).map_err(|source| ExportError::Key {
            name: name.clone(),
            path: path.clone(),
            source,
        })?;
        let id = config.id.unwrap_or_else(|| id_from_name(&name));
        let mount_fd = kernel_handles(&root, &path, &name);
        Ok(Export {
            mount_fd,
            id,
            rules: std::sync::RwLock::new(Arc::new(config.rules.clone())),
            nodes: Mutex::new(Nodes::new(root_stat.stx_ino)),
            root: Arc::new(root),
            root_stat,
            dirs: Mutex::new(HashMap::new()),
            key,
            files: OpenFiles::default(),
            misses: Mutex::new(HashMap::new()),
            dir_changes: (0..DIR_STRIPES).map(|_| Mutex::new(())).collect(),
            name,
            path,
        })
    }

    pub fn fsid(&self) -> u64 {
        u64::from(self.id)
    }

    pub fn root_ino(&self) -> u64 {
        self.root_stat.stx_ino
    }

    /// The first rule that admits `client`, if any.
    /// The first rule that admits `client` (the rules as they were when
    /// the call began: an Arc, not a copy, on every call).
    pub fn rule_for(&self, client: std::net::IpAddr) -> Option<Rule> {
        let rules = self.rules.read().expect("not poisoned").clone();
        let at = rules.iter().position(|rule| rule.matches(client))?;
        Some(Rule { rules, at })
    }

    /// The handle of `name` in directory `dir` (`name` empty: `dir`
    /// itself), whose attributes are `stat`.
    pub fn handle_at(&self, dir: &OwnedFd, name: &[u8], stat: &Statx) -> nfs_fh3 {
        // `..` of the root is the root itself, never what lies above it.
        let (dir, name) = if stat.stx_ino == self.root_ino() { (&*self.root, &b""[..]) } else { (dir, name) };
        let kernel = self.mount_fd.as_ref().and_then(|_| {
            let name = std::ffi::CString::new(name).ok()?;
            KernelHandle::of(dir, &name).ok().flatten()
        });
        let fh = FileHandle { export_id: self.id, ino: stat.stx_ino, gen: attr::generation(stat), kernel };
        nfs_fh3 { data: Opaque::owned(fh.encode(&self.key)) }
    }

    /// The handle of an object the server holds a descriptor of.
    pub fn handle_of(&self, obj: &Obj) -> nfs_fh3 {
        self.handle_at(&obj.fd, b"", &obj.stat)
    }

    /// Whether handles resolve through the kernel here (O(1)), rather
    /// than by a search of the tree.
    pub fn kernel_handles(&self) -> bool {
        self.mount_fd.is_some()
    }

    /// Checks that a handle naming this export was issued for it.
    pub fn verify(&self, bytes: &[u8]) -> NfsResult<FileHandle> {
        let fh = FileHandle::decode(bytes).map_err(|_| nfsstat3::NFS3ERR_BADHANDLE)?;
        FileHandle::verify(bytes, &self.key).map_err(|_| nfsstat3::NFS3ERR_BADHANDLE)?;
        Ok(fh)
    }

    fn open_beneath(&self, path: &[u8], flags: OFlags) -> Result<OwnedFd, Errno> {
        rustix::fs::openat2(&self.root, path, flags | OFlags::CLOEXEC, Mode::empty(), BENEATH)
    }

    /// A descriptor for directory `ino`: from the cache, or opened through
    /// its parent (one component at a time, never following a symlink).
    fn dir_fd(&self, ino: u64, depth: usize) -> Option<Arc<OwnedFd>> {
        if ino == self.root_ino() {
            return Some(self.root.clone());
        }
        if let Some(fd) = self.dirs.lock().unwrap().get(&ino) {
            return Some(fd.clone());
        }
        if depth >= DEPTH_MAX {
            return None;
        }
        let (parent, name) = self.nodes.lock().unwrap().entry(ino)?;
        let parent_fd = self.dir_fd(parent, depth + 1)?;
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = Arc::new(rustix::fs::openat(&*parent_fd, &*name, flags, Mode::empty()).ok()?);
        let stat = stat_fd(&*fd).ok()?;
        if stat.stx_ino != ino {
            return None;
        }
        self.keep_dir(ino, &fd);
        Some(fd)
    }

    fn keep_dir(&self, ino: u64, fd: &Arc<OwnedFd>) {
        let mut dirs = self.dirs.lock().unwrap();
        if dirs.len() >= OPEN_DIRS_MAX {
            dirs.clear();
        }
        dirs.insert(ino, fd.clone());
    }

    fn try_resolve(&self, fh: &FileHandle) -> Option<Obj> {
        let cached = self.dirs.lock().unwrap().get(&fh.ino).cloned();
        let fd = match cached {
            Some(fd) => fd,
            None if fh.ino == self.root_ino() => self.root.clone(),
            None => {
                let (parent, name) = self.nodes.lock().unwrap().entry(fh.ino)?;
                let parent_fd = self.dir_fd(parent, 0)?;
                let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                Arc::new(rustix::fs::openat(&*parent_fd, &*name, flags, Mode::empty()).ok()?)
            }
        };
        let stat = stat_fd(&*fd).ok()?;
        let valid = stat.stx_ino == fh.ino && attr::generation(&stat) == fh.gen && stat.stx_nlink > 0;
        if !valid {
            self.dirs.lock().unwrap().remove(&fh.ino);
            return None;
        }
        if attr::is_dir(&stat) {
            self.keep_dir(fh.ino, &fd);
        }
        Some(Obj { fd, stat })
    }

    /// The attributes of the object a verified handle names, without
    /// opening it when its directory is known.
    pub fn resolve_stat(&self, fh: &FileHandle) -> NfsResult<Statx> {
        let entry = self.nodes.lock().unwrap().entry(fh.ino);
        if let Some((parent, name)) = entry {
            if let Some(parent_fd) = self.dirs.lock().unwrap().get(&parent).cloned() {
                let stat = rustix::fs::statx(&*parent_fd, &*name, AtFlags::SYMLINK_NOFOLLOW, STATX_MASK);
                if let Ok(stat) = stat {
                    if stat.stx_ino == fh.ino && attr::generation(&stat) == fh.gen {
                        return Ok(stat);
                    }
                }
            }
        }
        self.resolve(fh).map(|obj| obj.stat)
    }

    /// Finds the object a verified handle names.
    /// Resolves a directory about to change, and holds it: the `stat` of
    /// the object is taken once no other change of it runs, and none
    /// starts until the guard goes (after the attributes that follow the
    /// change are taken).
    pub fn resolve_to_change(&self, fh: &FileHandle) -> NfsResult<(Obj, DirChange<'_>)> {
        let obj = self.resolve(fh)?;
        let held = self.hold_dir(obj.ino());
        let stat = obj.restat()?;
        Ok((Obj { stat, ..obj }, held))
    }

    /// Both directories of a rename held (one guard if they share a
    /// stripe), in stripe order so two renames cannot wait on each other.
    pub fn resolve_two_to_change(
        &self,
        a: &FileHandle,
        b: &FileHandle,
    ) -> NfsResult<(Obj, Obj, DirChange<'_>, Option<DirChange<'_>>)> {
        let (a, b) = (self.resolve(a)?, self.resolve(b)?);
        let (sa, sb) = (stripe(a.ino()), stripe(b.ino()));
        let (first, second) = (sa.min(sb), sa.max(sb));
        let held = self.dir_changes[first].lock().unwrap_or_else(|e| e.into_inner());
        let also =
            (second != first).then(|| self.dir_changes[second].lock().unwrap_or_else(|e| e.into_inner()));
        let (a_stat, b_stat) = (a.restat()?, b.restat()?);
        Ok((Obj { stat: a_stat, ..a }, Obj { stat: b_stat, ..b }, held, also))
    }

    fn hold_dir(&self, ino: u64) -> DirChange<'_> {
        self.dir_changes[stripe(ino)].lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn resolve(&self, fh: &FileHandle) -> NfsResult<Obj> {
        if let Some(obj) = self.try_resolve(fh) {
            return Ok(obj);
        }
        if let (Some(kernel), Some(mount_fd)) = (&fh.kernel, &self.mount_fd) {
            return self.open_by_handle(fh, kernel, mount_fd);
        }
        // Not where we last saw it, or never seen by this process: a handle
        // issued before a restart or by another node. Walk the tree.
        if self.recently_missed(fh) {
            return Err(nfsstat3::NFS3ERR_STALE);
        }
        if self.search(fh.ino) {
            if let Some(obj) = self.try_resolve(fh) {
                return Ok(obj);
            }
        }
        self.remember_miss(fh);
        Err(nfsstat3::NFS3ERR_STALE)
    }

    /// One system call, whatever the size of the tree and however cold
    /// the caches: the filesystem finds the inode and checks its
    /// generation, so a removed object's handle is stale even after its
    /// inode number was reused.
    fn open_by_handle(&self, fh: &FileHandle, kernel: &KernelHandle, mount_fd: &OwnedFd) -> NfsResult<Obj> {
        let fd = match kernel.open(mount_fd) {
            Ok(fd) => Arc::new(fd),
            Err(Errno::STALE | Errno::NOENT | Errno::INVAL) => return Err(nfsstat3::NFS3ERR_STALE),
            Err(errno) => return Err(errno_stat(errno)),
        };
        let stat = stat_fd(&*fd)?;
        let same = stat.stx_ino == fh.ino && attr::generation(&stat) == fh.gen && stat.stx_nlink > 0;
        if !same {
            return Err(nfsstat3::NFS3ERR_STALE);
        }
        if attr::is_dir(&stat) {
            self.keep_dir(fh.ino, &fd);
        }
        Ok(Obj { fd, stat })
    }

    fn recently_missed(&self, fh: &FileHandle) -> bool {
        let misses = self.misses.lock().unwrap();
        misses.get(&(fh.ino, fh.gen)).is_some_and(|at| at.elapsed() < MISS_REMEMBERED)
    }

    fn remember_miss(&self, fh: &FileHandle) {
        let mut misses = self.misses.lock().unwrap();
        if misses.len() >= MISSES_MAX {
            misses.retain(|_, at| at.elapsed() < MISS_REMEMBERED);
            if misses.len() >= MISSES_MAX {
                misses.clear();
            }
        }
        misses.insert((fh.ino, fh.gen), Instant::now());
    }

    /// Breadth-first search of the export for `ino`, recording every entry
    /// of the directories it reads so later handles resolve without a search.
    fn search(&self, ino: u64) -> bool {
        let started = Instant::now();
        let mut queue = VecDeque::from([(self.root_ino(), b".".to_vec())]);
        let mut buf = vec![MaybeUninit::<u8>::uninit(); 64 * 1024];
        while let Some((dir_ino, path)) = queue.pop_front() {
            if started.elapsed() > SEARCH_TIME_MAX {
                tracing::warn!(export = %self.name, ino, "gave up searching the export for a handle");
                return false;
            }
            let Ok(fd) = self.open_beneath(&path, OFlags::RDONLY | OFlags::DIRECTORY) else {
                continue;
            };
            let mut found = false;
            let mut entries = Vec::new();
            let mut dir = RawDir::new(&fd, &mut buf);
            while let Some(Ok(entry)) = dir.next() {
                let name = entry.file_name().to_bytes();
                if name == b"." || name == b".." {
                    continue;
                }
                let is_dir = match entry.file_type() {
                    FileType::Directory => true,
                    FileType::Unknown => rustix::fs::statx(&fd, name, AtFlags::SYMLINK_NOFOLLOW, STATX_MASK)
                        .is_ok_and(|s| attr::is_dir(&s)),
                    _ => false,
                };
                // Every entry is recorded, not only the one looked for: a
                // client that held handles before a failover comes back for
                // many files of the same directories, and each must not
                // cost a scan of its own.
                entries.push((entry.ino(), name.to_vec(), is_dir));
                found |= entry.ino() == ino;
            }
            let mut nodes = self.nodes.lock().unwrap();
            for (child, name, is_dir) in entries {
                nodes.insert(child, dir_ino, &name, is_dir);
                if is_dir {
                    let mut child_path = if path == b"." { Vec::new() } else { [&path[..], b"/"].concat() };
                    child_path.extend_from_slice(&name);
                    queue.push_back((child, child_path));
                }
            }
            if found {
                return true;
            }
        }
        false
    }

    /// The root, as MOUNT hands it out.
    pub fn root_obj(&self) -> NfsResult<Obj> {
        let stat = stat_fd(&*self.root)?;
        Ok(Obj { fd: self.root.clone(), stat })
    }

    /// A directory below the root named by a relative path (for MOUNT of a
    /// subdirectory), remembering each component on the way.
    pub fn walk(&self, path: &[u8]) -> NfsResult<Obj> {
        let mut at = self.root_obj()?;
        for name in path.split(|b| *b == b'/').filter(|c| !c.is_empty() && *c != b".") {
            let stat = self.lookup(&at, name)?;
            if !attr::is_dir(&stat) {
                return Err(nfsstat3::NFS3ERR_NOTDIR);
            }
            let fd = rustix::fs::openat(
                &*at.fd,
                name,
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(errno_stat)?;
            at = Obj { stat: stat_fd(&fd)?, fd: Arc::new(fd) };
        }
        Ok(at)
    }

    /// The attributes of `name` in `dir`, remembering where it is.
    pub fn lookup(&self, dir: &Obj, name: &[u8]) -> NfsResult<Statx> {
        check_name(name)?;
        if !attr::is_dir(&dir.stat) {
            return Err(nfsstat3::NFS3ERR_NOTDIR);
        }
        if name == b"." || (name == b".." && dir.ino() == self.root_ino()) {
            return dir.restat();
        }
        let stat =
            rustix::fs::statx(&dir.fd, name, AtFlags::SYMLINK_NOFOLLOW, STATX_MASK).map_err(errno_stat)?;
        if stat.stx_dev_major != self.root_stat.stx_dev_major
            || stat.stx_dev_minor != self.root_stat.stx_dev_minor
        {
            // Another filesystem mounted inside the export: not served.
            return Err(nfsstat3::NFS3ERR_ACCES);
        }
        if name != b".." {
            self.remember(dir.ino(), name, &stat);
        }
        Ok(stat)
    }

    pub fn remember(&self, parent: u64, name: &[u8], stat: &Statx) {
        self.nodes.lock().unwrap().insert(stat.stx_ino, parent, name, attr::is_dir(stat));
    }

    /// The object is gone (its last link was removed).
    pub fn forget(&self, ino: u64) {
        self.nodes.lock().unwrap().remove(ino);
        self.dirs.lock().unwrap().remove(&ino);
        self.files.remove(ino);
    }

    /// An open file for the data path, from the cache when possible.
    pub fn file(&self, fh: &FileHandle, write: bool) -> NfsResult<(OpenFile, Statx)> {
        let key = (fh.ino, fh.gen);
        if let Some(open) = self.files.get(key) {
            if !write || open.writable {
                let stat = stat_fd(&*open.file)?;
                if stat.stx_nlink > 0 {
                    return Ok((open, stat));
                }
                self.files.remove(fh.ino);
            }
        }
        let obj = self.resolve(fh)?;
        if attr::is_dir(&obj.stat) {
            return Err(nfsstat3::NFS3ERR_ISDIR);
        }
        if !attr::is_regular(&obj.stat) {
            return Err(nfsstat3::NFS3ERR_INVAL);
        }
        let reopen = |flags| rustix::fs::open(obj.proc_path(), flags | OFlags::CLOEXEC, Mode::empty());
        let (fd, writable) = match reopen(OFlags::RDWR) {
            Ok(fd) => (fd, true),
            Err(Errno::ACCESS | Errno::ROFS | Errno::PERM | Errno::TXTBSY) if !write => {
                (reopen(OFlags::RDONLY).map_err(errno_stat)?, false)
            }
            Err(errno) => return Err(errno_stat(errno)),
        };
        let open = OpenFile { file: Arc::new(fd.into()), writable, writing: Arc::default() };
        self.files.insert(key, open.clone());
        Ok((open, obj.stat))
    }
}

/// A descriptor of the root for open_by_handle_at, if the kernel both
/// makes and resolves handles here (it resolves them only for root).
fn kernel_handles(root: &OwnedFd, path: &Path, name: &str) -> Option<OwnedFd> {
    let mount_fd =
        rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).ok()?;
    let works = match KernelHandle::of(root, c"") {
        Ok(Some(handle)) => match handle.open(&mount_fd) {
            Ok(fd) => stat_fd(&fd).is_ok_and(|s| attr::is_dir(&s)),
            Err(errno) => {
                tracing::info!(export = name, %errno, "the kernel does not resolve file handles here (not root?); unknown handles are found by a search of the tree");
                false
            }
        },
        Ok(None) => false,
        Err(errno) => {
            tracing::info!(export = name, %errno, "this filesystem has no file handles; unknown handles are found by a search of the tree");
            false
        }
    };
    works.then_some(mount_fd)
}

fn id_from_name(name: &str) -> u32 {
    let mut hasher = siphasher::sip::SipHasher24::new();
    hasher.write(name.as_bytes());
    hasher.finish() as u32
}

/// The export's handle key, created on first use. It is kept on the
/// exported directory itself so it moves with the storage.
fn load_key(path: &Path) -> std::io::Result<HandleKey> {
    let mut key = [0u8; 16];
    match rustix::fs::getxattr(path, KEY_XATTR, &mut key[..]) {
        Ok(16) => return Ok(HandleKey(key)),
        Ok(n) => {
            return Err(std::io::Error::other(format!("it holds {n} bytes, not 16")));
        }
        Err(Errno::NODATA) => {}
        Err(errno) => return Err(errno.into()),
    }
    getrandom::fill(&mut key).map_err(|e| std::io::Error::other(e.to_string()))?;
    match rustix::fs::setxattr(path, KEY_XATTR, &key, rustix::fs::XattrFlags::CREATE) {
        Ok(()) => Ok(HandleKey(key)),
        // Another server created it first: use theirs.
        Err(Errno::EXIST) => load_key(path),
        Err(errno) => Err(errno.into()),
    }
}

/// One rule of an export's rules, held for the length of a call.
pub struct Rule {
    rules: Arc<Vec<ClientRule>>,
    at: usize,
}

impl std::ops::Deref for Rule {
    type Target = ClientRule;

    fn deref(&self) -> &ClientRule {
        &self.rules[self.at]
    }
}
