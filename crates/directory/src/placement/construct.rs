//! Building the stores' machine sets.
//!
//! **Pairs** (stores of 2 slots) are exact. With `S = q·(M−1) + r` slots per
//! machine, the pair multigraph is `q` copies of the complete graph plus an
//! `r`-regular circulant graph (differences ±1..±⌊r/2⌋, plus a perfect
//! matching of difference M/2 when r is odd and M even, or a near-perfect
//! matching along the Hamiltonian cycle of difference (M−1)/2 when r and M
//! are odd — which leaves one slot unused). Every pair of machines then
//! shares q or q+1 stores. Each pair's stores are split half one way, half
//! the other (master on either side), and the odd ones left over form a
//! simple graph that is oriented along closed trails (an Euler orientation),
//! so every machine masters ⌊S/2⌋ or ⌈S/2⌉ stores and each machine's masters
//! fail over to each survivor ⌊P/2⌋ or ⌈P/2⌉ at a time.
//!
//! **Triples** (stores of 3 slots) are built greedily — the machine with the
//! most free slots first, with the two partners that have shared the fewest
//! stores with it and with each other — and then improved by a deterministic
//! local search that exchanges machines between two stores, lowering the sum
//! of squares of the pair-sharing counts (which is smallest exactly when all
//! counts are within one of each other), with seeded random sideways moves
//! to leave plateaus.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Stores of two machines, `[master, replica]`, and the machine (if any)
/// whose last slot stays unused because `M·S` is odd.
pub(crate) fn pairs(m: usize, s: usize) -> (Vec<[usize; 2]>, Vec<usize>) {
    assert!(m >= 2);
    let q = s / (m - 1);
    let r = s % (m - 1);
    let mut extra = vec![false; m * m]; // the circulant part, symmetric
    let mut unused = Vec::new();
    let mut add = |a: usize, b: usize| {
        assert!(!extra[a * m + b], "circulant edge {a}-{b} twice");
        extra[a * m + b] = true;
        extra[b * m + a] = true;
    };
    for i in 0..m {
        for d in 1..=r / 2 {
            add(i, (i + d) % m);
        }
    }
    if r % 2 == 1 {
        if m.is_multiple_of(2) {
            for i in 0..m / 2 {
                add(i, i + m / 2);
            }
        } else {
            let step = (m - 1) / 2;
            let cycle: Vec<usize> = (0..m).map(|j| (j * step) % m).collect();
            for j in (0..m - 1).step_by(2) {
                add(cycle[j], cycle[j + 1]);
            }
            unused.push(cycle[m - 1]);
        }
    }
    let mut stores = Vec::new();
    let mut residue = Vec::new();
    for a in 0..m {
        for b in a + 1..m {
            let p = q + usize::from(extra[a * m + b]);
            for _ in 0..p / 2 {
                stores.push([a, b]);
                stores.push([b, a]);
            }
            if p % 2 == 1 {
                residue.push((a, b));
            }
        }
    }
    for (a, b) in euler_orient(m, &residue) {
        stores.push([a, b]);
    }
    (stores, unused)
}

/// Orient the edges of a simple graph so that every vertex's out- and
/// in-degree differ by at most one: pair the odd-degree vertices with a
/// virtual vertex, then walk closed trails, orienting each edge the way it
/// is walked.
fn euler_orient(n: usize, edges: &[(usize, usize)]) -> Vec<(usize, usize)> {
    let virt = n;
    let mut all: Vec<(usize, usize)> = edges.to_vec();
    let mut degree = vec![0usize; n];
    for &(a, b) in edges {
        degree[a] += 1;
        degree[b] += 1;
    }
    for (v, d) in degree.iter().enumerate() {
        if d % 2 == 1 {
            all.push((v, virt));
        }
    }
    let mut adj: Vec<Vec<usize>> = vec![Vec::new(); n + 1];
    for (e, &(a, b)) in all.iter().enumerate() {
        adj[a].push(e);
        adj[b].push(e);
    }
    let mut used = vec![false; all.len()];
    let mut next = vec![0usize; n + 1];
    let mut out = Vec::with_capacity(edges.len());
    for start in 0..=n {
        loop {
            // Start a closed trail at `start` if it has an unused edge.
            while next[start] < adj[start].len() && used[adj[start][next[start]]] {
                next[start] += 1;
            }
            if next[start] == adj[start].len() {
                break;
            }
            let mut at = start;
            loop {
                while next[at] < adj[at].len() && used[adj[at][next[at]]] {
                    next[at] += 1;
                }
                if next[at] == adj[at].len() {
                    break; // every degree is even: this is back at `start`
                }
                let e = adj[at][next[at]];
                used[e] = true;
                let (a, b) = all[e];
                let to = if a == at { b } else { a };
                if at != virt && to != virt {
                    out.push((at, to));
                }
                at = to;
            }
            debug_assert_eq!(at, start);
        }
    }
    out
}

