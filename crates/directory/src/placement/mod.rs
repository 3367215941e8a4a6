//! Placement: which slots form which stores.
//!
//! [`plan`] proposes stores over `M` machines with `S` slots each, stores of
//! 2 or 3 slots (1 or 2 replicas), such that
//!
//! - no store has two slots on one machine;
//! - every machine masters ⌊T/M⌋ or ⌈T/M⌉ of the `T` stores;
//! - when any one machine dies, its masters fail over to the survivors
//!   evenly: no survivor takes more than ⌈masters/(M−1)⌉ + 1 of them (for
//!   3-slot stores the first replica in the store's order takes over; the
//!   planner chooses that order);
//! - any two machines share ⌊λ⌋ or ⌈λ⌉ stores (λ = pair-incidences / pairs),
//!   exactly for 2-slot stores and as found by the local search for 3-slot
//!   stores, so two machines dying together take out as few stores as
//!   possible;
//! - every slot is used, except the `M·S mod k` left over when `M·S` is not
//!   a multiple of the store size `k` (the plan names them and says why).
//!
//! The plan is deterministic: the same input gives the same plan. Its
//! properties are verified before it is returned. [`Plan::failure_impact`]
//! shows, for every machine, what each survivor takes over if it dies, and
//! the worst pair. [`rebalance`] suggests the moves that restore the
//! properties of a live topology after machines are added or removed.

mod construct;
mod flow;
mod layout;
mod rebalance;

pub use layout::{
    FailureImpact, Layout, MachineImpact, PairImpact, SurvivorLoad, triple_pair_balance_possible,
};
pub use rebalance::{Move, apply_moves, rebalance};

use crate::limits::{
    MACHINES_MAX, PLAN_REPLICAS_PER_STORE_MAX, PLAN_REPLICAS_PER_STORE_MIN, PLAN_SEARCH_STEPS_MAX,
    PLAN_SLOTS_MAX, SLOTS_PER_MACHINE_MAX,
};
use crate::model::{IdKind, validate_id};
use layout::div_ceil;
use serde::{Deserialize, Serialize};

/// Why a plan or a rebalance could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// Replicas per store must be 1 or 2.
    #[error(
        "replicas per store must be {PLAN_REPLICAS_PER_STORE_MIN} or {PLAN_REPLICAS_PER_STORE_MAX}, not {0}"
    )]
    Replicas(u32),
    /// Too few machines for stores of this size.
    #[error("stores of {store_size} slots need at least {store_size} machines, not {machines}")]
    TooFewMachines { machines: usize, store_size: usize },
    /// A limit was exceeded.
    #[error("limit reached: at most {limit} {what}")]
    Limit { what: &'static str, limit: usize },
    /// Slots per machine must be at least 1.
    #[error("slots per machine must be at least 1")]
    NoSlots,
    /// A machine name is invalid.
    #[error("invalid machine name {0:?}")]
    InvalidMachine(String),
    /// A machine is named twice.
    #[error("machine {0} named twice")]
    DuplicateMachine(String),
    /// A machine named for a rebalance is not in the topology.
    #[error("machine {0} is not in the directory (declare it and its slots first)")]
    UnknownMachine(String),
    /// Not enough free slots to place what must move.
    #[error("store {store} needs a free slot on a machine it does not use yet, and there is none")]
    NoFreeSlot { store: String },
    /// A move cannot be applied to the topology.
    #[error("move {index} ({description}) cannot be applied: {why}")]
    BadMove {
        index: usize,
        description: String,
        why: String,
    },
    /// The result broke a property the planner guarantees: a bug.
    #[error("placement property violated: {0}")]
    PropertyViolated(String),
}

/// One slot in a plan: slot number `index` (from 1) of `machine`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PlannedSlot {
    /// The slot id the plan proposes (see [`slot_id`]).
    pub id: String,
    /// The machine.
    pub machine: String,
    /// The slot's number on the machine, from 1.
    pub index: u32,
}

