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
//!
//! # Who may change an anchored value
//!
//! While its owner lives, an owned value can be replaced, cleared or removed
//! (with any subtree holding it) only by its owner. Everybody else gets an
//! error naming the owner, whatever else they hold: a root holder's way to
//! take an anchor back is to kill the owner, which clears its values. Only
//! the tree mutates here; reading and listing never create nodes.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::limits::{NODES_MAX, TREE_DATA_BYTES_MAX, VALUE_BYTES_MAX, WRITER_DATA_BYTES_MAX};
use libp2p::PeerId;

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

/// The process that owns a value: the original caller that set it, named by
/// its host's peer id and its process id on that host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Owner {
    /// The host the process runs on.
    pub host: PeerId,
    /// The process id on that host.
    pub pid: u64,
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "process {} on host {}", self.pid, self.host)
    }
}

#[derive(Default)]
struct Node {
    children: BTreeMap<String, Node>,
    value: Stored,
    owner: Option<Owner>,
}

/// Why `writer` may not change a value owned by `owner` at `path` (below
/// the owner's host, where every owned value lives).
fn refusal(path: &[String], owner: Owner, writer: Option<Owner>) -> String {
    let writer = match writer {
        Some(writer) => writer.to_string(),
        None => {
            "a caller that is not a process of this host (a CLI client or another host)".to_owned()
        }
    };
    let mut full = format!("/{}", owner.host);
    for name in path {
        full.push('/');
        full.push_str(name);
    }
    format!(
        "{full} is owned by {owner}, which set it; {writer} cannot change or remove it while the owner runs (killing the owner, `ww kill {}/{}`, clears its anchors)",
        owner.host, owner.pid
    )
}

impl Node {
    fn size(&self) -> usize {
        1 + self.children.values().map(Node::size).sum::<usize>()
    }

    /// Bytes of this node's data value (capabilities count nothing).
    fn data_bytes(&self) -> usize {
        match &self.value {
            Stored::Data(data) => data.len(),
            _ => 0,
        }
    }

    /// Calls `each(owner, bytes)` for every data value in this subtree.
    fn for_each_data(&self, each: &mut impl FnMut(Option<Owner>, usize)) {
        let bytes = self.data_bytes();
        if bytes > 0 {
            each(self.owner, bytes);
        }
        for child in self.children.values() {
            child.for_each_data(each);
        }
    }

    /// The path (below `self`, appended to `path`) and owner of the first
    /// value in this subtree that `writer` does not own.
    fn foreign(&self, path: &mut Vec<String>, writer: Option<Owner>) -> Option<Owner> {
        if let Some(owner) = self.owner {
            if Some(owner) != writer {
                return Some(owner);
            }
        }
        for (name, child) in &self.children {
            path.push(name.clone());
            if let Some(owner) = child.foreign(path, writer) {
                return Some(owner);
            }
            path.pop();
        }
        None
    }

    /// Clears `owner`'s values; returns how many, and their data bytes.
    fn clear_owned(&mut self, owner: Owner) -> (usize, usize) {
        let mut cleared = (0, 0);
        if self.owner == Some(owner) {
            cleared.1 += self.data_bytes();
            self.value = Stored::None;
            self.owner = None;
            cleared.0 += 1;
        }
        for child in self.children.values_mut() {
            let (values, bytes) = child.clear_owned(owner);
            cleared.0 += values;
            cleared.1 += bytes;
        }
        cleared
    }
}

/// Bytes of data held in the tree, in all and per writer (`None`: callers
/// that are not local processes).
#[derive(Default)]
struct DataBudget {
    total_bytes: usize,
    writer_bytes: HashMap<Option<Owner>, usize>,
}

impl DataBudget {
    /// Whether `writer` may replace `old_bytes` of `old_owner`'s data with
    /// `new_bytes` of its own at one path.
    fn admit(
        &self,
        writer: Option<Owner>,
        old_owner: Option<Owner>,
        old_bytes: usize,
        new_bytes: usize,
    ) -> Result<(), String> {
        if self.total_bytes - old_bytes + new_bytes > TREE_DATA_BYTES_MAX {
            return Err(format!(
                "this host's anchor tree holds {} bytes of data and its budget is \
                 {TREE_DATA_BYTES_MAX} (TREE_DATA_BYTES_MAX); remove some first",
                self.total_bytes
            ));
        }
        let held = self.writer_bytes.get(&writer).copied().unwrap_or(0);
        let released = if old_owner == writer { old_bytes } else { 0 };
        if new_bytes > released && held - released + new_bytes > WRITER_DATA_BYTES_MAX {
            let who = writer.map_or_else(
                || "callers that are not processes of this host".to_owned(),
                |owner| owner.to_string(),
            );
            return Err(format!(
                "{who} hold {held} bytes of anchored data and a writer's share is \
                 {WRITER_DATA_BYTES_MAX} (WRITER_DATA_BYTES_MAX); remove some first"
            ));
        }
        Ok(())
    }

