//! Every `Directory` operation on `SqliteDirectory`, each refusal with its
//! typed error, and that a refused mutation leaves the directory unchanged
//! (snapshot and history compared before and after).

use slotmail_directory::{
    CheckResult, CheckStatus, Directory, DirectoryError, Machine, MovePhase, Slot, SqliteDirectory,
    SqliteOptions, StoreSpec, Topology,
};
use std::net::IpAddr;

fn machine(name: &str, last: u8) -> Machine {
    Machine {
        name: name.into(),
        address: IpAddr::from([127, 0, 0, last]),
    }
}

fn slot(id: &str, machine: &str, n: u16) -> Slot {
    Slot {
        id: id.into(),
        machine: machine.into(),
        data_dir: format!("/var/slotmail/{id}"),
        imap_port: 10_000 + n * 10,
        lmtp_port: 10_001 + n * 10,
        sync_port: 10_002 + n * 10,
        weight: 1,
    }
}

fn spec(id: &str, slots: &[&str]) -> StoreSpec {
    StoreSpec {
        id: id.into(),
        slots: slots.iter().map(|s| s.to_string()).collect(),
        sync: false,
    }
}

/// Machines a, b, c (127.0.0.2-4), slots a1 a2 b1 b2 c1 c2, store s1 = a1
/// (master) + b1, user alice in s1.
fn setup() -> (tempfile::TempDir, SqliteDirectory) {
    let dir = tempfile::tempdir().unwrap();
    let d = SqliteDirectory::create(dir.path().join("directory.db")).unwrap();
    for (i, m) in ["a", "b", "c"].iter().enumerate() {
        d.add_machine(&machine(m, 2 + i as u8)).unwrap();
        d.add_slot(&slot(&format!("{m}1"), m, 1)).unwrap();
        d.add_slot(&slot(&format!("{m}2"), m, 2)).unwrap();
    }
    d.create_store(&spec("s1", &["a1", "b1"]), "created")
        .unwrap();
    d.assign_user("alice", "s1").unwrap();
    (dir, d)
}

/// Everything a caller can read: the snapshot and the whole history.
fn state(d: &SqliteDirectory) -> (Topology, Vec<slotmail_directory::RoleChange>) {
    (d.snapshot().unwrap(), d.history(None, 1000).unwrap())
}

/// Run a mutation that must be refused, check the error and that nothing
/// changed.
fn refused(
    d: &SqliteDirectory,
    f: impl FnOnce(&SqliteDirectory) -> Result<(), DirectoryError>,
) -> DirectoryError {
    let before = state(d);
    let err = f(d).expect_err("mutation must be refused");
    assert!(err.is_refusal(), "{err:?}");
    assert_eq!(
        state(d),
        before,
        "a refused mutation changed the directory: {err}"
    );
    err
}

#[test]
fn machines_add_and_remove() {
    let (_t, d) = setup();
    let r0 = d.revision().unwrap();
    d.add_machine(&machine("d", 9)).unwrap();
    assert_eq!(d.revision().unwrap(), r0 + 1);
    assert_eq!(
        d.snapshot().unwrap().machines["d"].address,
        IpAddr::from([127, 0, 0, 9])
    );
    d.remove_machine("d").unwrap();
    assert!(!d.snapshot().unwrap().machines.contains_key("d"));

    let e = refused(&d, |d| d.add_machine(&machine("a", 50)));
    assert!(matches!(e, DirectoryError::MachineExists(m) if m == "a"));
    let e = refused(&d, |d| d.add_machine(&machine("z", 2)));
    assert!(matches!(e, DirectoryError::AddressInUse { machine, .. } if machine == "a"));
    let e = refused(&d, |d| d.add_machine(&machine("Bad Name", 60)));
    assert!(matches!(e, DirectoryError::InvalidId { .. }));
    let e = refused(&d, |d| d.remove_machine("nope"));
    assert!(matches!(e, DirectoryError::UnknownMachine(_)));
    // a holds master a1 and free slot a2.
    let e = refused(&d, |d| d.remove_machine("a"));
    match e {
        DirectoryError::MachineNotEmpty {
            machine,
            slots,
            masters,
        } => {
            assert_eq!(machine, "a");
            assert_eq!(slots, vec!["a1".to_string(), "a2".to_string()]);
            assert_eq!(masters, 1);
        }
        other => panic!("{other:?}"),
    }
    // c holds only free slots: still refused.
    let e = refused(&d, |d| d.remove_machine("c"));
    assert!(matches!(
        e,
        DirectoryError::MachineNotEmpty { masters: 0, .. }
    ));
}

