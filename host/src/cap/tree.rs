//! A host's local anchor tree: the nodes below `/<this host's peer id>`.
//!
//! # Who keeps an anchored value alive
//!
//! The tree holds a strong reference to every value set in it, until the
//! value is replaced, its node is removed, or its owner ends. A value set
//! through the `Host` of a local process is owned by that process: when the
//! process ends (exit, trap or kill), the host clears it, so nobody is left
//! holding a path to a capability of a dead process. Values set by peers or
//! CLI clients belong to nobody and stay until replaced or removed. A
//! capability whose server is gone (a process on another host died) is not
//! cleared here, but calls on it fail fast with a "disconnected" error.

use std::cell::RefCell;
use std::collections::BTreeMap;

/// Most nodes in one host's tree.
pub const NODES_MAX: usize = 100_000;

/// Largest data value, in bytes.
pub const VALUE_BYTES_MAX: usize = 1024 * 1024;

/// A stored value.
#[derive(Clone, Default)]
pub enum Stored {
    /// Nothing.
    #[default]
    None,
    /// Bytes.
    Data(Vec<u8>),
    /// A capability.
    Cap(capnp::capability::Client),
}

#[derive(Default)]
struct Node {
    children: BTreeMap<String, Node>,
    value: Stored,
    owner: Option<u64>,
}

impl Node {
    fn size(&self) -> usize {
        1 + self.children.values().map(Node::size).sum::<usize>()
    }

    fn clear_owned(&mut self, owner: u64) -> usize {
        let mut cleared = 0;
        if self.owner == Some(owner) {
            self.value = Stored::None;
            self.owner = None;
            cleared += 1;
        }
        for child in self.children.values_mut() {
            cleared += child.clear_owned(owner);
        }
        cleared
    }
}

/// The tree.
pub struct Tree {
    root: RefCell<Node>,
    /// Nodes, not counting the root.
    nodes: std::cell::Cell<usize>,
}

impl Default for Tree {
    fn default() -> Self {
        Self {
            root: RefCell::new(Node::default()),
            nodes: std::cell::Cell::new(0),
        }
    }
}

impl Tree {
    /// Creates the nodes along `path` that do not exist.
    ///
    /// # Errors
    ///
    /// When the tree would exceed [`NODES_MAX`] nodes.
    pub fn ensure(&self, path: &[String]) -> Result<(), String> {
        let mut root = self.root.borrow_mut();
        let mut node = &mut *root;
        for name in path {
            if !node.children.contains_key(name) {
                if self.nodes.get() >= NODES_MAX {
                    return Err(format!(
                        "this host's anchor tree is full ({NODES_MAX} nodes); remove some first"
                    ));
                }
                self.nodes.set(self.nodes.get() + 1);
            }
            node = node.children.entry(name.clone()).or_default();
        }
        Ok(())
    }

    /// The names of the children of `path` (none if it does not exist).
    pub fn ls(&self, path: &[String]) -> Vec<String> {
        let root = self.root.borrow();
        let mut node = &*root;
        for name in path {
            match node.children.get(name) {
                Some(child) => node = child,
                None => return Vec::new(),
            }
        }
        node.children.keys().cloned().collect()
    }

    /// The value at `path` ([`Stored::None`] if it does not exist).
    pub fn get(&self, path: &[String]) -> Stored {
        let root = self.root.borrow();
        let mut node = &*root;
        for name in path {
            match node.children.get(name) {
                Some(child) => node = child,
                None => return Stored::None,
            }
        }
        node.value.clone()
    }

    /// Stores `value` at `path`, creating the nodes along it, on behalf of
    /// `owner` (a local process id, or `None`).
    ///
    /// # Errors
    ///
    /// When the data is too big or the tree is full.
    pub fn set(&self, path: &[String], value: Stored, owner: Option<u64>) -> Result<(), String> {
        if let Stored::Data(data) = &value {
            if data.len() > VALUE_BYTES_MAX {
                return Err(format!(
                    "value of {} bytes; the limit is {VALUE_BYTES_MAX}",
                    data.len()
                ));
            }
        }
        self.ensure(path)?;
        let mut root = self.root.borrow_mut();
        let mut node = &mut *root;
        for name in path {
            node = node
                .children
                .get_mut(name)
                .ok_or("a node vanished while being set")?;
        }
        node.owner = if matches!(value, Stored::None) {
            None
        } else {
            owner
        };
        // Drop the old value after releasing the borrow: dropping a
        // capability may run arbitrary code.
        let old = std::mem::replace(&mut node.value, value);
        drop(root);
        drop(old);
        Ok(())
    }

    /// Removes the child `name` of `path` with its subtree. Returns whether
    /// it existed.
    pub fn remove(&self, path: &[String], name: &str) -> bool {
        let removed = {
            let mut root = self.root.borrow_mut();
            let mut node = &mut *root;
            for component in path {
                match node.children.get_mut(component) {
                    Some(child) => node = child,
                    None => return false,
                }
            }
            node.children.remove(name)
        };
        match removed {
            Some(subtree) => {
                self.nodes.set(self.nodes.get() - subtree.size());
                drop(subtree);
                true
            }
            None => false,
        }
    }

    /// Clears every value owned by process `owner`; returns how many.
    pub fn clear_owned(&self, owner: u64) -> usize {
        self.root.borrow_mut().clear_owned(owner)
    }

    /// Number of nodes (without the root).
    pub fn len(&self) -> usize {
        self.nodes.get()
    }

    /// Whether the tree has no nodes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> Vec<String> {
        crate::cap::path::parse(p).unwrap()
    }

    #[test]
    fn set_get_ls_remove() {
        let tree = Tree::default();
        tree.set(&path("a/b"), Stored::Data(b"x".to_vec()), None)
            .unwrap();
        tree.ensure(&path("a/c")).unwrap();
        assert_eq!(tree.ls(&path("a")), vec!["b", "c"]);
        assert!(matches!(tree.get(&path("a/b")), Stored::Data(d) if d == b"x"));
        assert!(matches!(tree.get(&path("nope")), Stored::None));
        assert_eq!(tree.len(), 3);
        assert!(tree.remove(&path(""), "a"));
        assert!(!tree.remove(&path(""), "a"));
        assert_eq!(tree.len(), 0);
        assert!(tree.ls(&path("")).is_empty());
    }

    #[test]
    fn a_dead_owners_values_are_cleared() {
        let tree = Tree::default();
        tree.set(&path("p/mine"), Stored::Data(vec![1]), Some(7))
            .unwrap();
        tree.set(&path("p/other"), Stored::Data(vec![2]), Some(8))
            .unwrap();
        tree.set(&path("p/nobody"), Stored::Data(vec![3]), None)
            .unwrap();
        assert_eq!(tree.clear_owned(7), 1);
        assert!(matches!(tree.get(&path("p/mine")), Stored::None));
        assert!(matches!(tree.get(&path("p/other")), Stored::Data(_)));
        assert!(matches!(tree.get(&path("p/nobody")), Stored::Data(_)));
    }

    #[test]
    fn the_tree_and_values_are_bounded() {
        let tree = Tree::default();
        let err = tree
            .set(
                &path("big"),
                Stored::Data(vec![0; VALUE_BYTES_MAX + 1]),
                None,
            )
            .unwrap_err();
        assert!(err.contains("limit"), "{err}");
        for n in 0..NODES_MAX {
            tree.ensure(&[n.to_string()]).unwrap();
        }
        assert!(tree
            .ensure(&["one-more".to_owned()])
            .unwrap_err()
            .contains("full"));
    }
}
