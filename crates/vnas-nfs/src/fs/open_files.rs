//! Open files kept between READ, WRITE and COMMIT calls, so the data path
//! does not walk and open a path per request.

use std::collections::HashMap;
use std::fs::File;
use std::sync::{Arc, Mutex};

use crate::limits::OPEN_FILES_MAX;

#[derive(Clone)]
pub struct OpenFile {
    pub file: Arc<File>,
    pub writable: bool,
    /// Writers to one file take turns here: the kernel serializes them on
    /// the inode lock anyway, and waiting on a mutex sleeps where waiting
    /// on the inode lock spins, taking the CPU the client needs.
    pub writing: Arc<Mutex<()>>,
}

/// Keyed by (inode, generation), so a reused inode number never reaches
/// the file that had it before.
#[derive(Default)]
pub struct OpenFiles {
    map: Mutex<HashMap<(u64, u32), OpenFile>>,
}

impl OpenFiles {
    pub fn get(&self, key: (u64, u32)) -> Option<OpenFile> {
        self.map.lock().unwrap().get(&key).cloned()
    }

    pub fn insert(&self, key: (u64, u32), file: OpenFile) {
        let mut map = self.map.lock().unwrap();
        if map.len() >= OPEN_FILES_MAX && !map.contains_key(&key) {
            // Files still in use stay open through their Arc until done.
            let victim = *map.keys().next().expect("map is full, so not empty");
            map.remove(&victim);
        }
        map.insert(key, file);
    }

    pub fn remove(&self, ino: u64) {
        self.map.lock().unwrap().retain(|(i, _), _| *i != ino);
    }
}
