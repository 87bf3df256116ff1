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

pub struct Nodes {
    root: u64,
    map: HashMap<u64, Node>,
}

impl Nodes {
    pub fn new(root: u64) -> Self {
        Nodes { root, map: HashMap::new() }
    }

    pub fn is_full(&self) -> bool {
        self.map.len() >= NODE_CACHE_MAX
    }

    /// Records that `ino` is `name` in directory `parent`.
    pub fn insert(&mut self, ino: u64, parent: u64, name: &[u8]) {
        if ino == self.root {
            return;
        }
        if let Some(node) = self.map.get_mut(&ino) {
            if node.parent != parent || *node.name != *name {
                node.parent = parent;
                node.name = name.into();
            }
            return;
        }
        if self.is_full() {
            // Forgetting is safe, only slower: a forgotten object is found
            // again by walking the tree.
            self.map.clear();
        }
        self.map.insert(ino, Node { parent, name: name.into() });
    }

    pub fn remove(&mut self, ino: u64) {
        self.map.remove(&ino);
    }

    /// The directory `ino` was last seen in, and its name there.
    pub fn entry(&self, ino: u64) -> Option<(u64, Box<[u8]>)> {
        self.map.get(&ino).map(|node| (node.parent, node.name.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_follow_renames() {
        let mut nodes = Nodes::new(1);
        nodes.insert(10, 1, b"a");
        nodes.insert(11, 10, b"b");
        assert_eq!(nodes.entry(11), Some((10, b"b"[..].into())));
        nodes.insert(11, 1, b"moved");
        assert_eq!(nodes.entry(11), Some((1, b"moved"[..].into())));
        nodes.insert(1, 5, b"root");
        assert_eq!(nodes.entry(1), None, "the root has no parent in the export");
        nodes.remove(11);
        assert_eq!(nodes.entry(11), None);
    }
}
