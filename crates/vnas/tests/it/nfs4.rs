//! NFSv4.0 as libnfs's client speaks it (`?version=4`: SETCLIENTID, the
//! pseudo-root, LOOKUP, GETATTR, READDIR, ACCESS, OPEN, READ, CLOSE): a
//! file written over v3 lists and reads back the same over v4. Off by
//! default, so a client that mounts with no options falls back to v3.

use std::process::{Command, Stdio};

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

    // Without --nfs4, version 4 is refused (PROG_MISMATCH) and v3 serves.
    let export = format!("/data={}:no_root_squash,insecure", dir.path().display());
    let server = Served::start_with(&[export], &[]);
    let port = server.addr.port();
    let (ok, _, _) = run("nfs-ls", &[&format!("nfs://127.0.0.1/data?version=4&nfsport={port}")]);
    assert!(!ok, "v4 is off by default");
    let (ok, _, err) = run("nfs-ls", &[&format!("nfs://127.0.0.1/data?nfsport={port}&mountport={port}")]);
    assert!(ok, "v3 serves: {err}");
    server.stop();
}
