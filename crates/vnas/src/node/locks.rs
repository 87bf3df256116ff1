//! The vservers' lock tables in the common volume (see
//! `vnas_vserver::LockRecords`).

use std::sync::Arc;

use vnas_locks::nfs4::Record as V4Record;
use vnas_nfs::locks::LockTable;
use vnas_store::Store;

pub struct StoreLocks(pub Arc<dyn Store>);

impl vnas_vserver::LockRecords for StoreLocks {
    fn load(&self, vserver: &str) -> Result<Option<LockTable>, String> {
        match self.0.locks(vserver).map_err(|e| e.to_string())? {
            None => Ok(None),
            Some(value) => serde_json::from_value(value).map(Some).map_err(|e| format!("unreadable: {e}")),
        }
    }

    fn record(&self, vserver: &str, epoch: u64, table: &LockTable) -> Result<(), String> {
        let value = serde_json::to_value(table).map_err(|e| e.to_string())?;
        self.0.put_locks(vserver, epoch, &value).map_err(|e| e.to_string())
    }

    fn load_nfs4(&self, vserver: &str) -> Result<Result<Option<V4Record>, String>, String> {
        Ok(match self.0.nfs4_state(vserver) {
            Ok(None) => Ok(None),
            Ok(Some(value)) => {
                serde_json::from_value(value).map(Some).map_err(|e| format!("unreadable: {e}"))
            }
            Err(vnas_store::StoreError::Corrupt { path, reason }) => Err(format!("{path}: {reason}")),
            Err(error) => return Err(error.to_string()),
        })
    }

    fn record_nfs4(&self, vserver: &str, epoch: u64, record: &V4Record) -> Result<(), String> {
        let value = serde_json::to_value(record).map_err(|e| e.to_string())?;
        self.0.put_nfs4_state(vserver, epoch, &value).map_err(|e| e.to_string())
    }

    fn load_nfs4_clients(&self, vserver: &str) -> Result<Vec<Vec<u8>>, String> {
        let Some(value) = self.0.nfs4_clients(vserver).map_err(|e| e.to_string())? else {
            return Ok(Vec::new());
        };
        let names: Vec<String> =
            serde_json::from_value(value).map_err(|e| format!("client list unreadable: {e}"))?;
        names
            .iter()
            .map(|n| vnas_locks::unhex(n).ok_or_else(|| format!("client list unreadable: {n}")))
            .collect()
    }

    fn record_nfs4_clients(&self, vserver: &str, epoch: u64, clients: &[Vec<u8>]) -> Result<(), String> {
        let names: Vec<String> = clients.iter().map(|c| vnas_locks::hex(c)).collect();
        self.0.put_nfs4_clients(vserver, epoch, &serde_json::json!(names)).map_err(|e| e.to_string())
    }
}
