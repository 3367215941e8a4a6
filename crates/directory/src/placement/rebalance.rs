//! Rebalancing a live topology after machines were added or are to be
//! removed: a list of moves that, applied in order, evacuates the machines
//! that go, spreads slots onto machines with room, and balances masters.
//!
//! A slot moves as *add replica on the new slot, wait for it to be in sync,
//! (switch the master away if it is the one moving,) drop the old replica*:
//! the store never has fewer copies than before. Targets are chosen to keep
//! slot use even across machines first, and stores shared per pair of
//! machines even second. Masters are then rebalanced with the fewest master
//! switches and failover-order changes (a max-flow that tries the current
//! roles first), so that a dead machine's masters spread over the others.

use super::PlanError;
use crate::model::Topology;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// One step of a rebalance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Move {
    /// Add a free slot to the store as its last replica (replication then
    /// fills it).
    AddReplica { store: String, slot: String },
    /// Wait until that replica holds everything the master holds.
    WaitForSync { store: String, slot: String },
    /// Remove a replica from the store.
    DropReplica { store: String, slot: String },
    /// Planned switchover of the store's master from one slot to another.
    SwitchMaster {
        store: String,
        from: String,
        to: String,
    },
    /// Change the replicas' failover order (the master stays; no epoch
    /// change).
    ReorderReplicas {
        store: String,
        replicas: Vec<String>,
    },
}

impl std::fmt::Display for Move {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Move::AddReplica { store, slot } => write!(f, "add replica {slot} to store {store}"),
            Move::WaitForSync { store, slot } => {
                write!(f, "wait until {slot} is in sync in store {store}")
            }
            Move::DropReplica { store, slot } => {
                write!(f, "drop replica {slot} from store {store}")
            }
            Move::SwitchMaster { store, from, to } => {
                write!(f, "switch store {store}'s master from {from} to {to}")
            }
            Move::ReorderReplicas { store, replicas } => {
                write!(
                    f,
                    "set store {store}'s failover order to {}",
                    replicas.join(" ")
                )
            }
        }
    }
}

/// A slot to move: (store index, position in the store, target machine).
type Relocation = (usize, usize, usize);

/// The rebalance's working copy: stores as (slot, machine index) lists.
struct Work {
    names: Vec<String>,
    live: Vec<bool>,
    stores: Vec<(String, Vec<(String, usize)>)>,
    free: Vec<BTreeSet<String>>,
    moves: Vec<Move>,
}

impl Work {
    fn used(&self) -> Vec<usize> {
        let mut used = vec![0; self.names.len()];
        for (_, st) in &self.stores {
            for &(_, m) in st {
                used[m] += 1;
            }
        }
        used
    }

    fn masters(&self) -> Vec<usize> {
        let mut out = vec![0; self.names.len()];
        for (_, st) in &self.stores {
            out[st[0].1] += 1;
        }
        out
    }

    fn pairs(&self) -> Vec<usize> {
        let n = self.names.len();
        let mut p = vec![0; n * n];
        for (_, st) in &self.stores {
            for (i, &(_, a)) in st.iter().enumerate() {
                for &(_, b) in &st[i + 1..] {
                    p[a * n + b] += 1;
                    p[b * n + a] += 1;
                }
            }
        }
        p
    }

