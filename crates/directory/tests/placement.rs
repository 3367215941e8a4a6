//! The planner's properties over a sweep of cluster sizes and by property
//! tests, and rebalancing after adding or removing a machine.

use proptest::prelude::*;
use slotmail_directory::placement::{apply_moves, slot_id, triple_pair_balance_possible};
use slotmail_directory::{Layout, Machine, Move, Plan, Slot, Store, Topology, plan, rebalance};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

fn names(m: usize) -> Vec<String> {
    (0..m).map(|i| format!("m{i:02}x")).collect()
}

/// Every property the planner promises, checked on the plan's own terms.
fn check_layout(layout: &Layout, k: usize, expected_use: &[usize], what: &str) {
    let m = layout.machine_count();
    assert!(
        layout.stores.iter().all(|s| s.len() == k),
        "{what}: store sizes"
    );
    // 1. No store has two slots on one machine.
    assert_eq!(
        layout.store_with_shared_machine(),
        None,
        "{what}: a store twice on one machine"
    );
    // 2. Every available slot is used.
    assert_eq!(
        layout.slots_per_machine(),
        expected_use,
        "{what}: slots used per machine"
    );
    // 3. Masters balanced: ⌊T/M⌋ or ⌈T/M⌉ each.
    let t = layout.stores.len();
    for (v, &n) in layout.masters_per_machine().iter().enumerate() {
        assert!(
            n == t / m || n == t.div_ceil(m),
            "{what}: machine {v} masters {n} of {t}"
        );
    }
    // 4. Any single machine's death: no survivor takes more than
    //    ⌈masters/(M−1)⌉ + 1 of its masters.
    let impact = layout.failure_impact();
    for (d, mi) in impact.machines.iter().enumerate() {
        let bound = mi.masters.div_ceil(m - 1) + 1;
        assert_eq!(mi.bound, bound);
        assert!(
            mi.max_extra <= bound,
            "{what}: if machine {d} dies a survivor takes {} > {bound}",
            mi.max_extra
        );
        assert_eq!(
            mi.extra.iter().map(|l| l.extra_masters).sum::<usize>(),
            mi.masters,
            "{what}: every master fails over"
        );
    }
    // 5. Pairs of machines share stores evenly: within one wherever the
    //    input allows it (always for 2-slot stores), else within two.
    let (lo, hi) = layout.pair_sharing_range();
    let allowed = if k == 2 || triple_pair_balance_possible(expected_use) {
        1
    } else {
        2
    };
    assert!(
        hi - lo <= allowed,
        "{what}: pairs share {lo}..{hi} stores (allowed spread {allowed})"
    );
    // The worst pair is the most-shared pair.
    let worst = impact.worst_pair.expect("at least two machines");
    if k == 2 {
        assert_eq!(
            (worst.stores_lost, worst.stores_without_redundancy),
            (hi, 0),
            "{what}"
        );
    } else {
        assert_eq!(
            (worst.stores_lost, worst.stores_without_redundancy),
            (0, hi),
            "{what}"
        );
    }
}

fn check_plan(p: &Plan, m: usize, s: usize, k: usize) {
    let what = format!("{m} machines × {s} slots, stores of {k}");
    let layout = p.layout();
    // Slots: ids unique, numbers in range, and the unused ones are exactly
    // the remainder, on distinct machines.
    let mut seen = BTreeSet::new();
    for slot in p.stores.iter().flat_map(|st| &st.slots).chain(&p.unused) {
        assert!(
            seen.insert(slot.id.clone()),
            "{what}: slot {} twice",
            slot.id
        );
        assert!(
            (1..=s as u32).contains(&slot.index),
            "{what}: slot number {}",
            slot.index
        );
        assert_eq!(slot.id, slot_id(&slot.machine, slot.index));
    }
    assert_eq!(seen.len(), m * s, "{what}: every slot accounted for");
    assert_eq!(p.unused.len(), (m * s) % k, "{what}: unused slots");
    assert_eq!(p.unused_reason.is_some(), !p.unused.is_empty());
    let unused_machines: BTreeSet<&str> = p.unused.iter().map(|u| u.machine.as_str()).collect();
    assert_eq!(
        unused_machines.len(),
        p.unused.len(),
        "{what}: unused slots on distinct machines"
    );
    let expected_use: Vec<usize> = p
        .machines
        .iter()
        .map(|name| s - usize::from(unused_machines.contains(name.as_str())))
        .collect();
    check_layout(&layout, k, &expected_use, &what);
}

