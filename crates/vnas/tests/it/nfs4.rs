//! NFSv4.0 as libnfs's client speaks it (`?version=4`: SETCLIENTID, the
//! pseudo-root, LOOKUP, GETATTR, READDIR, ACCESS, OPEN, READ, CLOSE): a
//! file written over v3 lists and reads back the same over v4. Off by
//! default, so a client that mounts with no options falls back to v3.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;

fn run(program: &str, args: &[&str]) -> (bool, Vec<u8>, String) {
    let out = Command::new(program).args(args).stdin(Stdio::null()).output().unwrap();
    (out.status.success(), out.stdout, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn libnfs_lists_and_reads_over_nfsv4_what_v3_wrote() {
    let dir = temp_dir();
    let export = format!("/data={}:no_root_squash,insecure", dir.path().display());
    let server = Served::start_with(&[export], &["--nfs4"]);
    let port = server.addr.port();
    let v3 = |path: &str| format!("nfs://127.0.0.1/data{path}?nfsport={port}&mountport={port}");
    let v4 = |path: &str| format!("nfs://127.0.0.1/data{path}?version=4&nfsport={port}");
    // Written over v3 (nfs-cp commits), and a directory beside it.
    let local = dir.path().join("..").join(format!("nfs4-src-{}", std::process::id()));
    let data: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    std::fs::write(&local, &data).unwrap();
    let (ok, _, err) = run("nfs-cp", &[local.to_str().unwrap(), &v3("/written.bin")]);
    assert!(ok, "nfs-cp over v3: {err}");
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub").join("inner.txt"), b"inside\n").unwrap();

    let (ok, listing, err) = run("nfs-ls", &[&v4("")]);
    let listing = String::from_utf8_lossy(&listing).into_owned();
    assert!(ok, "nfs-ls over v4: {err}");
    assert!(listing.contains("written.bin") && listing.contains("sub"), "{listing}");
    assert!(listing.contains("300000"), "the size, from GETATTR in READDIR: {listing}");
    let (ok, read, err) = run("nfs-cat", &[&v4("/written.bin")]);
    assert!(ok, "nfs-cat over v4: {err}");
    assert!(read == data, "read back over v4 byte for byte ({} bytes of {})", read.len(), data.len());
    let (ok, inner, err) = run("nfs-cat", &[&v4("/sub/inner.txt")]);
    assert!(ok && inner == b"inside\n", "a file below a directory: {err}");
    // What is not there, and what is not served yet, are errors.
    let (ok, _, _) = run("nfs-cat", &[&v4("/missing")]);
    assert!(!ok, "a missing file is an error");
    let (ok, _, _) = run("nfs-ls", &[&format!("nfs://127.0.0.1/nosuch?version=4&nfsport={port}")]);
    assert!(!ok, "an export that does not exist is an error");
    std::fs::remove_file(&local).unwrap();
    server.stop();

    // With --nfs4 false, version 4 is refused (PROG_MISMATCH) and v3
    // serves; with no flag, v4 serves.
    let export = format!("/data={}:no_root_squash,insecure", dir.path().display());
    let server = Served::start_with(std::slice::from_ref(&export), &[]);
    let port = server.addr.port();
    let (ok, _, err) = run("nfs-ls", &[&format!("nfs://127.0.0.1/data?version=4&nfsport={port}")]);
    assert!(ok, "v4 is on by default: {err}");
    server.stop();
    let server = Served::start_with(&[export], &["--nfs4", "false"]);
    let port = server.addr.port();
    let (ok, _, _) = run("nfs-ls", &[&format!("nfs://127.0.0.1/data?version=4&nfsport={port}")]);
    assert!(!ok, "v4 is off with --nfs4 false");
    let (ok, _, err) = run("nfs-ls", &[&format!("nfs://127.0.0.1/data?nfsport={port}&mountport={port}")]);
    assert!(ok, "v3 serves: {err}");
    server.stop();
}

/// A bare NFSv4.1 client of our own over one TCP connection: it encodes
/// COMPOUNDs by hand so a test can resend a call exactly, name any slot
/// and sequence id, and go silent.
mod v41 {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    #[derive(Default)]
    pub struct W(pub Vec<u8>);

    impl W {
        pub fn u32(&mut self, v: u32) -> &mut Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        pub fn u64(&mut self, v: u64) -> &mut Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        pub fn raw(&mut self, b: &[u8]) -> &mut Self {
            self.0.extend_from_slice(b);
            self
        }
        pub fn opaque(&mut self, b: &[u8]) -> &mut Self {
            self.u32(b.len() as u32).raw(b);
            self.0.resize(self.0.len().div_ceil(4) * 4, 0);
            self
        }
    }

    pub struct R<'a>(pub &'a [u8]);

    impl R<'_> {
        pub fn u32(&mut self) -> u32 {
            let v = u32::from_be_bytes(self.0[..4].try_into().unwrap());
            self.0 = &self.0[4..];
            v
        }
        pub fn u64(&mut self) -> u64 {
            (u64::from(self.u32()) << 32) | u64::from(self.u32())
        }
        pub fn raw(&mut self, n: usize) -> Vec<u8> {
            let v = self.0[..n].to_vec();
            self.0 = &self.0[n.div_ceil(4) * 4..];
            v
        }
        pub fn opaque(&mut self) -> Vec<u8> {
            let n = self.u32() as usize;
            self.raw(n)
        }
    }

    pub struct Client {
        stream: TcpStream,
        xid: u32,
        pub clientid: u64,
        pub session: [u8; 16],
    }

    impl Client {
        pub fn connect(port: u16) -> Client {
            Client::connect_to(("127.0.0.1", port))
        }

        pub fn connect_to(addr: impl std::net::ToSocketAddrs) -> Client {
            let stream = TcpStream::connect(addr).unwrap();
            stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
            Client { stream, xid: 1, clientid: 0, session: [0; 16] }
        }

        /// A new connection, the same client ID and session (after the
        /// server's address moved to another node).
        pub fn reconnect(&mut self, addr: impl std::net::ToSocketAddrs) {
            let started = std::time::Instant::now();
            self.stream = loop {
                match TcpStream::connect(&addr) {
                    Ok(stream) => break stream,
                    Err(e) if started.elapsed().as_secs() < 10 => {
                        let _ = e;
                        std::thread::sleep(std::time::Duration::from_millis(50));
                    }
                    Err(e) => panic!("cannot reconnect: {e}"),
                }
            };
            self.stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        }

        /// One COMPOUND (minor version 1) of `ops` (already encoded, each
        /// with its operation number); the COMPOUND4res bytes.
        pub fn compound(&mut self, count: u32, ops: &[u8]) -> Vec<u8> {
            self.compound_minor(1, count, ops)
        }

        pub fn compound_minor(&mut self, minor: u32, count: u32, ops: &[u8]) -> Vec<u8> {
            let mut args = W::default();
            args.opaque(b"").u32(minor).u32(count).raw(ops);
            self.call(&args.0)
        }

        /// An RPC call of NFSv4 COMPOUND as root (AUTH_SYS), a new xid
        /// each time: a resend reaches the session's slot, not a
        /// transport-level duplicate cache.
        pub fn call(&mut self, args: &[u8]) -> Vec<u8> {
            self.call_prog(100003, 4, 1, args)
        }

        /// Any RPC call on this connection (NLM shares the NFS port).
        pub fn call_prog(&mut self, prog: u32, vers: u32, proc_: u32, args: &[u8]) -> Vec<u8> {
            self.xid += 1;
            let mut m = W::default();
            m.u32(self.xid).u32(0).u32(2).u32(prog).u32(vers).u32(proc_);
            let mut cred = W::default();
            cred.u32(0).opaque(b"it").u32(0).u32(0).u32(0);
            m.u32(1).opaque(&cred.0).u32(0).u32(0).raw(args);
            let mut record = ((m.0.len() as u32) | 0x8000_0000).to_be_bytes().to_vec();
            record.extend_from_slice(&m.0);
            self.stream.write_all(&record).unwrap();
            let mut head = [0u8; 4];
            self.stream.read_exact(&mut head).unwrap();
            let len = (u32::from_be_bytes(head) & 0x7fff_ffff) as usize;
            let mut body = vec![0u8; len];
            self.stream.read_exact(&mut body).unwrap();
            let mut r = R(&body);
            assert_eq!(r.u32(), self.xid);
            assert_eq!(r.u32(), 1, "a reply");
            assert_eq!(r.u32(), 0, "accepted");
            r.u32();
            r.opaque();
            assert_eq!(r.u32(), 0, "SUCCESS");
            r.0.to_vec()
        }

        /// EXCHANGE_ID and CREATE_SESSION (4 slots).
        pub fn establish(&mut self, owner: &[u8]) {
            self.establish_flags(owner, 0);
        }

        /// EXCHANGE_ID and CREATE_SESSION with `flags` (0x2: this
        /// connection is the session's back channel); the flags the server
        /// granted.
        pub fn establish_flags(&mut self, owner: &[u8], flags: u32) -> u32 {
            let mut op = W::default();
            op.u32(42).raw(&[7; 8]).opaque(owner).u32(0).u32(0).u32(0);
            let res = self.compound(1, &op.0);
            let mut r = R(&res);
            assert_eq!(r.u32(), 0, "EXCHANGE_ID");
            r.opaque();
            r.u32();
            r.u32();
            r.u32();
            self.clientid = r.u64();
            let seq = r.u32();
            let (status, granted) = self.create_session_flags(seq, flags);
            assert_eq!(status, 0, "CREATE_SESSION");
            granted
        }

        /// CREATE_SESSION (4 slots) under this client ID, with sequence id
        /// `seq`: its status; the session is this client's from now on.
        pub fn create_session(&mut self, seq: u32) -> u32 {
            self.create_session_flags(seq, 0).0
        }

        /// CREATE_SESSION with `flags`: its status and the flags granted.
        pub fn create_session_flags(&mut self, seq: u32, flags: u32) -> (u32, u32) {
            let mut op = W::default();
            op.u32(43).u64(self.clientid).u32(seq).u32(flags);
            for _ in 0..2 {
                op.u32(0).u32(1 << 20).u32(1 << 20).u32(8192).u32(16).u32(4).u32(0);
            }
            op.u32(0x4000_0000).u32(1).u32(0);
            let res = self.compound(1, &op.0);
            let mut r = R(&res);
            let status = r.u32();
            if status != 0 {
                return (status, 0);
            }
            r.opaque();
            r.u32();
            r.u32();
            r.u32();
            self.session = r.raw(16).try_into().unwrap();
            r.u32();
            (0, r.u32())
        }

        /// The next record the server sends unasked (a callback), if one
        /// comes within `wait`.
        pub fn next_call(&mut self, wait: std::time::Duration) -> Option<Vec<u8>> {
            self.stream.set_read_timeout(Some(wait)).unwrap();
            let mut head = [0u8; 4];
            let got = self.stream.read_exact(&mut head);
            self.stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
            got.ok()?;
            let mut body = vec![0u8; (u32::from_be_bytes(head) & 0x7fff_ffff) as usize];
            self.stream.read_exact(&mut body).unwrap();
            Some(body)
        }

        /// Answers a callback `xid` with a CB_COMPOUND of CB_SEQUENCE
        /// (`status`) and the rest OK.
        pub fn answer_callback(&mut self, xid: u32, session: &[u8], seq: u32, status: u32) {
            let mut m = W::default();
            m.u32(xid).u32(1).u32(0).u32(0).u32(0).u32(0);
            m.u32(status).opaque(b"").u32(1).u32(11).u32(status);
            if status == 0 {
                m.raw(session).u32(seq).u32(0).u32(0).u32(0);
            }
            let mut record = ((m.0.len() as u32) | 0x8000_0000).to_be_bytes().to_vec();
            record.extend_from_slice(&m.0);
            self.stream.write_all(&record).unwrap();
        }

        /// SEQUENCE, PUTFH `dir`, OPEN `name` (created if missing, UNCHECKED4)
        /// for `owner` with `access` and `deny`: OPEN's status and stateid.
        #[allow(clippy::too_many_arguments)]
        pub fn open(
            &mut self,
            slot: u32,
            seqid: u32,
            dir: &[u8],
            name: &[u8],
            access: u32,
            deny: u32,
            owner: &[u8],
        ) -> (u32, Vec<u8>) {
            let mut ops = self.sequence(slot, seqid);
            ops.u32(22).opaque(dir);
            ops.u32(18).u32(0).u32(access).u32(deny).u64(self.clientid).opaque(owner);
            ops.u32(1).u32(0).u32(0).u32(0); // CREATE, UNCHECKED4, no attributes
            ops.u32(0).opaque(name); // CLAIM_NULL
            let res = self.compound(3, &ops.0);
            let (_, results) = statuses(&res);
            let status = results.last().unwrap().1;
            if status != 0 {
                return (status, Vec::new());
            }
            let mut r = R(&res);
            r.u32();
            r.opaque();
            r.u32();
            r.raw(8 + 36 + 8 + 8);
            (0, r.raw(16))
        }

        /// SEQUENCE in `slot` with `seqid`, encoded.
        pub fn sequence(&self, slot: u32, seqid: u32) -> W {
            let mut op = W::default();
            op.u32(53).raw(&self.session).u32(seqid).u32(slot).u32(3).u32(1);
            op
        }
    }

    /// The bytes of the last operation's result after its status (the
    /// operations before it: SEQUENCE, then ones without a result body).
    pub fn last_body(res: &[u8]) -> Vec<u8> {
        let mut r = R(res);
        r.u32();
        r.opaque();
        let n = r.u32();
        for i in 0..n {
            r.u32();
            let st = r.u32();
            if i + 1 == n || st != 0 {
                break;
            }
            // SEQUENCE's result; those between (PUTFH, LOOKUP) have none.
            if i == 0 {
                r.raw(16 + 20);
            }
        }
        r.0.to_vec()
    }

    /// A COMPOUND4res: its status and each operation's (number, status),
    /// and the bytes after the SEQUENCE result.
    pub fn statuses(res: &[u8]) -> (u32, Vec<(u32, u32)>) {
        let mut r = R(res);
        let status = r.u32();
        r.opaque();
        let n = r.u32();
        let mut ops = Vec::new();
        for _ in 0..n {
            let op = r.u32();
            let st = r.u32();
            ops.push((op, st));
            match (op, st) {
                (53, 0) => {
                    r.raw(16 + 20);
                }
                // PUTFH, PUTROOTFH, LOOKUP: no result body.
                (22 | 24 | 15, 0) => {}
                // What follows is not parsed here.
                _ => break,
            }
        }
        (status, ops)
    }
}