    /// Where the next round of slots on removed machines goes (at most one
    /// per store): a max-flow from those slots to live machines that the
    /// store does not use and that have free slots, each machine taking no
    /// more than keeps slot use even if that suffices. Preference within the
    /// flow: machines sharing fewer stores with the store's other machines.
    fn evacuation_targets(&self) -> Result<Option<Vec<Relocation>>, PlanError> {
        let moving: Vec<(usize, usize)> = self
            .stores
            .iter()
            .enumerate()
            .filter_map(|(si, (_, st))| {
                st.iter()
                    .position(|&(_, m)| !self.live[m])
                    .map(|pos| (si, pos))
            })
            .collect();
        if moving.is_empty() {
            return Ok(None);
        }
        let n = self.names.len();
        let used = self.used();
        let pairs = self.pairs();
        let live_count = self.live.iter().filter(|&&l| l).count().max(1);
        let total: usize = self.stores.iter().map(|(_, st)| st.len()).sum();
        let (even_lo, even_hi) = (total / live_count, total.div_ceil(live_count));
        let (source, sink) = (0, 1);
        let mut g = super::flow::Flow::new(2 + moving.len() + n);
        let mut edges: Vec<Vec<(usize, usize)>> = Vec::with_capacity(moving.len());
        for (j, &(si, pos)) in moving.iter().enumerate() {
            g.edge(source, 2 + j, 1);
            let st = &self.stores[si].1;
            let mut cands: Vec<(usize, usize)> = (0..n)
                .filter(|&t| self.live[t] && !self.free[t].is_empty())
                .filter(|&t| st.iter().all(|&(_, m)| m != t))
                .map(|t| {
                    let share: usize = st
                        .iter()
                        .enumerate()
                        .filter(|&(i, &(_, m))| i != pos && self.live[m])
                        .map(|(_, &(_, m))| pairs[t * n + m])
                        .sum();
                    (share, t)
                })
                .collect();
            // Most preferred last: edges are explored newest first.
            cands.sort_by(|a, b| b.cmp(a));
            edges.push(
                cands
                    .into_iter()
                    .map(|(_, t)| (g.edge(2 + j, 2 + moving.len() + t, 1), t))
                    .collect(),
            );
        }
        // Fill machines up to the even share's floor, then its ceiling,
        // then whatever room is left (flow into the sink only grows).
        let caps = |limit: Option<usize>| -> Vec<usize> {
            (0..n)
                .map(|t| {
                    let room = self.free[t].len();
                    limit.map_or(room, |l| room.min(l.saturating_sub(used[t])))
                })
                .collect()
        };
        let stages = [caps(Some(even_lo)), caps(Some(even_hi)), caps(None)];
        let sink_edges: Vec<usize> = (0..n)
            .map(|t| g.edge(2 + moving.len() + t, sink, stages[0][t] as i64))
            .collect();
        let mut routed = g.max_flow(source, sink);
        for k in 1..stages.len() {
            for t in 0..n {
                g.raise(sink_edges[t], (stages[k][t] - stages[k - 1][t]) as i64);
            }
            routed += g.max_flow(source, sink);
        }
        if routed == moving.len() as i64 {
            return Ok(Some(
                moving
                    .iter()
                    .zip(&edges)
                    .map(|(&(si, pos), es)| {
                        let &(_, t) = es.iter().find(|&&(e, _)| g.flow(e) == 1).expect("routed");
                        (si, pos, t)
                    })
                    .collect(),
            ));
        }
        let (si, _) = moving[0];
        Err(PlanError::NoFreeSlot {
            store: self.stores[si].0.clone(),
        })
    }

    /// Evacuate one slot at a time, the most constrained first, each to the
    /// machine that shares the fewest stores with the store's other
    /// machines (among those below the even share of slots, if any): this
    /// keeps pair sharing even, which the failover bound needs. Returns
    /// false, having moved what it could, if some slot has no candidate
    /// left (the matching of [`Work::evacuation_targets`] takes over).
    fn greedy_evacuation(&mut self) -> bool {
        let n = self.names.len();
        let live_count = self.live.iter().filter(|&&l| l).count().max(1);
        let total: usize = self.stores.iter().map(|(_, st)| st.len()).sum();
        let even_hi = total.div_ceil(live_count);
        loop {
            let used = self.used();
            let pairs = self.pairs();
            // (candidates, store, position, best target)
            let mut pick: Option<(usize, usize, usize, usize)> = None;
            for (si, (_, st)) in self.stores.iter().enumerate() {
                let Some(pos) = st.iter().position(|&(_, m)| !self.live[m]) else {
                    continue;
                };
                let cands: Vec<usize> = (0..n)
                    .filter(|&t| self.live[t] && !self.free[t].is_empty())
                    .filter(|&t| st.iter().all(|&(_, m)| m != t))
                    .collect();
                let Some(&best) = cands.iter().min_by_key(|&&t| {
                    let share: usize = st
                        .iter()
                        .enumerate()
                        .filter(|&(i, &(_, m))| i != pos && self.live[m])
                        .map(|(_, &(_, m))| pairs[t * n + m])
                        .sum();
                    (used[t] >= even_hi, share, used[t], t)
                }) else {
                    return false;
                };
                if pick.is_none_or(|(c, ..)| cands.len() < c) {
                    pick = Some((cands.len(), si, pos, best));
                }
            }
            let Some((_, si, pos, to)) = pick else {
                return true;
            };
            self.relocate(si, pos, to);
        }
    }

