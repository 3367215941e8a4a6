//! A `Layout` is placement reduced to what the properties are about: which
//! machines each store's slots are on, master first, then replicas in
//! failover order. Plans, rebalanced topologies and live topologies are all
//! measured through it: masters per machine, stores shared per pair of
//! machines, and the failure impact of every machine and the worst pair.

use serde::{Deserialize, Serialize};

/// Stores as machine indices: `stores[i][0]` is the master's machine, then
/// the replicas' machines in failover order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// Machine names; indices into this are what `stores` holds.
    pub machines: Vec<String>,
    /// Each store's machines, master first.
    pub stores: Vec<Vec<usize>>,
}

/// What happens when one machine dies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineImpact {
    /// The machine that dies.
    pub machine: String,
    /// How many masters it had.
    pub masters: usize,
    /// For each other machine (in machine order), how many of those masters
    /// it takes over (its replica is the first in the store's failover order).
    pub extra: Vec<SurvivorLoad>,
    /// The largest of `extra`.
    pub max_extra: usize,
    /// The smallest of `extra`.
    pub min_extra: usize,
    /// The bound the planner keeps: ceil(masters / (machines − 1)) + 1.
    pub bound: usize,
}

/// The extra master load one survivor takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SurvivorLoad {
    /// The survivor.
    pub machine: String,
    /// How many masters of the dead machine it takes over.
    pub extra_masters: usize,
}

/// What happens when two machines die together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairImpact {
    /// The two machines.
    pub machines: [String; 2],
    /// Stores that lose all their slots (their mail is unavailable).
    pub stores_lost: usize,
    /// Stores left with exactly one slot (no redundancy left).
    pub stores_without_redundancy: usize,
}

/// The failure impact of a layout: every single machine, and the worst pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureImpact {
    /// One entry per machine, in machine order.
    pub machines: Vec<MachineImpact>,
    /// The pair of machines whose joint death hurts most (most stores lost,
    /// then most left without redundancy); none with fewer than 2 machines.
    pub worst_pair: Option<PairImpact>,
    /// Fewest stores any two machines share.
    pub pair_sharing_min: usize,
    /// Most stores any two machines share.
    pub pair_sharing_max: usize,
}

/// ceil(a / b) for b > 0.
pub(crate) fn div_ceil(a: usize, b: usize) -> usize {
    a.div_ceil(b)
}

impl Layout {
    /// Number of machines.
    pub fn machine_count(&self) -> usize {
        self.machines.len()
    }

    /// Masters on each machine.
    pub fn masters_per_machine(&self) -> Vec<usize> {
        let mut out = vec![0; self.machines.len()];
        for s in &self.stores {
            out[s[0]] += 1;
        }
        out
    }

    /// Slots in use on each machine.
    pub fn slots_per_machine(&self) -> Vec<usize> {
        let mut out = vec![0; self.machines.len()];
        for s in &self.stores {
            for &m in s {
                out[m] += 1;
            }
        }
        out
    }

    /// Stores shared by each pair of machines, as a full symmetric matrix
    /// (`n * n`, row-major, zero diagonal).
    pub fn pair_counts(&self) -> Vec<usize> {
        let n = self.machines.len();
        let mut p = vec![0; n * n];
        for s in &self.stores {
            for (i, &a) in s.iter().enumerate() {
                for &b in &s[i + 1..] {
                    p[a * n + b] += 1;
                    p[b * n + a] += 1;
                }
            }
        }
        p
    }

    /// Fewest and most stores shared by any two distinct machines.
    pub fn pair_sharing_range(&self) -> (usize, usize) {
        let n = self.machines.len();
        let p = self.pair_counts();
        let mut lo = usize::MAX;
        let mut hi = 0;
        for a in 0..n {
            for b in a + 1..n {
                lo = lo.min(p[a * n + b]);
                hi = hi.max(p[a * n + b]);
            }
        }
        if lo == usize::MAX { (0, 0) } else { (lo, hi) }
    }

    /// For the death of machine `dead`: how many masters each machine takes
    /// over (index `dead` itself is 0).
    pub fn extra_load(&self, dead: usize) -> Vec<usize> {
        let mut out = vec![0; self.machines.len()];
        for s in &self.stores {
            if s[0] == dead
                && let Some(&next) = s[1..].iter().find(|&&m| m != dead)
            {
                out[next] += 1;
            }
        }
        out
    }

    /// Whether any store has two slots on one machine (the first such store).
    pub fn store_with_shared_machine(&self) -> Option<usize> {
        self.stores
            .iter()
            .position(|s| s.iter().enumerate().any(|(i, m)| s[i + 1..].contains(m)))
    }

