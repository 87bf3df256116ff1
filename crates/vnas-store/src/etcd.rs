//! The common volume on etcd, for clusters of separate machines.
//!
//! Keys, under a prefix (`vnas` unless the URL names another, so several
//! clusters can share one etcd):
//!
//! ```text
//! PREFIX/vservers/NAME/config      configuration (JSON, with a format version)
//! PREFIX/vservers/NAME/ownership   owner, epoch, state
//! PREFIX/vservers/NAME/service     service state as applied
//! PREFIX/vservers/NAME/history     transfers (the last 1000)
//! PREFIX/addresses/ADDRESS         the vserver that uses it (uniqueness)
//! PREFIX/nodes/NAME/info           node info (stays while the node is down)
//! PREFIX/nodes/NAME/alive          last renewal (ms), bound to the node's lease
//! PREFIX/nodes/NAME/drained        present while drained
//! ```
//!
//! A node's session is an etcd lease: its `alive` key goes when the lease
//! expires or the session is dropped. Every change that must not race is a
//! transaction comparing what it read (a key's modification revision, or
//! its absence), so an ownership change computed from a stale epoch is
//! refused by etcd itself. The generation is etcd's revision.

use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp, WatchOptions};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{
    check_name, now_ms, NodeInfo, NodeStatus, Ownership, ServiceState, Session, Store, StoreError, Transfer,
    VserverConfig, VserverRecord, FORMAT,
};

/// How long one etcd call may take before the store is called unavailable
/// (a node that cannot renew within its lease fences itself).
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// A node's lease in etcd; its renewals come far more often.
const LEASE_TTL_S: i64 = 2;
/// Transfers kept per vserver.
const HISTORY_MAX: usize = 1000;
/// Compare-and-swap retries when another writer got in between.
const RETRIES_MAX: usize = 16;

#[derive(Serialize, Deserialize)]
struct Stored<T> {
    format: u32,
    data: T,
}

pub struct EtcdStore {
    /// The etcd client's own runtime: the `Store` trait is blocking, and
    /// its callers run it off their async threads.
    runtime: std::sync::Arc<OwnRuntime>,
    client: Client,
    prefix: String,
}

fn unavailable(error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("etcd: {error}"))
}

fn encode<T: Serialize>(data: &T) -> Vec<u8> {
    serde_json::to_vec(&Stored { format: FORMAT, data }).expect("records serialize")
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt { path: key.to_string(), reason };
    let stored: Stored<T> = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    if stored.format != FORMAT {
        return Err(corrupt(format!("format {} is not {FORMAT}", stored.format)));
    }
    Ok(stored.data)
}

/// A runtime that may be dropped anywhere, an async context included (a
/// node drops its store as its own runtime shuts down).
struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl std::ops::Deref for OwnRuntime {
    type Target = tokio::runtime::Runtime;

    fn deref(&self) -> &Self::Target {
        self.0.as_ref().expect("present until dropped")
    }
}

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// One key as read: its value and modification revision (0: absent).
struct Read {
    value: Option<Vec<u8>>,
    revision: i64,
}

