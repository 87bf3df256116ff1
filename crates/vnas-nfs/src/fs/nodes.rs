//! Where each object the server has named sits in its export: inode ->
//! (parent inode, name). A handle carries only an inode, so this map is how
//! the server finds the object again; it follows renames made through the
//! server, and it is rebuilt by walking the tree when a handle issued by
//! another process (an earlier one, or another node) arrives.

use std::collections::HashMap;

use crate::limits::{DEPTH_MAX, NODE_CACHE_MAX};

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
        Nodes {
            root,
            map: HashMap::new(),
        }
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
        self.map.insert(
            ino,
            Node {
                parent,
                name: name.into(),
            },
        );
    }

    pub fn remove(&mut self, ino: u64) {
        self.map.remove(&ino);
    }

    /// The path of `ino` relative to the export root ("." for the root), or
    /// `None` when some ancestor is not known.
    pub fn path_of(&self, ino: u64) -> Option<Vec<u8>> {
        if ino == self.root {
            return Some(b".".to_vec());
        }
        let mut names: Vec<&[u8]> = Vec::new();
        let mut at = ino;
        while at != self.root {
            if names.len() >= DEPTH_MAX {
                return None;
            }
            let node = self.map.get(&at)?;
            names.push(&node.name);
            at = node.parent;
        }
        let mut path = Vec::with_capacity(names.iter().map(|n| n.len() + 1).sum());
        for name in names.iter().rev() {
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(name);
        }
        Some(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_renames() {
        let mut nodes = Nodes::new(1);
        nodes.insert(10, 1, b"a");
        nodes.insert(11, 10, b"b");
        nodes.insert(12, 11, b"f");
        assert_eq!(nodes.path_of(12).unwrap(), b"a/b/f");
        nodes.insert(11, 1, b"moved");
        assert_eq!(nodes.path_of(12).unwrap(), b"moved/f");
        assert_eq!(nodes.path_of(1).unwrap(), b".");
        nodes.remove(11);
        assert!(nodes.path_of(12).is_none());
    }

    #[test]
    fn cycles_do_not_hang() {
        let mut nodes = Nodes::new(1);
        nodes.insert(10, 11, b"a");
        nodes.insert(11, 10, b"b");
        assert!(nodes.path_of(10).is_none());
    }
}
