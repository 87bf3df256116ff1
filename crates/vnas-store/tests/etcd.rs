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

const VNAS_PASSWORD: &str = "vnas-secret";

#[cfg(feature = "test-pki")]
#[test]
fn etcd_over_tls_with_a_user_passes_the_suite_and_outlives_its_tokens() {
    use vnas_store::etcd::EtcdOptions;
    let dir = tempfile::tempdir().unwrap();
    let pki = vnas_store::etcd::test_cluster::Pki::new(&dir.path().join("pki"));
    let tls =
        EtcdOptions { ca: Some(pki.ca.clone()), identity: Some(pki.client.clone()), ..Default::default() };
    let mut cluster =
        EtcdCluster::start_with(&dir.path().join("etcd"), 3, Some(pki.server.clone()), tls.clone());
    // Auth tokens expire after a second unused (300 s by default).
    cluster.extra_args = vec!["--auth-token-ttl".into(), "1".into()];
    for i in 0..3 {
        cluster.kill_member(i);
        cluster.start_member(i, false);
    }
    cluster.wait_ready();
    let base = cluster.url("");
    let url = |prefix: &str| format!("{base}{prefix}");

    // Plain connections and TLS without a client certificate are refused.
    assert!(EtcdStore::open(&url("suite")).is_err(), "plain text to a TLS member");
    let anonymous = EtcdOptions { identity: None, ..tls.clone() };
    assert!(EtcdStore::open_with(&url("suite"), anonymous).is_err(), "no client certificate");

    cluster.enable_auth("vnas", VNAS_PASSWORD, "suite");
    let as_vnas =
        |password: &str| EtcdOptions { user: Some(("vnas".into(), password.into())), ..tls.clone() };
    let error = EtcdStore::open_with(&url("suite"), as_vnas("wrong")).err().expect("a wrong password");
    assert!(error.to_string().contains("authentication failed"), "{error}");
    let error =
        EtcdStore::open_with(&url("other"), as_vnas(VNAS_PASSWORD)).err().expect("outside its rights");
    assert!(error.to_string().contains("permission denied"), "{error}");

    let next = std::cell::Cell::new(0);
    vnas_store::suite::run_all(
        || {
            next.set(next.get() + 1);
            EtcdStore::open_with(&url(&format!("suite{}", next.get())), as_vnas(VNAS_PASSWORD)).unwrap()
        },
        |_| EtcdStore::open_with(&url(&format!("suite{}", next.get())), as_vnas(VNAS_PASSWORD)).unwrap(),
    );

    // A token unused for its TTL is forgotten, and so is every token
    // after a restart from a snapshot: the store gets a new one.
    let store = EtcdStore::open_with(&url("suite-restart"), as_vnas(VNAS_PASSWORD)).unwrap();
    store.create_vserver(&vnas_store::suite::config("a", "127.0.0.10")).unwrap();
    for i in 0..3 {
        cluster.kill_member(i);
    }
    for i in 0..3 {
        cluster.start_member(i, false);
    }
    cluster.wait_ready();
    std::thread::sleep(std::time::Duration::from_secs(3));
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

/// Address keys written before keys became the bare address
/// (`addresses/198.18.1.10/16`) are rewritten when a store opens, so
/// uniqueness sees them.
#[test]
fn address_keys_of_earlier_records_are_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = EtcdCluster::start(dir.path(), 1);
    let url = cluster.url("migrate");
    let endpoint = url.trim_start_matches("etcd://").split('/').next().unwrap().to_string();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let raw = |key: &'static str, put: Option<&'static str>| {
        runtime.block_on(async {
            let mut client = etcd_client::Client::connect([endpoint.as_str()], None).await.unwrap();
            if let Some(value) = put {
                client.put(key, value, None).await.unwrap();
            }
            client.get(key, None).await.unwrap().kvs().first().map(|kv| kv.value().to_vec())
        })
    };
    raw("migrate/addresses/198.18.1.10/16", Some("old"));
    let store = EtcdStore::open(&url).unwrap();
    assert_eq!(raw("migrate/addresses/198.18.1.10/16", None), None, "the old key is gone");
    assert_eq!(raw("migrate/addresses/198.18.1.10", None).as_deref(), Some(&b"old"[..]));
    let error = store.create_vserver(&vnas_store::suite::config("new", "198.18.1.10/24")).unwrap_err();
    assert!(
        matches!(error, vnas_store::StoreError::AddressInUse { ref vserver, .. } if vserver == "old"),
        "{error}"
    );
}
