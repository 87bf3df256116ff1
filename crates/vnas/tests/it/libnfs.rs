//! libnfs's own tools against the server: a client we did not write, the
//! same one the benchmarks use.

use std::process::Command;

use crate::support::*;

fn run(tool: &str, args: &[&str]) -> String {
    let output = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool} is installed (package libnfs-utils): {e}"));
    assert!(output.status.success(), "{tool} {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Deterministic bytes that no block repeats.
fn pattern(len: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..len / 8)
        .flat_map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()
        })
        .collect()
}

#[test]
fn copy_100_mib_in_and_out() {
    let exported = temp_dir();
    let local = temp_dir();
    let served = Served::start(exported.path(), "");
    let source = local.path().join("source.bin");
    let back = local.path().join("back.bin");
    let data = pattern(100 << 20);
    std::fs::write(&source, &data).unwrap();

    run("nfs-cp", &[source.to_str().unwrap(), &served.url("/data/copy.bin")]);
    assert!(std::fs::read(exported.path().join("copy.bin")).unwrap() == data, "stored byte for byte");
    run("nfs-cp", &[&served.url("/data/copy.bin"), back.to_str().unwrap()]);
    assert!(std::fs::read(&back).unwrap() == data, "read back byte for byte");

    let listing = run("nfs-ls", &[&served.url("/data")]);
    assert!(listing.contains("copy.bin") && listing.contains("104857600"), "{listing}");
    served.stop();
}

#[test]
fn cat_and_list_subdirectories() {
    let exported = temp_dir();
    std::fs::create_dir_all(exported.path().join("a/b")).unwrap();
    std::fs::write(exported.path().join("a/b/hello.txt"), "hello from vnas\n").unwrap();
    let served = Served::start(exported.path(), "");
    assert_eq!(run("nfs-cat", &[&served.url("/data/a/b/hello.txt")]), "hello from vnas\n");
    // Mounting a subdirectory of the export.
    let listing = run("nfs-ls", &[&served.url("/data/a/b")]);
    assert!(listing.contains("hello.txt"), "{listing}");
    served.stop();
}
