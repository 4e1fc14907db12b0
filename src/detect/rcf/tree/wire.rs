//! The saved form of a [`Tree`]: the layout models were saved in before
//! trees were narrowed to two-byte references (four-byte indices, a leaf
//! marked by bit 31, `u32::MAX` for no node). Keeping it means saved
//! models of every earlier release load as they are and a model saved now
//! is read by them; boxes are not saved and are rebuilt on restore.
//!
//! Nodes and leaves are saved without their parent, which the tree does
//! not hold. Binary payloads of earlier formats saved one after each
//! node's children and after each leaf's point: they are read, and
//! ignored, inside [`reading_parent_references`]. JSON tells by its field
//! names (and ignores the parent).

use std::cell::Cell;

use serde::{Deserialize, Deserializer, Serialize};

use super::{Internal, Leaf, NodeRef, Tree, LEAF, MAX_TREE_POINTS, NIL};
use crate::detect::bits;

/// Leaf marker of a saved reference.
const WIRE_LEAF: u32 = 1 << 31;
/// No node, saved.
const WIRE_NIL: u32 = u32::MAX;

thread_local! {
    /// Set while a binary payload of a format that saved parent references
    /// is read (see [`reading_parent_references`]).
    static WITH_PARENTS: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`, in which binary (non-self-describing) deserialisation reads
/// trees saved with a parent reference in every node and leaf, as formats
/// before the current one saved them.
pub fn reading_parent_references<R>(f: impl FnOnce() -> R) -> R {
    crate::detect::rcf::with_flag_set(&WITH_PARENTS, f)
}

#[derive(Serialize, Deserialize)]
pub(super) struct InternalWire {
    left: u32,
    right: u32,
    cut_dim: u32,
    #[serde(with = "bits::one_f32")]
    cut: f32,
    mass: u32,
}

/// A node as binary payloads of earlier formats saved it.
#[derive(Deserialize)]
struct InternalWithParent {
    left: u32,
    right: u32,
    _parent: u32,
    cut_dim: u32,
    #[serde(with = "bits::one_f32")]
    cut: f32,
    mass: u32,
}

#[derive(Serialize, Deserialize)]
pub(super) struct LeafWire {
    point: u32,
    mass: u32,
}

/// A leaf as binary payloads of earlier formats saved it.
#[derive(Deserialize)]
struct LeafWithParent {
    point: u32,
    _parent: u32,
    mass: u32,
}

impl From<InternalWithParent> for InternalWire {
    fn from(n: InternalWithParent) -> Self {
        InternalWire {
            left: n.left,
            right: n.right,
            cut_dim: n.cut_dim,
            cut: n.cut,
            mass: n.mass,
        }
    }
}

impl From<LeafWithParent> for LeafWire {
    fn from(l: LeafWithParent) -> Self {
        LeafWire {
            point: l.point,
            mass: l.mass,
        }
    }
}

/// Reads saved nodes or leaves (`T`), in the layout of earlier binary
/// formats (`WithParent`) while [`WITH_PARENTS`] is set.
fn saved<'de, D, T, WithParent>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
    WithParent: Deserialize<'de> + Into<T>,
{
    if d.is_human_readable() || !WITH_PARENTS.with(Cell::get) {
        return Vec::deserialize(d);
    }
    let old = Vec::<WithParent>::deserialize(d)?;
    Ok(old.into_iter().map(Into::into).collect())
}

#[derive(Serialize, Deserialize)]
pub struct TreeWire {
    dim: usize,
    #[serde(default)]
    capacity: usize,
    root: u32,
    #[serde(deserialize_with = "saved::<_, _, InternalWithParent>")]
    nodes: Vec<InternalWire>,
    free_nodes: Vec<u32>,
    #[serde(deserialize_with = "saved::<_, _, LeafWithParent>")]
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
        TreeWire {
            dim: t.dim(),
            capacity: usize::from(t.capacity),
            root: ref_to_wire(t.root),
            nodes: t
                .nodes
                .iter()
                .map(|n| InternalWire {
                    left: ref_to_wire(n.left),
                    right: ref_to_wire(n.right),
                    cut_dim: u32::from(n.cut_dim),
                    cut: n.cut,
                    mass: u32::from(n.mass),
                })
                .collect(),
            free_nodes: t.free_nodes().into_iter().map(u32::from).collect(),
            leaves: t
                .leaves
                .iter()
                .map(|l| LeafWire {
                    point: l.point,
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