#[test]
fn slots_add_and_remove() {
    let (_t, d) = setup();
    d.add_slot(&slot("c3", "c", 3)).unwrap();
    assert_eq!(d.snapshot().unwrap().slots["c3"], slot("c3", "c", 3));
    d.remove_slot("c3").unwrap();
    assert!(!d.snapshot().unwrap().slots.contains_key("c3"));

    let e = refused(&d, |d| d.add_slot(&slot("a1", "a", 7)));
    assert!(matches!(e, DirectoryError::SlotExists(_)));
    let e = refused(&d, |d| d.add_slot(&slot("x1", "x", 7)));
    assert!(matches!(e, DirectoryError::UnknownMachine(_)));
    let mut clash = slot("a3", "a", 3);
    clash.lmtp_port = slot("a1", "a", 1).imap_port;
    let e = refused(&d, |d| d.add_slot(&clash));
    assert!(matches!(e, DirectoryError::PortInUse { slot, .. } if slot == "a1"));
    let mut clash = slot("a3", "a", 3);
    clash.data_dir = "/var/slotmail/a2".into();
    let e = refused(&d, |d| d.add_slot(&clash));
    assert!(matches!(e, DirectoryError::DataDirInUse { slot, .. } if slot == "a2"));
    let mut bad = slot("a3", "a", 3);
    bad.sync_port = bad.imap_port;
    assert!(matches!(
        refused(&d, |d| d.add_slot(&bad)),
        DirectoryError::InvalidValue(_)
    ));
    let mut bad = slot("a3", "a", 3);
    bad.weight = 0;
    assert!(matches!(
        refused(&d, |d| d.add_slot(&bad)),
        DirectoryError::InvalidValue(_)
    ));
    let mut bad = slot("a3", "a", 3);
    bad.imap_port = 0;
    assert!(matches!(
        refused(&d, |d| d.add_slot(&bad)),
        DirectoryError::InvalidValue(_)
    ));
    let mut bad = slot("a3", "a", 3);
    bad.data_dir.clear();
    assert!(matches!(
        refused(&d, |d| d.add_slot(&bad)),
        DirectoryError::InvalidValue(_)
    ));
    assert!(matches!(
        refused(&d, |d| d.add_slot(&slot("A3", "a", 3))),
        DirectoryError::InvalidId { .. }
    ));
    // The same ports on another machine are fine (another address).
    d.add_slot(&slot("c3", "c", 1)).unwrap_err();
    d.add_slot(&Slot {
        id: "c3".into(),
        data_dir: "/other".into(),
        ..slot("c3", "c", 9)
    })
    .unwrap();

    let e = refused(&d, |d| d.remove_slot("a1"));
    assert!(matches!(e, DirectoryError::SlotInStore { store, .. } if store == "s1"));
    assert!(matches!(
        refused(&d, |d| d.remove_slot("zz")),
        DirectoryError::UnknownSlot(_)
    ));
}