/// State of the triple local search: stores, pair counts, and which stores
/// each machine is in.
struct Triples {
    m: usize,
    stores: Vec<[usize; 3]>,
    pair: Vec<u32>,
    of: Vec<Vec<usize>>,
}

impl Triples {
    fn p(&self, a: usize, b: usize) -> u32 {
        self.pair[a * self.m + b]
    }

    fn bump(&mut self, a: usize, b: usize, up: bool) {
        let m = self.m;
        if up {
            self.pair[a * m + b] += 1;
            self.pair[b * m + a] += 1;
        } else {
            self.pair[a * m + b] -= 1;
            self.pair[b * m + a] -= 1;
        }
    }

    /// Change of Σ P² if machine `a` (in store `sa`) and machine `b` (in
    /// store `sb`) swap places; `None` if the swap would put a machine twice
    /// in one store.
    fn swap_delta(&self, sa: usize, a: usize, sb: usize, b: usize) -> Option<i64> {
        let ta = self.stores[sa];
        let tb = self.stores[sb];
        if sa == sb || a == b || ta.contains(&b) || tb.contains(&a) {
            return None;
        }
        // At most 8 pair changes; merge those that touch the same pair.
        let mut changes: [((usize, usize), i64); 8] = [((0, 0), 0); 8];
        let mut n = 0;
        let mut note = |x: usize, y: usize, d: i64| {
            let key = (x.min(y), x.max(y));
            if let Some(c) = changes[..n].iter_mut().find(|c| c.0 == key) {
                c.1 += d;
            } else {
                changes[n] = (key, d);
                n += 1;
            }
        };
        for &x in &ta {
            if x != a {
                note(a, x, -1);
                note(b, x, 1);
            }
        }
        for &x in &tb {
            if x != b {
                note(b, x, -1);
                note(a, x, 1);
            }
        }
        Some(
            changes[..n]
                .iter()
                .map(|&((x, y), d)| {
                    let p = i64::from(self.p(x, y));
                    (p + d).pow(2) - p.pow(2)
                })
                .sum(),
        )
    }

    /// Machine `a` in store `sa` and machine `b` in store `sb` trade places.
    fn apply_swap(&mut self, sa: usize, a: usize, sb: usize, b: usize) {
        let ta = self.stores[sa];
        let tb = self.stores[sb];
        for &x in &ta {
            if x != a {
                self.bump(a, x, false);
                self.bump(b, x, true);
            }
        }
        for &x in &tb {
            if x != b {
                self.bump(b, x, false);
                self.bump(a, x, true);
            }
        }
        let ia = ta.iter().position(|&x| x == a).expect("a in its store");
        let ib = tb.iter().position(|&x| x == b).expect("b in its store");
        self.stores[sa][ia] = b;
        self.stores[sb][ib] = a;
        self.of[a].retain(|&s| s != sa);
        self.of[a].push(sb);
        self.of[b].retain(|&s| s != sb);
        self.of[b].push(sa);
    }

    fn range(&self) -> (u32, u32) {
        let mut lo = u32::MAX;
        let mut hi = 0;
        for a in 0..self.m {
            for b in a + 1..self.m {
                lo = lo.min(self.p(a, b));
                hi = hi.max(self.p(a, b));
            }
        }
        (lo, hi)
    }

