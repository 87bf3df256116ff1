//! The test suite every backend must pass. A backend's tests call
//! [`run_all`] with a function that opens a fresh, empty store, and a second
//! function that opens the same store again (as another node would).

use crate::*;

pub fn config(name: &str, address: &str) -> VserverConfig {
    VserverConfig {
        name: name.into(),
        addresses: vec![address.into()],
        volumes: vec![Volume::dir("/data", "/srv/data")],
        exports: vec![Export { path: "/data".into(), rules: vec![ClientRule::default()] }],
        routes: vec![],
        node: "n1".into(),
        desired: Desired::Running,
        home: None,
        allowed_nodes: vec![],
    }
}

fn node(name: &str) -> NodeInfo {
    NodeInfo {
        name: name.into(),
        api: "http://127.0.0.1:7400".into(),
        labels: Default::default(),
        started_ms: 1,
    }
}

/// `fresh()` gives a new empty store; `again(&store)` opens a second handle
/// on the same store.
pub fn run_all<S: Store>(fresh: impl Fn() -> S, again: impl Fn(&S) -> S) {
    create_get_list_delete(&fresh());
    names_and_addresses_are_unique(&fresh());
    ownership_is_compare_and_swap(&fresh());
    service_state_needs_the_current_epoch(&fresh());
    bad_names_are_refused(&fresh());
    history_and_drain(&fresh());
    loads_are_published(&fresh());
    let store = fresh();
    store_is_shared(&store, &again(&store));
    sessions_end_with_their_holder(&store, &again(&store));
}

fn create_get_list_delete(store: &impl Store) {
    let a = config("a", "127.0.0.10");
    let before = store.generation().unwrap();
    store.create_vserver(&a).unwrap();
    let after = store.generation().unwrap();
    assert_ne!(before, after, "a change changes the generation");
    store.create_vserver(&config("b", "127.0.0.11")).unwrap();
    let record = store.vserver("a").unwrap();
    assert_eq!(record.config, a);
    assert_eq!(record.ownership.owner, None);
    assert_eq!(record.ownership.state, VserverState::Stopped);
    assert!(record.service.is_none());
    let names: Vec<_> = store.vservers().unwrap().into_iter().map(|r| r.config.name).collect();
    assert_eq!(names, ["a", "b"]);
    let mut changed = a.clone();
    changed.desired = Desired::Stopped;
    store.update_config(&changed).unwrap();
    assert_eq!(store.vserver("a").unwrap().config.desired, Desired::Stopped);
    store.delete_vserver("a").unwrap();
    assert!(matches!(store.vserver("a"), Err(StoreError::VserverNotFound(_))));
    assert!(matches!(store.delete_vserver("a"), Err(StoreError::VserverNotFound(_))));
    assert!(matches!(store.update_config(&a), Err(StoreError::VserverNotFound(_))));
    // A name can be used again after a delete, with a fresh record.
    store.create_vserver(&a).unwrap();
    assert_eq!(store.vserver("a").unwrap().ownership.epoch, 0);
}

fn names_and_addresses_are_unique(store: &impl Store) {
    store.create_vserver(&config("a", "127.0.0.10")).unwrap();
    assert!(matches!(store.create_vserver(&config("a", "127.0.0.99")), Err(StoreError::VserverExists(_))));
    let err = store.create_vserver(&config("b", "127.0.0.10")).unwrap_err();
    assert!(matches!(err, StoreError::AddressInUse { ref vserver, .. } if vserver == "a"), "{err}");
    store.create_vserver(&config("b", "127.0.0.11")).unwrap();
    let mut moved = config("b", "127.0.0.10");
    moved.name = "b".into();
    assert!(matches!(store.update_config(&moved), Err(StoreError::AddressInUse { .. })));
    assert_eq!(store.vserver("b").unwrap().config.addresses, ["127.0.0.11"], "unchanged");
    // A change computed from a configuration that changed meanwhile is
    // refused, and `change_config` applies it to the new one.
    let read = store.vserver("b").unwrap().config;
    let mut first = read.clone();
    first.node = "n2".into();
    store.update_config(&first).unwrap();
    let mut second = read.clone();
    second.desired = Desired::Stopped;
    assert!(matches!(store.update_config_if(&read, &second), Err(StoreError::ConfigChanged(_))));
    assert_eq!(store.vserver("b").unwrap().config, first);
    let changed = crate::change_config(store, "b", |c| {
        c.desired = Desired::Stopped;
        Ok(())
    })
    .unwrap();
    assert_eq!((changed.node.as_str(), changed.desired), ("n2", Desired::Stopped));
    assert_eq!(store.vserver("b").unwrap().config, changed);
    // An address is one whatever its prefix.
    store.create_vserver(&config("c", "198.18.1.10/16")).unwrap();
    let err = store.create_vserver(&config("d", "198.18.1.10/24")).unwrap_err();
    assert!(matches!(err, StoreError::AddressInUse { ref vserver, .. } if vserver == "c"), "{err}");
    // Its own address with another prefix, and then released.
    let mut c = config("c", "198.18.1.10/24");
    store.update_config(&c).unwrap();
    c.addresses = vec!["198.18.1.11/24".into()];
    store.update_config(&c).unwrap();
    store.create_vserver(&config("d", "198.18.1.10/16")).unwrap();
    // And whatever its spelling.
    store.create_vserver(&config("e", "2001:db8::5/64")).unwrap();
    let err = store.create_vserver(&config("f", "2001:DB8:0::5/64")).unwrap_err();
    assert!(matches!(err, StoreError::AddressInUse { ref vserver, .. } if vserver == "e"), "{err}");
}

