//! The common volume on etcd, for clusters of separate machines.
//!
//! Keys, under a prefix (`vnas` unless the URL names another, so several
//! clusters can share one etcd):
//!
//! ```text
//! PREFIX/vservers/NAME/config      configuration (JSON, with a format version)
//! PREFIX/vservers/NAME/ownership   owner, epoch, state
//! PREFIX/vservers/NAME/service     service state as applied
//! PREFIX/vservers/NAME/owner       the owner's name, bound to its lease
//! PREFIX/history/NAME              transfers (the last 1000; apart, so
//!                                  reading every record skips them)
//! PREFIX/addresses/IP              the vserver that uses it (uniqueness;
//!                                  by address without its prefix)
//! PREFIX/nodes/NAME/info           node info (stays while the node is down)
//! PREFIX/nodes/NAME/alive          last renewal (ms), bound to the node's lease
//! PREFIX/nodes/NAME/drained        present while drained
//! ```
//!
//! A node's session is an etcd lease, renewed on one keep-alive stream (a
//! renewal is no write: etcd's leader keeps leases in memory, so renewals
//! stay quick while the cluster writes a lot). The node's `alive` key and
//! the `owner` keys of what it owns go when the lease expires or the
//! session is dropped; the watch then wakes the other nodes. Every change
//! that must not race is a transaction comparing what it read (a key's
//! modification revision, or its absence), so an ownership change computed
//! from a stale epoch is refused by etcd itself, and every ownership or
//! service write of a node with a session also compares that its lease is
//! still the one on its `alive` key: a node whose lease expired cannot
//! write at all. The generation is etcd's revision.

use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp, WatchOptions};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{
    check_name, now_ms, LoadReport, NodeInfo, NodeStatus, Ownership, ServiceState, Session, Store,
    StoreError, Transfer, VserverConfig, VserverRecord, FORMAT,
};

/// How long one etcd call may take before the store is called unavailable
/// (a node that cannot renew within its lease fences itself).
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Transfers kept per vserver.
const HISTORY_MAX: usize = 1000;
/// Compare-and-swap retries when another writer got in between.
const RETRIES_MAX: usize = 16;

#[derive(Serialize, Deserialize)]
struct Stored<T> {
    format: u32,
    data: T,
}

/// How to reach etcd besides its addresses, and the node lease.
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    /// PEM certificate(s) of the CA that signed the members' certificates:
    /// etcd is then spoken to over TLS (https).
    pub ca: Option<Vec<u8>>,
    /// PEM client certificate and key, for members that require them
    /// (`--client-cert-auth`).
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// User and password, for a cluster with authentication enabled.
    pub user: Option<(String, String)>,
    /// A node's lease TTL in etcd (whole seconds; at least 1). A node that
    /// dies is down for the others when etcd's leader expires it: up to
    /// half a second after the TTL (etcd checks every 500 ms).
    pub lease_ttl_s: i64,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        EtcdOptions { ca: None, identity: None, user: None, lease_ttl_s: 1 }
    }
}

/// The lease of the session this store's node holds.
#[derive(Clone)]
struct Held {
    node: String,
    alive: String,
    lease: i64,
}

pub struct EtcdStore {
    /// The etcd client's own runtime: the `Store` trait is blocking, and
    /// its callers run it off their async threads.
    runtime: std::sync::Arc<OwnRuntime>,
    /// Replaced when etcd forgot the client's auth token (a restart).
    client: std::sync::Arc<std::sync::RwLock<Client>>,
    connect: std::sync::Arc<Connect>,
    prefix: String,
    /// Set by `join`: the owner-only writes compare this lease.
    held: std::sync::Arc<std::sync::Mutex<Option<Held>>>,
}

/// What a (re)connection needs.
struct Connect {
    endpoints: Vec<String>,
    options: EtcdOptions,
}