/// The sweep: every machine count 3..=50 with slots per machine from a
/// representative set (all of them up to 12 machines, a rotating sample of
/// three beyond), for 2- and 3-slot stores.
#[test]
fn plans_have_their_properties_across_cluster_sizes() {
    const SLOTS: [usize; 9] = [2, 3, 4, 5, 7, 8, 16, 40, 80];
    let started = std::time::Instant::now();
    let mut plans = 0;
    for m in 3..=50usize {
        let machines = names(m);
        for (i, &s) in SLOTS.iter().enumerate() {
            if m > 12 && (i + m) % 3 != 0 {
                continue;
            }
            for k in [2usize, 3] {
                let p = plan(&machines, s as u32, (k - 1) as u32)
                    .unwrap_or_else(|e| panic!("{m}×{s}/{k}: {e}"));
                check_plan(&p, m, s, k);
                plans += 1;
            }
        }
    }
    eprintln!("{plans} plans checked in {:?}", started.elapsed());
}

#[test]
fn plans_are_deterministic() {
    for (m, s, r) in [
        (3, 5, 1),
        (7, 16, 2),
        (12, 40, 2),
        (20, 7, 1),
        (31, 8, 2),
        (50, 16, 2),
    ] {
        let a = plan(&names(m), s, r).unwrap();
        let b = plan(&names(m), s, r).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_json(), b.to_json());
    }
}

#[test]
fn pairs_on_three_machines_are_the_fastmail_layout() {
    // 3 machines × 4 slots, pairs: every machine masters 2 stores, one
    // replicated to each other machine, so a dead machine's load splits 1/1.
    let p = plan(&names(3), 4, 1).unwrap();
    assert_eq!(p.stores.len(), 6);
    let impact = p.failure_impact();
    for mi in &impact.machines {
        assert_eq!(mi.masters, 2);
        assert_eq!((mi.min_extra, mi.max_extra), (1, 1));
    }
    assert_eq!(impact.worst_pair.unwrap().stores_lost, 2);
}

#[test]
fn unused_slots_are_named_and_explained() {
    let p = plan(&names(5), 3, 1).unwrap();
    assert_eq!(p.unused.len(), 1);
    assert!(
        p.unused_reason
            .as_deref()
            .unwrap()
            .contains("not a multiple of 2")
    );
    let text = p.render_text();
    assert!(
        text.contains(&format!("unused: {}", p.unused[0].id)),
        "{text}"
    );
    let p = plan(&names(5), 4, 2).unwrap();
    assert_eq!(p.unused.len(), 2);
    // 5 machines × 4 slots in 3-slot stores cannot have pairs within one.
    assert!(p.pair_sharing_note.is_some());
}

#[test]
fn plan_refuses_bad_input() {
    use slotmail_directory::PlanError;
    assert!(matches!(plan(&names(3), 4, 0), Err(PlanError::Replicas(0))));
    assert!(matches!(plan(&names(3), 4, 3), Err(PlanError::Replicas(3))));
    assert!(matches!(
        plan(&names(2), 4, 2),
        Err(PlanError::TooFewMachines { .. })
    ));
    assert!(matches!(
        plan(&names(1), 4, 1),
        Err(PlanError::TooFewMachines { .. })
    ));
    assert!(matches!(plan(&names(3), 0, 1), Err(PlanError::NoSlots)));
    assert!(matches!(
        plan(&names(3), 1001, 1),
        Err(PlanError::Limit { .. })
    ));
    assert!(matches!(
        plan(&names(1001), 1, 1),
        Err(PlanError::Limit { .. })
    ));
    assert!(matches!(
        plan(&names(500), 1000, 1),
        Err(PlanError::Limit { .. })
    ));
    let dup = vec!["a".to_string(), "b".into(), "a".into()];
    assert!(matches!(
        plan(&dup, 2, 1),
        Err(PlanError::DuplicateMachine(_))
    ));
    let bad = vec!["a".to_string(), "B c".into(), "d".into()];
    assert!(matches!(
        plan(&bad, 2, 1),
        Err(PlanError::InvalidMachine(_))
    ));
}