#[test]
fn stores_create_and_remove() {
    let (_t, d) = setup();
    let st = d
        .create_store(
            &StoreSpec {
                sync: true,
                ..spec("s2", &["b2", "c1", "a2"])
            },
            "plan",
        )
        .unwrap();
    assert_eq!(st.epoch, 1);
    assert_eq!(st.master(), "b2");
    assert_eq!(st.replicas(), ["c1".to_string(), "a2".to_string()]);
    let snap = d.snapshot().unwrap();
    assert_eq!(snap.stores["s2"], st);
    assert!(snap.stores["s2"].sync);
    let h = d.history(Some("s2"), 10).unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(
        (
            h[0].old_master.as_deref(),
            h[0].new_master.as_str(),
            h[0].epoch
        ),
        (None, "b2", 1)
    );

    let e = refused(&d, |d| {
        d.create_store(&spec("s1", &["a2", "c2"]), "").map(drop)
    });
    assert!(matches!(e, DirectoryError::StoreExists(_)));
    let e = refused(&d, |d| {
        d.create_store(&spec("s3", &["a2", "c2", "a1"]), "")
            .map(drop)
    });
    assert!(matches!(e, DirectoryError::SlotInStore { .. }));
    d.add_slot(&slot("c3", "c", 3)).unwrap();
    let e = refused(&d, |d| {
        d.create_store(&spec("s3", &["c2", "c3"]), "").map(drop)
    });
    assert!(matches!(e, DirectoryError::SameMachine { machine, .. } if machine == "c"));
    let e = refused(&d, |d| d.create_store(&spec("s3", &["c2"]), "").map(drop));
    assert!(matches!(e, DirectoryError::TooFewSlots { min: 2, .. }));
    let e = refused(&d, |d| {
        d.create_store(&spec("s3", &["c2", "c2"]), "").map(drop)
    });
    assert!(matches!(e, DirectoryError::DuplicateSlot { .. }));
    let e = refused(&d, |d| {
        d.create_store(&spec("s3", &["c2", "zz"]), "").map(drop)
    });
    assert!(matches!(e, DirectoryError::UnknownSlot(_)));
    let nine: Vec<String> = (0..9).map(|i| format!("x{i}")).collect();
    let refs: Vec<&str> = nine.iter().map(String::as_str).collect();
    let e = refused(&d, |d| d.create_store(&spec("s3", &refs), "").map(drop));
    assert!(matches!(e, DirectoryError::TooManySlots { max: 8, .. }));
    let e = refused(&d, |d| {
        d.create_store(&spec("S 3", &["c2", "a2"]), "").map(drop)
    });
    assert!(matches!(e, DirectoryError::InvalidId { .. }));

    let e = refused(&d, |d| d.remove_store("s1"));
    assert!(matches!(e, DirectoryError::StoreHasUsers { users: 1, .. }));
    assert!(matches!(
        refused(&d, |d| d.remove_store("zz")),
        DirectoryError::UnknownStore(_)
    ));
    d.remove_store("s2").unwrap();
    assert!(
        d.snapshot()
            .unwrap()
            .free_slots()
            .iter()
            .any(|s| s.id == "b2")
    );
}

#[test]
fn a_recreated_store_never_reuses_an_epoch() {
    let (_t, d) = setup();
    d.create_store(&spec("s2", &["a2", "b2"]), "").unwrap();
    assert_eq!(d.set_master("s2", "b2", 1, "switch").unwrap(), 2);
    assert_eq!(d.set_master("s2", "a2", 2, "back").unwrap(), 3);
    d.remove_store("s2").unwrap();
    let st = d.create_store(&spec("s2", &["c2", "b2"]), "again").unwrap();
    assert_eq!(st.epoch, 4);
}

#[test]
fn replicas_add_and_drop() {
    let (_t, d) = setup();
    d.add_replica("s1", "c1").unwrap();
    assert_eq!(d.snapshot().unwrap().stores["s1"].slots, ["a1", "b1", "c1"]);
    let e = refused(&d, |d| d.add_replica("s1", "c2"));
    assert!(matches!(e, DirectoryError::SameMachine { machine, .. } if machine == "c"));
    let e = refused(&d, |d| d.add_replica("s1", "b1"));
    assert!(matches!(e, DirectoryError::SlotInStore { .. }));
    assert!(matches!(
        refused(&d, |d| d.add_replica("zz", "c2")),
        DirectoryError::UnknownStore(_)
    ));
    assert!(matches!(
        refused(&d, |d| d.add_replica("s1", "zz")),
        DirectoryError::UnknownSlot(_)
    ));

    d.drop_replica("s1", "b1").unwrap();
    assert_eq!(d.snapshot().unwrap().stores["s1"].slots, ["a1", "c1"]);
    let e = refused(&d, |d| d.drop_replica("s1", "c1"));
    assert!(matches!(e, DirectoryError::TooFewSlots { slots: 1, .. }));
    let e = refused(&d, |d| d.drop_replica("s1", "a1"));
    assert!(matches!(e, DirectoryError::IsMaster { .. }));
    let e = refused(&d, |d| d.drop_replica("s1", "b1"));
    assert!(matches!(e, DirectoryError::NotInStore { .. }));
    // Adding and dropping do not change the epoch.
    assert_eq!(d.snapshot().unwrap().stores["s1"].epoch, 1);
}

