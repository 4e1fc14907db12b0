//! The saved form of a [`Tree`]: the layout models were saved in before
//! trees were narrowed to two-byte references (four-byte indices, a leaf
//! marked by bit 31, `u32::MAX` for no node). Keeping it means saved
//! models of every earlier release load as they are and a model saved now
//! is read by them; boxes are not saved and are rebuilt on restore.
//!
//! The saved form keeps each node's and leaf's parent, which the tree no
//! longer holds: they are worked out from the children when saving (a
//! free node or leaf is saved with none) and ignored when reading.

use serde::{Deserialize, Serialize};

use super::{is_leaf, leaf_idx, Internal, Leaf, NodeRef, Tree, LEAF, MAX_TREE_POINTS, NIL};
use crate::detect::bits;

/// Leaf marker of a saved reference.
const WIRE_LEAF: u32 = 1 << 31;
/// No node, saved.
const WIRE_NIL: u32 = u32::MAX;

#[derive(Serialize, Deserialize)]
pub(super) struct InternalWire {
    left: u32,
    right: u32,
    parent: u32,
    cut_dim: u32,
    #[serde(with = "bits::one_f32")]
    cut: f32,
    mass: u32,
}

#[derive(Serialize, Deserialize)]
pub(super) struct LeafWire {
    point: u32,
    parent: u32,
    mass: u32,
}

#[derive(Serialize, Deserialize)]
pub struct TreeWire {
    dim: usize,
    #[serde(default)]
    capacity: usize,
    root: u32,
    nodes: Vec<InternalWire>,
    free_nodes: Vec<u32>,
    leaves: Vec<LeafWire>,
    free_leaves: Vec<u32>,
}

/// The saved form of reference `c`.
pub fn ref_to_wire(c: NodeRef) -> u32 {
    if c == NIL {
        WIRE_NIL
    } else if c & LEAF != 0 {
        u32::from(c & !LEAF) | WIRE_LEAF
    } else {
        u32::from(c)
    }
}

/// The reference saved as `w`, if it fits a tree of at most
/// [`MAX_TREE_POINTS`] points.
pub fn ref_from_wire(w: u32) -> Result<NodeRef, String> {
    if w == WIRE_NIL {
        return Ok(NIL);
    }
    let (index, leaf) = (w & !WIRE_LEAF, w & WIRE_LEAF != 0);
    if index as usize >= MAX_TREE_POINTS {
        return Err(format!(
            "saved tree refers to {} {index}, beyond the {MAX_TREE_POINTS} a tree holds",
            if leaf { "leaf" } else { "node" }
        ));
    }
    Ok(if leaf {
        index as NodeRef | LEAF
    } else {
        index as NodeRef
    })
}

/// Index `w` of a free list, checked like a reference.
fn index_from_wire(w: u32) -> Result<NodeRef, String> {
    ref_from_wire(w & !WIRE_LEAF).map(|r| r & !LEAF)
}

fn narrow<T: TryFrom<u32>>(v: u32, what: &str) -> Result<T, String> {
    T::try_from(v).map_err(|_| format!("saved tree has {what} {v}, too large"))
}

impl From<Tree> for TreeWire {
    fn from(t: Tree) -> Self {
        let mut node_parent = vec![WIRE_NIL; t.nodes.len()];
        let mut leaf_parent = vec![WIRE_NIL; t.leaves.len()];
        let mut stack = vec![t.root];
        while let Some(c) = stack.pop() {
            if c == NIL || is_leaf(c) {
                continue;
            }
            let n = t.nodes[usize::from(c)];
            for child in [n.left, n.right] {
                if child == NIL {
                    continue;
                }
                if is_leaf(child) {
                    leaf_parent[leaf_idx(child)] = ref_to_wire(c);
                } else {
                    node_parent[usize::from(child)] = ref_to_wire(c);
                    stack.push(child);
                }
            }
        }
        TreeWire {
            dim: t.dim(),
            capacity: usize::from(t.capacity),
            root: ref_to_wire(t.root),
            nodes: t
                .nodes
                .iter()
                .zip(node_parent)
                .map(|(n, parent)| InternalWire {
                    left: ref_to_wire(n.left),
                    right: ref_to_wire(n.right),
                    parent,
                    cut_dim: u32::from(n.cut_dim),
                    cut: n.cut,
                    mass: u32::from(n.mass),
                })
                .collect(),
            free_nodes: t.free_nodes().into_iter().map(u32::from).collect(),
            leaves: t
                .leaves
                .iter()
                .zip(leaf_parent)
                .map(|(l, parent)| LeafWire {
                    point: l.point,
                    parent,
                    mass: u32::from(l.mass),
                })
                .collect(),
            free_leaves: t.free_leaves().into_iter().map(u32::from).collect(),
        }
    }
}

impl TryFrom<TreeWire> for Tree {
    type Error = String;

    fn try_from(w: TreeWire) -> Result<Self, String> {
        if w.nodes.len() >= MAX_TREE_POINTS || w.leaves.len() >= MAX_TREE_POINTS {
            return Err(format!(
                "saved tree has {} nodes and {} leaves, beyond the {MAX_TREE_POINTS} a tree holds",
                w.nodes.len(),
                w.leaves.len()
            ));
        }
        let nodes = w
            .nodes
            .into_iter()
            .map(|n| {
                Ok(Internal {
                    left: ref_from_wire(n.left)?,
                    right: ref_from_wire(n.right)?,
                    cut_dim: narrow(n.cut_dim, "cut dimension")?,
                    mass: narrow(n.mass, "node mass")?,
                    cut: n.cut,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let leaves = w
            .leaves
            .into_iter()
            .map(|l| {
                Ok(Leaf {
                    point: l.point,
                    mass: narrow(l.mass, "leaf mass")?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        if w.dim > usize::from(u16::MAX) + 1 {
            return Err(format!(
                "saved tree has points of {} coordinates, beyond the 65,536 a cut can name",
                w.dim
            ));
        }
        let mut tree = Tree::new(w.dim, w.capacity);
        tree.root = ref_from_wire(w.root)?;
        tree.nodes = nodes;
        tree.leaves = leaves;
        // The free lists run through the free entries themselves, in the
        // order saved (the last one saved is reused first).
        for i in w.free_nodes {
            let i = index_from_wire(i)?;
            if usize::from(i) >= tree.nodes.len() {
                return Err(format!("saved tree frees node {i} of {}", tree.nodes.len()));
            }
            tree.free_node_at(i);
        }
        for i in w.free_leaves {
            let i = index_from_wire(i)?;
            if usize::from(i) >= tree.leaves.len() {
                return Err(format!(
                    "saved tree frees leaf {i} of {}",
                    tree.leaves.len()
                ));
            }
            tree.free_leaf_at(i);
        }
        Ok(tree)
    }
}