    fn add(&mut self, writer: Option<Owner>, bytes: usize) {
        if bytes == 0 {
            return;
        }
        self.total_bytes += bytes;
        *self.writer_bytes.entry(writer).or_default() += bytes;
        assert!(self.total_bytes <= TREE_DATA_BYTES_MAX);
    }

    fn sub(&mut self, writer: Option<Owner>, bytes: usize) {
        if bytes == 0 {
            return;
        }
        // Paired with `add`: an invariant of this counter, not input.
        let Some(held) = self.writer_bytes.get_mut(&writer) else {
            panic!("a writer's data was counted when it was set");
        };
        assert!(*held >= bytes && self.total_bytes >= bytes);
        *held -= bytes;
        if *held == 0 {
            self.writer_bytes.remove(&writer);
        }
        self.total_bytes -= bytes;
    }
}

/// The tree.
pub struct Tree {
    root: RefCell<Node>,
    /// Nodes, not counting the root.
    nodes: Cell<usize>,
    data: RefCell<DataBudget>,
}

impl Default for Tree {
    fn default() -> Self {
        Self {
            root: RefCell::new(Node::default()),
            nodes: Cell::new(0),
            data: RefCell::new(DataBudget::default()),
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
    /// `writer` (a local process, which then owns the value, or `None` for
    /// a caller whose process is unknown here, whose value nobody owns).
    ///
    /// # Errors
    ///
    /// When the data is too big, the tree is full (nodes, or data bytes in
    /// all or for this writer), or the value at `path` is owned by a process
    /// other than `writer`.
    pub fn set(&self, path: &[String], value: Stored, writer: Option<Owner>) -> Result<(), String> {
        if let Some(owner) = self.owner(path) {
            if Some(owner) != writer {
                return Err(refusal(path, owner, writer));
            }
        }
        if let Stored::Data(data) = &value {
            if data.len() > VALUE_BYTES_MAX {
                return Err(format!(
                    "value of {} bytes; the limit is {VALUE_BYTES_MAX}",
                    data.len()
                ));
            }
        }
        let new_bytes = match &value {
            Stored::Data(data) => data.len(),
            _ => 0,
        };
        let (old_owner, old_bytes) = self.data_at(path);
        self.data
            .borrow()
            .admit(writer, old_owner, old_bytes, new_bytes)?;
        self.ensure(path)?;
        let mut root = self.root.borrow_mut();
        let mut node = &mut *root;
        for name in path {
            node = node
                .children
                .get_mut(name)
                .ok_or("a node vanished while being set")?;
        }
        {
            let mut data = self.data.borrow_mut();
            data.sub(node.owner, node.data_bytes());
            node.owner = if matches!(value, Stored::None) {
                None
            } else {
                writer
            };
            data.add(node.owner, new_bytes);
        }
        // Drop the old value after releasing the borrow: dropping a
        // capability may run arbitrary code.
        let old = std::mem::replace(&mut node.value, value);
        drop(root);
        drop(old);
        Ok(())
    }

    /// The owner and data bytes of the value at `path` (none, 0 if absent).
    fn data_at(&self, path: &[String]) -> (Option<Owner>, usize) {
        let root = self.root.borrow();
        let mut node = &*root;
        for name in path {
            match node.children.get(name) {
                Some(child) => node = child,
                None => return (None, 0),
            }
        }
        (node.owner, node.data_bytes())
    }

    /// The owner of the value at `path`, if it exists and has one.
    pub fn owner(&self, path: &[String]) -> Option<Owner> {
        let root = self.root.borrow();
        let mut node = &*root;
        for name in path {
            node = node.children.get(name)?;
        }
        node.owner
    }

    /// Removes the child `name` of `path` with its subtree, on behalf of
    /// `writer`. Returns whether it existed.
    ///
    /// # Errors
    ///
    /// When the subtree holds a value owned by a process other than
    /// `writer`; then nothing is removed.
    pub fn remove(
        &self,
        path: &[String],
        name: &str,
        writer: Option<Owner>,
    ) -> Result<bool, String> {
        let removed = {
            let mut root = self.root.borrow_mut();
            let mut node = &mut *root;
            for component in path {
                match node.children.get_mut(component) {
                    Some(child) => node = child,
                    None => return Ok(false),
                }
            }
            let Some(child) = node.children.get(name) else {
                return Ok(false);
            };
            let mut at: Vec<String> = path.iter().cloned().chain([name.to_owned()]).collect();
            if let Some(owner) = child.foreign(&mut at, writer) {
                return Err(refusal(&at, owner, writer));
            }
            node.children.remove(name)
        };
        match removed {
            Some(subtree) => {
                self.nodes.set(self.nodes.get() - subtree.size());
                let mut data = self.data.borrow_mut();
                subtree.for_each_data(&mut |owner, bytes| data.sub(owner, bytes));
                drop(data);
                // Dropped after releasing the borrow: dropping a capability
                // may run arbitrary code.
                drop(subtree);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Clears every value owned by process `owner`; returns how many.
    pub fn clear_owned(&self, owner: Owner) -> usize {
        let (values, bytes) = self.root.borrow_mut().clear_owned(owner);
        self.data.borrow_mut().sub(Some(owner), bytes);
        values
    }

    /// Bytes of data values in the tree.
    pub fn data_bytes(&self) -> usize {
        self.data.borrow().total_bytes
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

    fn data(tree: &Tree, p: &str) -> Option<Vec<u8>> {
        match tree.get(&path(p)) {
            Stored::Data(data) => Some(data),
            _ => None,
        }
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
        assert!(tree.remove(&path(""), "a", None).unwrap());
        assert!(!tree.remove(&path(""), "a", None).unwrap());
        assert_eq!(tree.len(), 0);
        assert!(tree.ls(&path("")).is_empty());
    }

    #[test]
    fn a_dead_owners_values_are_cleared() {
        let host = PeerId::random();
        let (seven, eight) = (Owner { host, pid: 7 }, Owner { host, pid: 8 });
        let tree = Tree::default();
        tree.set(&path("p/mine"), Stored::Data(vec![1]), Some(seven))
            .unwrap();
        tree.set(&path("p/other"), Stored::Data(vec![2]), Some(eight))
            .unwrap();
        tree.set(&path("p/nobody"), Stored::Data(vec![3]), None)
            .unwrap();
        assert_eq!(tree.clear_owned(seven), 1);
        assert!(matches!(tree.get(&path("p/mine")), Stored::None));
        assert!(matches!(tree.get(&path("p/other")), Stored::Data(_)));
        assert!(matches!(tree.get(&path("p/nobody")), Stored::Data(_)));
        // Once cleared, the value is free for anybody.
        assert_eq!(tree.owner(&path("p/mine")), None);
        tree.set(&path("p/mine"), Stored::Data(vec![4]), Some(eight))
            .unwrap();
        assert_eq!(tree.owner(&path("p/mine")), Some(eight));
    }

    #[test]
    fn an_owned_value_refuses_every_other_writer_and_remover() {
        let host = PeerId::random();
        let other_host = PeerId::random();
        let owner = Owner { host, pid: 7 };
        let tree = Tree::default();
        tree.set(&path("raft/v1/inbox"), Stored::Data(vec![1]), Some(owner))
            .unwrap();
        let others = [
            Some(Owner { host, pid: 8 }),
            // The same pid on another host is another process.
            Some(Owner {
                host: other_host,
                pid: 7,
            }),
            // A CLI client or a call forwarded by another host.
            None,
        ];
        for writer in others {
            for value in [Stored::Data(vec![2]), Stored::None] {
                let err = tree.set(&path("raft/v1/inbox"), value, writer).unwrap_err();
                assert!(err.contains(&format!("/{host}/raft/v1/inbox")), "{err}");
                assert!(err.contains(&format!("process 7 on host {host}")), "{err}");
                assert!(err.contains(&format!("ww kill {host}/7")), "{err}");
            }
            // Removing the node, or any ancestor, would remove the value.
            for (parent, name) in [("raft/v1", "inbox"), ("raft", "v1"), ("", "raft")] {
                let err = tree.remove(&path(parent), name, writer).unwrap_err();
                assert!(err.contains(&format!("/{host}/raft/v1/inbox")), "{err}");
                assert!(err.contains("process 7"), "{err}");
            }
            assert_eq!(data(&tree, "raft/v1/inbox"), Some(vec![1]));
            assert_eq!(tree.owner(&path("raft/v1/inbox")), Some(owner));
            assert_eq!(tree.len(), 3);
        }
        // Others may still set unowned neighbours.
        tree.set(&path("raft/v1/note"), Stored::Data(vec![3]), None)
            .unwrap();
        assert!(tree.remove(&path("raft/v1"), "note", None).unwrap());
    }

    #[test]
    fn the_owner_itself_can_overwrite_clear_and_remove() {
        let owner = Owner {
            host: PeerId::random(),
            pid: 7,
        };
        let tree = Tree::default();
        tree.set(&path("a/b"), Stored::Data(vec![1]), Some(owner))
            .unwrap();
        tree.set(&path("a/b"), Stored::Data(vec![2]), Some(owner))
            .unwrap();
        assert_eq!(data(&tree, "a/b"), Some(vec![2]));
        assert_eq!(tree.owner(&path("a/b")), Some(owner));
        // Clearing gives the value up: nobody owns an empty node.
        tree.set(&path("a/b"), Stored::None, Some(owner)).unwrap();
        assert_eq!(tree.owner(&path("a/b")), None);
        tree.set(&path("a/b"), Stored::Data(vec![3]), Some(owner))
            .unwrap();
        assert!(tree.remove(&path(""), "a", Some(owner)).unwrap());
        assert!(tree.is_empty());
    }

    #[test]
    fn an_owner_cannot_remove_a_subtree_holding_another_owners_value() {
        let host = PeerId::random();
        let (seven, eight) = (Owner { host, pid: 7 }, Owner { host, pid: 8 });
        let tree = Tree::default();
        tree.set(&path("a"), Stored::Data(vec![1]), Some(seven))
            .unwrap();
        tree.set(&path("a/b/c"), Stored::Data(vec![2]), Some(eight))
            .unwrap();
        let err = tree.remove(&path(""), "a", Some(seven)).unwrap_err();
        assert!(
            err.contains(&format!("/{host}/a/b/c is owned by process 8")),
            "{err}"
        );
        assert_eq!(tree.len(), 3);
        assert_eq!(data(&tree, "a"), Some(vec![1]));
    }

    #[test]
    fn reading_and_listing_create_no_nodes() {
        let tree = Tree::default();
        assert!(matches!(tree.get(&path("a/b/c")), Stored::None));
        assert!(tree.ls(&path("x/y")).is_empty());
        assert_eq!(tree.owner(&path("a/b")), None);
        assert!(!tree.remove(&path("p/q"), "r", None).unwrap());
        assert!(tree.is_empty());
        tree.set(&path("a"), Stored::Data(vec![1]), None).unwrap();
        assert!(matches!(tree.get(&path("a/b/c")), Stored::None));
        assert!(tree.ls(&path("a/b")).is_empty());
        assert_eq!(tree.len(), 1);
    }

    #[test]
    fn data_is_budgeted_per_writer_and_in_all() {
        const MIB: usize = 1024 * 1024;
        let host = PeerId::random();
        let writers: Vec<Owner> = (1..=5).map(|pid| Owner { host, pid }).collect();
        let tree = Tree::default();
        let share = WRITER_DATA_BYTES_MAX / VALUE_BYTES_MAX;
        for n in 0..share {
            tree.set(
                &path(&format!("a/{n}")),
                Stored::Data(vec![0; MIB]),
                Some(writers[0]),
            )
            .unwrap();
        }
        // Over its share: refused, naming the budget, and nothing changed.
        let err = tree
            .set(&path("a/more"), Stored::Data(vec![0; 1]), Some(writers[0]))
            .unwrap_err();
        assert!(err.contains("WRITER_DATA_BYTES_MAX"), "{err}");
        assert!(matches!(tree.get(&path("a/more")), Stored::None));
        assert_eq!(tree.data_bytes(), WRITER_DATA_BYTES_MAX);
        // Replacing its own value charges only the difference.
        tree.set(&path("a/0"), Stored::Data(vec![0; MIB]), Some(writers[0]))
            .unwrap();
        // Other writers fill the rest, up to the tree's budget.
        for writer in &writers[1..4] {
            for n in 0..share {
                let at = path(&format!("p{}/{n}", writer.pid));
                tree.set(&at, Stored::Data(vec![0; MIB]), Some(*writer))
                    .unwrap();
            }
        }
        assert_eq!(tree.data_bytes(), TREE_DATA_BYTES_MAX);
        let err = tree
            .set(&path("late"), Stored::Data(vec![0; 1]), Some(writers[4]))
            .unwrap_err();
        assert!(err.contains("TREE_DATA_BYTES_MAX"), "{err}");
        // Removing a subtree and ending an owner give the bytes back.
        assert!(tree.remove(&[], "a", Some(writers[0])).unwrap());
        assert_eq!(tree.clear_owned(writers[1]), share);
        assert_eq!(
            tree.data_bytes(),
            TREE_DATA_BYTES_MAX - 2 * WRITER_DATA_BYTES_MAX
        );
        tree.set(&path("late"), Stored::Data(vec![0; MIB]), Some(writers[4]))
            .unwrap();
        // A cleared value (set to nothing) counts nothing.
        tree.set(&path("late"), Stored::None, Some(writers[4]))
            .unwrap();
        assert_eq!(
            tree.data_bytes(),
            TREE_DATA_BYTES_MAX - 2 * WRITER_DATA_BYTES_MAX
        );
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
