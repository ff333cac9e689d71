//! Directed graphs: finding a cycle, for workflow nodes (`CycleDetected`) and for the layering
//! check of the operator's own modules.

use std::collections::BTreeMap;

/// One cycle among `edges` (each node's successors), as nodes with the first repeated at the end,
/// or `None` when there is none. Successors that are not keys of `edges` are ignored. An iterative
/// depth-first search: no recursion, so its depth is bounded whatever the input.
pub fn find_cycle<N: Ord + Clone>(edges: &BTreeMap<N, Vec<N>>) -> Option<Vec<N>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        InProgress,
        Done,
    }
    let mut marks: BTreeMap<&N, Mark> = BTreeMap::new();
    for start in edges.keys() {
        if marks.contains_key(start) {
            continue;
        }
        let mut path: Vec<&N> = vec![start];
        let mut next_edge: Vec<usize> = vec![0];
        marks.insert(start, Mark::InProgress);
        while let (Some(&node), Some(index)) = (path.last(), next_edge.last_mut()) {
            let successors = edges.get(node).map(Vec::as_slice).unwrap_or_default();
            if let Some(next) = successors.get(*index) {
                *index += 1;
                if !edges.contains_key(next) {
                    continue;
                }
                match marks.get(next) {
                    Some(Mark::InProgress) => {
                        let from = path.iter().position(|n| *n == next).unwrap_or_default();
                        let mut cycle: Vec<N> = path[from..].iter().map(|n| (*n).clone()).collect();
                        cycle.push(next.clone());
                        return Some(cycle);
                    }
                    Some(Mark::Done) => {}
                    None => {
                        marks.insert(next, Mark::InProgress);
                        path.push(next);
                        next_edge.push(0);
                    }
                }
            } else {
                marks.insert(node, Mark::Done);
                path.pop();
                next_edge.pop();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cycle_is_found_and_a_dag_has_none() {
        let dag = BTreeMap::from([(1, vec![2, 3]), (2, vec![3]), (3, vec![])]);
        assert_eq!(find_cycle(&dag), None);
        let cyclic = BTreeMap::from([(1, vec![2]), (2, vec![3]), (3, vec![1, 9])]);
        assert_eq!(find_cycle(&cyclic), Some(vec![1, 2, 3, 1]));
    }
}