fn ownership_is_compare_and_swap(store: &impl Store) {
    store.create_vserver(&config("a", "127.0.0.10")).unwrap();
    let mut mine = Ownership::unowned();
    mine.owner = Some("n1".into());
    mine.epoch = 1;
    mine.state = VserverState::Starting;
    store.swap_ownership("a", 0, &mine).unwrap();
    // A second node computed its change from epoch 0 too: refused.
    let mut theirs = mine.clone();
    theirs.owner = Some("n2".into());
    let err = store.swap_ownership("a", 0, &theirs).unwrap_err();
    assert!(matches!(err, StoreError::StaleEpoch { expected: 0, actual: 1, .. }), "{err}");
    // Epochs never go backwards.
    let mut back = mine.clone();
    back.epoch = 0;
    assert!(matches!(store.swap_ownership("a", 1, &back), Err(StoreError::StaleEpoch { .. })));
    mine.state = VserverState::Running;
    store.swap_ownership("a", 1, &mine).unwrap();
    assert_eq!(store.vserver("a").unwrap().ownership, mine);
    assert!(matches!(store.swap_ownership("zz", 0, &mine), Err(StoreError::VserverNotFound(_))));
}

fn service_state_needs_the_current_epoch(store: &impl Store) {
    store.create_vserver(&config("a", "127.0.0.10")).unwrap();
    let mut owned = Ownership::unowned();
    owned.owner = Some("n1".into());
    owned.epoch = 3;
    store.swap_ownership("a", 0, &owned).unwrap();
    let mut state = ServiceState {
        epoch: 2,
        node: "n1".into(),
        mount_table: vec![],
        routing_table: vec![],
        devices: vec!["lo 127.0.0.10".into()],
        write_verifier: "0011223344556677".into(),
        updated_ms: 5,
        connections: vec!["198.18.1.10:2049>198.18.0.101:801".into()],
        exports: vec![],
        addresses: vec!["127.0.0.10".into()],
        counters: Some(serde_json::json!({"bytes_in": 7})),
    };
    assert!(matches!(store.put_service_state("a", &state), Err(StoreError::StaleEpoch { .. })));
    assert!(store.vserver("a").unwrap().service.is_none());
    state.epoch = 3;
    store.put_service_state("a", &state).unwrap();
    assert_eq!(store.vserver("a").unwrap().service, Some(state));

    // Lock state: written by the owner alone.
    assert_eq!(store.locks("a").unwrap(), None);
    let locks = serde_json::json!({"files": {"00ff": {"locks": []}}, "nsm_state": 1});
    assert!(matches!(store.put_locks("a", 2, &locks), Err(StoreError::StaleEpoch { .. })));
    store.put_locks("a", 3, &locks).unwrap();
    assert_eq!(store.locks("a").unwrap(), Some(locks.clone()));
    assert!(matches!(store.locks("zz"), Err(StoreError::VserverNotFound(_))));
    assert!(matches!(store.put_locks("zz", 3, &serde_json::json!({})), Err(StoreError::VserverNotFound(_))));
    // NFSv4 state: the same, apart from the lock table.
    assert_eq!(store.nfs4_state("a").unwrap(), None);
    let v4 = serde_json::json!({"clients": [], "handoff": true});
    assert!(matches!(store.put_nfs4_state("a", 2, &v4), Err(StoreError::StaleEpoch { .. })));
    store.put_nfs4_state("a", 3, &v4).unwrap();
    assert_eq!(store.nfs4_state("a").unwrap(), Some(v4.clone()));
    assert_eq!(store.locks("a").unwrap(), Some(locks), "apart");
    let clients = serde_json::json!(["6c696e7578"]);
    assert!(matches!(store.put_nfs4_clients("a", 2, &clients), Err(StoreError::StaleEpoch { .. })));
    store.put_nfs4_clients("a", 3, &clients).unwrap();
    assert_eq!(store.nfs4_clients("a").unwrap(), Some(clients));
    assert_eq!(store.nfs4_state("a").unwrap(), Some(v4.clone()), "apart");
    store.delete_vserver("a").unwrap();
    store.create_vserver(&config("a", "127.0.0.10")).unwrap();
    assert_eq!(store.locks("a").unwrap(), None, "a new vserver of the same name starts with none");
    assert_eq!(store.nfs4_state("a").unwrap(), None);
    assert_eq!(store.nfs4_clients("a").unwrap(), None);
}