/// One store in a plan: master first, then replicas in failover order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedStore {
    /// The store id the plan proposes (`s001`, ...).
    pub id: String,
    /// Its slots: master first, then replicas in failover order.
    pub slots: Vec<PlannedSlot>,
}

/// A proposed placement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The machines, in the order given.
    pub machines: Vec<String>,
    /// Slots per machine.
    pub slots_per_machine: u32,
    /// Replicas per store (1: stores of 2 slots; 2: stores of 3).
    pub replicas_per_store: u32,
    /// The stores, masters interleaved across machines (so creating only the
    /// first stores of the list still spreads them).
    pub stores: Vec<PlannedStore>,
    /// Slots no store uses.
    pub unused: Vec<PlannedSlot>,
    /// Why those slots are unused.
    pub unused_reason: Option<String>,
    /// Why pairs of machines share stores more unevenly than within one, if
    /// they do (a property of the input, see
    /// [`triple_pair_balance_possible`]).
    pub pair_sharing_note: Option<String>,
}

/// The slot id the planner proposes for slot `index` (from 1) of `machine`:
/// the machine name followed by the number (`a1`), with a `-` in between if
/// the machine name ends with a digit (`m7-1`).
pub fn slot_id(machine: &str, index: u32) -> String {
    if machine.ends_with(|c: char| c.is_ascii_digit()) {
        format!("{machine}-{index}")
    } else {
        format!("{machine}{index}")
    }
}

fn check_machines(machines: &[String]) -> Result<(), PlanError> {
    if machines.len() > MACHINES_MAX {
        return Err(PlanError::Limit {
            what: "machines",
            limit: MACHINES_MAX,
        });
    }
    let mut seen = std::collections::BTreeSet::new();
    for m in machines {
        validate_id(IdKind::Machine, m).map_err(|_| PlanError::InvalidMachine(m.clone()))?;
        if !seen.insert(m.as_str()) {
            return Err(PlanError::DuplicateMachine(m.clone()));
        }
    }
    Ok(())
}

/// Propose stores of `replicas_per_store + 1` slots over `slots_per_machine`
/// slots on each of `machines`. See the module documentation for the
/// properties the plan has.
pub fn plan(
    machines: &[String],
    slots_per_machine: u32,
    replicas_per_store: u32,
) -> Result<Plan, PlanError> {
    if !(PLAN_REPLICAS_PER_STORE_MIN..=PLAN_REPLICAS_PER_STORE_MAX).contains(&replicas_per_store) {
        return Err(PlanError::Replicas(replicas_per_store));
    }
    check_machines(machines)?;
    let k = replicas_per_store as usize + 1;
    let m = machines.len();
    if m < k.max(2) {
        return Err(PlanError::TooFewMachines {
            machines: m,
            store_size: k,
        });
    }
    if slots_per_machine == 0 {
        return Err(PlanError::NoSlots);
    }
    let s = slots_per_machine as usize;
    if s > SLOTS_PER_MACHINE_MAX {
        return Err(PlanError::Limit {
            what: "slots per machine",
            limit: SLOTS_PER_MACHINE_MAX,
        });
    }
    if m * s > PLAN_SLOTS_MAX {
        return Err(PlanError::Limit {
            what: "slots in one plan",
            limit: PLAN_SLOTS_MAX,
        });
    }
    let (stores, unused) = if k == 2 {
        let (stores, unused) = construct::pairs(m, s);
        (stores.into_iter().map(|p| p.to_vec()).collect(), unused)
    } else {
        let seed = 0x736c_6f74_0000_0000 ^ ((m as u64) << 20) ^ s as u64;
        let (triples, unused) = construct::triples(m, s, PLAN_SEARCH_STEPS_MAX, seed);
        (order_triples(m, &triples)?, unused)
    };
    let layout = Layout {
        machines: machines.to_vec(),
        stores: interleave(m, stores),
    };
    let expected_use: Vec<usize> = (0..m)
        .map(|v| s - unused.iter().filter(|&&u| u == v).count())
        .collect();
    verify(&layout, k, &expected_use)?;
    let (lo, hi) = layout.pair_sharing_range();
    let mut plan = to_plan(layout, slots_per_machine, replicas_per_store, &unused);
    if hi > lo + 1 {
        let note = if triple_pair_balance_possible(&expected_use) {
            tracing::warn!(
                machines = m,
                slots = s,
                lo,
                hi,
                "pair sharing not balanced within one"
            );
            format!(
                "pairs of machines share {lo} to {hi} stores: the search found no better layout"
            )
        } else {
            format!(
                "pairs of machines share {lo} to {hi} stores: with these slot counts no layout \
                 of 3-slot stores can keep every pair within one of each other"
            )
        };
        plan.pair_sharing_note = Some(note);
    }
    Ok(plan)
}