    /// Move store `si`'s slot at `pos` to a free slot of machine `to`.
    fn relocate(&mut self, si: usize, pos: usize, to: usize) {
        let slot = self.free[to].pop_first().expect("target has a free slot");
        let store = self.stores[si].0.clone();
        let (old, from) = self.stores[si].1[pos].clone();
        self.moves.push(Move::AddReplica {
            store: store.clone(),
            slot: slot.clone(),
        });
        self.moves.push(Move::WaitForSync {
            store: store.clone(),
            slot: slot.clone(),
        });
        self.stores[si].1.push((slot, to));
        if pos == 0 {
            // Hand the master role to the member whose machine masters least.
            let masters = self.masters();
            let st = &self.stores[si].1;
            let new = (1..st.len())
                .filter(|&i| self.live[st[i].1])
                .min_by_key(|&i| (masters[st[i].1], i))
                .expect("the new replica is alive");
            self.moves.push(Move::SwitchMaster {
                store: store.clone(),
                from: old.clone(),
                to: st[new].0.clone(),
            });
            self.stores[si].1.swap(0, new);
        }
        let st = &mut self.stores[si].1;
        let at = st
            .iter()
            .position(|(s, _)| *s == old)
            .expect("old slot in store");
        st.remove(at);
        self.moves.push(Move::DropReplica {
            store,
            slot: old.clone(),
        });
        self.free[from].insert(old);
    }
}

/// Suggest moves that restore the placement properties of `current` when
/// the cluster is to consist of `machines_now`: machines of the topology not
/// in the list are evacuated; machines in the list with free slots receive
/// replicas until slot use is even (within one); then masters are balanced
/// (⌊T/M⌋ or ⌈T/M⌉ per machine). Every machine in `machines_now` must be
/// declared in the topology, with its slots.
pub fn rebalance(current: &Topology, machines_now: &[String]) -> Result<Vec<Move>, PlanError> {
    super::check_machines(machines_now)?;
    let names: Vec<String> = current.machines.keys().cloned().collect();
    let index: BTreeMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), i))
        .collect();
    let mut live = vec![false; names.len()];
    for m in machines_now {
        let &i = index
            .get(m.as_str())
            .ok_or_else(|| PlanError::UnknownMachine(m.clone()))?;
        live[i] = true;
    }
    let mut free = vec![BTreeSet::new(); names.len()];
    for slot in current.free_slots() {
        if let Some(&i) = index.get(slot.machine.as_str()) {
            free[i].insert(slot.id.clone());
        }
    }
    let stores = current
        .stores
        .values()
        .map(|st| {
            let slots = st
                .slots
                .iter()
                .map(|s| {
                    let m = current
                        .machine_of(s)
                        .and_then(|m| index.get(m).copied())
                        .ok_or_else(|| PlanError::BadMove {
                            index: 0,
                            description: format!("store {}", st.id),
                            why: format!("slot {s} or its machine is not in the directory"),
                        })?;
                    Ok((s.clone(), m))
                })
                .collect::<Result<Vec<_>, PlanError>>()?;
            Ok((st.id.clone(), slots))
        })
        .collect::<Result<Vec<_>, PlanError>>()?;
    let mut w = Work {
        names,
        live,
        stores,
        free,
        moves: Vec::new(),
    };

    // 1. Evacuate the machines that go: one slot at a time, keeping pair
    //    sharing even; if that gets stuck, a matching of the slots that
    //    must move onto live machines with free slots (a store's slots in
    //    rounds, so two of them never land on one machine).
    w.greedy_evacuation();
    while let Some(targets) = w.evacuation_targets()? {
        for (si, pos, to) in targets {
            w.relocate(si, pos, to);
        }
    }

    // 2. Spread onto machines with room until slot use is even.
    let total_slots: usize = w.stores.iter().map(|(_, s)| s.len()).sum();
    for _ in 0..=total_slots {
        let used = w.used();
        let n = w.names.len();
        let Some(hi) = (0..n)
            .filter(|&m| w.live[m])
            .max_by_key(|&m| (used[m], n - m))
        else {
            break;
        };
        let Some(lo) = (0..n)
            .filter(|&m| w.live[m] && !w.free[m].is_empty())
            .min_by_key(|&m| (used[m], m))
        else {
            break;
        };
        if used[hi] <= used[lo] + 1 {
            break;
        }
        let pairs = w.pairs();
        let best = w
            .stores
            .iter()
            .enumerate()
            .filter(|(_, (_, st))| st.iter().all(|&(_, m)| m != lo))
            .filter_map(|(si, (_, st))| {
                let pos = st.iter().position(|&(_, m)| m == hi)?;
                let gain: isize = st
                    .iter()
                    .filter(|&&(_, m)| m != hi)
                    .map(|&(_, m)| pairs[lo * n + m] as isize - pairs[hi * n + m] as isize)
                    .sum();
                Some(((gain, pos == 0, si), si, pos))
            })
            .min_by_key(|(k, _, _)| *k);
        let Some((_, si, pos)) = best else { break };
        w.relocate(si, pos, lo);
    }

    // 3. Masters and failover order: balanced masters and the failover
    //    bound, keeping current roles where possible.
    let n = w.names.len();
    let current: Vec<Vec<usize>> = w
        .stores
        .iter()
        .map(|(_, st)| st.iter().map(|&(_, m)| m).collect())
        .collect();
    match super::order_stores(n, &current, &w.live, true) {
        Some(order) => {
            for (si, want) in order.iter().enumerate() {
                let (store, st) = &mut w.stores[si];
                if st[0].1 != want[0] {
                    let pos = st
                        .iter()
                        .position(|&(_, x)| x == want[0])
                        .expect("in store");
                    w.moves.push(Move::SwitchMaster {
                        store: store.clone(),
                        from: st[0].0.clone(),
                        to: st[pos].0.clone(),
                    });
                    st.swap(0, pos);
                }
                let now: Vec<usize> = st.iter().map(|&(_, m)| m).collect();
                if now != *want {
                    let slot_on =
                        |m: usize| st.iter().find(|&&(_, x)| x == m).expect("in store").clone();
                    let reordered: Vec<(String, usize)> =
                        want.iter().map(|&m| slot_on(m)).collect();
                    w.moves.push(Move::ReorderReplicas {
                        store: store.clone(),
                        replicas: reordered[1..].iter().map(|(s, _)| s.clone()).collect(),
                    });
                    *st = reordered;
                }
            }
        }
        None => tracing::warn!("masters cannot be balanced over the remaining machines"),
    }
    Ok(w.moves)
}

