//! Where each object the server has named sits in its export: inode ->
//! (parent inode, name). A handle carries only an inode, so this map is how
//! the server finds the object again; it follows renames made through the
//! server, and it is rebuilt by walking the tree when a handle issued by
//! another process (an earlier one, or another node) arrives.

use std::collections::HashMap;

use crate::limits::NODE_CACHE_MAX;

struct Node {
    parent: u64,
    name: Box<[u8]>,
}

/// Directories and other objects are kept apart: a path to anything runs
/// through directories only, so however many files a search records, the
/// directories that lead to them stay (an export has far fewer
/// directories than files). Files age out in two generations, so the one
/// recorded last is always still there.
pub struct Nodes {
    root: u64,
    dirs: HashMap<u64, Node>,
    files: HashMap<u64, Node>,
    older_files: HashMap<u64, Node>,
}

impl Nodes {
    pub fn new(root: u64) -> Self {
        Nodes { root, dirs: HashMap::new(), files: HashMap::new(), older_files: HashMap::new() }
    }

    /// Records that `ino` is `name` in directory `parent`.
    pub fn insert(&mut self, ino: u64, parent: u64, name: &[u8], is_dir: bool) {
        if ino == self.root {
            return;
        }
        // An inode number is in one map only (numbers are reused).
        self.older_files.remove(&ino);
        if is_dir {
            self.files.remove(&ino);
        } else {
            self.dirs.remove(&ino);
        }
        let map = if is_dir { &mut self.dirs } else { &mut self.files };
        if let Some(node) = map.get_mut(&ino) {
            if node.parent != parent || *node.name != *name {
                node.parent = parent;
                node.name = name.into();
            }
            return;
        }
        if is_dir && self.dirs.len() >= NODE_CACHE_MAX {
            // Forgetting is safe, only slower: a forgotten object is found
            // again by its kernel handle, or by walking the tree.
            self.dirs.clear();
        }
        if !is_dir && self.files.len() >= NODE_CACHE_MAX / 2 {
            self.older_files = std::mem::take(&mut self.files);
        }
        let map = if is_dir { &mut self.dirs } else { &mut self.files };
        map.insert(ino, Node { parent, name: name.into() });
    }

    pub fn remove(&mut self, ino: u64) {
        self.dirs.remove(&ino);
        self.files.remove(&ino);
        self.older_files.remove(&ino);
    }

    /// The directory `ino` was last seen in, and its name there.
    pub fn entry(&self, ino: u64) -> Option<(u64, Box<[u8]>)> {
        [&self.dirs, &self.files, &self.older_files]
            .into_iter()
            .find_map(|map| map.get(&ino))
            .map(|node| (node.parent, node.name.clone()))
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.dirs.len() + self.files.len() + self.older_files.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_follow_renames() {
        let mut nodes = Nodes::new(1);
        nodes.insert(10, 1, b"a", true);
        nodes.insert(11, 10, b"b", false);
        assert_eq!(nodes.entry(11), Some((10, b"b"[..].into())));
        nodes.insert(11, 1, b"moved", false);
        assert_eq!(nodes.entry(11), Some((1, b"moved"[..].into())));
        nodes.insert(1, 5, b"root", true);
        assert_eq!(nodes.entry(1), None, "the root has no parent in the export");
        nodes.remove(11);
        assert_eq!(nodes.entry(11), None);
    }

    #[test]
    fn many_files_never_push_out_the_directories_or_the_newest_file() {
        let mut nodes = Nodes::new(1);
        nodes.insert(2, 1, b"d", true);
        let files = NODE_CACHE_MAX as u64 * 3 / 2;
        for ino in 100..100 + files {
            nodes.insert(ino, 2, b"f", false);
        }
        assert_eq!(nodes.entry(2), Some((1, b"d"[..].into())), "the directory stays");
        assert!(nodes.entry(100 + files - 1).is_some(), "the newest file stays");
        assert!(nodes.entry(100).is_none(), "the oldest files age out");
        assert!(nodes.len() <= NODE_CACHE_MAX + 1, "bounded: {}", nodes.len());
        // An inode number reused by another kind of object moves maps.
        nodes.insert(2, 1, b"now-a-file", false);
        assert_eq!(nodes.entry(2), Some((1, b"now-a-file"[..].into())));
    }
}