#[test]
fn replica_order_can_be_changed_without_an_epoch_change() {
    let (_t, d) = setup();
    d.add_replica("s1", "c1").unwrap();
    let order = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    d.set_replica_order("s1", &order(&["c1", "b1"])).unwrap();
    let st = d.snapshot().unwrap().stores["s1"].clone();
    assert_eq!(st.slots, ["a1", "c1", "b1"]);
    assert_eq!(st.epoch, 1);
    let e = refused(&d, |d| d.set_replica_order("s1", &order(&["c1"])));
    assert!(matches!(e, DirectoryError::InvalidValue(_)));
    let e = refused(&d, |d| d.set_replica_order("s1", &order(&["c1", "c1"])));
    assert!(matches!(e, DirectoryError::InvalidValue(_)));
    let e = refused(&d, |d| d.set_replica_order("s1", &order(&["a1", "b1"])));
    assert!(matches!(e, DirectoryError::IsMaster { .. }));
    let e = refused(&d, |d| d.set_replica_order("s1", &order(&["c2", "b1"])));
    assert!(matches!(e, DirectoryError::NotInStore { .. }));
    let e = refused(&d, |d| d.set_replica_order("zz", &order(&["c1", "b1"])));
    assert!(matches!(e, DirectoryError::UnknownStore(_)));
}

#[test]
fn set_master_is_a_compare_and_set_on_the_epoch() {
    let (_t, d) = setup();
    d.add_replica("s1", "c1").unwrap();
    assert_eq!(d.set_master("s1", "c1", 1, "switchover").unwrap(), 2);
    let st = d.snapshot().unwrap().stores["s1"].clone();
    // The old master takes the new master's place in the order.
    assert_eq!(st.slots, ["c1", "b1", "a1"]);
    assert_eq!(st.epoch, 2);
    // A second operator who read epoch 1 loses.
    let e = refused(&d, |d| d.set_master("s1", "b1", 1, "failover").map(drop));
    assert!(matches!(
        e,
        DirectoryError::StaleEpoch {
            expected: 1,
            actual: 2,
            ..
        }
    ));
    let e = refused(&d, |d| d.set_master("s1", "c1", 2, "").map(drop));
    assert!(matches!(e, DirectoryError::AlreadyMaster { .. }));
    let e = refused(&d, |d| d.set_master("s1", "a2", 2, "").map(drop));
    assert!(matches!(e, DirectoryError::NotInStore { .. }));
    let e = refused(&d, |d| d.set_master("zz", "a2", 2, "").map(drop));
    assert!(matches!(e, DirectoryError::UnknownStore(_)));
    let e = refused(&d, |d| {
        d.set_master("s1", "b1", 2, &"x".repeat(5000)).map(drop)
    });
    assert!(matches!(e, DirectoryError::InvalidValue(_)));

    let h = d.history(Some("s1"), 10).unwrap();
    assert_eq!(h.len(), 2);
    assert_eq!(h[0].old_master.as_deref(), Some("a1"));
    assert_eq!(h[0].new_master, "c1");
    assert_eq!(h[0].epoch, 2);
    assert_eq!(h[0].reason, "switchover");
    assert!(h[0].seq > h[1].seq);
    assert_eq!(d.history(Some("s1"), 1).unwrap().len(), 1);
    assert!(d.history(Some("other"), 10).unwrap().is_empty());
    assert!(matches!(
        d.history(None, 1_000_000),
        Err(DirectoryError::Limit { .. })
    ));
}

#[test]
fn fail_over_fences_the_old_master_in_the_same_change() {
    let (_t, d) = setup();
    d.add_replica("s1", "c1").unwrap();
    assert_eq!(d.fail_over("s1", "b1", 1, "failover: a down").unwrap(), 2);
    let t = d.snapshot().unwrap();
    assert_eq!(t.stores["s1"].slots, ["b1", "a1", "c1"]);
    assert!(t.is_fenced("a1"));
    let f = &t.fenced["a1"];
    assert_eq!((f.store.as_str(), f.epoch), ("s1", 2));
    assert_eq!(f.reason, "failover: a down");
    assert_eq!(
        d.history(Some("s1"), 1).unwrap()[0].reason,
        "failover: a down"
    );
    // A fenced slot cannot be promoted, by either path; a stale epoch loses.
    let e = refused(&d, |d| d.set_master("s1", "a1", 2, "back").map(drop));
    assert!(matches!(e, DirectoryError::InvalidValue(_)), "{e}");
    assert!(
        e.to_string()
            .contains("slot a1 is fenced: reconcile or rebuild it first"),
        "{e}"
    );
    let e = refused(&d, |d| d.fail_over("s1", "a1", 2, "back").map(drop));
    assert!(matches!(e, DirectoryError::InvalidValue(_)), "{e}");
    assert!(
        e.to_string()
            .contains("slot a1 is fenced: it cannot be promoted"),
        "{e}"
    );
    let e = refused(&d, |d| d.fail_over("s1", "c1", 1, "late").map(drop));
    assert!(matches!(e, DirectoryError::StaleEpoch { .. }), "{e}");
    // Unfencing makes it a plain replica again; twice is refused.
    let before = d.revision().unwrap();
    assert_eq!(d.unfence("a1").unwrap().slot, "a1");
    assert!(d.revision().unwrap() > before);
    assert!(!d.snapshot().unwrap().is_fenced("a1"));
    let e = refused(&d, |d| d.unfence("a1").map(drop));
    assert!(matches!(e, DirectoryError::NotFenced { .. }), "{e}");
    assert_eq!(d.set_master("s1", "a1", 2, "back").unwrap(), 3);
}