    /// A swap that lowers Σ P² (or, with `sideways`, keeps it) and involves
    /// the pair (x, y) — taking one of them out of a store they share when
    /// `split`, or bringing them together otherwise.
    fn find_move(
        &self,
        x: usize,
        y: usize,
        split: bool,
        sideways: bool,
    ) -> Option<(usize, usize, usize, usize)> {
        let limit = if sideways { 0 } else { -1 };
        let mut best: Option<(i64, (usize, usize, usize, usize))> = None;
        if split {
            let shared: Vec<usize> = self.of[x]
                .iter()
                .copied()
                .filter(|&s| self.stores[s].contains(&y))
                .collect();
            for sa in shared {
                for a in [x, y] {
                    for sb in 0..self.stores.len() {
                        for b in self.stores[sb] {
                            if let Some(d) = self.swap_delta(sa, a, sb, b)
                                && d <= limit
                                && best.is_none_or(|(bd, _)| d < bd)
                            {
                                best = Some((d, (sa, a, sb, b)));
                            }
                        }
                    }
                }
            }
        } else {
            // Bring y into a store of x, in exchange for one of that store's
            // other machines.
            let xs: Vec<usize> = self.of[x].clone();
            let ys: Vec<usize> = self.of[y].clone();
            for &sa in &xs {
                if self.stores[sa].contains(&y) {
                    continue;
                }
                for a in self.stores[sa] {
                    if a == x {
                        continue;
                    }
                    for &sb in &ys {
                        if let Some(d) = self.swap_delta(sa, a, sb, y)
                            && d <= limit
                            && best.is_none_or(|(bd, _)| d < bd)
                        {
                            best = Some((d, (sa, a, sb, y)));
                        }
                    }
                }
            }
        }
        best.map(|(_, mv)| mv)
    }
}

/// Stores of three machines (unordered), and the machines whose last slot
/// stays unused because `M·S` is not a multiple of 3. `seed` makes the local
/// search's sideways moves deterministic.
pub(crate) fn triples(
    m: usize,
    s: usize,
    max_steps: usize,
    seed: u64,
) -> (Vec<[usize; 3]>, Vec<usize>) {
    assert!(m >= 3);
    let total = m * s;
    let unused: Vec<usize> = (0..total % 3).map(|i| m - 1 - i).collect();
    let mut free: Vec<usize> = (0..m)
        .map(|v| s - usize::from(unused.contains(&v)))
        .collect();
    let count = (total - unused.len()) / 3;
    let mut t = Triples {
        m,
        stores: Vec::with_capacity(count),
        pair: vec![0; m * m],
        of: vec![Vec::new(); m],
    };
    for round in 0..count {
        let remaining: usize = free.iter().sum();
        // A machine with as many free slots as a third of all free slots
        // must be in this store, or the rest cannot be placed.
        let forced: Vec<usize> = (0..m).filter(|&v| 3 * free[v] == remaining).collect();
        let top = *free.iter().max().expect("machines");
        let a = if let Some(&f) = forced.first() {
            f
        } else {
            (0..m)
                .map(|i| (i + round) % m)
                .find(|&v| free[v] == top)
                .expect("a machine with the most free slots")
        };
        // (cost, slack, rotated b, rotated c) → b, c
        type Key = (u32, usize, usize, usize);
        let mut best: Option<(Key, usize, usize)> = None;
        for b in 0..m {
            if b == a || free[b] == 0 {
                continue;
            }
            for c in b + 1..m {
                if c == a || free[c] == 0 {
                    continue;
                }
                if forced.iter().any(|&f| f != a && f != b && f != c) {
                    continue;
                }
                let cost = t.p(a, b) + t.p(a, c) + t.p(b, c);
                let slack = 2 * top - free[b] - free[c];
                let key = (
                    cost,
                    slack,
                    (b + m - round % m) % m,
                    (c + m - round % m) % m,
                );
                if best.is_none_or(|(k, _, _)| key < k) {
                    best = Some((key, b, c));
                }
            }
        }
        let (_, b, c) = best.expect("a feasible store exists while free slots remain");
        let id = t.stores.len();
        t.stores.push([a, b, c]);
        for (x, y) in [(a, b), (a, c), (b, c)] {
            t.bump(x, y, true);
        }
        for v in [a, b, c] {
            free[v] -= 1;
            t.of[v].push(id);
        }
    }
    let degrees: Vec<usize> = (0..m)
        .map(|v| s - usize::from(unused.contains(&v)))
        .collect();
    improve(&mut t, &degrees, max_steps, seed);
    (t.stores, unused)
}