impl EtcdStore {
    /// `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]`.
    pub fn open(url: &str) -> Result<EtcdStore, StoreError> {
        let rest =
            url.strip_prefix("etcd://").ok_or_else(|| unavailable(format!("{url} is not etcd://...")))?;
        let (hosts, prefix) = rest.split_once('/').unwrap_or((rest, "vnas"));
        let prefix = prefix.trim_matches('/');
        if hosts.is_empty() || prefix.is_empty() {
            return Err(unavailable(format!("{url}: expected etcd://HOST:PORT[,HOST:PORT...][/PREFIX]")));
        }
        let endpoints: Vec<String> = hosts.split(',').map(|h| format!("http://{h}")).collect();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("etcd")
            .enable_all()
            .build()
            .map_err(unavailable)?;
        let options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(CALL_TIMEOUT)
            .with_timeout(CALL_TIMEOUT)
            .with_keep_alive(Duration::from_secs(1), CALL_TIMEOUT);
        let client = runtime
            .block_on(async {
                tokio::time::timeout(CALL_TIMEOUT, Client::connect(endpoints, Some(options))).await
            })
            .map_err(|_| unavailable(format!("{hosts}: no answer within {CALL_TIMEOUT:?}")))?
            .map_err(unavailable)?;
        let runtime = std::sync::Arc::new(OwnRuntime(Some(runtime)));
        let store = EtcdStore { runtime, client, prefix: prefix.to_string() };
        // Fails now, not at the first record, when nothing answers; a
        // member that is still starting is given the call timeout.
        let deadline = std::time::Instant::now() + CALL_TIMEOUT;
        loop {
            match store.generation() {
                Ok(_) => return Ok(store),
                Err(error) if std::time::Instant::now() >= deadline => return Err(error),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    fn key(&self, path: &str) -> String {
        format!("{}/{path}", self.prefix)
    }

    fn vserver_key(&self, name: &str, part: &str) -> String {
        self.key(&format!("vservers/{name}/{part}"))
    }

    /// Runs `make(client)` until it succeeds, fails for good, or
    /// `CALL_TIMEOUT` passes. A member that is down refuses connections:
    /// such a call is tried again (the client picks among the members).
    fn call<T, F>(&self, make: impl Fn(Client) -> F) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        self.runtime
            .block_on(async {
                tokio::time::timeout(CALL_TIMEOUT, async {
                    loop {
                        match make(self.client.clone()).await {
                            Err(etcd_client::Error::GRpcStatus(status))
                                if status.code() == tonic::Code::Unavailable =>
                            {
                                tokio::time::sleep(Duration::from_millis(20)).await
                            }
                            result => return result,
                        }
                    }
                })
                .await
            })
            .map_err(|_| unavailable(format!("no answer within {CALL_TIMEOUT:?}")))?
            .map_err(unavailable)
    }

    /// Waits for `future` (a lease's stream), at most `CALL_TIMEOUT`.
    fn wait<T>(
        &self,
        future: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, StoreError> {
        self.runtime
            .block_on(async { tokio::time::timeout(CALL_TIMEOUT, future).await })
            .map_err(|_| unavailable(format!("no answer within {CALL_TIMEOUT:?}")))?
            .map_err(unavailable)
    }

    fn read(&self, key: &str) -> Result<Read, StoreError> {
        let response = self.call(|mut c| {
            let key = key.to_string();
            async move { c.get(key, None).await }
        })?;
        Ok(match response.kvs().first() {
            Some(kv) => Read { value: Some(kv.value().to_vec()), revision: kv.mod_revision() },
            None => Read { value: None, revision: 0 },
        })
    }

    /// Every key under `prefix`, with values.
    fn list(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let response = self.call(|mut c| {
            let prefix = prefix.to_string();
            async move { c.get(prefix, Some(GetOptions::new().with_prefix())).await }
        })?;
        Ok(response
            .kvs()
            .iter()
            .map(|kv| (String::from_utf8_lossy(kv.key()).into_owned(), kv.value().to_vec()))
            .collect())
    }

    /// Runs a transaction; `Ok(false)`: a comparison failed.
    fn txn(&self, compares: Vec<Compare>, ops: Vec<TxnOp>) -> Result<bool, StoreError> {
        let txn = Txn::new().when(compares).and_then(ops);
        let response = self.call(|mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })?;
        Ok(response.succeeded())
    }

    fn absent(key: &str) -> Compare {
        Compare::version(key, CompareOp::Equal, 0)
    }

    fn unchanged(key: &str, read: &Read) -> Compare {
        if read.value.is_none() {
            Self::absent(key)
        } else {
            Compare::mod_revision(key, CompareOp::Equal, read.revision)
        }
    }

    fn config(&self, name: &str) -> Result<(VserverConfig, Read), StoreError> {
        let key = self.vserver_key(name, "config");
        let read = self.read(&key)?;
        let value = read.value.as_ref().ok_or_else(|| StoreError::VserverNotFound(name.to_string()))?;
        Ok((decode(&key, value)?, read))
    }

    /// Which vserver uses `address`, if any.
    fn address_user(&self, address: &str) -> Result<Option<String>, StoreError> {
        let read = self.read(&self.key(&format!("addresses/{address}")))?;
        Ok(read.value.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Writes `op` if the vserver's ownership is at `epoch` (and `allowed`
    /// of it), in a transaction that fails if the ownership changed after
    /// it was read: an owner-only write that etcd itself refuses when stale.
    fn under_epoch(
        &self,
        name: &str,
        epoch: u64,
        allowed: impl Fn(&Ownership) -> bool,
        op: TxnOp,
    ) -> Result<(), StoreError> {
        check_name(name)?;
        let key = self.vserver_key(name, "ownership");
        for _ in 0..RETRIES_MAX {
            let read = self.read(&key)?;
            let value = read.value.as_ref().ok_or_else(|| StoreError::VserverNotFound(name.to_string()))?;
            let current: Ownership = decode(&key, value)?;
            if current.epoch != epoch || !allowed(&current) {
                return Err(StoreError::StaleEpoch {
                    name: name.to_string(),
                    expected: epoch,
                    actual: current.epoch,
                });
            }
            if self.txn(vec![Self::unchanged(&key, &read)], vec![op.clone()])? {
                return Ok(());
            }
        }
        Err(unavailable("too many concurrent ownership changes"))
    }

    /// The error for a create or update whose transaction found an address
    /// taken (or the name, for a create).
    fn conflict(&self, config: &VserverConfig) -> Result<StoreError, StoreError> {
        for address in &config.addresses {
            if let Some(user) = self.address_user(address)? {
                if user != config.name {
                    return Ok(StoreError::AddressInUse { address: address.clone(), vserver: user });
                }
            }
        }
        Ok(StoreError::Unavailable("etcd: a concurrent change; try again".into()))
    }
}

impl Store for EtcdStore {
    fn create_vserver(&self, config: &VserverConfig) -> Result<(), StoreError> {
        check_name(&config.name)?;
        let config_key = self.vserver_key(&config.name, "config");
        let mut compares = vec![Self::absent(&config_key)];
        let mut ops = vec![
            TxnOp::put(config_key.as_str(), encode(config), None),
            TxnOp::put(self.vserver_key(&config.name, "ownership"), encode(&Ownership::unowned()), None),
        ];
        for address in &config.addresses {
            let key = self.key(&format!("addresses/{address}"));
            compares.push(Self::absent(&key));
            ops.push(TxnOp::put(key, config.name.as_bytes(), None));
        }
        if self.txn(compares, ops)? {
            return Ok(());
        }
        if self.read(&config_key)?.value.is_some() {
            return Err(StoreError::VserverExists(config.name.clone()));
        }
        Err(self.conflict(config)?)
    }

    fn update_config(&self, config: &VserverConfig) -> Result<(), StoreError> {
        check_name(&config.name)?;
        for _ in 0..RETRIES_MAX {
            let (old, read) = self.config(&config.name)?;
            let config_key = self.vserver_key(&config.name, "config");
            let mut compares = vec![Self::unchanged(&config_key, &read)];
            let mut ops = vec![TxnOp::put(config_key.as_str(), encode(config), None)];
            for address in config.addresses.iter().filter(|a| !old.addresses.contains(a)) {
                let key = self.key(&format!("addresses/{address}"));
                compares.push(Self::absent(&key));
                ops.push(TxnOp::put(key, config.name.as_bytes(), None));
            }
            for address in old.addresses.iter().filter(|a| !config.addresses.contains(a)) {
                ops.push(TxnOp::delete(self.key(&format!("addresses/{address}")), None));
            }
            if self.txn(compares, ops)? {
                return Ok(());
            }
            let conflict = self.conflict(config)?;
            if matches!(conflict, StoreError::AddressInUse { .. }) {
                return Err(conflict);
            }
        }
        Err(unavailable("too many concurrent changes"))
    }

    fn delete_vserver(&self, name: &str) -> Result<(), StoreError> {
        check_name(name)?;
        let (config, read) = self.config(name)?;
        let config_key = self.vserver_key(name, "config");
        let mut ops = vec![TxnOp::delete(
            self.key(&format!("vservers/{name}/")),
            Some(etcd_client::DeleteOptions::new().with_prefix()),
        )];
        for address in &config.addresses {
            ops.push(TxnOp::delete(self.key(&format!("addresses/{address}")), None));
        }
        if self.txn(vec![Self::unchanged(&config_key, &read)], ops)? {
            Ok(())
        } else {
            Err(unavailable("the vserver changed while it was being deleted; try again"))
        }
    }

    fn vserver(&self, name: &str) -> Result<VserverRecord, StoreError> {
        check_name(name)?;
        let prefix = self.key(&format!("vservers/{name}/"));
        let mut records = records_from(&self.list(&prefix)?, &self.key("vservers/"))?;
        records.pop().ok_or_else(|| StoreError::VserverNotFound(name.to_string()))
    }

    fn vservers(&self) -> Result<Vec<VserverRecord>, StoreError> {
        let prefix = self.key("vservers/");
        records_from(&self.list(&prefix)?, &prefix)
    }

    fn swap_ownership(&self, name: &str, expected_epoch: u64, new: &Ownership) -> Result<(), StoreError> {
        let key = self.vserver_key(name, "ownership");
        let put = TxnOp::put(key.as_str(), encode(new), None);
        self.under_epoch(name, expected_epoch, |current| new.epoch >= current.epoch, put)
    }

    fn put_service_state(&self, name: &str, state: &ServiceState) -> Result<(), StoreError> {
        let put = TxnOp::put(self.vserver_key(name, "service"), encode(state), None);
        self.under_epoch(name, state.epoch, |_| true, put)
    }

    fn generation(&self) -> Result<u64, StoreError> {
        let key = self.key("generation");
        let response = self.call(|mut c| {
            let key = key.clone();
            async move { c.get(key, Some(GetOptions::new().with_count_only())).await }
        })?;
        Ok(response.header().map_or(0, |h| h.revision() as u64))
    }

    fn append_history(&self, name: &str, entry: &Transfer) -> Result<(), StoreError> {
        check_name(name)?;
        let key = self.vserver_key(name, "history");
        for _ in 0..RETRIES_MAX {
            self.config(name)?;
            let read = self.read(&key)?;
            let mut history: Vec<Transfer> = match &read.value {
                Some(value) => decode(&key, value)?,
                None => Vec::new(),
            };
            history.push(entry.clone());
            let excess = history.len().saturating_sub(HISTORY_MAX);
            history.drain(..excess);
            let config_key = self.vserver_key(name, "config");
            let compares =
                vec![Self::unchanged(&key, &read), Compare::version(config_key, CompareOp::Greater, 0)];
            if self.txn(compares, vec![TxnOp::put(key.as_str(), encode(&history), None)])? {
                return Ok(());
            }
        }
        Err(unavailable("too many concurrent history writes"))
    }

    fn history(&self, name: &str) -> Result<Vec<Transfer>, StoreError> {
        check_name(name)?;
        self.config(name)?;
        let key = self.vserver_key(name, "history");
        match self.read(&key)?.value {
            Some(value) => decode(&key, &value),
            None => Ok(Vec::new()),
        }
    }

    fn set_drained(&self, node: &str, drained: bool) -> Result<(), StoreError> {
        check_name(node)?;
        let info = self.key(&format!("nodes/{node}/info"));
        let marker = self.key(&format!("nodes/{node}/drained"));
        let op = if drained { TxnOp::put(marker, b"1".to_vec(), None) } else { TxnOp::delete(marker, None) };
        if self.txn(vec![Compare::version(info, CompareOp::Greater, 0)], vec![op])? {
            Ok(())
        } else {
            Err(StoreError::NodeNotFound(node.to_string()))
        }
    }

    fn join(&self, node: &NodeInfo) -> Result<Box<dyn Session>, StoreError> {
        check_name(&node.name)?;
        let lease = self.call(|mut c| async move { c.lease_grant(LEASE_TTL_S, None).await })?.id();
        let alive = self.key(&format!("nodes/{}/alive", node.name));
        let info = self.key(&format!("nodes/{}/info", node.name));
        let ops = vec![
            TxnOp::put(info, encode(node), None),
            TxnOp::put(alive.as_str(), now_ms().to_string(), Some(PutOptions::new().with_lease(lease))),
        ];
        if !self.txn(vec![Self::absent(&alive)], ops)? {
            let _ = self.call(|mut c| async move { c.lease_revoke(lease).await });
            return Err(StoreError::NodeAlreadyRunning(node.name.clone()));
        }
        Ok(Box::new(EtcdSession { store: self.handle(), lease: std::sync::Mutex::new(lease), alive }))
    }

    fn nodes(&self) -> Result<Vec<NodeStatus>, StoreError> {
        let prefix = self.key("nodes/");
        let mut nodes: std::collections::BTreeMap<String, NodeStatus> = Default::default();
        let entries = self.list(&prefix)?;
        for (key, value) in &entries {
            let Some((name, "info")) = key.strip_prefix(&prefix).and_then(|k| k.split_once('/')) else {
                continue;
            };
            let info: NodeInfo = decode(key, value)?;
            nodes
                .insert(name.to_string(), NodeStatus { info, alive: false, last_seen_ms: 0, drained: false });
        }
        for (key, value) in &entries {
            let Some((name, part)) = key.strip_prefix(&prefix).and_then(|k| k.split_once('/')) else {
                continue;
            };
            let Some(node) = nodes.get_mut(name) else { continue };
            match part {
                "alive" => {
                    node.alive = true;
                    node.last_seen_ms = String::from_utf8_lossy(value).parse().unwrap_or(0);
                }
                "drained" => node.drained = true,
                _ => {}
            }
        }
        Ok(nodes.into_values().collect())
    }

    /// A watch on every vserver key. A broken watch (a member gone, a lost
    /// connection) is made again from the last revision it saw, so no
    /// change between the two is missed.
    fn watch(&self, changed: std::sync::Arc<dyn Fn() + Send + Sync>) -> bool {
        let mut client = self.client.clone();
        let prefix = self.key("vservers/");
        self.runtime.spawn(async move {
            let mut next_revision = 0;
            loop {
                let mut options = WatchOptions::new().with_prefix();
                if next_revision > 0 {
                    options = options.with_start_revision(next_revision);
                }
                if let Ok((_watcher, mut stream)) = client.watch(prefix.as_str(), Some(options)).await {
                    while let Ok(Some(response)) = stream.message().await {
                        if let Some(last) =
                            response.events().iter().filter_map(|e| e.kv()).map(|kv| kv.mod_revision()).max()
                        {
                            next_revision = last + 1;
                            changed();
                        }
                        if response.canceled() {
                            break;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        true
    }
}

impl EtcdStore {
    /// A second handle on the same connection, for a session.
    fn handle(&self) -> EtcdStore {
        EtcdStore { runtime: self.runtime.clone(), client: self.client.clone(), prefix: self.prefix.clone() }
    }
}

/// Records from the keys under `PREFIX/vservers/`, by name.
fn records_from(entries: &[(String, Vec<u8>)], prefix: &str) -> Result<Vec<VserverRecord>, StoreError> {
    let mut configs = std::collections::BTreeMap::new();
    let mut ownerships = std::collections::BTreeMap::new();
    let mut services = std::collections::BTreeMap::new();
    for (key, value) in entries {
        let Some((name, part)) = key.strip_prefix(prefix).and_then(|k| k.split_once('/')) else { continue };
        match part {
            "config" => {
                configs.insert(name.to_string(), decode::<VserverConfig>(key, value)?);
            }
            "ownership" => {
                ownerships.insert(name.to_string(), decode::<Ownership>(key, value)?);
            }
            "service" => {
                services.insert(name.to_string(), decode::<ServiceState>(key, value)?);
            }
            _ => {}
        }
    }
    Ok(configs
        .into_iter()
        .map(|(name, config)| VserverRecord {
            ownership: ownerships.remove(&name).unwrap_or_else(Ownership::unowned),
            service: services.remove(&name),
            config,
        })
        .collect())
}

/// A node's lease. Renewing refreshes the lease and the node's last-seen
/// time; dropping the session revokes the lease, so the node is down at
/// once (as when the kernel drops a dead process's lock). A lease that
/// expired (etcd lost quorum or was restarted for longer than its TTL) is
/// replaced by a new one, unless another process took the node's name.
struct EtcdSession {
    store: EtcdStore,
    lease: std::sync::Mutex<i64>,
    alive: String,
}

impl EtcdSession {
    fn keep_alive(&self, lease: i64) -> Result<bool, StoreError> {
        let (mut keeper, mut responses) =
            self.store.call(|mut c| async move { c.lease_keep_alive(lease).await })?;
        self.store.wait(keeper.keep_alive())?;
        let answer = self.store.wait(responses.message())?;
        Ok(answer.is_some_and(|a| a.ttl() > 0))
    }

    fn put_alive(&self, lease: i64, fresh: bool) -> Result<bool, StoreError> {
        let put =
            TxnOp::put(self.alive.as_str(), now_ms().to_string(), Some(PutOptions::new().with_lease(lease)));
        let compares = if fresh { vec![EtcdStore::absent(&self.alive)] } else { Vec::new() };
        self.store.txn(compares, vec![put])
    }
}

impl Session for EtcdSession {
    fn renew(&self) -> Result<(), StoreError> {
        let mut lease = self.lease.lock().unwrap();
        // An expired lease is answered with TTL 0 or, by some versions,
        // with an error: either way, try a new one.
        if self.keep_alive(*lease).unwrap_or(false) {
            self.put_alive(*lease, false)?;
            return Ok(());
        }
        let fresh = self.store.call(|mut c| async move { c.lease_grant(LEASE_TTL_S, None).await })?.id();
        if !self.put_alive(fresh, true)? {
            let _ = self.store.call(|mut c| async move { c.lease_revoke(fresh).await });
            return Err(StoreError::Unavailable(
                "etcd: this node's lease expired and its name is taken".into(),
            ));
        }
        *lease = fresh;
        Ok(())
    }
}

impl Drop for EtcdSession {
    fn drop(&mut self) {
        let mut client = self.store.client.clone();
        let lease = *self.lease.lock().unwrap();
        if tokio::runtime::Handle::try_current().is_ok() {
            // Dropped on an async thread, where nothing may block.
            self.store.runtime.spawn(async move {
                let _ = client.lease_revoke(lease).await;
            });
        } else {
            let _ = self.store.call(|mut c| async move { c.lease_revoke(lease).await });
        }
    }
}

/// A real etcd cluster of three members on loopback ports, with data in
/// a directory of its own, stopped when dropped: for tests and benchmarks
/// (Debian package etcd-server).
pub mod test_cluster {
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    pub struct Member {
        pub name: String,
        pub client_port: u16,
        peer_port: u16,
        pub child: Option<Child>,
    }

    pub struct EtcdCluster {
        pub members: Vec<Member>,
        dir: PathBuf,
        token: String,
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    impl EtcdCluster {
        /// Starts `n` members under `dir` and waits until they answer.
        pub fn start(dir: &Path, n: usize) -> EtcdCluster {
            std::fs::create_dir_all(dir).unwrap();
            let members = (1..=n)
                .map(|i| Member {
                    name: format!("m{i}"),
                    client_port: free_port(),
                    peer_port: free_port(),
                    child: None,
                })
                .collect();
            let token = format!("vnas-test-{}-{}", std::process::id(), free_port());
            let mut cluster = EtcdCluster { members, dir: dir.to_path_buf(), token };
            for i in 0..n {
                cluster.start_member(i, true);
            }
            cluster.wait_ready();
            cluster
        }

        /// `etcd://127.0.0.1:P1,...` with a prefix of its own.
        pub fn url(&self, prefix: &str) -> String {
            let hosts: Vec<String> =
                self.members.iter().map(|m| format!("127.0.0.1:{}", m.client_port)).collect();
            format!("etcd://{}/{prefix}", hosts.join(","))
        }

        pub fn start_member(&mut self, i: usize, new: bool) {
            let initial: Vec<String> =
                self.members.iter().map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port)).collect();
            let m = &self.members[i];
            let client = format!("http://127.0.0.1:{}", m.client_port);
            let peer = format!("http://127.0.0.1:{}", m.peer_port);
            let log = std::fs::File::create(self.dir.join(format!("{}.log", m.name))).unwrap();
            let child = Command::new("etcd")
                .arg("--name")
                .arg(&m.name)
                .arg("--data-dir")
                .arg(self.dir.join(&m.name))
                .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
                .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
                .args(["--initial-cluster", &initial.join(",")])
                .args(["--initial-cluster-token", &self.token])
                .args(["--initial-cluster-state", if new { "new" } else { "existing" }])
                .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("etcd runs (Debian package etcd-server)");
            self.members[i].child = Some(child);
        }

        pub fn kill_member(&mut self, i: usize) {
            if let Some(mut child) = self.members[i].child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }

        /// Until every running member answers on its own port.
        pub fn wait_ready(&self) {
            let deadline = Instant::now() + Duration::from_secs(30);
            for member in self.members.iter().filter(|m| m.child.is_some()) {
                let url = format!("etcd://127.0.0.1:{}/ready", member.client_port);
                while crate::etcd::EtcdStore::open(&url).is_err() {
                    assert!(
                        Instant::now() < deadline,
                        "etcd did not come up within 30 s; see {}",
                        self.dir.display()
                    );
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    impl Drop for EtcdCluster {
        fn drop(&mut self) {
            for i in 0..self.members.len() {
                self.kill_member(i);
            }
        }
    }
}
