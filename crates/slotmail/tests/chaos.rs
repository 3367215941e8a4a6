//! The fault-injection harness (`slotmail chaos run`, crates/chaos,
//! docs/reliability.md), short runs with fixed seeds: a real cluster of
//! three machines (loopback addresses 127.0.0.241–245 and 127.0.0.246–250)
//! under IMAP and LMTP load from Python's imaplib and smtplib, with faults.
//! Each run must lose no acknowledged message, leave no divergence after
//! convergence, reuse no UID, and keep one master per epoch.
//!
//! - every fault kind at least once (seed 11), `failover` included: its
//!   reconcile and the rebuild of the old master (a full sync under load)
//!   make this the longest test (about 6 minutes on a loaded machine).
//!   `failover` was left out while a failover could reuse UIDs (finding 3
//!   of docs/reliability.md, fixed: the promoted master's UID gap and
//!   reconcile's renumbering of collisions).
//! - regression: a full disk on a replica stopped the replication of a user
//!   for good (a user changed while its round failed was never queued again);
//!   and a flipped byte in a message file was found by `ctl slot scrub` but
//!   never repaired in a running cluster.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// Run `slotmail chaos run ARGS --dir DIR`; the report, after asserting the
/// run completed with RESULT: OK.
fn chaos(dir: &Path, args: &[&str]) -> Value {
    let mut cmd = slotmail();
    cmd.args(["chaos", "run"]).args(args).arg("--dir").arg(dir);
    let (out, in_time) = run_bounded(&mut cmd, Duration::from_secs(CHAOS_RUN_MAX_SECS));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        in_time,
        "chaos run timed out\n{stdout}\n{}",
        tail(&stderr, 4000)
    );
    eprintln!("{}\n{stdout}", tail(&stderr, 6000));
    let report: Value = serde_json::from_slice(
        &std::fs::read(dir.join("report.json"))
            .unwrap_or_else(|e| panic!("no report ({e})\n{stdout}\n{}", tail(&stderr, 4000))),
    )
    .unwrap();
    assert_eq!(report["messages_lost"], 0, "{stdout}");
    assert_eq!(report["divergences"], 0, "{stdout}\n{}", report["check"]);
    for k in ["lost", "uid_reused", "flags_lost", "epoch_violations"] {
        assert_eq!(
            report["findings"][k],
            serde_json::json!([]),
            "{k}: {stdout}"
        );
    }
    assert!(out.status.success(), "chaos run: {}\n{stdout}", out.status);
    assert!(stdout.contains("RESULT: OK"), "{stdout}");
    assert!(
        report["messages_verified"].as_u64().unwrap() > 100,
        "{stdout}"
    );
    report
}

/// A run's time limit: the failover's rebuild waits up to 600 s itself, and
/// on a loaded machine the whole run has taken 844 s.
const CHAOS_RUN_MAX_SECS: u64 = 1500;

/// Every fault kind (see the top of this file).
const KINDS_IN_CI: [&str; 11] = [
    "kill_slot",
    "kill_machine",
    "partition",
    "stall",
    "delay",
    "cut",
    "disk_full",
    "corrupt_master",
    "corrupt_replica",
    "switchover",
    "failover",
];

#[test]
fn a_short_chaos_run_with_every_fault_loses_nothing_and_converges() {
    let tmp = tempfile::tempdir().unwrap();
    let report = chaos(
        &tmp.path().join("run"),
        &[
            "--seed",
            "11",
            "--duration",
            "30s",
            "--address-base",
            "241",
            "--faults",
            &KINDS_IN_CI.join(","),
        ],
    );
    for kind in KINDS_IN_CI {
        assert!(
            report["faults"][kind].as_u64().unwrap_or(0) >= 1,
            "{kind} was not injected: {}",
            report["faults"]
        );
    }
    for op in ["imap_append", "lmtp_delivery", "imap_flag", "imap_expunge"] {
        assert!(
            report["acknowledged"][op].as_u64().unwrap_or(0) >= 1,
            "no {op} acknowledged: {}",
            report["acknowledged"]
        );
    }
    // IMAP acknowledgements were attributed to the slots that gave them.
    assert!(report["findings"]["acks_attributed"].as_u64().unwrap() > 0);
}

#[test]
fn regression_disk_full_on_a_replica_stopped_replication_and_corrupt_files_were_never_repaired() {
    let tmp = tempfile::tempdir().unwrap();
    let report = chaos(
        &tmp.path().join("run"),
        &[
            "--seed",
            "2",
            "--duration",
            "15s",
            "--address-base",
            "246",
            "--faults",
            "disk_full,corrupt_master,corrupt_replica",
        ],
    );
    assert!(report["faults"]["disk_full"].as_u64().unwrap() >= 1);
    assert!(report["faults"]["corrupt_master"].as_u64().unwrap() >= 1);
    assert!(report["faults"]["corrupt_replica"].as_u64().unwrap() >= 1);
}