/// Local search until every pair shares ⌊λ⌋ or ⌈λ⌉ stores (or, when the
/// input makes that impossible, until the spread is at most two), or until
/// it stops finding better layouts.
fn improve(t: &mut Triples, degrees: &[usize], max_steps: usize, seed: u64) {
    let m = t.m;
    let pairs = (m * (m - 1) / 2) as u64;
    let incidences = 3 * t.stores.len() as u64;
    let lam_lo = u32::try_from(incidences / pairs).unwrap_or(u32::MAX);
    let lam_hi = u32::try_from(incidences.div_ceil(pairs)).unwrap_or(u32::MAX);
    let goal = if super::layout::triple_pair_balance_possible(degrees) {
        1
    } else {
        2
    };
    let mut rng = StdRng::seed_from_u64(seed);
    // Give up after this many steps without a new best Σ P².
    let patience = 100 + t.stores.len() / 2;
    let sum_sq = |t: &Triples| t.pair.iter().map(|&p| u64::from(p).pow(2)).sum::<u64>();
    let mut best = sum_sq(t);
    let mut since_best = 0;
    for _ in 0..max_steps {
        let (lo, hi) = t.range();
        if hi <= lo + goal || since_best > patience {
            return;
        }
        let now = sum_sq(t);
        if now < best {
            best = now;
            since_best = 0;
        } else {
            since_best += 1;
        }
        // Split pairs above ⌈λ⌉, join pairs below ⌊λ⌋.
        let mut targets: Vec<(usize, usize, bool)> = Vec::new();
        for a in 0..m {
            for b in a + 1..m {
                if t.p(a, b) > lam_hi {
                    targets.push((a, b, true));
                } else if t.p(a, b) < lam_lo {
                    targets.push((a, b, false));
                }
            }
        }
        if targets.is_empty() {
            // Spread is at most ⌈λ⌉ − ⌊λ⌋ ≤ 1 already.
            return;
        }
        let start = rng.random_range(0..targets.len());
        let mut moved = false;
        for sideways in [false, true] {
            if sideways && !rng.random_ratio(1, 2) {
                break;
            }
            for k in 0..targets.len() {
                let (x, y, split) = targets[(start + k) % targets.len()];
                if let Some((sa, a, sb, b)) = t.find_move(x, y, split, sideways) {
                    t.apply_swap(sa, a, sb, b);
                    moved = true;
                    break;
                }
            }
            if moved {
                break;
            }
        }
        if !moved {
            // A random swap that does not put a machine twice in a store.
            for _ in 0..64 {
                let sa = rng.random_range(0..t.stores.len());
                let sb = rng.random_range(0..t.stores.len());
                let a = t.stores[sa][rng.random_range(0..3)];
                let b = t.stores[sb][rng.random_range(0..3)];
                if t.swap_delta(sa, a, sb, b).is_some() {
                    t.apply_swap(sa, a, sb, b);
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn euler_orientation_balances_every_vertex() {
        let mut edges = Vec::new();
        for a in 0..7 {
            for b in a + 1..7 {
                if (a + b) % 3 != 0 {
                    edges.push((a, b));
                }
            }
        }
        let out = euler_orient(7, &edges);
        assert_eq!(out.len(), edges.len());
        let mut diff = [0i64; 7];
        for (a, b) in out {
            diff[a] += 1;
            diff[b] -= 1;
        }
        assert!(diff.iter().all(|d| d.abs() <= 1), "{diff:?}");
    }

    #[test]
    fn pairs_of_three_machines() {
        let (stores, unused) = pairs(3, 3);
        assert_eq!(stores.len(), 4);
        assert_eq!(unused.len(), 1);
    }
}
