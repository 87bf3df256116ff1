//! Property-based fuzzing of every decoder a client feeds (proptest, on the
//! stable toolchain): record framing, call headers and credentials, each
//! procedure's arguments, handle decoding, export options. Each property
//! runs `PROPTEST_CASES` cases (256 by default, in the test command); for
//! a long run: `PROPTEST_CASES=1000000 cargo test --release -p vnas-nfs fuzz`.

use std::net::SocketAddr;

use proptest::prelude::*;

use crate::config::{ClientRule, ExportConfig, ServerConfig};
use crate::dispatch::{self, Conn, Outcome};
use crate::handle::{FileHandle, HandleKey};
use crate::limits::RECORD_MAX;
use crate::rpc::{parse_call, RecordReader};
use crate::server::Server;

/// A call header: xid, CALL, RPC 2, `prog`/`vers`/`proc_`, AUTH_SYS as root
/// (or AUTH_NONE), AUTH_NONE verifier.
fn header(prog: u32, vers: u32, proc_: u32, sys: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut put = |w: u32| out.extend_from_slice(&w.to_be_bytes());
    for w in [7, 0, 2, prog, vers, proc_] {
        put(w);
    }
    if sys {
        for w in [1, 24, 0, 4, u32::from_be_bytes(*b"fuzz"), 0, 0, 0] {
            put(w);
        }
    } else {
        put(0);
        put(0);
    }
    put(0);
    put(0);
    out
}

/// A server over a scratch export, handles of objects of every kind in it,
/// and where to send from.
struct Fixture {
    _dir: tempfile::TempDir,
    server: Server,
    /// The root, a directory, a file with data, an empty file, a hard
    /// link, a symlink, a FIFO: READ, WRITE, COMMIT, READLINK and the rest
    /// reach their real work, not only "is a directory".
    handles: Vec<Vec<u8>>,
    conn: Conn,
}

/// The objects of the fixture below the root, by name.
const OBJECTS: [&str; 6] = ["sub", "file", "empty", "hard", "link", "fifo"];

fn fixture() -> Fixture {
    fixture_with(false)
}

fn fixture_with(nfs4: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("file"), vec![7u8; 100_000]).unwrap();
    std::fs::write(dir.path().join("empty"), b"").unwrap();
    std::fs::hard_link(dir.path().join("file"), dir.path().join("hard")).unwrap();
    std::os::unix::fs::symlink("file", dir.path().join("link")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        dir.path().join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let mut export = ExportConfig::new("/data", dir.path());
    export.rules = vec![ClientRule::parse_options("no_root_squash,insecure").unwrap()];
    let mut config = ServerConfig::new(vec![export]);
    config.nfs4 = nfs4;
    let server = Server::new(config).unwrap();
    let export = server.state.exports()[0].clone();
    let root = export.root_obj().unwrap();
    let mut handles = vec![export.handle_of(&root).data.to_vec()];
    for name in OBJECTS {
        let stat = export.lookup(&root, name.as_bytes()).unwrap();
        handles.push(export.handle_at(&root.fd, name.as_bytes(), &stat).data.to_vec());
    }
    let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    Fixture { _dir: dir, server, handles, conn: Conn { peer, local_port: 2049, local: None, id: 0 } }
}