#[test]
fn text_and_json_renderings() {
    let p = plan(&["a".into(), "b".into(), "c".into(), "d".into()], 3, 2).unwrap();
    let text = p.render_text();
    assert!(
        text.starts_with("4 machines × 3 slots, stores of 3 slots: 4 stores"),
        "{text}"
    );
    assert!(text.contains("if dies"));
    assert!(text.contains("worst pair:"));
    for st in &p.stores {
        assert!(text.contains(&st.slots[0].id));
    }
    let v: serde_json::Value = serde_json::from_str(&p.to_json()).unwrap();
    assert_eq!(v["plan"]["stores"].as_array().unwrap().len(), 4);
    assert_eq!(v["failure_impact"]["machines"].as_array().unwrap().len(), 4);
    assert_eq!(v["failure_impact"]["worst_pair"]["stores_lost"], 0);
    let back: Plan = serde_json::from_value(v["plan"].clone()).unwrap();
    assert_eq!(back, p);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_small_plans_have_their_properties(
        m in 3usize..=24,
        s in 1usize..=30,
        replicas in 1u32..=2,
        rotate in 0usize..24,
    ) {
        // Machine order must not matter for the properties.
        let mut machines = names(m);
        machines.rotate_left(rotate % m);
        let p = plan(&machines, s as u32, replicas).unwrap();
        check_plan(&p, m, s, replicas as usize + 1);
        prop_assert_eq!(plan(&machines, s as u32, replicas).unwrap(), p);
    }
}

// ---- rebalance ----

/// A topology holding a plan: machines at 127.0.0.x, `slots` slots per
/// machine (the plan's plus spare ones), stores as planned.
fn topology_of(p: &Plan, slots: u32) -> Topology {
    let mut t = Topology::default();
    for (i, name) in p.machines.iter().enumerate() {
        add_machine(&mut t, name, i, slots);
    }
    for st in &p.stores {
        t.stores.insert(
            st.id.clone(),
            Store {
                id: st.id.clone(),
                slots: st.slots.iter().map(|x| x.id.clone()).collect(),
                epoch: 1,
                sync: false,
                last_check: None,
            },
        );
    }
    t
}

fn add_machine(t: &mut Topology, name: &str, i: usize, slots: u32) {
    t.machines.insert(
        name.to_string(),
        Machine {
            name: name.to_string(),
            address: IpAddr::from([127, 0, 1, i as u8 + 2]),
        },
    );
    for n in 1..=slots {
        let id = slot_id(name, n);
        t.slots.insert(
            id.clone(),
            Slot {
                id: id.clone(),
                machine: name.to_string(),
                data_dir: format!("/srv/{id}"),
                imap_port: 10_000 + 3 * n as u16,
                lmtp_port: 10_001 + 3 * n as u16,
                sync_port: 10_002 + 3 * n as u16,
                weight: 1,
            },
        );
    }
}