/// Apply moves to a topology as the directory would, checking each one
/// (for a dry run, and to test rebalances). A switch raises the epoch.
pub fn apply_moves(topology: &Topology, moves: &[Move]) -> Result<Topology, PlanError> {
    let mut t = topology.clone();
    for (index, mv) in moves.iter().enumerate() {
        let bad = |why: String| PlanError::BadMove {
            index,
            description: mv.to_string(),
            why,
        };
        let store_id = match mv {
            Move::AddReplica { store, .. }
            | Move::WaitForSync { store, .. }
            | Move::DropReplica { store, .. }
            | Move::SwitchMaster { store, .. }
            | Move::ReorderReplicas { store, .. } => store,
        };
        if !t.stores.contains_key(store_id) {
            return Err(bad("no such store".into()));
        }
        match mv {
            Move::AddReplica { store, slot } => {
                let machine = t
                    .machine_of(slot)
                    .ok_or_else(|| bad("no such slot".into()))?
                    .to_string();
                if let Some(owner) = t.store_of_slot(slot) {
                    return Err(bad(format!("slot is in store {}", owner.id)));
                }
                let st = &t.stores[store];
                if st
                    .slots
                    .iter()
                    .any(|s| t.machine_of(s) == Some(machine.as_str()))
                {
                    return Err(bad(format!("store has a slot on {machine} already")));
                }
                t.stores
                    .get_mut(store)
                    .expect("store")
                    .slots
                    .push(slot.clone());
            }
            Move::WaitForSync { store, slot } => {
                if !t.stores[store].replicas().contains(slot) {
                    return Err(bad("not a replica of the store".into()));
                }
            }
            Move::DropReplica { store, slot } => {
                let st = t.stores.get_mut(store).expect("store");
                let pos = st
                    .slots
                    .iter()
                    .position(|s| s == slot)
                    .ok_or_else(|| bad("not in the store".into()))?;
                if pos == 0 {
                    return Err(bad("it is the master".into()));
                }
                if st.slots.len() <= crate::limits::SLOTS_PER_STORE_MIN {
                    return Err(bad("the store would be left with too few slots".into()));
                }
                st.slots.remove(pos);
            }
            Move::SwitchMaster { store, from, to } => {
                let st = t.stores.get_mut(store).expect("store");
                if st.slots[0] != *from {
                    return Err(bad(format!("the master is {}", st.slots[0])));
                }
                let pos = st
                    .slots
                    .iter()
                    .position(|s| s == to)
                    .ok_or_else(|| bad("the new master is not in the store".into()))?;
                if pos == 0 {
                    return Err(bad("already the master".into()));
                }
                st.slots.swap(0, pos);
                st.epoch += 1;
            }
            Move::ReorderReplicas { store, replicas } => {
                let st = t.stores.get_mut(store).expect("store");
                let mut want = replicas.clone();
                let mut have = st.replicas().to_vec();
                want.sort();
                have.sort();
                if want != have {
                    return Err(bad("not a reordering of the store's replicas".into()));
                }
                st.slots.truncate(1);
                st.slots.extend(replicas.iter().cloned());
            }
        }
    }
    Ok(t)
}
