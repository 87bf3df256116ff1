//! The vservers' lock tables in the common volume (see
//! `vnas_vserver::LockRecords`).

use std::sync::Arc;

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
}
