//! Tests of the tree's walks that keep no parent references: deep trees
//! (walks longer than the stack part of a [`Path`]) and the structure
//! checks of a restored tree.

use super::*;

/// Internal nodes on `x`'s way down to a leaf.
fn depth_of(tree: &Tree, x: &[f32]) -> usize {
    let mut cur = tree.root;
    let mut depth = 0;
    while !is_leaf(cur) {
        cur = tree.toward(cur, x);
        depth += 1;
    }
    depth
}

/// A tree of the given points (one coordinate each), with their leaves.
fn tree_of(points: &[[f32; 1]], seed: u64) -> (Tree, PointStore, Vec<NodeRef>) {
    let mut store = PointStore::new(1, 1);
    let mut tree = Tree::new(1, points.len());
    let mut rng = Rng::new(seed);
    let mut scratch = Vec::new();
    let mut leaves = Vec::new();
    for p in points {
        let idx = store.add(p);
        let e = tree.insert(p, idx, &store, &mut rng, &mut scratch);
        store.inc(e.point);
        leaves.push(e.leaf);
    }
    (tree, store, leaves)
}

#[test]
fn path_keeps_nodes_beyond_its_stack_part_in_order() {
    let mut path = Path::new();
    assert_eq!(path.last(), NIL);
    for n in 0..3 * PATH_NEAR as NodeRef {
        path.push(n);
        assert_eq!(path.last(), n);
    }
    for n in (0..3 * PATH_NEAR as NodeRef).rev() {
        assert_eq!(path.pop(), n);
    }
    assert_eq!(path.pop(), NIL);
    assert_eq!(path.last(), NIL);
}

/// Points 2^i on a line: each new point is cut off above the whole tree
/// about half the time, so the first points sink far below the part of a
/// walk's path kept on the stack.
#[test]
fn a_tree_deeper_than_the_stack_path_scores_and_deletes_its_points() {
    let points: Vec<[f32; 1]> = (0..120).map(|i| [2f32.powi(i)]).collect();
    let (mut tree, store, leaves) = tree_of(&points, 7);
    tree.check(&store);
    let deepest = points.iter().map(|p| depth_of(&tree, p)).max().unwrap();
    assert!(deepest > PATH_NEAR, "deepest leaf at {deepest}");
    for q in [0.5f32, 1.5, 3.0, 2f32.powi(60) * 1.5, 2f32.powi(121), 1.0] {
        let grouped = Tree::score_group(&[&tree], &[q], &store);
        let reference = tree.score(&[q], &store);
        assert!(
            (grouped - reference).abs() <= 1e-12 * reference.max(1.0),
            "{q}: {grouped} vs {reference}"
        );
    }
    let mut scratch = Vec::new();
    for (i, &leaf) in leaves.iter().enumerate() {
        tree.delete_leaf(leaf, &store, &mut scratch);
        tree.check(&store);
        assert_eq!(tree.mass() as usize, points.len() - i - 1);
    }
    assert_eq!(tree.root, NIL);
}

#[test]
fn a_duplicate_in_a_deep_tree_is_deleted_through_its_path() {
    let points: Vec<[f32; 1]> = (0..100).map(|i| [2f32.powi(i)]).collect();
    let (mut tree, mut store, leaves) = tree_of(&points, 3);
    let deep = points
        .iter()
        .max_by_key(|p| depth_of(&tree, &p[..]))
        .copied()
        .unwrap();
    let idx = store.add(&deep);
    let mut rng = Rng::new(1);
    let mut scratch = Vec::new();
    let e = tree.insert(&deep, idx, &store, &mut rng, &mut scratch);
    assert_ne!(e.point, idx, "the duplicate goes to the existing leaf");
    assert_eq!(tree.mass(), 101);
    tree.delete_leaf(e.leaf, &store, &mut scratch);
    tree.check(&store);
    assert_eq!(tree.mass(), 100);
    assert!(leaves.contains(&e.leaf));
}

/// Errors of `validate` on the tree saved as `tree`, with `edit` applied.
fn refused(tree: &Tree, store: &PointStore, edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut saved = serde_json::to_value(tree).unwrap();
    edit(&mut saved);
    let restored: Tree = serde_json::from_value(saved).unwrap();
    restored.validate(store).unwrap_err()
}

#[test]
fn a_restored_tree_with_broken_structure_is_refused_with_the_reason() {
    let points: Vec<[f32; 1]> = (0..40).map(|i| [((i * 37) % 41) as f32]).collect();
    let (tree, store, _) = tree_of(&points, 5);
    assert_eq!(tree.validate(&store), Ok(()));
    let err = refused(&tree, &store, |t| {
        let a = t["leaves"][0]["point"].clone();
        t["leaves"][0]["point"] = t["leaves"][1]["point"].clone();
        t["leaves"][1]["point"] = a;
    });
    assert!(err.contains("leads to another leaf"), "{err}");
    let err = refused(&tree, &store, |t| {
        let root = t["root"].clone();
        let r = root.as_u64().unwrap() as usize;
        t["nodes"][r]["left"] = root;
    });
    assert!(err.contains("reached twice"), "{err}");
    let err = refused(&tree, &store, |t| {
        let r = t["root"].as_u64().unwrap() as usize;
        let m = t["nodes"][r]["mass"].as_u64().unwrap();
        t["nodes"][r]["mass"] = (m + 1).into();
    });
    assert!(err.contains("children hold 40"), "{err}");
    let err = refused(&tree, &store, |t| t["leaves"][3]["point"] = 999.into());
    assert!(err.contains("does not hold"), "{err}");
    let err = refused(&tree, &store, |t| {
        let r = t["root"].as_u64().unwrap() as usize;
        t["nodes"][r]["cut_dim"] = 1.into();
    });
    assert!(err.contains("cuts coordinate 1 of points of 1"), "{err}");
    let err = refused(&tree, &store, |t| {
        let r = t["root"].clone();
        t["free_nodes"] = serde_json::json!([r]);
    });
    assert!(err.contains("is free or reached twice"), "{err}");
}

#[test]
fn free_lists_survive_a_save_and_a_restored_broken_one_is_refused() {
    let points: Vec<[f32; 1]> = (0..40).map(|i| [((i * 37) % 41) as f32]).collect();
    let (mut tree, store, leaves) = tree_of(&points, 9);
    let mut scratch = Vec::new();
    for &leaf in &leaves[..5] {
        tree.delete_leaf(leaf, &store, &mut scratch);
    }
    let freed = tree.free_leaves();
    assert_eq!(freed.len(), 5);
    assert_eq!(tree.free_nodes().len(), 5);
    let restored: Tree = serde_json::from_value(serde_json::to_value(&tree).unwrap()).unwrap();
    assert_eq!(restored.validate(&store), Ok(()));
    assert_eq!(restored.free_leaves(), freed, "the same order of reuse");
    assert_eq!(restored.free_nodes(), tree.free_nodes());
    assert_eq!(restored.shape(&store), tree.shape(&store));
    let err = refused(&tree, &store, |t| t["free_leaves"] = serde_json::json!([]));
    assert!(err.contains("neither free nor in the tree"), "{err}");
    let err = refused(&tree, &store, |t| {
        let i = t["free_nodes"][0].clone();
        t["free_nodes"] = serde_json::json!([i, i]);
    });
    assert!(err.contains("on the free list twice"), "{err}");
}