/// The properties a rebalanced topology must have over the machines that
/// remain: every store intact and on distinct machines, nothing on a removed
/// machine, slot use even within one, masters balanced, failover bound.
fn check_rebalanced(before: &Topology, after: &Topology, live: &[String], k: usize, what: &str) {
    assert_eq!(after.stores.len(), before.stores.len(), "{what}");
    let mut layout = Layout::from_topology(after);
    let index: BTreeMap<String, usize> = layout
        .machines
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, m)| (m, i))
        .collect();
    let live_idx: BTreeSet<usize> = live.iter().map(|m| index[m]).collect();
    for (id, st) in &after.stores {
        assert_eq!(st.slots.len(), k, "{what}: store {id} size");
        for slot in &st.slots {
            assert!(
                live.iter()
                    .any(|m| Some(m.as_str()) == after.machine_of(slot)),
                "{what}: {id} still on a removed machine"
            );
        }
    }
    // Measure over the live machines only.
    let keep: Vec<usize> = (0..layout.machines.len())
        .filter(|i| live_idx.contains(i))
        .collect();
    let renumber: BTreeMap<usize, usize> = keep
        .iter()
        .enumerate()
        .map(|(new, &old)| (old, new))
        .collect();
    layout.machines = keep.iter().map(|&i| layout.machines[i].clone()).collect();
    for st in &mut layout.stores {
        for m in st.iter_mut() {
            *m = renumber[m];
        }
    }
    let m = layout.machine_count();
    assert_eq!(layout.store_with_shared_machine(), None, "{what}");
    let used = layout.slots_per_machine();
    let (umin, umax) = (used.iter().min().unwrap(), used.iter().max().unwrap());
    assert!(umax - umin <= 1, "{what}: slot use {used:?}");
    let t = layout.stores.len();
    for (v, &n) in layout.masters_per_machine().iter().enumerate() {
        assert!(
            n == t / m || n == t.div_ceil(m),
            "{what}: machine {v} masters {n} of {t}"
        );
    }
    for mi in layout.failure_impact().machines {
        assert!(
            mi.max_extra <= mi.bound,
            "{what}: if {} dies a survivor takes {} > {}",
            mi.machine,
            mi.max_extra,
            mi.bound
        );
    }
}

#[test]
fn rebalance_after_adding_one_machine() {
    for (m, s, r) in [
        (3, 4, 1),
        (4, 6, 1),
        (5, 8, 2),
        (6, 4, 2),
        (8, 16, 1),
        (9, 12, 2),
        (12, 8, 2),
        (16, 5, 1),
    ] {
        let what = format!("add a machine to {m}×{s}, {r} replica(s)");
        let p = plan(&names(m), s, r).unwrap();
        let before = topology_of(&p, s);
        let mut grown = before.clone();
        let new = "n00x".to_string();
        add_machine(&mut grown, &new, m, s);
        let mut live = names(m);
        live.push(new.clone());
        let moves = rebalance(&grown, &live).unwrap();
        // Every slot move is add, wait, drop; nothing is dropped before its
        // replacement is in sync.
        let after = apply_moves(&grown, &moves).unwrap();
        check_rebalanced(&grown, &after, &live, r as usize + 1, &what);
        let on_new = after
            .slots_on(&new)
            .filter(|x| after.store_of_slot(&x.id).is_some())
            .count();
        assert!(on_new > 0, "{what}: nothing moved to the new machine");
        assert_eq!(
            rebalance(&after, &live).unwrap(),
            Vec::<Move>::new(),
            "{what}: a second rebalance has nothing to do"
        );
    }
}

#[test]
fn rebalance_after_removing_one_machine() {
    for (m, s, r) in [
        (3, 4, 1),
        (4, 6, 1),
        (5, 8, 2),
        (6, 4, 2),
        (8, 16, 1),
        (9, 12, 2),
        (12, 8, 2),
        (16, 5, 1),
    ] {
        let what = format!("remove a machine from {m}×{s}, {r} replica(s)");
        let p = plan(&names(m), s, r).unwrap();
        // Spare slots to take the removed machine's share.
        let spare = (s as usize).div_ceil(m - 1) as u32;
        let before = topology_of(&p, s + spare);
        let mut live = names(m);
        let gone = live.remove(m / 2);
        let moves = rebalance(&before, &live).unwrap();
        let after = apply_moves(&before, &moves).unwrap();
        check_rebalanced(&before, &after, &live, r as usize + 1, &what);
        assert_eq!(
            after
                .slots_on(&gone)
                .filter(|x| after.store_of_slot(&x.id).is_some())
                .count(),
            0
        );
        // Each evacuated slot: add + wait + drop; each master moved: a switch.
        let adds = moves
            .iter()
            .filter(|mv| matches!(mv, Move::AddReplica { .. }))
            .count();
        assert_eq!(
            adds, s as usize,
            "{what}: one new replica per slot of the removed machine"
        );
    }
}