#[test]
fn concurrent_promotions_only_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("directory.db");
    {
        let d = SqliteDirectory::create(&path).unwrap();
        for (i, m) in ["a", "b", "c"].iter().enumerate() {
            d.add_machine(&machine(m, 2 + i as u8)).unwrap();
            d.add_slot(&slot(&format!("{m}1"), m, 1)).unwrap();
        }
        d.create_store(&spec("s1", &["a1", "b1", "c1"]), "")
            .unwrap();
    }
    // Eight connections (as separate processes would have) race to promote.
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let path = path.clone();
            std::thread::spawn(move || {
                let d = SqliteDirectory::open(&path).unwrap();
                let to = if i % 2 == 0 { "b1" } else { "c1" };
                d.set_master("s1", to, 1, &format!("operator {i}"))
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let wins = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "{results:?}");
    for r in &results {
        if let Err(e) = r {
            assert!(
                matches!(
                    e,
                    DirectoryError::StaleEpoch {
                        expected: 1,
                        actual: 2,
                        ..
                    }
                ),
                "{e:?}"
            );
        }
    }
    let d = SqliteDirectory::open(&path).unwrap();
    assert_eq!(d.snapshot().unwrap().stores["s1"].epoch, 2);
    assert_eq!(d.history(Some("s1"), 10).unwrap().len(), 2);
}

#[test]
fn users_assign_move_remove_and_route() {
    let (_t, d) = setup();
    d.create_store(&spec("s2", &["b2", "c1"]), "").unwrap();
    let r = d.route("alice").unwrap();
    assert_eq!(
        (r.store.as_str(), r.epoch, r.master.id.as_str()),
        ("s1", 1, "a1")
    );
    assert_eq!(r.address, IpAddr::from([127, 0, 0, 2]));
    assert_eq!(d.snapshot().unwrap().route("alice"), Some(r));

    let e = refused(&d, |d| d.assign_user("alice", "s2"));
    assert!(matches!(e, DirectoryError::UserExists { store, .. } if store == "s1"));
    assert!(matches!(
        refused(&d, |d| d.assign_user("bob", "zz")),
        DirectoryError::UnknownStore(_)
    ));
    assert!(matches!(
        refused(&d, |d| d.assign_user("b ob", "s1")),
        DirectoryError::InvalidId { .. }
    ));
    assert!(matches!(
        refused(&d, |d| d.assign_user("", "s1")),
        DirectoryError::InvalidId { .. }
    ));

    let e = refused(&d, |d| d.move_user("alice", "s1", "s1"));
    assert!(matches!(e, DirectoryError::AlreadyInStore { .. }));
    let e = refused(&d, |d| d.move_user("alice", "s2", "s1"));
    assert!(matches!(e, DirectoryError::AlreadyInStore { .. }));
    d.create_store(&spec("s3", &["a2", "c2"]), "").unwrap();
    let e = refused(&d, |d| d.move_user("alice", "s2", "s3"));
    assert!(matches!(e, DirectoryError::UserNotInStore { actual, .. } if actual == "s1"));
    assert!(matches!(
        refused(&d, |d| d.move_user("alice", "s1", "zz")),
        DirectoryError::UnknownStore(_)
    ));
    assert!(matches!(
        refused(&d, |d| d.move_user("bob", "s1", "s2")),
        DirectoryError::UnknownUser(_)
    ));
    d.move_user("alice", "s1", "s2").unwrap();
    assert_eq!(d.route("alice").unwrap().master.id, "b2");
    assert_eq!(d.snapshot().unwrap().users_per_store()["s2"], 1);

    d.remove_user("alice").unwrap();
    assert!(matches!(
        d.route("alice"),
        Err(DirectoryError::UnknownUser(_))
    ));
    assert!(matches!(
        refused(&d, |d| d.remove_user("alice")),
        DirectoryError::UnknownUser(_)
    ));
}

