//! A small max-flow (Dinic) for the planner's exact assignments.
//!
//! Used to choose, for every 3-slot store, its master and first replica at
//! once: source → store (1) → (master, first replica) arc (capacity: the
//! failover cap) → master machine (capacity: its share of masters) → sink.
//! Flow into the sink only grows while augmenting, so lower bounds on the
//! masters are met by first filling every machine to its minimum and then
//! raising the capacities to the maximum.

use std::collections::VecDeque;

pub(crate) struct Flow {
    head: Vec<usize>,
    next: Vec<usize>,
    to: Vec<usize>,
    cap: Vec<i64>,
    level: Vec<i32>,
    iter: Vec<usize>,
}

const NONE: usize = usize::MAX;

impl Flow {
    pub(crate) fn new(nodes: usize) -> Flow {
        Flow {
            head: vec![NONE; nodes],
            next: Vec::new(),
            to: Vec::new(),
            cap: Vec::new(),
            level: vec![0; nodes],
            iter: vec![0; nodes],
        }
    }

    /// Add an edge; returns its id (the reverse edge is id + 1).
    pub(crate) fn edge(&mut self, from: usize, to: usize, cap: i64) -> usize {
        let id = self.to.len();
        for (a, b, c) in [(from, to, cap), (to, from, 0)] {
            self.to.push(b);
            self.cap.push(c);
            self.next.push(self.head[a]);
            self.head[a] = self.to.len() - 1;
        }
        id
    }

    /// Flow currently through edge `id`.
    pub(crate) fn flow(&self, id: usize) -> i64 {
        self.cap[id + 1]
    }

    /// Raise edge `id`'s capacity by `more`.
    pub(crate) fn raise(&mut self, id: usize, more: i64) {
        self.cap[id] += more;
    }

    fn bfs(&mut self, s: usize, t: usize) -> bool {
        self.level.iter_mut().for_each(|l| *l = -1);
        self.level[s] = 0;
        let mut q = VecDeque::from([s]);
        while let Some(v) = q.pop_front() {
            let mut e = self.head[v];
            while e != NONE {
                let w = self.to[e];
                if self.cap[e] > 0 && self.level[w] < 0 {
                    self.level[w] = self.level[v] + 1;
                    q.push_back(w);
                }
                e = self.next[e];
            }
        }
        self.level[t] >= 0
    }

    /// One blocking-flow augmentation from `v` (iterative DFS).
    fn dfs(&mut self, s: usize, t: usize) -> i64 {
        let mut path: Vec<usize> = Vec::new(); // edge ids
        let mut v = s;
        loop {
            if v == t {
                let push = path.iter().map(|&e| self.cap[e]).min().unwrap_or(0);
                for &e in &path {
                    self.cap[e] -= push;
                    self.cap[e ^ 1] += push;
                }
                return push;
            }
            let mut advanced = false;
            while self.iter[v] != NONE {
                let e = self.iter[v];
                let w = self.to[e];
                if self.cap[e] > 0 && self.level[w] == self.level[v] + 1 {
                    path.push(e);
                    v = w;
                    advanced = true;
                    break;
                }
                self.iter[v] = self.next[e];
            }
            if !advanced {
                if v == s {
                    return 0;
                }
                // Dead end: retreat and skip the edge that led here.
                self.level[v] = -1;
                let e = path.pop().expect("not at the source");
                v = self.to[e ^ 1];
                self.iter[v] = self.next[self.iter[v]];
            }
        }
    }

    /// Augment to a maximum flow; returns the flow added.
    pub(crate) fn max_flow(&mut self, s: usize, t: usize) -> i64 {
        let mut total = 0;
        while self.bfs(s, t) {
            self.iter.clone_from(&self.head);
            loop {
                let f = self.dfs(s, t);
                if f == 0 {
                    break;
                }
                total += f;
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diamond_carries_two() {
        let mut f = Flow::new(4);
        f.edge(0, 1, 1);
        f.edge(0, 2, 1);
        let a = f.edge(1, 3, 1);
        f.edge(2, 3, 1);
        f.edge(1, 2, 1);
        assert_eq!(f.max_flow(0, 3), 2);
        assert_eq!(f.flow(a), 1);
    }

    #[test]
    fn raising_a_capacity_adds_flow() {
        let mut f = Flow::new(3);
        f.edge(0, 1, 5);
        let e = f.edge(1, 2, 2);
        assert_eq!(f.max_flow(0, 2), 2);
        f.raise(e, 2);
        assert_eq!(f.max_flow(0, 2), 2);
        assert_eq!(f.flow(e), 4);
    }
}