#[test]
fn rebalance_refuses_without_room_and_unknown_machines() {
    let p = plan(&names(4), 3, 1).unwrap();
    let t = topology_of(&p, 3);
    let live = names(3);
    assert!(matches!(
        rebalance(&t, &live),
        Err(slotmail_directory::PlanError::NoFreeSlot { .. })
    ));
    let mut live = names(4);
    live.push("zz".into());
    assert!(matches!(
        rebalance(&t, &live),
        Err(slotmail_directory::PlanError::UnknownMachine(_))
    ));
}

#[test]
fn apply_moves_refuses_invalid_steps() {
    let p = plan(&names(3), 2, 1).unwrap();
    let t = topology_of(&p, 3);
    let st = &p.stores[0];
    let master = st.slots[0].id.clone();
    let replica = st.slots[1].id.clone();
    let store = st.id.clone();
    // Dropping a replica of a 2-slot store leaves one slot.
    let bad = apply_moves(
        &t,
        &[Move::DropReplica {
            store: store.clone(),
            slot: replica.clone(),
        }],
    );
    assert!(bad.is_err());
    // Adding a slot on a machine the store uses already.
    let same = slot_id(&st.slots[0].machine, 3);
    assert!(
        apply_moves(
            &t,
            &[Move::AddReplica {
                store: store.clone(),
                slot: same
            }]
        )
        .is_err()
    );
    // Switching from a slot that is not the master.
    assert!(
        apply_moves(
            &t,
            &[Move::SwitchMaster {
                store: store.clone(),
                from: replica.clone(),
                to: master.clone()
            }]
        )
        .is_err()
    );
    let ok = apply_moves(
        &t,
        &[Move::SwitchMaster {
            store: store.clone(),
            from: master,
            to: replica,
        }],
    )
    .unwrap();
    assert_eq!(ok.stores[&store].epoch, 2);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_rebalances_keep_the_properties(
        m in 3usize..=12,
        s in 2u32..=12,
        replicas in 1u32..=2,
        add in any::<bool>(),
        which in 0usize..12,
    ) {
        prop_assume!(m > replicas as usize + 1 || add);
        let p = plan(&names(m), s, replicas).unwrap();
        let k = replicas as usize + 1;
        if add {
            let mut t = topology_of(&p, s);
            add_machine(&mut t, "n00x", m, s);
            let mut live = names(m);
            live.push("n00x".into());
            let after = apply_moves(&t, &rebalance(&t, &live).unwrap()).unwrap();
            check_rebalanced(&t, &after, &live, k, "random add");
        } else {
            let t = topology_of(&p, s + (s as usize).div_ceil(m - 1) as u32);
            let mut live = names(m);
            live.remove(which % m);
            let after = apply_moves(&t, &rebalance(&t, &live).unwrap()).unwrap();
            check_rebalanced(&t, &after, &live, k, "random remove");
        }
    }
}