impl Connect {
    async fn client(&self) -> Result<Client, etcd_client::Error> {
        let mut options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(CALL_TIMEOUT)
            .with_timeout(CALL_TIMEOUT)
            .with_keep_alive(Duration::from_secs(1), CALL_TIMEOUT);
        if let Some((user, password)) = &self.options.user {
            options = options.with_user(user.clone(), password.clone());
        }
        if let Some(ca) = &self.options.ca {
            options = options.with_tls(tls(ca, self.options.identity.as_ref()));
        }
        Client::connect(self.endpoints.clone(), Some(options)).await
    }
}

fn tls(ca: &[u8], identity: Option<&(Vec<u8>, Vec<u8>)>) -> etcd_client::TlsOptions {
    let mut tls = etcd_client::TlsOptions::new().ca_certificate(etcd_client::Certificate::from_pem(ca));
    if let Some((cert, key)) = identity {
        tls = tls.identity(etcd_client::Identity::from_pem(cert, key));
    }
    tls
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
    /// `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]`, plain, no user.
    pub fn open(url: &str) -> Result<EtcdStore, StoreError> {
        Self::open_with(url, EtcdOptions::default())
    }

    /// `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]` with TLS, a user, or
    /// another lease TTL.
    pub fn open_with(url: &str, options: EtcdOptions) -> Result<EtcdStore, StoreError> {
        let refused = |what: String| StoreError::Refused(format!("etcd: {what}"));
        let rest = url.strip_prefix("etcd://").ok_or_else(|| refused(format!("{url} is not etcd://...")))?;
        let (hosts, prefix) = rest.split_once('/').unwrap_or((rest, "vnas"));
        let prefix = prefix.trim_matches('/');
        if hosts.is_empty() || prefix.is_empty() {
            return Err(refused(format!("{url}: expected etcd://HOST:PORT[,HOST:PORT...][/PREFIX]")));
        }
        if options.lease_ttl_s < 1 {
            return Err(refused("the lease TTL is at least one second".to_string()));
        }
        let scheme = if options.ca.is_some() { "https" } else { "http" };
        let endpoints: Vec<String> = hosts.split(',').map(|h| format!("{scheme}://{h}")).collect();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("etcd")
            .enable_all()
            .build()
            .map_err(unavailable)?;
        let connect = std::sync::Arc::new(Connect { endpoints, options });
        let client = runtime
            .block_on(async { tokio::time::timeout(CALL_TIMEOUT, connect.client()).await })
            .map_err(|_| unavailable(format!("{hosts}: no answer within {CALL_TIMEOUT:?}")))?
            .map_err(|e| match &e {
                // Asking again will not change the answer.
                etcd_client::Error::GRpcStatus(status)
                    if matches!(
                        status.code(),
                        tonic::Code::Unauthenticated
                            | tonic::Code::PermissionDenied
                            | tonic::Code::InvalidArgument
                    ) =>
                {
                    refused(format!("{hosts}: {e}"))
                }
                _ => unavailable(format!("{hosts}: {e}")),
            })?;
        let runtime = std::sync::Arc::new(OwnRuntime(Some(runtime)));
        let store = EtcdStore {
            runtime,
            client: std::sync::Arc::new(std::sync::RwLock::new(client)),
            connect,
            prefix: prefix.to_string(),
            held: Default::default(),
        };
        // Fails now, not at the first record, when nothing answers; a
        // member that is still starting is given the call timeout.
        let deadline = std::time::Instant::now() + CALL_TIMEOUT;
        loop {
            match store.generation() {
                Ok(_) => {
                    store.migrate_address_keys()?;
                    return Ok(store);
                }
                Err(error) if std::time::Instant::now() >= deadline => return Err(error),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    fn client(&self) -> Client {
        self.client.read().unwrap().clone()
    }

    /// Address keys written before keys became the bare, canonical address
    /// (`addresses/198.18.1.10/16`) are rewritten (`addresses/198.18.1.10`),
    /// so uniqueness sees them.
    fn migrate_address_keys(&self) -> Result<(), StoreError> {
        let base = self.key("addresses/");
        for (key, user) in self.list(&base)? {
            let address = &key[base.len()..];
            let ip = crate::address_ip(address);
            if ip == address {
                continue;
            }
            let new = self.key(&format!("addresses/{ip}"));
            let put = TxnOp::put(new.as_str(), user.clone(), None);
            if self.txn(vec![Self::absent(&new)], vec![put, TxnOp::delete(key.as_str(), None)])? {
                continue;
            }
            // Taken already: by the same vserver, the old key just goes (by
            // another, two vservers held the address before; both keys stay
            // until one of them lets it go).
            if self.read(&new)?.value.as_deref() == Some(&user[..]) {
                self.txn(vec![], vec![TxnOp::delete(key.as_str(), None)])?;
            }
        }
        Ok(())
    }

    fn key(&self, path: &str) -> String {
        format!("{}/{path}", self.prefix)
    }

    fn vserver_key(&self, name: &str, part: &str) -> String {
        self.key(&format!("vservers/{name}/{part}"))
    }

    /// Runs `make(client)` until it succeeds, fails for good, or
    /// `CALL_TIMEOUT` passes. A member that is down refuses connections:
    /// such a call is tried again (the client picks among the members). A
    /// refused auth token (etcd restarted and forgot it) is replaced once.
    fn call<T, F>(&self, make: impl Fn(Client) -> F) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        self.runtime
            .block_on(async {
                tokio::time::timeout(CALL_TIMEOUT, async {
                    let mut reauthenticated = false;
                    loop {
                        match make(self.client()).await {
                            Err(etcd_client::Error::GRpcStatus(status))
                                if status.code() == tonic::Code::Unavailable =>
                            {
                                tokio::time::sleep(Duration::from_millis(20)).await
                            }
                            Err(etcd_client::Error::GRpcStatus(status))
                                if status.code() == tonic::Code::Unauthenticated
                                    && self.connect.options.user.is_some()
                                    && !reauthenticated =>
                            {
                                reauthenticated = true;
                                *self.client.write().unwrap() = self.connect.client().await?;
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

    /// The key that makes `address` unique.
    fn address_key(&self, address: &str) -> String {
        self.key(&format!("addresses/{}", crate::address_ip(address)))
    }

    /// Deletes `address`'s key (and the key as records written before
    /// keys dropped the prefix named it).
    fn address_deletes(&self, address: &str) -> Vec<TxnOp> {
        let mut ops = vec![TxnOp::delete(self.address_key(address), None)];
        if address.contains('/') {
            ops.push(TxnOp::delete(self.key(&format!("addresses/{address}")), None));
        }
        ops
    }

    /// Writes `config` over the vserver's, if that is still `expected`;
    /// the transaction compares the revision it read.
    fn replace_config(
        &self,
        config: &VserverConfig,
        expected: Option<&VserverConfig>,
    ) -> Result<(), StoreError> {
        check_name(&config.name)?;
        for _ in 0..RETRIES_MAX {
            let (old, read) = self.config(&config.name)?;
            if expected.is_some_and(|expected| *expected != old) {
                return Err(StoreError::ConfigChanged(config.name.clone()));
            }
            let config_key = self.vserver_key(&config.name, "config");
            let mut compares = vec![Self::unchanged(&config_key, &read)];
            let mut ops = vec![TxnOp::put(config_key.as_str(), encode(config), None)];
            // By address: one whose prefix changes keeps its key.
            let holds =
                |list: &[String], a: &str| list.iter().any(|o| crate::address_ip(o) == crate::address_ip(a));
            for address in old.addresses.iter().filter(|a| !holds(&config.addresses, a)) {
                ops.extend(self.address_deletes(address));
            }
            for address in config.addresses.iter().filter(|a| !holds(&old.addresses, a)) {
                let key = self.address_key(address);
                compares.push(Self::absent(&key));
                ops.push(TxnOp::put(key, config.name.as_bytes(), None));
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

    /// Which vserver uses `address`, if any.
    fn address_user(&self, address: &str) -> Result<Option<String>, StoreError> {
        let read = self.read(&self.address_key(address))?;
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
        ops: Vec<TxnOp>,
    ) -> Result<(), StoreError> {
        check_name(name)?;
        let key = self.vserver_key(name, "ownership");
        let held = self.held.lock().unwrap().clone();
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
            let mut compares = vec![Self::unchanged(&key, &read)];
            if let Some(held) = &held {
                compares.push(Compare::lease(held.alive.as_str(), CompareOp::Equal, held.lease));
            }
            if self.txn(compares, ops.clone())? {
                return Ok(());
            }
            if let Some(held) = &held {
                if !self.holds(held)? {
                    return Err(unavailable(format!(
                        "node {}'s lease has expired: etcd takes no ownership writes from it",
                        held.node
                    )));
                }
            }
        }
        Err(unavailable("too many concurrent ownership changes"))
    }

    /// Whether the node's `alive` key still carries `held`'s lease.
    fn holds(&self, held: &Held) -> Result<bool, StoreError> {
        let response = self.call(|mut c| {
            let key = held.alive.clone();
            async move { c.get(key, None).await }
        })?;
        Ok(response.kvs().first().is_some_and(|kv| kv.lease() == held.lease))
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
            let key = self.address_key(address);
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
        self.replace_config(config, None)
    }

    fn update_config_if(&self, expected: &VserverConfig, config: &VserverConfig) -> Result<(), StoreError> {
        self.replace_config(config, Some(expected))
    }

    fn delete_vserver(&self, name: &str) -> Result<(), StoreError> {
        check_name(name)?;
        let (config, read) = self.config(name)?;
        let config_key = self.vserver_key(name, "config");
        let mut ops = vec![TxnOp::delete(
            self.key(&format!("vservers/{name}/")),
            Some(etcd_client::DeleteOptions::new().with_prefix()),
        )];
        ops.push(TxnOp::delete(self.key(&format!("history/{name}")), None));
        ops.push(TxnOp::delete(self.key(&format!("locks/{name}")), None));
        ops.push(TxnOp::delete(self.key(&format!("nfs4/{name}")), None));
        ops.push(TxnOp::delete(self.key(&format!("nfs4-clients/{name}")), None));
        for address in &config.addresses {
            ops.extend(self.address_deletes(address));
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
        let owner = self.vserver_key(name, "owner");
        let held = self.held.lock().unwrap().clone();
        // The owner key lives as long as its owner's lease: when a node
        // dies, etcd deletes them and the watch tells the others.
        let owner_op = match held {
            Some(held) if new.owner.as_deref() == Some(held.node.as_str()) => {
                TxnOp::put(owner, held.node.as_bytes(), Some(PutOptions::new().with_lease(held.lease)))
            }
            _ => TxnOp::delete(owner, None),
        };
        let ops = vec![TxnOp::put(key.as_str(), encode(new), None), owner_op];
        self.under_epoch(name, expected_epoch, |current| new.epoch >= current.epoch, ops)
    }

    fn put_service_state(&self, name: &str, state: &ServiceState) -> Result<(), StoreError> {
        let put = TxnOp::put(self.vserver_key(name, "service"), encode(state), None);
        self.under_epoch(name, state.epoch, |_| true, vec![put])
    }

    fn locks(&self, name: &str) -> Result<Option<serde_json::Value>, StoreError> {
        check_name(name)?;
        self.config(name)?;
        let key = self.key(&format!("locks/{name}"));
        match self.read(&key)?.value {
            Some(value) => decode(&key, &value).map(Some),
            None => Ok(None),
        }
    }

    fn put_locks(&self, name: &str, epoch: u64, locks: &serde_json::Value) -> Result<(), StoreError> {
        // Outside vservers/, which nodes watch: a lock is not a change of
        // the vserver's record.
        let put = TxnOp::put(self.key(&format!("locks/{name}")), encode(locks), None);
        self.under_epoch(name, epoch, |_| true, vec![put])
    }

    fn nfs4_state(&self, name: &str) -> Result<Option<serde_json::Value>, StoreError> {
        check_name(name)?;
        self.config(name)?;
        let key = self.key(&format!("nfs4/{name}"));
        match self.read(&key)?.value {
            Some(value) => decode(&key, &value).map(Some),
            None => Ok(None),
        }
    }

    fn put_nfs4_state(&self, name: &str, epoch: u64, state: &serde_json::Value) -> Result<(), StoreError> {
        let put = TxnOp::put(self.key(&format!("nfs4/{name}")), encode(state), None);
        self.under_epoch(name, epoch, |_| true, vec![put])
    }

    fn nfs4_clients(&self, name: &str) -> Result<Option<serde_json::Value>, StoreError> {
        check_name(name)?;
        self.config(name)?;
        let key = self.key(&format!("nfs4-clients/{name}"));
        match self.read(&key)?.value {
            Some(value) => decode(&key, &value).map(Some),
            None => Ok(None),
        }
    }

    fn put_nfs4_clients(
        &self,
        name: &str,
        epoch: u64,
        clients: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let put = TxnOp::put(self.key(&format!("nfs4-clients/{name}")), encode(clients), None);
        self.under_epoch(name, epoch, |_| true, vec![put])
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
        let key = self.key(&format!("history/{name}"));
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
        let key = self.key(&format!("history/{name}"));
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
        let ttl = self.connect.options.lease_ttl_s;
        let lease = self.call(|mut c| async move { c.lease_grant(ttl, None).await })?.id();
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
        *self.held.lock().unwrap() = Some(Held { node: node.name.clone(), alive: alive.clone(), lease });
        Ok(Box::new(EtcdSession { store: self.handle(), keeper: Default::default() }))
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
        for (key, _) in &entries {
            let Some((name, part)) = key.strip_prefix(&prefix).and_then(|k| k.split_once('/')) else {
                continue;
            };
            let Some(node) = nodes.get_mut(name) else { continue };
            match part {
                // The lease is the node's liveness: its key is there until
                // etcd expires it (renewals write nothing).
                "alive" => {
                    node.alive = true;
                    node.last_seen_ms = now_ms();
                }
                "drained" => node.drained = true,
                _ => {}
            }
        }
        Ok(nodes.into_values().collect())
    }

    fn put_load(&self, load: &LoadReport) -> Result<(), StoreError> {
        check_name(&load.node)?;
        let key = self.key(&format!("nodes/{}/load", load.node));
        self.call(|mut c| {
            let (key, value) = (key.clone(), encode(load));
            async move { c.put(key, value, None).await }
        })?;
        Ok(())
    }

    fn loads(&self) -> Result<Vec<LoadReport>, StoreError> {
        let prefix = self.key("nodes/");
        let mut loads = Vec::new();
        for (key, value) in self.list(&prefix)? {
            if key.ends_with("/load") {
                loads.push(decode(&key, &value)?);
            }
        }
        Ok(loads)
    }

    /// A watch on every vserver key. A broken watch (a member gone, a lost
    /// connection) is made again from the last revision it saw, so no
    /// change between the two is missed.
    fn watch(&self, changed: std::sync::Arc<dyn Fn() + Send + Sync>) -> bool {
        let client = self.client.clone();
        let prefix = self.key("vservers/");
        self.runtime.spawn(async move {
            let mut next_revision = 0;
            loop {
                let mut client = client.read().unwrap().clone();
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
        EtcdStore {
            runtime: self.runtime.clone(),
            client: self.client.clone(),
            connect: self.connect.clone(),
            prefix: self.prefix.clone(),
            held: self.held.clone(),
        }
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

/// A node's lease. Renewing sends one keep-alive on a stream kept open
/// (no write, no new stream per renewal); dropping the session revokes
/// the lease, so the node is down at once (as when the kernel drops a dead
/// process's lock). A lease that expired (etcd lost quorum or was
/// restarted for longer than its TTL) is replaced by a new one, unless
/// another process took the node's name meanwhile.
struct EtcdSession {
    store: EtcdStore,
    keeper: std::sync::Mutex<Option<(etcd_client::LeaseKeeper, etcd_client::LeaseKeepAliveStream)>>,
}

impl EtcdSession {
    fn held(&self) -> Held {
        self.store.held.lock().unwrap().clone().expect("set by join")
    }

    /// One keep-alive; `Ok(false)`: the lease has expired.
    fn keep_alive(&self, lease: i64) -> Result<bool, StoreError> {
        let mut keeper = self.keeper.lock().unwrap();
        if keeper.is_none() {
            *keeper = Some(self.store.call(|mut c| async move { c.lease_keep_alive(lease).await })?);
        }
        let (sender, answers) = keeper.as_mut().expect("just set");
        let answer = self.store.wait(async {
            sender.keep_alive().await?;
            answers.message().await
        });
        match answer {
            Ok(Some(answer)) => Ok(answer.ttl() > 0),
            // A broken or late stream: a late answer must not be taken
            // for the next renewal's, so the next one opens another.
            Ok(None) => {
                *keeper = None;
                Err(unavailable("the lease keep-alive stream closed"))
            }
            Err(error) => {
                *keeper = None;
                Err(error)
            }
        }
    }
}

impl Session for EtcdSession {
    fn renew(&self) -> Result<(), StoreError> {
        let held = self.held();
        // An expired lease is answered with TTL 0 or, by some versions,
        // with an error: either way, try a new one.
        match self.keep_alive(held.lease) {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(error) if !self.store.holds(&held).is_ok_and(|holds| !holds) => return Err(error),
            Err(_) => {}
        }
        *self.keeper.lock().unwrap() = None;
        let ttl = self.store.connect.options.lease_ttl_s;
        let fresh = self.store.call(|mut c| async move { c.lease_grant(ttl, None).await })?.id();
        let put =
            TxnOp::put(held.alive.as_str(), now_ms().to_string(), Some(PutOptions::new().with_lease(fresh)));
        if !self.store.txn(vec![EtcdStore::absent(&held.alive)], vec![put])? {
            let _ = self.store.call(|mut c| async move { c.lease_revoke(fresh).await });
            return Err(StoreError::Unavailable(
                "etcd: this node's lease expired and its name is taken".into(),
            ));
        }
        *self.store.held.lock().unwrap() = Some(Held { lease: fresh, ..held });
        Ok(())
    }
}

impl Drop for EtcdSession {
    fn drop(&mut self) {
        let Some(held) = self.store.held.lock().unwrap().take() else { return };
        let lease = held.lease;
        let mut client = self.store.client();
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
        /// Server certificate, key and the CA that signed clients'
        /// certificates: clients then speak TLS and must show one.
        tls: Option<ServerTls>,
        /// How `wait_ready` opens the members (TLS, user).
        pub options: super::EtcdOptions,
        /// More flags for members started from now on.
        pub extra_args: Vec<String>,
    }

    /// PEM files of a member's TLS identity.
    #[derive(Clone)]
    pub struct ServerTls {
        pub cert: PathBuf,
        pub key: PathBuf,
        pub client_ca: PathBuf,
    }

    /// A port no one listens on, below the kernel's ephemeral range: a
    /// port taken from that range and given back (bind to port 0) could be
    /// taken meanwhile by an outgoing connection (etcd's members connect to
    /// each other while the next member starts), and that member then
    /// failed to listen (a cluster that never came up, once in CI).
    fn free_port() -> u16 {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
            .unwrap_or(32_768);
        let (first, count) = (10_000u32, low.saturating_sub(10_000));
        if count < 1_000 {
            return std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        }
        // Processes that run at once start at different places.
        let start = std::process::id().wrapping_mul(7_919) % count;
        for _ in 0..count {
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let port = (first + (start + n) % count) as u16;
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
        panic!("no free port below {low}");
    }

    impl EtcdCluster {
        /// Starts `n` members under `dir` and waits until they answer.
        pub fn start(dir: &Path, n: usize) -> EtcdCluster {
            Self::start_with(dir, n, None, super::EtcdOptions::default())
        }

        /// With TLS for clients (`options` must then carry the CA and a
        /// client identity, for `wait_ready`).
        pub fn start_with(
            dir: &Path,
            n: usize,
            tls: Option<ServerTls>,
            options: super::EtcdOptions,
        ) -> EtcdCluster {
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
            let mut cluster =
                EtcdCluster { members, dir: dir.to_path_buf(), token, tls, options, extra_args: vec![] };
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
            let scheme = if self.tls.is_some() { "https" } else { "http" };
            let client = format!("{scheme}://127.0.0.1:{}", m.client_port);
            let peer = format!("http://127.0.0.1:{}", m.peer_port);
            let log = std::fs::File::create(self.dir.join(format!("{}.log", m.name))).unwrap();
            let mut command = Command::new("etcd");
            if let Some(tls) = &self.tls {
                command
                    .arg("--cert-file")
                    .arg(&tls.cert)
                    .arg("--key-file")
                    .arg(&tls.key)
                    .arg("--trusted-ca-file")
                    .arg(&tls.client_ca)
                    .arg("--client-cert-auth");
            }
            let child = command
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
                .args(&self.extra_args)
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
                while crate::etcd::EtcdStore::open_with(&url, self.options.clone()).is_err() {
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

    /// A test CA, a member certificate for 127.0.0.1 and a client's, as
    /// PEM bytes and files under a directory.
    #[cfg(feature = "test-pki")]
    pub struct Pki {
        pub ca: Vec<u8>,
        pub client: (Vec<u8>, Vec<u8>),
        pub client_files: (PathBuf, PathBuf),
        pub server: ServerTls,
    }

    #[cfg(feature = "test-pki")]
    impl EtcdCluster {
        /// Users root and `user` (read-write under `prefix` only), then
        /// authentication on; `wait_ready` goes on as root. Connects with
        /// `self.options`.
        pub fn enable_auth(&mut self, user: &str, password: &str, prefix: &str) {
            use etcd_client::Permission;
            let root_password = format!("root-{}", self.token);
            let connect = super::Connect {
                endpoints: vec![format!(
                    "{}://127.0.0.1:{}",
                    if self.tls.is_some() { "https" } else { "http" },
                    self.members[0].client_port
                )],
                options: self.options.clone(),
            };
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let mut c = connect.client().await.unwrap();
                c.user_add("root", root_password.as_str(), None).await.unwrap();
                c.user_grant_role("root", "root").await.unwrap();
                c.role_add(user).await.unwrap();
                c.role_grant_permission(user, Permission::read_write(prefix).with_prefix()).await.unwrap();
                c.user_add(user, password, None).await.unwrap();
                c.user_grant_role(user, user).await.unwrap();
                c.auth_enable().await.unwrap();
            });
            self.options.user = Some(("root".into(), root_password));
        }
    }

    #[cfg(feature = "test-pki")]
    impl Pki {
        pub fn new(dir: &Path) -> Pki {
            use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
            let ca_key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, "vnas test CA");
            let ca = params.self_signed(&ca_key).unwrap();
            let signed = |names: Vec<String>, name: &str| {
                let key = KeyPair::generate().unwrap();
                let mut params = CertificateParams::new(names).unwrap();
                params.distinguished_name.push(DnType::CommonName, name);
                let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
                (cert.pem().into_bytes(), key.serialize_pem().into_bytes())
            };
            std::fs::create_dir_all(dir).unwrap();
            let write = |name: &str, data: &[u8]| {
                let path = dir.join(name);
                std::fs::write(&path, data).unwrap();
                path
            };
            let server = signed(vec!["localhost".into(), "127.0.0.1".into()], "etcd");
            let client = signed(vec![], "vnas");
            Pki {
                ca: ca.pem().into_bytes(),
                client_files: (write("client.pem", &client.0), write("client.key", &client.1)),
                client,
                server: ServerTls {
                    cert: write("server.pem", &server.0),
                    key: write("server.key", &server.1),
                    client_ca: write("ca.pem", ca.pem().as_bytes()),
                },
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
