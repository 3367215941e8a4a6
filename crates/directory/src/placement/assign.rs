//! Balanced choice: every item picks one of its candidates (a store picks
//! which of its machines is master, or which one is its first replica) so
//! that each candidate's load stays within `[lo, hi]`.
//!
//! A greedy pass (least-loaded candidate) followed by augmenting paths, as
//! in a bipartite b-matching: an overloaded candidate hands one item along a
//! chain of reassignments to a candidate with room; an underloaded one takes
//! one from a chain ending at a candidate above its minimum. When a feasible
//! assignment exists, this finds one.

use std::collections::VecDeque;

/// Choose, for each item, one of its candidates: `candidates[i]` lists item
/// `i`'s candidates (vertex numbers < `n`). Starts from `initial` (a chosen
/// vertex per item, one of its candidates) if given, so that only what must
/// change changes, else from the greedy choice. Returns the chosen vertex
/// per item, or `None` if no assignment keeps every load within its bounds.
pub(crate) fn balanced_choice_from(
    n: usize,
    candidates: &[Vec<usize>],
    lo: &[usize],
    hi: &[usize],
    initial: Option<&[usize]>,
) -> Option<Vec<usize>> {
    let mut load = vec![0usize; n];
    let mut choice = Vec::with_capacity(candidates.len());
    // items_of[v]: items that have v as a candidate.
    let mut items_of: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, cands) in candidates.iter().enumerate() {
        for &v in cands {
            items_of[v].push(i);
        }
        let best = match initial {
            Some(init) => init[i],
            None => *cands
                .iter()
                .min_by_key(|&&v| (load[v] + 1 > hi[v], load[v], v))?,
        };
        load[best] += 1;
        choice.push(best);
    }
    // Phase 1: relieve overloaded vertices.
    while let Some(v) = (0..n).find(|&v| load[v] > hi[v]) {
        let mut parent: Vec<Option<(usize, usize)>> = vec![None; n]; // (item, from)
        let mut seen = vec![false; n];
        seen[v] = true;
        let mut queue = VecDeque::from([v]);
        let mut end = None;
        'bfs: while let Some(x) = queue.pop_front() {
            for &i in &items_of[x] {
                if choice[i] != x {
                    continue;
                }
                for &y in &candidates[i] {
                    if !seen[y] {
                        seen[y] = true;
                        parent[y] = Some((i, x));
                        if load[y] < hi[y] {
                            end = Some(y);
                            break 'bfs;
                        }
                        queue.push_back(y);
                    }
                }
            }
        }
        let mut y = end?;
        load[y] += 1;
        while let Some((i, x)) = parent[y] {
            choice[i] = y;
            y = x;
        }
        load[v] -= 1;
    }
    // Phase 2: feed underloaded vertices.
    while let Some(v) = (0..n).find(|&v| load[v] < lo[v]) {
        let mut parent: Vec<Option<(usize, usize)>> = vec![None; n]; // (item, to)
        let mut seen = vec![false; n];
        seen[v] = true;
        let mut queue = VecDeque::from([v]);
        let mut end = None;
        'bfs2: while let Some(x) = queue.pop_front() {
            for &i in &items_of[x] {
                let z = choice[i];
                if z == x || seen[z] {
                    continue;
                }
                seen[z] = true;
                parent[z] = Some((i, x));
                if load[z] > lo[z] {
                    end = Some(z);
                    break 'bfs2;
                }
                queue.push_back(z);
            }
        }
        let mut z = end?;
        load[z] -= 1;
        while let Some((i, x)) = parent[z] {
            choice[i] = x;
            z = x;
        }
        load[v] += 1;
    }
    Some(choice)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balances_a_triangle_of_choices() {
        // Three items all wanting vertex 0 first; bounds force one each.
        let cands = vec![vec![0, 1], vec![0, 2], vec![0, 1, 2]];
        let c = balanced_choice_from(3, &cands, &[1, 1, 1], &[1, 1, 1], None).unwrap();
        let mut load = [0; 3];
        for v in c {
            load[v] += 1;
        }
        assert_eq!(load, [1, 1, 1]);
    }

    #[test]
    fn reports_infeasible() {
        let cands = vec![vec![0], vec![0]];
        assert!(balanced_choice_from(2, &cands, &[0, 0], &[1, 1], None).is_none());
        assert!(balanced_choice_from(2, &cands, &[0, 1], &[2, 2], None).is_none());
    }

    #[test]
    fn underload_is_fed_through_a_chain() {
        // Greedy puts item 0 on 0 and item 1 on 1; vertex 2 needs one, which
        // only item 1 can give, and then vertex 1 needs item 0's... bounds
        // allow 0 there, so a direct hand-over suffices.
        let cands = vec![vec![0, 1], vec![1, 2]];
        let c = balanced_choice_from(3, &cands, &[0, 0, 1], &[1, 1, 1], None).unwrap();
        assert_eq!(c[1], 2);
    }
}
