//! The store suite against a real three-member etcd, started here.
#![cfg(feature = "etcd")]

use vnas_store::etcd::test_cluster::EtcdCluster;
use vnas_store::{EtcdStore, Store};

#[test]
fn etcd_passes_the_store_suite() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = EtcdCluster::start(dir.path(), 3);
    let next = std::cell::Cell::new(0);
    vnas_store::suite::run_all(
        || {
            next.set(next.get() + 1);
            EtcdStore::open(&cluster.url(&format!("suite{}", next.get()))).unwrap()
        },
        |_| EtcdStore::open(&cluster.url(&format!("suite{}", next.get()))).unwrap(),
    );
}

#[test]
fn an_unreachable_etcd_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let started = std::time::Instant::now();
    let error = EtcdStore::open(&format!("etcd://127.0.0.1:{port}")).err().expect("nothing listens there");
    assert!(error.to_string().contains("etcd"), "{error}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(EtcdStore::open("etcd://").is_err());
}

#[test]
fn one_member_down_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = EtcdCluster::start(dir.path(), 3);
    let store = EtcdStore::open(&cluster.url("one-down")).unwrap();
    store.create_vserver(&vnas_store::suite::config("a", "127.0.0.10")).unwrap();
    cluster.kill_member(0);
    // The client's other endpoints still answer, with the data.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match store.create_vserver(&vnas_store::suite::config("b", "127.0.0.11")) {
            Ok(()) => break,
            Err(error) => assert!(std::time::Instant::now() < deadline, "{error}"),
        }
    }
    let names: Vec<_> = store.vservers().unwrap().into_iter().map(|r| r.config.name).collect();
    assert_eq!(names, ["a", "b"]);
}