/// Masters and failover order for unordered triples (see [`order_stores`]).
fn order_triples(m: usize, triples: &[[usize; 3]]) -> Result<Vec<Vec<usize>>, PlanError> {
    let stores: Vec<Vec<usize>> = triples.iter().map(|t| t.to_vec()).collect();
    order_stores(m, &stores, &vec![true; m], false).ok_or_else(|| {
        PlanError::PropertyViolated(
            "no order of masters and first replicas keeps failover within the bound".into(),
        )
    })
}

/// Masters and failover order for stores (machine lists), chosen together
/// by a max-flow: every store picks one ordered (master, first replica)
/// pair of its machines; every live machine masters ⌊T/M⌋ or ⌈T/M⌉ stores;
/// and no machine's masters fail over to one survivor more than `cap` times,
/// with `cap` = ⌈⌊T/M⌋/(M−1)⌉ if feasible, else one more (still within the
/// bound ⌈masters/(M−1)⌉ + 1). With `prefer_current`, each store's current
/// (first, second) pair is tried before any other, so few roles change.
/// Returns the stores reordered: master, first replica, then the others in
/// their current order.
pub(crate) fn order_stores(
    m: usize,
    stores: &[Vec<usize>],
    live: &[bool],
    prefer_current: bool,
) -> Option<Vec<Vec<usize>>> {
    let t = stores.len();
    let live_count = live.iter().filter(|&&l| l).count();
    if live_count < 2 {
        return None;
    }
    let lo = t / live_count;
    let hi = div_ceil(t, live_count);
    let c0 = div_ceil(lo, live_count - 1).max(1);
    [c0, c0 + 1]
        .into_iter()
        .find_map(|cap| order_stores_with_cap(m, stores, live, lo, hi, cap, prefer_current))
}