fn bad_names_are_refused(store: &impl Store) {
    for name in ["", "../x", "a/b", "UPPER", ".hidden", &"x".repeat(64)] {
        let err = store.create_vserver(&config(name, "127.0.0.10")).unwrap_err();
        assert!(matches!(err, StoreError::InvalidName(_)), "{name:?}: {err}");
        assert!(matches!(store.vserver(name), Err(StoreError::InvalidName(_))));
    }
}

fn store_is_shared(one: &impl Store, two: &impl Store) {
    one.create_vserver(&config("shared", "127.0.0.20")).unwrap();
    assert_eq!(two.vserver("shared").unwrap().config.addresses, ["127.0.0.20"]);
    assert!(matches!(
        two.create_vserver(&config("other", "127.0.0.20")),
        Err(StoreError::AddressInUse { .. })
    ));
}

fn sessions_end_with_their_holder(one: &impl Store, two: &impl Store) {
    let session = one.join(&node("n1")).unwrap();
    assert!(matches!(two.join(&node("n1")), Err(StoreError::NodeAlreadyRunning(_))));
    let nodes = two.nodes().unwrap();
    assert_eq!(nodes.len(), 1);
    assert!(nodes[0].alive);
    session.renew().unwrap();
    drop(session);
    let nodes = two.nodes().unwrap();
    assert!(!nodes[0].alive, "a dropped session is no longer alive");
    let _again = two.join(&node("n1")).expect("the name is free again");
}

fn history_and_drain(store: &impl Store) {
    store.create_vserver(&config("a", "127.0.0.10")).unwrap();
    assert!(store.history("a").unwrap().is_empty());
    for epoch in 1..=3 {
        let entry = Transfer {
            at_ms: epoch,
            from: Some("n1".into()),
            to: "n2".into(),
            why: "move".into(),
            epoch,
            pause_ms: 10 * epoch,
            fence: (epoch == 2).then(|| "n1 fenced".into()),
            locks: None,
        };
        store.append_history("a", &entry).unwrap();
    }
    let history = store.history("a").unwrap();
    assert_eq!(history.iter().map(|t| t.epoch).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(matches!(store.history("zz"), Err(StoreError::VserverNotFound(_))));
    let _session = store.join(&node("n1")).unwrap();
    store.set_drained("n1", true).unwrap();
    assert!(store.nodes().unwrap()[0].drained);
    store.set_drained("n1", false).unwrap();
    assert!(!store.nodes().unwrap()[0].drained);
    assert!(matches!(store.set_drained("n9", true), Err(StoreError::NodeNotFound(_))));
}

fn loads_are_published(store: &impl Store) {
    assert!(store.loads().unwrap().is_empty());
    let mut load =
        LoadReport { node: "n1".into(), at_ms: 5, cpu: 0.5, ops_per_s: 100.0, ..Default::default() };
    load.vservers.insert("a".into(), VserverLoadReport { ops_per_s: 100.0, bytes_per_s: 4096.0, cpu: 0.5 });
    store.put_load(&load).unwrap();
    load.ops_per_s = 120.0;
    store.put_load(&load).unwrap();
    store.put_load(&LoadReport { node: "n2".into(), ..Default::default() }).unwrap();
    let loads = store.loads().unwrap();
    assert_eq!(loads.len(), 2, "one report per node, the last: {loads:?}");
    assert_eq!(loads[0], load);
    assert!(store.put_load(&LoadReport { node: "../x".into(), ..Default::default() }).is_err());
}
