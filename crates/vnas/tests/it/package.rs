//! The Debian package as an admin meets it: `scripts/package.sh` builds
//! it; dpkg sees the binary, the systemd unit, the settings file as a
//! conffile and a private /etc/vnas; the unit passes `systemd-analyze
//! verify` with the package unpacked as the root it names; and every key
//! the settings file documents is one the node takes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

fn run(program: &str, args: &[&std::ffi::OsStr]) -> (bool, String, String) {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Copies what `from` has and `to` lacks (systemd's own units, which the
/// unit's dependencies name).
fn copy_missing(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap().map_while(Result::ok) {
        let target = to.join(entry.file_name());
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_missing(&entry.path(), &target);
        } else if !target.exists() && std::fs::symlink_metadata(&target).is_err() {
            if kind.is_symlink() {
                std::os::unix::fs::symlink(std::fs::read_link(entry.path()).unwrap(), &target).unwrap();
            } else {
                std::fs::copy(entry.path(), &target).unwrap();
            }
        }
    }
}

/// `vnas node run --config FILE` (plus `more`) for at most 15 s: its
/// stderr.
fn node_with_config(file: &Path, more: &[&str]) -> String {
    let mut child = vnas_command()
        .args(["node", "run", "--config"])
        .arg(file)
        .args(more)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(15);
    while child.try_wait().unwrap().is_none() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    String::from_utf8_lossy(&child.wait_with_output().unwrap().stderr).into_owned()
}

#[test]
fn the_debian_package_holds_the_binary_a_valid_unit_and_the_settings() {
    let top = temp_dir();
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = repo.join("scripts/package.sh");
    let (ok, stdout, stderr) = run(
        "bash",
        &[
            script.as_os_str(),
            "--binary".as_ref(),
            env!("CARGO_BIN_EXE_vnas").as_ref(),
            "--compress".as_ref(),
            "none".as_ref(),
            "--out".as_ref(),
            top.path().as_os_str(),
        ],
    );
    assert!(ok, "scripts/package.sh: {stderr}");
    let deb = PathBuf::from(stdout.trim());
    assert!(deb.file_name().unwrap().to_string_lossy().starts_with("vnas_"), "{}", deb.display());

    let (ok, contents, err) = run("dpkg-deb", &["-c".as_ref(), deb.as_os_str()]);
    assert!(ok, "{err}");
    let line = |path: &str| {
        contents.lines().find(|l| l.ends_with(path)).unwrap_or_else(|| panic!("{path} in:\n{contents}"))
    };
    assert!(line("./usr/bin/vnas").starts_with("-rwxr-xr-x root/root"), "{contents}");
    assert!(line("./lib/systemd/system/vnas-node.service").starts_with("-rw-r--r-- root/root"), "{contents}");
    assert!(line("./etc/vnas/node.toml").starts_with("-rw-r--r-- root/root"), "{contents}");
    assert!(
        line("./etc/vnas/").starts_with("drwx------ root/root"),
        "the token directory is private: {contents}"
    );
    let (_, fields, _) =
        run("dpkg-deb", &["-f".as_ref(), deb.as_os_str(), "Package".as_ref(), "Depends".as_ref()]);
    assert!(fields.contains("Package: vnas") && fields.contains("nftables"), "{fields}");
    let (ok, conffiles, err) = run("dpkg-deb", &["-I".as_ref(), deb.as_os_str(), "conffiles".as_ref()]);
    assert!(
        ok && conffiles.trim() == "/etc/vnas/node.toml",
        "an upgrade keeps the admin's settings: {conffiles} {err}"
    );

    // The unit, unpacked as the root it names, with systemd's own units.
    let root = top.path().join("root");
    let (ok, _, err) = run("dpkg-deb", &["-x".as_ref(), deb.as_os_str(), root.as_os_str()]);
    assert!(ok, "{err}");
    copy_missing(Path::new("/lib/systemd/system"), &root.join("lib/systemd/system"));
    let root_arg = format!("--root={}", root.display());
    let (ok, out, err) =
        run("systemd-analyze", &["verify".as_ref(), root_arg.as_ref(), "vnas-node.service".as_ref()]);
    assert!(ok && err.trim().is_empty(), "systemd-analyze verify: {out} {err}");
    let unit = std::fs::read_to_string(root.join("lib/systemd/system/vnas-node.service")).unwrap();
    for wanted in [
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "LimitNOFILE=",
        "ExecStart=/usr/bin/vnas node run --config /etc/vnas/node.toml",
    ] {
        assert!(unit.contains(wanted), "{wanted} in the unit");
    }

    // Every key the settings file documents, set at once (the first value
    // of each), is taken: no "unknown field". A key the node does not know
    // is refused, so the check can fail.
    let documented = std::fs::read_to_string(root.join("etc/vnas/node.toml")).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    let mut all = String::new();
    for line in documented.lines() {
        let Some(setting) = line.strip_prefix("# ") else { continue };
        let Some((key, _)) = setting.split_once(" = ") else { continue };
        if key.chars().all(|c| c.is_ascii_lowercase() || c == '_') && seen.insert(key.to_string()) {
            all.push_str(setting);
            all.push('\n');
        }
    }
    assert!(seen.len() >= 20, "the settings file documents the keys: {seen:?}");
    let file = top.path().join("all.toml");
    std::fs::write(&file, &all).unwrap();
    let store = top.path().join("store");
    std::fs::create_dir(&store).unwrap();
    // Flags win: nothing of this machine's /etc is touched, nothing waits.
    let (store_arg, token_arg) =
        (store.display().to_string(), top.path().join("token").display().to_string());
    let overrides =
        ["--store", &store_arg, "--token-file", &token_arg, "--api", "127.0.0.1:0", "--store-wait-s", "1"];
    let said = node_with_config(&file, &overrides);
    assert!(!said.contains("unknown field") && !said.contains("parse error"), "{all}\n{said}");
    std::fs::write(&file, format!("{all}no_such_setting = 1\n")).unwrap();
    let said = node_with_config(&file, &[]);
    assert!(said.contains("unknown field"), "{said}");
}