#[allow(clippy::too_many_arguments)]
fn order_stores_with_cap(
    m: usize,
    stores: &[Vec<usize>],
    live: &[bool],
    lo: usize,
    hi: usize,
    cap: usize,
    prefer_current: bool,
) -> Option<Vec<Vec<usize>>> {
    let t = stores.len();
    let (source, sink) = (0, 1);
    let item = |i: usize| 2 + i;
    let master = |d: usize| 2 + t + d;
    let mut arc_node: std::collections::BTreeMap<(usize, usize), usize> = Default::default();
    let mut next_node = 2 + t + m;
    for st in stores {
        for &d in st {
            for &f in st {
                if d != f && live[d] && live[f] {
                    arc_node.entry((d, f)).or_insert_with(|| {
                        next_node += 1;
                        next_node - 1
                    });
                }
            }
        }
    }
    let mut g = flow::Flow::new(next_node);
    // (edge, d, f, is the current pair)
    let mut choices: Vec<Vec<(usize, usize, usize, bool)>> = Vec::with_capacity(t);
    for (i, st) in stores.iter().enumerate() {
        g.edge(source, item(i), 1);
        let mut mine = Vec::with_capacity(6);
        // The current pair last: edges are explored newest first.
        let mut arcs: Vec<(bool, usize, usize)> = Vec::with_capacity(6);
        for &d in st {
            for &f in st {
                if d != f && live[d] && live[f] {
                    arcs.push((st.len() >= 2 && st[0] == d && st[1] == f, d, f));
                }
            }
        }
        arcs.sort_by_key(|&(current, _, _)| current);
        for (current, d, f) in arcs {
            let cap = i64::from(!prefer_current || current);
            mine.push((g.edge(item(i), arc_node[&(d, f)], cap), d, f, current));
        }
        choices.push(mine);
    }
    for (&(d, _), &node) in &arc_node {
        g.edge(node, master(d), cap as i64);
    }
    let to_sink: Vec<usize> = (0..m)
        .map(|d| g.edge(master(d), sink, if live[d] { lo as i64 } else { 0 }))
        .collect();
    let mut total = g.max_flow(source, sink);
    if prefer_current {
        for mine in &choices {
            for &(e, _, _, current) in mine {
                if !current {
                    g.raise(e, 1);
                }
            }
        }
        total += g.max_flow(source, sink);
    }
    let live_count = live.iter().filter(|&&l| l).count();
    if total != (lo * live_count) as i64 {
        return None;
    }
    for (d, &e) in to_sink.iter().enumerate() {
        if live[d] {
            g.raise(e, (hi - lo) as i64);
        }
    }
    total += g.max_flow(source, sink);
    if total != t as i64 {
        return None;
    }
    let order = stores
        .iter()
        .zip(&choices)
        .map(|(st, mine)| {
            let &(_, d, f, _) = mine
                .iter()
                .find(|&&(e, _, _, _)| g.flow(e) == 1)
                .expect("every store carries one unit of flow");
            let mut out = vec![d, f];
            out.extend(st.iter().copied().filter(|&x| x != d && x != f));
            out
        })
        .collect();
    Some(order)
}

/// Order stores so that masters take turns: every machine's first store,
/// then every machine's second, and so on.
fn interleave(m: usize, stores: Vec<Vec<usize>>) -> Vec<Vec<usize>> {
    let mut rank = vec![0usize; m];
    let mut keyed: Vec<((usize, usize), Vec<usize>)> = stores
        .into_iter()
        .map(|s| {
            let r = rank[s[0]];
            rank[s[0]] += 1;
            ((r, s[0]), s)
        })
        .collect();
    keyed.sort_by_key(|(k, _)| *k);
    keyed.into_iter().map(|(_, s)| s).collect()
}

/// Check the guaranteed properties; a failure is a planner bug.
fn verify(layout: &Layout, k: usize, expected_use: &[usize]) -> Result<(), PlanError> {
    let m = layout.machine_count();
    let bad = |what: String| Err(PlanError::PropertyViolated(what));
    if let Some(i) = layout.store_with_shared_machine() {
        return bad(format!("store {i} has two slots on one machine"));
    }
    if layout.stores.iter().any(|s| s.len() != k) {
        return bad(format!("a store does not have {k} slots"));
    }
    if layout.slots_per_machine() != expected_use {
        return bad("slots used per machine differ from the slots available".into());
    }
    let t = layout.stores.len();
    let masters = layout.masters_per_machine();
    if let Some(v) = (0..m).find(|&v| masters[v] < t / m || masters[v] > div_ceil(t, m)) {
        return bad(format!(
            "machine {} has {} masters",
            layout.machines[v], masters[v]
        ));
    }
    for (d, &mastered) in masters.iter().enumerate() {
        let bound = div_ceil(mastered, m - 1) + 1;
        let load = layout.extra_load(d);
        if let Some(s) = (0..m).find(|&s| load[s] > bound) {
            return bad(format!(
                "if {} dies, {} takes {} masters (bound {bound})",
                layout.machines[d], layout.machines[s], load[s]
            ));
        }
    }
    Ok(())
}

