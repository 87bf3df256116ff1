//! Every limit a client could otherwise push past, in one place.

/// Largest READ a client may ask for (advertised as rtmax in FSINFO).
pub const READ_MAX: u32 = 1 << 20;
/// Largest READ answered on the connection's own task; larger ones are
/// read ahead on the blocking pool first.
pub const READ_INLINE_MAX: u32 = 64 * 1024;
/// Largest WRITE a client may send (advertised as wtmax in FSINFO).
pub const WRITE_MAX: u32 = 1 << 20;
/// Largest RPC record (all fragments together) the server will buffer: a
/// WRITE of `WRITE_MAX` plus the RPC and NFS headers around it.
pub const RECORD_MAX: usize = WRITE_MAX as usize + 16 * 1024;
/// Connections served at once per server; further clients wait in the
/// kernel's accept queue.
pub const CONNECTIONS_MAX: usize = 512;
/// Requests one connection may have in flight; the next one is not read from
/// the socket until one completes (TCP pushes back on the client).
pub const INFLIGHT_PER_CONNECTION_MAX: usize = 32;
/// Requests being executed at once over all connections.
pub const INFLIGHT_MAX: usize = 128;
/// Replies kept by the duplicate-request cache.
pub const DRC_ENTRIES_MAX: usize = 8192;
/// Objects whose place in the tree the server remembers (inode -> parent, name).
pub const NODE_CACHE_MAX: usize = 1 << 20;
/// Directories kept open (path-only descriptors) per export, so handles
/// resolve without walking paths.
pub const OPEN_DIRS_MAX: usize = 4096;
/// Open files kept for READ, WRITE and COMMIT.
pub const OPEN_FILES_MAX: usize = 1024;
/// Longest file name (one path component).
pub const NAME_MAX: usize = 255;
/// Longest symlink target or MOUNT path.
pub const PATH_MAX: usize = 1024;
/// Deepest directory nesting the server resolves handles through.
pub const DEPTH_MAX: usize = 512;
/// Supplementary groups in an AUTH_SYS credential (RFC 5531: 16).
pub const AUTH_GIDS_MAX: usize = 16;
/// Largest credential or verifier body (RFC 5531: 400 bytes).
pub const AUTH_BODY_MAX: usize = 400;
/// Locks, blocked requests and share reservations one NLM client may hold
/// together (past it, NLM4_DENIED_NOLOCKS), and lock clients per server.
pub use vnas_locks::{LOCKS_PER_CLIENT_MAX, LOCK_CLIENTS_MAX};
/// Largest READDIR/READDIRPLUS reply the server builds, whatever the client asks.
pub const READDIR_REPLY_MAX: u32 = 256 * 1024;

const _: () = assert!(RECORD_MAX > WRITE_MAX as usize + 1024);
const _: () = assert!(INFLIGHT_PER_CONNECTION_MAX <= INFLIGHT_MAX);
const _: () = assert!(READ_MAX <= RECORD_MAX as u32);