/// The moves are valid for the real directory too: applied one by one
/// through the `Directory` trait they give what `apply_moves` says.
#[test]
fn rebalance_moves_apply_to_a_sqlite_directory() {
    use slotmail_directory::{Directory, SqliteDirectory, StoreSpec};
    let p = plan(&names(6), 4, 2).unwrap();
    let before = topology_of(&p, 6);
    let dir = tempfile::tempdir().unwrap();
    let d = SqliteDirectory::create(dir.path().join("directory.db")).unwrap();
    for machine in before.machines.values() {
        d.add_machine(machine).unwrap();
    }
    for slot in before.slots.values() {
        d.add_slot(slot).unwrap();
    }
    for st in before.stores.values() {
        d.create_store(
            &StoreSpec {
                id: st.id.clone(),
                slots: st.slots.clone(),
                sync: false,
            },
            "plan",
        )
        .unwrap();
    }
    let mut live = names(6);
    live.remove(2);
    let moves = rebalance(&before, &live).unwrap();
    for mv in &moves {
        match mv {
            Move::AddReplica { store, slot } => d.add_replica(store, slot).unwrap(),
            Move::WaitForSync { .. } => {}
            Move::DropReplica { store, slot } => d.drop_replica(store, slot).unwrap(),
            Move::SwitchMaster { store, to, .. } => {
                let epoch = d.snapshot().unwrap().stores[store].epoch;
                d.set_master(store, to, epoch, "rebalance").unwrap();
            }
            Move::ReorderReplicas { store, replicas } => {
                d.set_replica_order(store, replicas).unwrap()
            }
        }
    }
    let expected = apply_moves(&before, &moves).unwrap();
    let got = d.snapshot().unwrap();
    for (id, st) in &expected.stores {
        assert_eq!(got.stores[id].slots, st.slots, "store {id}");
        assert_eq!(got.stores[id].epoch, st.epoch, "store {id}");
    }
    let removed = &names(6)[2];
    d.remove_machine(removed).unwrap_err(); // its (now free) slots are still declared
    for slot in got.slots_on(removed) {
        d.remove_slot(&slot.id).unwrap();
    }
    d.remove_machine(removed).unwrap();
}

// The rebalance over the whole range the planner is tested on: 3 to 50
// machines, 2 to 80 slots per machine, pairs and 3-slot stores, with one
// to three machines added (with as many slots as the others) or one or two
// removed (the survivors having spare slots to take their share). After
// the planner's moves are applied the placement properties hold over the
// machines that remain, every move is valid in order (a slot is dropped
// only after its replacement was added and waited for), and a second
// rebalance has nothing to do.
proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn rebalances_across_cluster_sizes_keep_the_properties(
        m in 3usize..=50,
        s in 2u32..=80,
        replicas in 1u32..=2,
        change in 1usize..=3,
        add in any::<bool>(),
        which in 0usize..50,
    ) {
        let k = replicas as usize + 1;
        // Bounded work per case: at most 1,200 planned slots.
        let s = s.min((1200 / m) as u32).max(2);
        let p = plan(&names(m), s, replicas).unwrap();
        let (t, live) = if add {
            let mut t = topology_of(&p, s);
            let mut live = names(m);
            for i in 0..change {
                let name = format!("n{i:02}y");
                add_machine(&mut t, &name, m + i, s);
                live.push(name);
            }
            (t, live)
        } else {
            let gone = change.min(2).min(m - k);
            prop_assume!(gone >= 1);
            let spare = (s as usize * gone).div_ceil(m - gone) as u32;
            let t = topology_of(&p, s + spare);
            let mut live = names(m);
            for i in 0..gone {
                let at = (which + i * 7) % live.len();
                live.remove(at);
            }
            (t, live)
        };
        let moves = rebalance(&t, &live).unwrap();
        // Add, wait, [switch], drop: each drop comes after the add and the
        // wait of its replacement in the same store.
        let mut waited: BTreeMap<String, usize> = BTreeMap::new();
        let mut added: BTreeMap<String, usize> = BTreeMap::new();
        for mv in &moves {
            match mv {
                Move::AddReplica { store, .. } => *added.entry(store.clone()).or_default() += 1,
                Move::WaitForSync { store, .. } => *waited.entry(store.clone()).or_default() += 1,
                Move::DropReplica { store, .. } => {
                    let a = added.get(store).copied().unwrap_or(0);
                    let w = waited.get(store).copied().unwrap_or(0);
                    prop_assert!(a >= 1 && w >= 1, "{store}: drop before add and wait: {moves:?}");
                    *added.get_mut(store).unwrap() -= 1;
                    *waited.get_mut(store).unwrap() -= 1;
                }
                _ => {}
            }
        }
        let after = apply_moves(&t, &moves).unwrap();
        let what = format!(
            "{} {change} machine(s), {m}×{s}, {replicas} replica(s)",
            if add { "add" } else { "remove" }
        );
        check_rebalanced(&t, &after, &live, k, &what);
        prop_assert_eq!(rebalance(&after, &live).unwrap(), Vec::<Move>::new(), "{}", what);
    }
}