fn to_plan(layout: Layout, s: u32, replicas: u32, unused: &[usize]) -> Plan {
    let m = layout.machine_count();
    let mut next = vec![1u32; m];
    let width = layout.stores.len().to_string().len().max(3);
    let mut slot = |v: usize| {
        let index = next[v];
        next[v] += 1;
        PlannedSlot {
            id: slot_id(&layout.machines[v], index),
            machine: layout.machines[v].clone(),
            index,
        }
    };
    let stores: Vec<PlannedStore> = layout
        .stores
        .iter()
        .enumerate()
        .map(|(i, st)| PlannedStore {
            id: format!("s{:0width$}", i + 1),
            slots: st.iter().map(|&v| slot(v)).collect(),
        })
        .collect();
    let unused: Vec<PlannedSlot> = unused.iter().map(|&v| slot(v)).collect();
    let k = replicas as usize + 1;
    let unused_reason = (!unused.is_empty()).then(|| {
        format!(
            "{m} machines × {s} slots = {} slots, not a multiple of {k} (slots per store): {} slot(s) left unused",
            m * s as usize,
            unused.len()
        )
    });
    Plan {
        machines: layout.machines,
        slots_per_machine: s,
        replicas_per_store: replicas,
        stores,
        unused,
        unused_reason,
        pair_sharing_note: None,
    }
}

impl Plan {
    /// The plan as machine indices (for measuring).
    pub fn layout(&self) -> Layout {
        let index: std::collections::BTreeMap<&str, usize> = self
            .machines
            .iter()
            .enumerate()
            .map(|(i, m)| (m.as_str(), i))
            .collect();
        Layout {
            machines: self.machines.clone(),
            stores: self
                .stores
                .iter()
                .map(|s| s.slots.iter().map(|x| index[x.machine.as_str()]).collect())
                .collect(),
        }
    }

    /// For each machine, the extra master load each other machine takes if
    /// it dies; and the worst pair of machines.
    pub fn failure_impact(&self) -> FailureImpact {
        self.layout().failure_impact()
    }

    /// The plan as text: a summary, the stores, the unused slots, and the
    /// failure impact table.
    pub fn render_text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let layout = self.layout();
        let masters = layout.masters_per_machine();
        let _ = writeln!(
            out,
            "{} machines × {} slots, stores of {} slots: {} stores",
            self.machines.len(),
            self.slots_per_machine,
            self.replicas_per_store + 1,
            self.stores.len()
        );
        let per: Vec<String> = self
            .machines
            .iter()
            .zip(&masters)
            .map(|(m, n)| format!("{m}:{n}"))
            .collect();
        let _ = writeln!(out, "masters per machine: {}", per.join(" "));
        let _ = writeln!(out);
        let _ = writeln!(out, "store  master  replicas (failover order)");
        for st in &self.stores {
            let reps: Vec<&str> = st.slots[1..].iter().map(|x| x.id.as_str()).collect();
            let _ = writeln!(
                out,
                "{:<5}  {:<6}  {}",
                st.id,
                st.slots[0].id,
                reps.join(" ")
            );
        }
        if let Some(note) = &self.pair_sharing_note {
            let _ = writeln!(out, "note: {note}");
        }
        if let Some(why) = &self.unused_reason {
            let ids: Vec<&str> = self.unused.iter().map(|x| x.id.as_str()).collect();
            let _ = writeln!(out);
            let _ = writeln!(out, "unused: {} ({why})", ids.join(" "));
        }
        let _ = writeln!(out);
        out.push_str(&self.failure_impact().render_text());
        out
    }

    /// The plan and its failure impact as JSON.
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct WithImpact<'a> {
            plan: &'a Plan,
            failure_impact: FailureImpact,
        }
        serde_json::to_string_pretty(&WithImpact {
            plan: self,
            failure_impact: self.failure_impact(),
        })
        .expect("plans serialize")
    }
}
