//! The error taxonomy: annotated errors embedded and clustered hierarchically (average
//! linkage on cosine distance, `kodama`). The dendrogram is cut at a fixed distance; the
//! clusters under the cut become candidate checks, ranked by size and severity, and the
//! merges above the cut are kept as the tree that joins them.

use assay_store::{ErrorId, NewCluster, Severity};
use kodama::{linkage, Method};

/// Cosine distance under which errors count as the same kind of error.
pub const CUT_DISTANCE: f64 = 0.35;

/// One error to cluster.
pub struct ErrorPoint {
    pub id: ErrorId,
    pub description: String,
    pub severity: Severity,
    pub embedding: Vec<f32>,
}

/// A cluster under the cut.
#[derive(Debug, Clone, PartialEq)]
pub struct LeafCluster {
    /// Position of the cluster in `Taxonomy::tree`.
    pub node: usize,
    /// Indices into the clustered points, medoid first.
    pub members: Vec<usize>,
    /// Size times mean severity weight (minor 1, major 2, critical 3).
    pub weight: f64,
}

pub struct Taxonomy {
    /// Parents before children, as the store saves it; leaves hold the members.
    pub tree: Vec<NewCluster>,
    /// Heaviest first.
    pub leaves: Vec<LeafCluster>,
}

/// Cosine similarity of two vectors of any norm (0 when either is zero): a remote embedder's
/// vectors need not be normalised.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let denominator = norm(a) * norm(b);
    if denominator == 0.0 {
        0.0
    } else {
        dot / denominator
    }
}

fn cosine_distance(a: &[f32], b: &[f32]) -> f64 {
    (1.0 - cosine(a, b) as f64).clamp(0.0, 2.0)
}

fn severity_weight(s: Severity) -> f64 {
    match s {
        Severity::Minor => 1.0,
        Severity::Major => 2.0,
        Severity::Critical => 3.0,
    }
}

pub fn cluster(points: &[ErrorPoint]) -> Taxonomy {
    let n = points.len();
    let mut tree = Vec::new();
    let mut leaves = Vec::new();
    if n == 0 {
        return Taxonomy { tree, leaves };
    }
    // Node i < n is point i; node n + s is the merge made at step s.
    let mut children: Vec<Option<(usize, usize, f64)>> = vec![None; n];
    if n > 1 {
        let mut condensed = Vec::with_capacity(n * (n - 1) / 2);
        for i in 0..n - 1 {
            for j in i + 1..n {
                condensed.push(cosine_distance(&points[i].embedding, &points[j].embedding));
            }
        }
        for step in linkage(&mut condensed, n, Method::Average).steps() {
            children.push(Some((step.cluster1, step.cluster2, step.dissimilarity)));
        }
    }
    let root = children.len() - 1;
    let mut stack = vec![(root, None::<usize>)];
    while let Some((node, parent)) = stack.pop() {
        match children[node] {
            Some((a, b, distance)) if distance > CUT_DISTANCE => {
                tree.push(NewCluster { parent, label: format!("merge at cosine distance {distance:.2}"), members: Vec::new() });
                let at = tree.len() - 1;
                stack.push((b, Some(at)));
                stack.push((a, Some(at)));
            }
            _ => {
                let members = medoid_first(points, leaf_points(&children, node));
                let medoid = &points[members[0]];
                let weight = members.iter().map(|&m| severity_weight(points[m].severity)).sum::<f64>();
                tree.push(NewCluster { parent, label: medoid.description.clone(), members: members.iter().map(|&m| points[m].id).collect() });
                leaves.push(LeafCluster { node: tree.len() - 1, members, weight });
            }
        }
    }
    leaves.sort_by(|a, b| b.weight.total_cmp(&a.weight).then(a.node.cmp(&b.node)));
    Taxonomy { tree, leaves }
}

fn leaf_points(children: &[Option<(usize, usize, f64)>], node: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut stack = vec![node];
    while let Some(n) = stack.pop() {
        match children[n] {
            Some((a, b, _)) => stack.extend([a, b]),
            None => out.push(n),
        }
    }
    out.sort_unstable();
    out
}

/// The members with the one closest to all others first: the cluster's most typical error.
fn medoid_first(points: &[ErrorPoint], mut members: Vec<usize>) -> Vec<usize> {
    let cost = |i: usize| members.iter().map(|&j| cosine_distance(&points[i].embedding, &points[j].embedding)).sum::<f64>();
    let best = (0..members.len()).min_by(|&a, &b| cost(members[a]).total_cmp(&cost(members[b]))).unwrap_or(0);
    members.swap(0, best);
    members
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(id: i64, embedding: Vec<f32>, severity: Severity) -> ErrorPoint {
        ErrorPoint { id: ErrorId(id), description: format!("error {id}"), severity, embedding }
    }

    #[test]
    fn separates_two_kinds_and_ranks_by_size_and_severity() {
        let points = vec![
            point(1, vec![1.0, 0.0, 0.0], Severity::Minor),
            point(2, vec![0.99, 0.05, 0.0], Severity::Minor),
            point(3, vec![0.98, 0.0, 0.05], Severity::Minor),
            point(4, vec![0.0, 1.0, 0.0], Severity::Critical),
            point(5, vec![0.0, 0.97, 0.1], Severity::Critical),
        ];
        let t = cluster(&points);
        assert_eq!(t.leaves.len(), 2);
        // Two criticals (weight 6) outrank three minors (weight 3).
        assert_eq!(t.leaves[0].members.len(), 2);
        assert_eq!(t.leaves[0].weight, 6.0);
        assert_eq!(t.tree[0].parent, None);
        assert!(t.tree[0].members.is_empty(), "the root merge holds no members itself");
        let stored: usize = t.tree.iter().map(|c| c.members.len()).sum();
        assert_eq!(stored, 5, "every error is in exactly one leaf");
        assert!(t.tree.iter().enumerate().all(|(i, c)| c.parent.is_none_or(|p| p < i)), "parents come first");
    }

    #[test]
    fn one_error_is_one_cluster_and_none_is_none() {
        assert!(cluster(&[]).leaves.is_empty());
        let t = cluster(&[point(7, vec![0.0, 1.0], Severity::Major)]);
        assert_eq!((t.leaves.len(), t.tree.len(), t.tree[0].members.clone()), (1, 1, vec![ErrorId(7)]));
    }
}