#[test]
fn a_user_move_marks_switches_and_ends_in_steps() {
    let (_t, d) = setup();
    d.create_store(&spec("s2", &["b2", "c1"]), "created")
        .unwrap();
    // Bad input: refused, nothing changed.
    assert!(matches!(
        refused(&d, |d| d.begin_move("bob", "s1", "s2").map(|_| ())),
        DirectoryError::UnknownUser(_)
    ));
    assert!(matches!(
        refused(&d, |d| d.begin_move("alice", "s1", "s1").map(|_| ())),
        DirectoryError::AlreadyInStore { .. }
    ));
    assert!(matches!(
        refused(&d, |d| d.begin_move("alice", "s1", "zz").map(|_| ())),
        DirectoryError::UnknownStore(_)
    ));
    assert!(matches!(
        refused(&d, |d| d.begin_move("alice", "s2", "s1").map(|_| ())),
        DirectoryError::AlreadyInStore { .. }
    ));
    assert!(matches!(
        refused(&d, |d| d.switch_move("alice").map(|_| ())),
        DirectoryError::NotMoving(_)
    ));

    let m = d.begin_move("alice", "s1", "s2").unwrap();
    assert_eq!(
        (m.phase, m.from.as_str(), m.to.as_str()),
        (MovePhase::Copying, "s1", "s2")
    );
    let t = d.snapshot().unwrap();
    assert_eq!(t.moves["alice"], m);
    // Still routed to the old store while copying.
    assert_eq!(d.route("alice").unwrap().store, "s1");
    // A second move, a delete, a raw move and removing the target are refused.
    assert!(matches!(
        refused(&d, |d| d.begin_move("alice", "s1", "s2").map(|_| ())),
        DirectoryError::UserMoving { .. }
    ));
    assert!(matches!(
        refused(&d, |d| d.remove_user("alice")),
        DirectoryError::UserMoving { .. }
    ));
    assert!(matches!(
        refused(&d, |d| d.move_user("alice", "s1", "s2")),
        DirectoryError::UserMoving { .. }
    ));
    assert!(matches!(
        refused(&d, |d| d.remove_store("s2")),
        DirectoryError::StoreHasUsers { .. }
    ));
    // The switch needs the final phase.
    assert!(matches!(
        refused(&d, |d| d.switch_move("alice").map(|_| ())),
        DirectoryError::MovePhase { .. }
    ));
    assert_eq!(
        d.set_move_phase("alice", MovePhase::Final).unwrap().phase,
        MovePhase::Final
    );
    assert_eq!(d.route("alice").unwrap().store, "s1");
    let r = d.revision().unwrap();
    let m = d.switch_move("alice").unwrap();
    assert_eq!(m.phase, MovePhase::Switched);
    assert_eq!(d.revision().unwrap(), r + 1);
    assert_eq!(d.route("alice").unwrap().store, "s2");
    assert_eq!(
        d.snapshot().unwrap().moves["alice"].phase,
        MovePhase::Switched
    );
    // After the switch there is no way back through the phases.
    assert!(matches!(
        refused(&d, |d| d
            .set_move_phase("alice", MovePhase::Copying)
            .map(|_| ())),
        DirectoryError::MovePhase { .. }
    ));
    assert_eq!(d.end_move("alice").unwrap().phase, MovePhase::Switched);
    assert!(d.snapshot().unwrap().moves.is_empty());
    assert!(matches!(
        refused(&d, |d| d.end_move("alice").map(|_| ())),
        DirectoryError::NotMoving(_)
    ));

    // An aborted move leaves the user where it was.
    d.begin_move("alice", "s2", "s1").unwrap();
    d.end_move("alice").unwrap();
    assert_eq!(d.route("alice").unwrap().store, "s2");
    d.remove_user("alice").unwrap();
}