/// The reply must be an RPC reply to our xid, and never SYSTEM_ERR (what a
/// panicking procedure turns into).
fn answered_sanely(outcome: Outcome) -> Result<(), TestCaseError> {
    if let Outcome::Reply(reply) = outcome {
        let head = &reply.head[4..];
        prop_assert!(head.len() >= 12, "a reply header");
        let word = |i: usize| u32::from_be_bytes(head[i * 4..i * 4 + 4].try_into().unwrap());
        prop_assert_eq!(word(1), 1, "a REPLY");
        if word(2) == 0 && head.len() >= 24 {
            prop_assert_ne!(word(5), 5, "SYSTEM_ERR: a procedure panicked");
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn fuzz_record_framing(stream in proptest::collection::vec(any::<u8>(), 0..4096), cuts in proptest::collection::vec(1usize..512, 1..16)) {
        // Whatever arrives, in whatever pieces: no panic, nothing sized
        // from a client's length beyond the limit.
        let mut reader = RecordReader::new(64 * 1024);
        let mut at = 0;
        for cut in cuts.iter().cycle() {
            if at >= stream.len() {
                break;
            }
            let end = (at + cut).min(stream.len());
            reader.push_for_fuzzing(&stream[at..end]);
            at = end;
            loop {
                match reader.take() {
                    Ok(Some(record)) => prop_assert!(record.len() <= 64 * 1024),
                    Ok(None) => break,
                    Err(_) => return Ok(()),
                }
            }
            prop_assert!(reader.buffered() <= 64 * 1024 + 4096 + 8);
        }
    }

    #[test]
    fn fuzz_call_headers(record in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = parse_call(&record);
        let _ = dispatch::is_heavy(&record);
    }

    #[test]
    fn fuzz_mutated_call_headers(flips in proptest::collection::vec((0usize..64, any::<u8>()), 1..8), proc_ in 0u32..25) {
        let mut record = header(100003, 3, proc_, true);
        for (at, byte) in flips {
            if let Some(b) = record.get_mut(at) {
                *b = byte;
            }
        }
        let _ = parse_call(&record);
    }

    #[test]
    fn fuzz_handle_decoding(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
        if FileHandle::decode(&bytes).is_ok() {
            // Well formed is not enough: without the key it is refused.
            prop_assert!(FileHandle::verify(&bytes, &HandleKey([3; 16])).is_err() || bytes.len() >= 28);
        }
    }

    #[test]
    fn fuzz_export_options(options in "[a-z_=0-9./+,:]{0,60}") {
        let _ = ClientRule::parse_options(&options);
    }
}

proptest! {
    /// Every procedure of NFS, MOUNT and portmap with arguments that start
    /// like a real call (a valid handle of any kind of object, so decoding
    /// goes deep and the procedure does its work) and go on with anything.
    #[test]
    fn fuzz_procedure_arguments(
        prog in prop_oneof![Just(100003u32), Just(100005), Just(100000)],
        proc_ in 0u32..24,
        with_handle in any::<bool>(),
        object in 0usize..=OBJECTS.len(),
        sys in any::<bool>(),
        tail in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        thread_local! { static FIXTURE: Fixture = fixture(); }
        FIXTURE.with(|f| {
            let vers = match prog { 100003 | 100005 => 3, _ => 2 };
            let mut record = header(prog, vers, proc_, sys);
            if with_handle {
                let handle = &f.handles[object];
                record.extend_from_slice(&(handle.len() as u32).to_be_bytes());
                record.extend_from_slice(handle);
                record.resize(record.len().div_ceil(4) * 4, 0);
            }
            record.extend_from_slice(&tail);
            prop_assert!(record.len() <= RECORD_MAX);
            answered_sanely(dispatch::handle(&f.server.state, f.conn, &record))
        })?;
    }
}

/// XDR opaque: length, bytes, padding.
fn opaque(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(4) * 4, 0);
}

proptest! {
    /// NLM v4 and NSM with arguments shaped like real ones (a cookie, the
    /// words before the lock, a caller name, a valid handle or garbage, an
    /// owner handle, svid, offset, length) and anything after: every
    /// procedure answers with an RPC reply, never a panic, and the lock
    /// table's invariant holds whatever was granted.
    #[test]
    fn fuzz_lock_arguments(
        nsm in any::<bool>(),
        proc_ in 0u32..26,
        cookie in proptest::collection::vec(any::<u8>(), 0..24),
        words in proptest::collection::vec(0u32..3, 0..3),
        caller in "[a-z0-9.-]{0,12}",
        with_handle in any::<bool>(),
        object in 0usize..=OBJECTS.len(),
        oh in proptest::collection::vec(any::<u8>(), 0..16),
        range in (any::<u32>(), 0u64..1000, 0u64..1000),
        tail in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        thread_local! { static FIXTURE: Fixture = fixture(); }
        FIXTURE.with(|f| {
            let (prog, vers) = if nsm { (100024, 1) } else { (100021, 4) };
            let mut record = header(prog, vers, proc_, true);
            opaque(&mut record, &cookie);
            for w in &words {
                record.extend_from_slice(&w.to_be_bytes());
            }
            opaque(&mut record, caller.as_bytes());
            if with_handle {
                opaque(&mut record, &f.handles[object]);
            } else {
                opaque(&mut record, &tail[..tail.len().min(8)]);
            }
            opaque(&mut record, &oh);
            record.extend_from_slice(&range.0.to_be_bytes());
            record.extend_from_slice(&range.1.to_be_bytes());
            record.extend_from_slice(&range.2.to_be_bytes());
            record.extend_from_slice(&tail);
            answered_sanely(dispatch::handle(&f.server.state, f.conn, &record))?;
            prop_assert_eq!(f.server.state.locks.snapshot().conflicting_pair(), None);
            Ok(())
        })?;
    }
}

proptest! {
    /// NFSv4 COMPOUNDs: a tag, a minor version, an operation count that may
    /// lie, then operations each with a number (NFSv4.0's, 4.1's or any),
    /// maybe a valid handle of any object (so PUTFH lands and what follows
    /// works on a real file), and any words. Always an RPC reply.
    #[test]
    fn fuzz_compound_arguments(
        tag in proptest::collection::vec(any::<u8>(), 0..12),
        minor in prop_oneof![Just(0u32), any::<u32>()],
        count in prop_oneof![0u32..8, any::<u32>()],
        ops in proptest::collection::vec((0u32..72, any::<bool>(), 0usize..=OBJECTS.len(), proptest::collection::vec(0u32..70_000, 0..6)), 0..8),
        tail in proptest::collection::vec(any::<u8>(), 0..64),
        in_session in any::<bool>(),
        slot in (0u32..5, 0u32..6),
    ) {
        thread_local! { static FIXTURE: (Fixture, [u8; 16]) = {
            let f = fixture_with(true);
            let sessions = &f.server.state.sessions;
            let now = std::time::Instant::now();
            let (id, seq, _) = sessions.exchange_id(b"fuzz", [1; 8], now).unwrap();
            let channel = crate::nfs4::session::Channel { max_request: 1 << 20, max_response: 1 << 20, max_response_cached: 8192, max_operations: 16, max_requests: 4 };
            let body = sessions.create_session(id, seq, channel, None, now, |sid, _| sid.to_vec()).unwrap();
            (f, body.try_into().unwrap())
        }; }
        FIXTURE.with(|(f, session)| {
            let mut record = header(100003, 4, 1, true);
            opaque(&mut record, &tag);
            // In a session: NFSv4.1, SEQUENCE first with a slot (one past
            // the table too) and a sequence id that may be new, a retry or
            // out of order.
            let (minor, count) = if in_session { (1 + minor % 2, count.saturating_add(1)) } else { (minor, count) };
            record.extend_from_slice(&minor.to_be_bytes());
            record.extend_from_slice(&count.to_be_bytes());
            if in_session {
                record.extend_from_slice(&53u32.to_be_bytes());
                record.extend_from_slice(session);
                for w in [slot.1, slot.0, 3, 1] {
                    record.extend_from_slice(&w.to_be_bytes());
                }
            }
            for (op, with_handle, object, words) in &ops {
                record.extend_from_slice(&op.to_be_bytes());
                if *with_handle {
                    opaque(&mut record, &f.handles[*object]);
                }
                for w in words {
                    record.extend_from_slice(&w.to_be_bytes());
                }
            }
            record.extend_from_slice(&tail);
            answered_sanely(dispatch::handle(&f.server.state, f.conn, &record))
        })?;
    }
}