/// What the session's slot table promises, seen by a client of our own
/// that resends: a retried CREATE (same slot, same sequence id) is answered
/// with the first reply, byte for byte, and not run again; a sequence id
/// out of order is refused. And locks: a v3 client's NLM lock and this v4
/// client's LOCK conflict both ways, as do two v4 clients' locks and their
/// share reservations (OPEN's deny), and a v4 client that goes silent loses
/// its lock after one and a half leases.
#[test]
fn a_retried_call_is_answered_from_its_slot_and_a_silent_clients_locks_lapse() {
    use v41::{statuses, Client, W};
    let dir = temp_dir();
    let export = format!("/data={}:no_root_squash,insecure", dir.path().display());
    let server = Served::start_with(&[export], &["--nfs4", "--nfs4-lease", "2"]);
    let port = server.addr.port();
    let mut c = Client::connect(port);
    c.establish(b"it-client-1");

    // The export's root handle.
    let mut ops = c.sequence(0, 1);
    ops.u32(24).u32(15).opaque(b"data").u32(10);
    let res = c.compound(4, &ops.0);
    let (status, _) = statuses(&res);
    assert_eq!(status, 0, "PUTROOTFH, LOOKUP, GETFH");
    let root = {
        // SEQUENCE, PUTROOTFH, LOOKUP, then GETFH's handle.
        let mut r = v41::R(&res);
        r.u32();
        r.opaque();
        r.u32();
        r.u32();
        r.u32();
        r.raw(36);
        for _ in 0..2 {
            r.u32();
            r.u32();
        }
        assert_eq!((r.u32(), r.u32()), (10, 0));
        r.opaque()
    };

    // CREATE a directory in slot 1, then the very same call again.
    let mut ops = c.sequence(1, 1);
    ops.u32(22).opaque(&root).u32(6).u32(2).opaque(b"once").u32(0).u32(0);
    let first = c.compound(3, &ops.0);
    assert_eq!(statuses(&first).0, 0, "CREATE");
    assert!(dir.path().join("once").is_dir());
    let again = c.compound(3, &ops.0);
    assert_eq!(again, first, "the retry gets the first reply, byte for byte");
    // Run again, it would have failed: a new call that does is refused.
    let mut ops = c.sequence(1, 2);
    ops.u32(22).opaque(&root).u32(6).u32(2).opaque(b"once").u32(0).u32(0);
    let (_, results) = statuses(&c.compound(3, &ops.0));
    assert_eq!(results.last(), Some(&(6, 17)), "a new CREATE of it: NFS4ERR_EXIST");
    let (_, results) = statuses(&c.compound(1, &c.sequence(1, 9).0));
    assert_eq!(results, vec![(53, 10063)], "a sequence id out of order: NFS4ERR_SEQ_MISORDERED");
    let (_, results) = statuses(&c.compound(1, &c.sequence(4, 1).0));
    assert_eq!(results, vec![(53, 10053)], "a slot past the table: NFS4ERR_BADSLOT");
    let mut lone = W::default();
    lone.u32(24);
    let (_, results) = statuses(&c.compound(1, &lone.0));
    assert_eq!(results, vec![(24, 10071)], "no SEQUENCE first: NFS4ERR_OP_NOT_IN_SESSION");

    // OPEN (create) a file for writing, LOCK all of it.
    let (status, open_stateid) = c.open(2, 1, &root, b"locked", 3, 0, b"open-owner");
    assert_eq!(status, 0, "OPEN");
    assert!(dir.path().join("locked").is_file());
    let nlm = |args: &[&str]| {
        let url = format!("nfs://127.0.0.1/data?nfsport={port}&mountport={port}");
        let (op, rest) = args.split_first().unwrap();
        let out = Command::new(nlmtool()).arg(op).arg(&url).args(rest).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let lock = |c: &mut Client, slot: u32, seqid: u32| {
        let mut ops = c.sequence(slot, seqid);
        ops.u32(22).opaque(&root).u32(15).opaque(b"locked");
        ops.u32(12).u32(2).u32(0).u64(0).u64(u64::MAX).u32(1);
        ops.u32(0).raw(&open_stateid).u32(0).u64(c.clientid).opaque(b"lock-owner");
        let (_, results) = statuses(&c.compound(4, &ops.0));
        *results.last().unwrap()
    };
    // A v3 client holds it first: the v4 LOCK is denied.
    assert!(nlm(&["lock", "locked", "v3host", "5", "w", "0", "0"]).contains("NLM4_GRANTED"));
    assert_eq!(lock(&mut c, 3, 1), (12, 10010), "held over NLM: NFS4ERR_DENIED");
    assert!(nlm(&["unlock", "locked", "v3host", "5", "0", "0"]).contains("NLM4_GRANTED"));
    assert_eq!(lock(&mut c, 3, 2), (12, 0), "free again: granted");
    let held = nlm(&["lock", "locked", "v3host", "5", "w", "0", "1"]);
    assert!(held.contains("NLM4_DENIED"), "a v4 lock stops a v3 client: {held}");

    // A second v4.1 client: the first's lock stops its LOCK; share
    // reservations between the two.
    let mut d = Client::connect(port);
    d.establish(b"it-client-2");
    let (status, d_open) = d.open(0, 1, &root, b"locked", 3, 0, b"d-owner");
    assert_eq!(status, 0);
    let mut ops = d.sequence(0, 2);
    ops.u32(22).opaque(&root).u32(15).opaque(b"locked");
    ops.u32(12).u32(1).u32(0).u64(0).u64(10).u32(1);
    ops.u32(0).raw(&d_open).u32(0).u64(d.clientid).opaque(b"d-lock-owner");
    let (_, results) = statuses(&d.compound(4, &ops.0));
    assert_eq!(results.last(), Some(&(12, 10010)), "a read lock under the other client's write lock: DENIED");
    assert_eq!(c.open(2, 2, &root, b"shared", 1, 2, b"open-owner").0, 0, "c reads shared, denying writers");
    assert_eq!(d.open(0, 3, &root, b"shared", 2, 0, b"d-owner").0, 10015, "d may not write: SHARE_DENIED");
    assert_eq!(d.open(0, 4, &root, b"shared", 1, 0, b"d-owner").0, 0, "d may read");
    assert_eq!(c.open(2, 3, &root, b"shared", 1, 1, b"open-owner").0, 10015, "nor deny reading now d reads");

    // A v3 client's NLM SHARE and v4 opens weigh against each other.
    assert_eq!(c.open(2, 4, &root, b"nlmshared", 1, 0, b"open-owner").0, 0);
    let mut ops = c.sequence(2, 5);
    ops.u32(22).opaque(&root).u32(15).opaque(b"nlmshared").u32(10);
    let res = c.compound(4, &ops.0);
    let fh = {
        let mut r = v41::R(&res);
        r.u32();
        r.opaque();
        r.u32();
        r.u32();
        r.u32();
        r.raw(36);
        for _ in 0..2 {
            r.u32();
            r.u32();
        }
        assert_eq!((r.u32(), r.u32()), (10, 0));
        r.opaque()
    };
    let mut nlm_share = |caller: &[u8], deny: u32, access: u32| {
        let mut args = W::default();
        args.opaque(b"ck").opaque(caller).opaque(&fh).opaque(caller).u32(deny).u32(access).u32(0);
        let reply = c.call_prog(100021, 4, 20, &args.0);
        let mut r = v41::R(&reply);
        r.opaque();
        r.u32()
    };
    assert_eq!(nlm_share(b"v3-reader", 2, 1), 0, "a v3 reader denying writers is granted beside a v4 reader");
    assert_eq!(nlm_share(b"v3-other", 1, 1), 1, "denying readers is refused: the v4 client reads it");
    assert_eq!(
        d.open(0, 5, &root, b"nlmshared", 2, 0, b"d-owner").0,
        10015,
        "the NLM share denies v4 writers"
    );

    // Silent now: after one and a half leases (3 s) the lock is gone.
    std::thread::sleep(Duration::from_millis(2000));
    assert!(
        nlm(&["test", "locked", "v3host", "5", "w", "0", "1"]).contains("NLM4_DENIED"),
        "within the lease"
    );
    std::thread::sleep(Duration::from_millis(2000));
    let after = nlm(&["lock", "locked", "v3host", "5", "w", "0", "1"]);
    assert!(after.contains("NLM4_GRANTED"), "the silent client's lock lapsed: {after}");
    let (_, results) = statuses(&c.compound(1, &c.sequence(0, 2).0));
    assert_eq!(results, vec![(53, 10052)], "its session is gone: NFS4ERR_BADSESSION");
    server.stop();
}

/// `vnas node run`: every vserver of the node answers NFSv4 on its own
/// address (by default, or with `--nfs4`), with the same files after a
/// move to another such node; a node run with `--nfs4 false` answers v3
/// only.
#[test]
fn nodes_with_nfs4_serve_it_on_each_vserver_and_after_a_move() {
    let top = temp_dir();
    let store = top.path().join("store");
    let spawn = |name: &str, nfs4: Option<bool>| {
        let mut command = NodeProc::command(name, &store);
        match nfs4 {
            Some(true) => {
                command.arg("--nfs4");
            }
            Some(false) => {
                command.args(["--nfs4", "false"]);
            }
            None => {}
        }
        NodeProc::spawn(command)
    };
    let n1 = spawn("n1", None);
    let n2 = spawn("n2", Some(true));
    let n3 = spawn("n3", Some(false));
    let vol = top.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    std::fs::write(vol.join("hello.txt"), b"over v4\n").unwrap();
    let volume = format!("/data={}", vol.display());
    cli_json(
        &n1.api,
        &["vserver", "create", "four", "--ip", "127.0.41.1", "--volume", &volume, "--node", "n1"],
    );
    let cat = || run("nfs-cat", &["nfs://127.0.41.1/data/hello.txt?version=4"]);
    let (ok, read, err) = cat();
    assert!(ok && read == b"over v4\n", "v4 from n1: {err}");
    cli_json(&n1.api, &["vserver", "move", "four", "--to", "n2"]);
    let (ok, read, err) = cat();
    assert!(ok && read == b"over v4\n", "v4 from n2 after the move: {err}");
    cli_json(&n1.api, &["vserver", "move", "four", "--to", "n3"]);
    let (ok, _, _) = cat();
    assert!(!ok, "n3 was started with --nfs4 false");
    let (ok, read, err) = run("nfs-cat", &["nfs://127.0.41.1/data/hello.txt?nfsport=2049&mountport=2049"]);
    assert!(ok && read == b"over v4\n", "v3 from n3: {err}");
    n1.stop();
    n2.stop();
    n3.stop();
}

/// NFSv4.0's open-owner sequence ids, with a client of our own: an OPEN
/// retransmitted with the same sequence id gets its first result (a
/// GUARDED create run twice would fail), an id out of order is refused,
/// and a CLOSE retransmitted after the open is gone gets its first result.
#[test]
fn nfsv40_retransmissions_of_an_open_owner_get_their_first_result() {
    use v41::{Client, R, W};
    let dir = temp_dir();
    let export = format!("/data={}:no_root_squash,insecure", dir.path().display());
    let server = Served::start_with(&[export], &["--nfs4"]);
    let mut c = Client::connect(server.addr.port());
    // SETCLIENTID, SETCLIENTID_CONFIRM.
    let mut op = W::default();
    op.u32(35).raw(&[3; 8]).opaque(b"it-v40").u32(0x4000_0000).opaque(b"tcp").opaque(b"127.0.0.1.0.0").u32(1);
    let res = c.compound_minor(0, 1, &op.0);
    let mut r = R(&res);
    assert_eq!(r.u32(), 0, "SETCLIENTID");
    r.opaque();
    r.u32();
    r.u32();
    r.u32();
    let clientid = r.u64();
    let confirm = r.raw(8);
    let mut op = W::default();
    op.u32(36).u64(clientid).raw(&confirm);
    assert_eq!(R(&c.compound_minor(0, 1, &op.0)).u32(), 0, "SETCLIENTID_CONFIRM");

    let open = |seqid: u32| {
        let mut ops = W::default();
        ops.u32(24).u32(15).opaque(b"data");
        ops.u32(18).u32(seqid).u32(3).u32(0).u64(clientid).opaque(b"owner-40");
        ops.u32(1).u32(1).u32(0).u32(0); // CREATE, GUARDED4, no attributes
        ops.u32(0).opaque(b"once.txt");
        ops.u32(10); // GETFH: the opened file is current after a replay too
        ops
    };
    let first = c.compound_minor(0, 4, &open(7).0);
    assert_eq!(R(&first).u32(), 0, "OPEN (GUARDED create)");
    assert!(dir.path().join("once.txt").is_file());
    let again = c.compound_minor(0, 4, &open(7).0);
    assert_eq!(again, first, "the retransmission gets the first result, byte for byte");
    let res = c.compound_minor(0, 4, &open(9).0);
    assert_eq!(R(&res).u32(), 10026, "a sequence id out of order: NFS4ERR_BAD_SEQID");
    let res = c.compound_minor(0, 4, &open(8).0);
    assert_eq!(R(&res).u32(), 17, "the next id runs: the GUARDED create finds the file (NFS4ERR_EXIST)");

    // The stateid from the first OPEN's result.
    let stateid = {
        let mut r = R(&first);
        r.u32();
        r.opaque();
        r.u32();
        for _ in 0..2 {
            r.u32();
            r.u32();
        }
        assert_eq!((r.u32(), r.u32()), (18, 0));
        r.raw(16)
    };
    let close = |c: &mut Client, seqid: u32| {
        let mut ops = W::default();
        ops.u32(24).u32(15).opaque(b"data").u32(15).opaque(b"once.txt");
        ops.u32(4).u32(seqid).raw(&stateid);
        c.compound_minor(0, 4, &ops.0)
    };
    // The EXIST above used id 8 (a status that uses up its id).
    let closed = close(&mut c, 9);
    assert_eq!(R(&closed).u32(), 0, "CLOSE");
    assert_eq!(close(&mut c, 9), closed, "a retransmitted CLOSE gets its first result");
    server.stop();
}

/// NFSv4.1's back channel, as a client of our own sees it: a session made
/// with CREATE_SESSION4_FLAG_CONN_BACK_CHAN gets it, OPEN then says the
/// client may be told of free locks (OPEN4_RESULT_MAY_NOTIFY_LOCK), and
/// when a v3 client's lock that denied its blocking LOCK goes, the server
/// calls it on its own connection: CB_COMPOUND with CB_SEQUENCE (its
/// session, slot 0, the next sequence id) and CB_NOTIFY_LOCK naming the
/// file and the lock owner as the client sent them. A callback the
/// client answers out of sequence is sent again with the next id. A
/// session without a back channel is never called, nor told it may be.
#[test]
fn a_client_waiting_for_a_lock_is_called_back_when_it_is_free() {
    use v41::{last_body, statuses, Client, R};
    let dir = temp_dir();
    let export = format!("/data={}:no_root_squash,insecure", dir.path().display());
    let server = Served::start_with(&[export], &["--nfs4"]);
    let port = server.addr.port();
    let mut c = Client::connect(port);
    assert_eq!(c.establish_flags(b"it-back-channel", 0x2), 0x2, "the back channel granted");
    let mut ops = c.sequence(0, 1);
    ops.u32(24).u32(15).opaque(b"data").u32(10);
    let root = R(&last_body(&c.compound(4, &ops.0))).opaque();
    // OPEN4_RESULT_MAY_NOTIFY_LOCK (0x20) in OPEN's result flags.
    let open_flags = |c: &mut Client, slot: u32, seqid: u32, owner: &[u8]| {
        let mut ops = c.sequence(slot, seqid);
        ops.u32(22).opaque(&root);
        ops.u32(18).u32(0).u32(3).u32(0).u64(c.clientid).opaque(owner);
        ops.u32(1).u32(0).u32(0).u32(0).u32(0).opaque(b"waited");
        ops.u32(10);
        let res = c.compound(4, &ops.0);
        assert_eq!(statuses(&res).0, 0, "OPEN");
        let mut r = R(&res);
        r.u32();
        r.opaque();
        r.u32();
        r.raw(8 + 36 + 8 + 8);
        let stateid = r.raw(16);
        r.raw(20);
        let flags = r.u32();
        let bitmap = r.u32() as usize;
        r.raw(4 * bitmap + 4);
        r.raw(8); // GETFH's number and status
        (stateid, flags, r.opaque())
    };
    let (stateid, flags, fh) = open_flags(&mut c, 1, 1, b"open-owner");
    assert_eq!(flags & 0x20, 0x20, "OPEN tells a client with a back channel it may be notified: {flags:#x}");
    let nlm = |args: &[&str]| {
        let url = format!("nfs://127.0.0.1/data?nfsport={port}&mountport={port}");
        let (op, rest) = args.split_first().unwrap();
        let out = Command::new(nlmtool()).arg(op).arg(&url).args(rest).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // WRITEW_LT (4), a new lock owner beside the open.
    let lockw = |c: &mut Client, seqid: u32| {
        let mut ops = c.sequence(2, seqid);
        ops.u32(22).opaque(&fh);
        ops.u32(12).u32(4).u32(0).u64(0).u64(u64::MAX).u32(1);
        ops.u32(0).raw(&stateid).u32(0).u64(c.clientid).opaque(b"waiting-owner");
        let res = c.compound(3, &ops.0);
        (*statuses(&res).1.last().unwrap(), last_body(&res))
    };
    let callback = |c: &mut Client| -> (u32, u32, Vec<u8>, Vec<u8>) {
        let call =
            c.next_call(std::time::Duration::from_secs(3)).expect("a callback within 3 s of the release");
        let mut r = R(&call);
        let xid = r.u32();
        assert_eq!(
            (r.u32(), r.u32(), r.u32(), r.u32(), r.u32()),
            (0, 2, 0x4000_0000, 1, 1),
            "a CB_COMPOUND call"
        );
        assert_eq!(r.u32(), 0, "AUTH_NONE, the flavour offered");
        r.opaque();
        r.u32();
        r.opaque();
        assert!(r.opaque().is_empty(), "tag");
        assert_eq!((r.u32(), r.u32(), r.u32()), (1, 0, 2), "minor version 1, two operations");
        assert_eq!(r.u32(), 11, "CB_SEQUENCE first");
        assert_eq!(r.raw(16), c.session.to_vec(), "the client's session");
        let seq = r.u32();
        assert_eq!(
            (r.u32(), r.u32(), r.u32(), r.u32()),
            (0, 0, 0, 0),
            "slot 0, not cached, no referring calls"
        );
        assert_eq!(r.u32(), 13, "CB_NOTIFY_LOCK");
        let file = r.opaque();
        assert_eq!(r.u64(), c.clientid);
        (xid, seq, file, r.opaque())
    };

    assert!(nlm(&["lock", "waited", "v3host", "5", "w", "0", "0"]).contains("NLM4_GRANTED"));
    assert_eq!(lockw(&mut c, 1).0, (12, 10010), "held over NLM: DENIED");
    assert!(c.next_call(std::time::Duration::from_millis(300)).is_none(), "no callback while it is held");
    assert!(nlm(&["unlock", "waited", "v3host", "5", "0", "0"]).contains("NLM4_GRANTED"));
    let (xid, seq, file, owner) = callback(&mut c);
    assert_eq!((seq, file.as_slice(), owner.as_slice()), (1, fh.as_slice(), &b"waiting-owner"[..]));
    c.answer_callback(xid, &c.session.clone(), seq, 0);
    let (result, lock_stateid) = lockw(&mut c, 2);
    assert_eq!(result, (12, 0), "told, it asks again and gets the lock");
    let mut ops = c.sequence(2, 3);
    ops.u32(22).opaque(&fh).u32(14).u32(2).u32(0).raw(&lock_stateid[..16]).u64(0).u64(u64::MAX);
    assert_eq!(statuses(&c.compound(3, &ops.0)).0, 0, "LOCKU");

    // Again: the next sequence id; answered out of sequence (as a client
    // whose slot moved on answers), the call comes again with the next.
    assert!(nlm(&["lock", "waited", "v3host", "5", "w", "0", "0"]).contains("NLM4_GRANTED"));
    assert_eq!(lockw(&mut c, 4).0, (12, 10010));
    assert!(nlm(&["unlock", "waited", "v3host", "5", "0", "0"]).contains("NLM4_GRANTED"));
    let (xid, seq, ..) = callback(&mut c);
    assert_eq!(seq, 2, "the next sequence id");
    c.answer_callback(xid, &c.session.clone(), seq, 10063);
    let (xid, again, file, _) = callback(&mut c);
    assert_eq!((again, file), (3, fh.clone()), "sent again with the next sequence id");
    c.answer_callback(xid, &c.session.clone(), again, 0);

    // A session without a back channel: not told it may be notified, and
    // never called.
    let mut d = Client::connect(port);
    assert_eq!(d.establish_flags(b"it-no-back-channel", 0), 0);
    let (_, flags, _) = open_flags(&mut d, 1, 1, b"d-open-owner");
    assert_eq!(flags & 0x20, 0, "{flags:#x}");
    assert!(d.next_call(std::time::Duration::from_millis(300)).is_none());
    drop(server);
}

/// The ID-mapping domain: with `--nfs4-domain`, GETATTR tells owners as
/// "name@domain" from the server's own user and group databases, and
/// SETATTR takes names of that domain or numbers; a name of another
/// domain is NFS4ERR_BADOWNER and changes nothing. Without it, numbers.
#[test]
fn owners_are_names_of_the_id_mapping_domain_when_one_is_set() {
    use v41::{last_body, statuses, Client, R, W};
    let dir = temp_dir();
    std::fs::write(dir.path().join("owned"), b"x").unwrap();
    let export = format!("/data={}:no_root_squash,insecure", dir.path().display());
    // owner (36) and owner_group (37): word 1, bits 4 and 5.
    let owners = |c: &mut Client, seqid: u32, fh: &[u8]| -> (String, String) {
        let mut ops = c.sequence(0, seqid);
        ops.u32(22).opaque(fh).u32(9).u32(2).u32(0).u32(0b11_0000);
        let body = last_body(&c.compound(3, &ops.0));
        let mut r = R(&body);
        let words = r.u32();
        r.raw(4 * words as usize);
        let values = r.opaque();
        let mut r = R(&values);
        let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
        (text(r.opaque()), text(r.opaque()))
    };
    let set_owner = |c: &mut Client, seqid: u32, fh: &[u8], owner: &str| -> u32 {
        let mut values = W::default();
        values.opaque(owner.as_bytes());
        let mut ops = c.sequence(0, seqid);
        ops.u32(22).opaque(fh).u32(34).raw(&[0; 16]).u32(2).u32(0).u32(0b1_0000).opaque(&values.0);
        *statuses(&c.compound(3, &ops.0)).1.last().map(|(_, st)| st).unwrap()
    };
    use std::os::unix::fs::MetadataExt;
    let uid = || std::fs::metadata(dir.path().join("owned")).unwrap().uid();

    let server = Served::start_with(std::slice::from_ref(&export), &["--nfs4-domain", "example.test"]);
    let mut c = Client::connect(server.addr.port());
    c.establish(b"it-idmap");
    let (_, fh) = root_and(&mut c, 0, 1, b"owned");
    assert_eq!(owners(&mut c, 3, &fh), ("root@example.test".into(), "root@example.test".into()));
    assert_eq!(set_owner(&mut c, 4, &fh, "1234"), 0, "a number is taken");
    assert_eq!(uid(), 1234);
    assert_eq!(owners(&mut c, 5, &fh).0, "1234", "an id with no name is told as the number");
    assert_eq!(set_owner(&mut c, 6, &fh, "root@elsewhere.test"), 10039, "NFS4ERR_BADOWNER");
    assert_eq!(set_owner(&mut c, 7, &fh, "no-such-user-here@example.test"), 10039);
    assert_eq!(uid(), 1234, "a refused owner changes nothing");
    assert_eq!(set_owner(&mut c, 8, &fh, "root@EXAMPLE.TEST"), 0, "a name of the domain");
    assert_eq!(uid(), 0);
    server.stop();

    let server = Served::start_with(&[export], &[]);
    let mut c = Client::connect(server.addr.port());
    c.establish(b"it-no-idmap");
    let (_, fh) = root_and(&mut c, 0, 1, b"owned");
    assert_eq!(owners(&mut c, 3, &fh), ("0".into(), "0".into()), "no domain: numbers");
    assert_eq!(set_owner(&mut c, 4, &fh, "root@example.test"), 10039, "no domain: names are not taken");
    server.stop();
}

/// The root of export /data and the handle of `name` in it, as a session
/// call in `slot` with `seqid`.
fn root_and(c: &mut v41::Client, slot: u32, seqid: u32, name: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut ops = c.sequence(slot, seqid);
    ops.u32(24).u32(15).opaque(b"data").u32(10);
    let root = v41::R(&v41::last_body(&c.compound(4, &ops.0))).opaque();
    let mut ops = c.sequence(slot, seqid + 1);
    ops.u32(22).opaque(&root).u32(15).opaque(name).u32(10);
    let file = v41::R(&v41::last_body(&c.compound(4, &ops.0))).opaque();
    (root, file)
}

/// NFSv4.1 state moves with the vserver. A planned move hands it over
/// whole: the client goes on in its session over a new connection, a
/// retried call gets the reply the first node gave, its open and lock
/// stateids still serve, and another client is still refused. After a
/// SIGKILL failover the next owner serves what the dead one journaled:
/// the session is gone (its slots moved on after the record), the client
/// makes a new one under the same client ID, and its opens and locks are
/// there, with no reclaim and no grace.
#[test]
fn nfsv41_state_moves_with_the_vserver_and_survives_a_failover() {
    use v41::{last_body, statuses, Client, R};
    let top = temp_dir();
    let store = top.path().join("store");
    let spawn = |name: &str| {
        let mut command = NodeProc::command(name, &store);
        command.arg("--nfs4");
        NodeProc::spawn(command)
    };
    let (n1, n2, n3) = (spawn("n1"), spawn("n2"), spawn("n3"));
    let vol = top.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    let volume = format!("/data={}", vol.display());
    cli_json(
        &n1.api,
        &["vserver", "create", "st", "--ip", "127.0.41.2", "--volume", &volume, "--node", "n1"],
    );
    let addr = ("127.0.41.2", 2049);
    let mut c = Client::connect_to(addr);
    c.establish(b"moving-client");
    let mut ops = c.sequence(0, 1);
    ops.u32(24).u32(15).opaque(b"data").u32(10);
    let root = R(&last_body(&c.compound(4, &ops.0))).opaque();
    let (status, open) = c.open(0, 2, &root, b"f", 3, 0, b"open-owner");
    assert_eq!(status, 0, "OPEN");
    let (_, fh) = root_and(&mut c, 0, 3, b"f");
    let mut ops = c.sequence(0, 5);
    ops.u32(22).opaque(&fh);
    ops.u32(12).u32(2).u32(0).u64(0).u64(u64::MAX).u32(1);
    ops.u32(0).raw(&open).u32(0).u64(c.clientid).opaque(b"lock-owner");
    let res = c.compound(3, &ops.0);
    assert_eq!(statuses(&res).1.last(), Some(&(12, 0)), "LOCK");
    let lock_stateid = R(&last_body(&res)).raw(16);
    // A CREATE in slot 1, whose reply the slot keeps.
    let mut create = c.sequence(1, 1);
    create.u32(22).opaque(&root).u32(6).u32(2).opaque(b"made-once").u32(0).u32(0);
    let first = c.compound(3, &create.0);
    assert_eq!(statuses(&first).0, 0, "CREATE");

    let write = |c: &mut Client, slot: u32, seqid: u32, stateid: &[u8]| {
        let mut ops = c.sequence(slot, seqid);
        ops.u32(22).opaque(&fh);
        ops.u32(38).raw(stateid).u64(0).u32(2).opaque(b"still mine\n");
        let (_, results) = statuses(&c.compound(3, &ops.0));
        *results.last().unwrap()
    };
    // Another client: refused the lock and a share that denies writing.
    let mut d = Client::connect_to(addr);
    d.establish(b"other-client");
    let refused = |d: &mut Client, seqid: u32| {
        let (status, _) = d.open(0, seqid, &root, b"f", 1, 2, b"d-owner");
        let mut ops = d.sequence(0, seqid + 1);
        ops.u32(22).opaque(&fh).u32(13).u32(2).u64(0).u64(1);
        ops.u64(d.clientid).opaque(b"d-lock-owner");
        let (_, results) = statuses(&d.compound(3, &ops.0));
        (status, *results.last().unwrap())
    };
    assert_eq!(refused(&mut d, 1), (10015, (13, 10010)), "SHARE_DENIED, and LOCKT: DENIED");

    // A planned move: the same session, slots and states on n2.
    let moved = cli_json(&n1.api, &["vserver", "move", "st", "--to", "n2"]);
    assert_eq!(moved["to"], "n2");
    c.reconnect(addr);
    d.reconnect(addr);
    assert_eq!(c.compound(3, &create.0), first, "the retried CREATE gets n1's reply, byte for byte");
    assert_eq!(write(&mut c, 0, 6, &open), (38, 0), "WRITE with the open stateid, in the same session");
    assert_eq!(refused(&mut d, 3), (10015, (13, 10010)), "the other client is still refused");
    let history = cli_json(&n1.api, &["vserver", "history", "st"]);
    let last = history.as_array().unwrap().last().unwrap().clone();
    let said = last["locks"].as_str().unwrap_or_default().to_string();
    assert!(said.contains("NFSv4: 2 clients, 2 sessions") && said.contains("handed over"), "{last}");

    // SIGKILL: the next owner goes on from n2's journal.
    n2.kill();
    eventually(10, "another node to serve st", || {
        let view = cli_json(&n1.api, &["vserver", "show", "st"]);
        view["state"] == "running" && view["node"] != "n2"
    });
    c.reconnect(addr);
    let (_, results) = statuses(&c.compound(1, &c.sequence(0, 7).0));
    assert_eq!(results, vec![(53, 10052)], "the session went with n2: NFS4ERR_BADSESSION");
    assert_eq!(c.create_session(2), 0, "a new session under the same client ID");
    assert_eq!(write(&mut c, 0, 1, &open), (38, 0), "the open stateid still serves");
    d.reconnect(addr);
    assert_eq!(d.create_session(2), 0);
    assert_eq!(refused(&mut d, 1), (10015, (13, 10010)), "the lock and the share are still c's");
    let mut ops = c.sequence(0, 2);
    ops.u32(22).opaque(&fh).u32(14).u32(2).u32(0).raw(&lock_stateid).u64(0).u64(u64::MAX);
    let (_, results) = statuses(&c.compound(3, &ops.0));
    assert_eq!(results.last(), Some(&(14, 0)), "LOCKU with the lock stateid n1 gave");
    let (_, results) = statuses(&{
        let mut ops = d.sequence(0, 3);
        ops.u32(22).opaque(&fh).u32(13).u32(2).u64(0).u64(1);
        ops.u64(d.clientid).opaque(b"d-lock-owner");
        d.compound(3, &ops.0)
    });
    assert_eq!(results.last(), Some(&(13, 0)), "free once c let go");
    let history = cli_json(&n1.api, &["vserver", "history", "st"]);
    let last = history.as_array().unwrap().last().unwrap().clone();
    assert!(last["locks"].as_str().unwrap_or_default().contains("from the journal"), "{last}");
    n1.stop();
    n3.stop();
}

/// When a vserver's NFSv4 state cannot be read (here: its record garbled
/// while it was stopped), that vserver alone goes into grace: the clients
/// the store lists reclaim their opens and locks (CLAIM_PREVIOUS, LOCK
/// with reclaim), nobody else gets a new open or lock (NFSv4 or NLM) until
/// every listed client has sent RECLAIM_COMPLETE, and another vserver on
/// the same node never waits.
#[test]
fn an_unreadable_nfs4_record_puts_only_its_vserver_in_grace_until_its_clients_reclaim() {
    use v41::{last_body, statuses, Client, R};
    let top = temp_dir();
    let store = top.path().join("store");
    let mut command = NodeProc::command("n1", &store);
    command.arg("--nfs4");
    let n1 = NodeProc::spawn(command);
    for (name, ip) in [("gr", "127.0.41.3"), ("calm", "127.0.41.4")] {
        let vol = top.path().join(name);
        std::fs::create_dir(&vol).unwrap();
        let volume = format!("/data={}", vol.display());
        cli_json(&n1.api, &["vserver", "create", name, "--ip", ip, "--volume", &volume, "--node", "n1"]);
    }
    let addr = ("127.0.41.3", 2049);
    let mut c = Client::connect_to(addr);
    c.establish(b"grace-client");
    let (status, open) = {
        let mut ops = c.sequence(0, 1);
        ops.u32(24).u32(15).opaque(b"data").u32(10);
        let root = R(&last_body(&c.compound(4, &ops.0))).opaque();
        c.open(0, 2, &root, b"f", 3, 2, b"open-owner")
    };
    assert_eq!(status, 0);
    let (root, fh) = root_and(&mut c, 0, 3, b"f");
    let lock = |c: &mut Client, seqid: u32, stateid: &[u8], reclaim: u32| {
        let mut ops = c.sequence(0, seqid);
        ops.u32(22).opaque(&fh);
        ops.u32(12).u32(2).u32(reclaim).u64(0).u64(u64::MAX).u32(1);
        ops.u32(0).raw(stateid).u32(0).u64(c.clientid).opaque(b"lock-owner");
        let (_, results) = statuses(&c.compound(3, &ops.0));
        results.last().unwrap().1
    };
    assert_eq!(lock(&mut c, 5, &open, 0), 0, "LOCK");
    cli_json(&n1.api, &["vserver", "stop", "gr"]);
    std::fs::write(store.join("vservers/gr/nfs4.log"), b"{garbled\n").unwrap();
    cli_json(&n1.api, &["vserver", "start", "gr"]);
    let history = cli_json(&n1.api, &["vserver", "history", "gr"]);
    let said = history.as_array().unwrap().last().unwrap()["locks"].as_str().unwrap_or_default().to_string();
    assert!(
        said.contains("unreadable") && said.contains("grace period for this vserver until its 1 listed"),
        "{said}"
    );

    // The client finds its ID gone and makes a new one (same owner).
    c.reconnect(addr);
    assert_eq!(c.create_session(2), 10022, "NFS4ERR_STALE_CLIENTID");
    c.establish(b"grace-client");
    assert_eq!(c.open(0, 1, &root, b"g", 3, 0, b"open-owner").0, 10013, "a new open: NFS4ERR_GRACE");
    let nlm = |args: &[&str]| {
        let url = "nfs://127.0.41.3/data?nfsport=2049&mountport=2049";
        let (op, rest) = args.split_first().unwrap();
        let out = Command::new(nlmtool()).arg(op).arg(url).args(rest).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let refused = nlm(&["lock", "other", "v3host", "5", "w", "0", "0"]);
    assert!(refused.contains("GRACE"), "nor NLM: {refused}");
    // Another vserver of the node: no grace.
    let mut e = Client::connect_to(("127.0.41.4", 2049));
    e.establish(b"calm-client");
    let mut ops = e.sequence(0, 1);
    ops.u32(24).u32(15).opaque(b"data").u32(10);
    let calm_root = R(&last_body(&e.compound(4, &ops.0))).opaque();
    assert_eq!(e.open(0, 2, &calm_root, b"h", 3, 0, b"o").0, 0, "the other vserver opens at once");
    // A client not on the list: no reclaim, no new open.
    let mut d = Client::connect_to(addr);
    d.establish(b"late-client");
    assert_eq!(d.open(0, 1, &root, b"g", 1, 0, b"d-owner").0, 10013);

    // The listed client reclaims its open (CLAIM_PREVIOUS) and its lock.
    let mut ops = c.sequence(0, 2);
    ops.u32(22).opaque(&fh);
    ops.u32(18).u32(0).u32(3).u32(2).u64(c.clientid).opaque(b"open-owner");
    ops.u32(0).u32(1).u32(0); // NOCREATE, CLAIM_PREVIOUS, no delegation
    let res = c.compound(3, &ops.0);
    assert_eq!(statuses(&res).1.last(), Some(&(18, 0)), "CLAIM_PREVIOUS in grace");
    let reopened = R(&last_body(&res)).raw(16);
    assert_eq!(lock(&mut c, 3, &reopened, 1), 0, "LOCK with reclaim in grace");
    let v4 = cli_json(&n1.api, &["vserver", "locks", "gr"])["nfs4"].clone();
    assert_eq!(v4["grace_waiting"], 1, "{v4}");
    let mut ops = c.sequence(0, 4);
    ops.u32(58).u32(0);
    assert_eq!(statuses(&c.compound(2, &ops.0)).1.last(), Some(&(58, 0)), "RECLAIM_COMPLETE");

    // Grace over at once: new opens; what was reclaimed holds.
    let v4 = cli_json(&n1.api, &["vserver", "locks", "gr"])["nfs4"].clone();
    assert!(v4["grace_waiting"].is_null() && v4["reclaims"] == 2, "{v4}");
    assert_eq!(d.open(0, 2, &root, b"g", 1, 0, b"d-owner").0, 0, "a new open after the grace");
    assert_eq!(
        d.open(0, 3, &root, b"f", 2, 0, b"d-owner").0,
        10015,
        "the reclaimed open still denies writing"
    );
    let mut ops = d.sequence(0, 4);
    ops.u32(22).opaque(&fh).u32(13).u32(1).u64(0).u64(1).u64(d.clientid).opaque(b"d-lock-owner");
    assert_eq!(statuses(&d.compound(3, &ops.0)).1.last(), Some(&(13, 10010)), "the reclaimed lock holds");
    n1.stop();
}