#[test]
fn sync_flag_and_check_results() {
    let (_t, d) = setup();
    d.set_sync("s1", true).unwrap();
    assert!(d.snapshot().unwrap().stores["s1"].sync);
    d.set_sync("s1", false).unwrap();
    assert!(!d.snapshot().unwrap().stores["s1"].sync);
    assert!(matches!(
        refused(&d, |d| d.set_sync("zz", true)),
        DirectoryError::UnknownStore(_)
    ));

    let c = CheckResult {
        at_unix_ms: 1_700_000_000_000,
        status: CheckStatus::Differences,
        summary: "alice: INBOX uid 7 body differs".into(),
    };
    d.record_check("s1", &c).unwrap();
    assert_eq!(
        d.snapshot().unwrap().stores["s1"].last_check,
        Some(c.clone())
    );
    let c2 = CheckResult {
        status: CheckStatus::Ok,
        summary: "ok".into(),
        ..c
    };
    d.record_check("s1", &c2).unwrap();
    assert_eq!(
        d.snapshot().unwrap().stores["s1"].last_check,
        Some(c2.clone())
    );
    assert!(matches!(
        refused(&d, |d| d.record_check("zz", &c2)),
        DirectoryError::UnknownStore(_)
    ));
    let long = CheckResult {
        summary: "x".repeat(5000),
        ..c2
    };
    assert!(matches!(
        refused(&d, |d| d.record_check("s1", &long)),
        DirectoryError::InvalidValue(_)
    ));
}

#[test]
fn the_directory_survives_reopening_and_is_shared() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("directory.db");
    let a = SqliteDirectory::create(&path).unwrap();
    let b = SqliteDirectory::open(&path).unwrap();
    a.add_machine(&machine("a", 2)).unwrap();
    assert!(b.snapshot().unwrap().machines.contains_key("a"));
    assert_eq!(a.revision().unwrap(), b.revision().unwrap());
    drop((a, b));
    let again = SqliteDirectory::create(&path).unwrap();
    assert!(again.snapshot().unwrap().machines.contains_key("a"));
    again.verify().unwrap();
}

#[test]
fn open_refuses_missing_foreign_corrupt_and_newer_files() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.db");
    assert!(matches!(
        SqliteDirectory::open(&missing),
        Err(DirectoryError::NotFound { .. })
    ));
    assert!(!missing.exists());

    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![0x5a; 8192]).unwrap();
    let e = SqliteDirectory::open(&garbage).unwrap_err();
    assert!(matches!(e, DirectoryError::Corrupt { .. }), "{e:?}");
    assert!(!e.is_refusal());

    let foreign = dir.path().join("foreign.db");
    {
        let c = rusqlite::Connection::open(&foreign).unwrap();
        c.execute_batch("CREATE TABLE t (x INTEGER);").unwrap();
    }
    assert!(matches!(
        SqliteDirectory::create(&foreign),
        Err(DirectoryError::Corrupt { .. })
    ));
    assert!(matches!(
        SqliteDirectory::open(&foreign),
        Err(DirectoryError::Corrupt { .. })
    ));

    let newer = dir.path().join("newer.db");
    drop(SqliteDirectory::create(&newer).unwrap());
    {
        let c = rusqlite::Connection::open(&newer).unwrap();
        c.execute("UPDATE schema_version SET version = 99", [])
            .unwrap();
    }
    match SqliteDirectory::open(&newer) {
        Err(DirectoryError::UnsupportedSchema {
            found: 99,
            supported: 1,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn damage_inside_the_file_is_reported_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("directory.db");
    {
        let d = SqliteDirectory::create(&path).unwrap();
        for i in 0..200u16 {
            d.add_machine(&Machine {
                name: format!("m{i}"),
                address: IpAddr::from([10, 0, (i / 250) as u8, (i % 250) as u8]),
            })
            .unwrap();
        }
        // Fold the WAL into the main file so the damage below hits real pages.
        let c = rusqlite::Connection::open(&path).unwrap();
        c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
    }
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 4 * 4096);
    for b in &mut bytes[2 * 4096..] {
        *b = 0xa5;
    }
    std::fs::write(&path, &bytes).unwrap();
    let result = SqliteDirectory::open(&path).and_then(|d| d.snapshot().map(drop));
    match result {
        Err(DirectoryError::Corrupt { .. }) => {}
        other => panic!("damaged file not reported as corrupt: {other:?}"),
    }
}

#[test]
fn a_held_write_lock_gives_locked_after_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("directory.db");
    drop(SqliteDirectory::create(&path).unwrap());
    let d = SqliteDirectory::open_with(
        &path,
        &SqliteOptions {
            create: false,
            busy_timeout_ms: 200,
        },
    )
    .unwrap();
    let mut other = rusqlite::Connection::open(&path).unwrap();
    let tx = other
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    let started = std::time::Instant::now();
    let before = d.snapshot().unwrap(); // readers are not blocked by a writer
    let e = d.add_machine(&machine("a", 2)).unwrap_err();
    assert!(started.elapsed() >= std::time::Duration::from_millis(200));
    assert!(matches!(e, DirectoryError::Locked { .. }), "{e:?}");
    assert!(e.is_transient());
    drop(tx);
    assert_eq!(d.snapshot().unwrap(), before);
    d.add_machine(&machine("a", 2)).unwrap();
}