    /// The failure impact: per machine, and the worst pair.
    pub fn failure_impact(&self) -> FailureImpact {
        let n = self.machines.len();
        let masters = self.masters_per_machine();
        let machines = (0..n)
            .map(|d| {
                let load = self.extra_load(d);
                let extra: Vec<SurvivorLoad> = (0..n)
                    .filter(|&s| s != d)
                    .map(|s| SurvivorLoad {
                        machine: self.machines[s].clone(),
                        extra_masters: load[s],
                    })
                    .collect();
                let max_extra = extra.iter().map(|l| l.extra_masters).max().unwrap_or(0);
                let min_extra = extra.iter().map(|l| l.extra_masters).min().unwrap_or(0);
                MachineImpact {
                    machine: self.machines[d].clone(),
                    masters: masters[d],
                    bound: if n > 1 {
                        div_ceil(masters[d], n - 1) + 1
                    } else {
                        masters[d]
                    },
                    extra,
                    max_extra,
                    min_extra,
                }
            })
            .collect();
        // Per pair: lost = stores entirely on the pair; without redundancy =
        // stores with exactly one slot off the pair.
        let mut lost = vec![0usize; n * n];
        let mut bare = vec![0usize; n * n];
        for s in &self.stores {
            for (i, &a) in s.iter().enumerate() {
                for &b in &s[i + 1..] {
                    let (a, b) = (a.min(b), a.max(b));
                    match s.len() {
                        2 => lost[a * n + b] += 1,
                        3 => bare[a * n + b] += 1,
                        _ => {}
                    }
                }
            }
        }
        let mut worst: Option<(usize, usize, usize, usize)> = None;
        for a in 0..n {
            for b in a + 1..n {
                let key = (lost[a * n + b], bare[a * n + b]);
                if worst.is_none_or(|(_, _, l, r)| key > (l, r)) {
                    worst = Some((a, b, key.0, key.1));
                }
            }
        }
        let (pair_sharing_min, pair_sharing_max) = self.pair_sharing_range();
        FailureImpact {
            machines,
            worst_pair: worst.map(|(a, b, l, r)| PairImpact {
                machines: [self.machines[a].clone(), self.machines[b].clone()],
                stores_lost: l,
                stores_without_redundancy: r,
            }),
            pair_sharing_min,
            pair_sharing_max,
        }
    }
}

impl FailureImpact {
    /// The impact as a text table: one row per machine that might die, with
    /// its masters, the extra masters each survivor takes (min..max and the
    /// bound), then the worst pair.
    pub fn render_text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let width = self
            .machines
            .iter()
            .map(|m| m.machine.len())
            .max()
            .unwrap_or(0)
            .max("if dies".len());
        let _ = writeln!(
            out,
            "{:<width$}  {:>7}  {:>15}  {:>5}  extra masters per survivor",
            "if dies", "masters", "extra min..max", "bound"
        );
        for m in &self.machines {
            let per: Vec<String> = m
                .extra
                .iter()
                .map(|l| format!("{}:{}", l.machine, l.extra_masters))
                .collect();
            let _ = writeln!(
                out,
                "{:<width$}  {:>7}  {:>15}  {:>5}  {}",
                m.machine,
                m.masters,
                format!("{}..{}", m.min_extra, m.max_extra),
                m.bound,
                per.join(" ")
            );
        }
        let _ = writeln!(
            out,
            "stores shared by two machines: {}..{}",
            self.pair_sharing_min, self.pair_sharing_max
        );
        match &self.worst_pair {
            Some(p) => {
                let _ = writeln!(
                    out,
                    "worst pair: {} + {}: {} store(s) lost, {} left without redundancy",
                    p.machines[0], p.machines[1], p.stores_lost, p.stores_without_redundancy
                );
            }
            None => {
                let _ = writeln!(out, "worst pair: none (fewer than two machines)");
            }
        }
        out
    }
}

impl Layout {
    /// A live topology as a layout: machines by name, stores by id.
    pub fn from_topology(topology: &crate::model::Topology) -> Layout {
        let machines: Vec<String> = topology.machines.keys().cloned().collect();
        let index: std::collections::BTreeMap<&str, usize> = machines
            .iter()
            .enumerate()
            .map(|(i, m)| (m.as_str(), i))
            .collect();
        let stores = topology
            .stores
            .values()
            .map(|st| {
                st.slots
                    .iter()
                    .filter_map(|slot| topology.machine_of(slot))
                    .filter_map(|m| index.get(m).copied())
                    .collect()
            })
            .collect();
        Layout { machines, stores }
    }
}

/// Whether stores of 3 slots over machines with these slot counts
/// (`degrees[v]` = slots of machine v in stores) can possibly have every
/// pair of machines share ⌊λ⌋ or ⌈λ⌉ stores. A necessary condition: for some
/// λ, each machine v must share λ+1 stores with exactly
/// `h_v = 2·degrees[v] − (M−1)·λ` partners and λ with the rest, so `h` must
/// be the degree sequence of a simple graph (Erdős–Gallai). When this says
/// no, the imbalance is a property of the input, not of the planner.
pub fn triple_pair_balance_possible(degrees: &[usize]) -> bool {
    let m = degrees.len();
    if m < 3 {
        return true;
    }
    let top = *degrees.iter().max().expect("machines");
    let bottom = *degrees.iter().min().expect("machines");
    let lo_lambda = (2 * top).saturating_sub(m - 1).div_ceil(m - 1);
    let hi_lambda = 2 * bottom / (m - 1);
    (lo_lambda..=hi_lambda).any(|lambda| {
        let mut h: Vec<usize> = degrees.iter().map(|&d| 2 * d - (m - 1) * lambda).collect();
        if h.iter().any(|&x| x > m - 1) || h.iter().sum::<usize>() % 2 == 1 {
            return false;
        }
        h.sort_unstable_by(|a, b| b.cmp(a));
        let mut prefix = 0;
        (1..=m).all(|r| {
            prefix += h[r - 1];
            let rest: usize = h[r..].iter().map(|&x| x.min(r)).sum();
            prefix <= r * (r - 1) + rest
        })
    })
}