#[test]
fn the_trait_is_object_safe_and_shareable() {
    let (_t, d) = setup();
    let shared: std::sync::Arc<dyn Directory> = std::sync::Arc::new(d);
    let s2 = shared.clone();
    std::thread::spawn(move || s2.assign_user("bob", "s1").unwrap())
        .join()
        .unwrap();
    assert_eq!(shared.snapshot().unwrap().users.len(), 2);
}

/// Child role for `several_processes_share_one_directory`: when
/// `SLOTMAIL_DIRECTORY_CHILD` names a directory file, race for the
/// promotion and add users, then report the promotion's outcome.
#[test]
fn child_process_role() {
    let Ok(path) = std::env::var("SLOTMAIL_DIRECTORY_CHILD") else {
        return;
    };
    let who: usize = std::env::var("SLOTMAIL_DIRECTORY_CHILD_ID")
        .unwrap()
        .parse()
        .unwrap();
    let d = SqliteDirectory::open(&path).unwrap();
    let to = if who.is_multiple_of(2) { "b1" } else { "c1" };
    match d.set_master("s1", to, 1, &format!("process {who}")) {
        Ok(epoch) => println!("PROMOTED {epoch}"),
        Err(DirectoryError::StaleEpoch { actual: 2, .. }) => println!("STALE"),
        Err(e) => panic!("unexpected: {e}"),
    }
    for i in 0..25 {
        d.assign_user(&format!("p{who}-u{i}"), "s1").unwrap();
    }
}

#[test]
fn several_processes_share_one_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("directory.db");
    {
        let d = SqliteDirectory::create(&path).unwrap();
        for (i, m) in ["a", "b", "c"].iter().enumerate() {
            d.add_machine(&machine(m, 2 + i as u8)).unwrap();
            d.add_slot(&slot(&format!("{m}1"), m, 1)).unwrap();
        }
        d.create_store(&spec("s1", &["a1", "b1", "c1"]), "")
            .unwrap();
    }
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..4)
        .map(|i| {
            std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "child_process_role",
                    "--nocapture",
                    "--test-threads",
                    "1",
                ])
                .env("SLOTMAIL_DIRECTORY_CHILD", &path)
                .env("SLOTMAIL_DIRECTORY_CHILD_ID", i.to_string())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut promoted = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        if text.contains("PROMOTED 2") {
            promoted += 1;
        } else {
            assert!(text.contains("STALE"), "{text}");
        }
    }
    assert_eq!(promoted, 1, "exactly one process wins the promotion");
    let d = SqliteDirectory::open(&path).unwrap();
    let snap = d.snapshot().unwrap();
    assert_eq!(snap.users.len(), 100);
    assert_eq!(snap.stores["s1"].epoch, 2);
    d.verify().unwrap();
}

#[test]
fn a_store_has_at_most_eight_slots() {
    let dir = tempfile::tempdir().unwrap();
    let d = SqliteDirectory::create(dir.path().join("directory.db")).unwrap();
    let mut ids = Vec::new();
    for i in 0..9u8 {
        let m = format!("m{i}");
        d.add_machine(&machine(&m, 10 + i)).unwrap();
        d.add_slot(&slot(&format!("{m}-1"), &m, 1)).unwrap();
        ids.push(format!("{m}-1"));
    }
    let eight: Vec<&str> = ids[..8].iter().map(String::as_str).collect();
    d.create_store(&spec("big", &eight), "").unwrap();
    let e = refused(&d, |d| d.add_replica("big", &ids[8]));
    assert!(matches!(e, DirectoryError::TooManySlots { max: 8, .. }));
}
