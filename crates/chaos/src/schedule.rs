//! The fault schedule: a pure function of the seed and the run's length.

use crate::rng::Rng;
use serde::Serialize;

/// Every kind of fault the harness injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// kill -9 of one slot process (its supervisor restarts it).
    KillSlot,
    /// kill -9 of a machine's supervisor and slots; restarted after the hold.
    KillMachine,
    /// Replication to one replica partitioned (connections refused and cut).
    Partition,
    /// Replication to one replica stalled (connections open, no bytes move).
    Stall,
    /// Replication to one replica delayed per chunk.
    Delay,
    /// Replication streams to one replica cut mid-stream after a few bytes.
    Cut,
    /// The data volume of one machine full (ENOSPC) for the hold.
    DiskFull,
    /// One byte of a message file of a master flipped.
    CorruptMaster,
    /// One byte of a message file of a replica flipped.
    CorruptReplica,
    /// `ctl switchover` of a store while writes go on.
    Switchover,
    /// kill -9 of a machine holding a master, `ctl failover`, restart,
    /// `ctl reconcile` of the fenced slot.
    Failover,
}

pub const ALL: [Kind; 11] = [
    Kind::KillSlot,
    Kind::KillMachine,
    Kind::Partition,
    Kind::Stall,
    Kind::Delay,
    Kind::Cut,
    Kind::DiskFull,
    Kind::CorruptMaster,
    Kind::CorruptReplica,
    Kind::Switchover,
    Kind::Failover,
];

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::KillSlot => "kill_slot",
            Kind::KillMachine => "kill_machine",
            Kind::Partition => "partition",
            Kind::Stall => "stall",
            Kind::Delay => "delay",
            Kind::Cut => "cut",
            Kind::DiskFull => "disk_full",
            Kind::CorruptMaster => "corrupt_master",
            Kind::CorruptReplica => "corrupt_replica",
            Kind::Switchover => "switchover",
            Kind::Failover => "failover",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        ALL.into_iter().find(|k| k.name() == s)
    }

    /// How long the fault is held before it is healed (ms range).
    fn hold_ms(self) -> (u64, u64) {
        match self {
            Kind::KillSlot | Kind::CorruptMaster | Kind::CorruptReplica | Kind::Switchover => {
                (0, 0)
            }
            Kind::KillMachine | Kind::Failover => (1_000, 3_000),
            Kind::Partition | Kind::Stall | Kind::Delay | Kind::Cut | Kind::DiskFull => {
                (1_000, 4_000)
            }
        }
    }
}

/// One fault. `target` and `param` are raw draws, resolved against the
/// cluster when the fault is injected (e.g. `target % replicas`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fault {
    /// Offset from the start of the workload when it is due (ms).
    pub at_ms: u64,
    pub kind: Kind,
    pub hold_ms: u64,
    pub target: u64,
    pub param: u64,
}

/// Faults of `kinds` over `duration_ms`: the first round has every kind once,
/// in a seeded order; then kinds are drawn at random. Gaps between faults
/// are `gap_ms` (min, max).
pub fn schedule(seed: u64, duration_ms: u64, kinds: &[Kind], gap_ms: (u64, u64)) -> Vec<Fault> {
    assert!(!kinds.is_empty(), "no fault kinds");
    let mut rng = Rng::new(seed);
    let mut first: Vec<Kind> = kinds.to_vec();
    rng.shuffle(&mut first);
    let mut out = Vec::new();
    let mut at = rng.range(gap_ms.0, gap_ms.1);
    let mut i = 0;
    // The first round is always complete, however short the run.
    while i < first.len() || at < duration_ms {
        let kind = if i < first.len() {
            first[i]
        } else {
            kinds[rng.below(kinds.len())]
        };
        let (lo, hi) = kind.hold_ms();
        let hold_ms = rng.range(lo, hi);
        out.push(Fault {
            at_ms: at,
            kind,
            hold_ms,
            target: rng.next_u64(),
            param: rng.next_u64(),
        });
        at += hold_ms + rng.range(gap_ms.0, gap_ms.1);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_schedule_with_every_kind() {
        let a = schedule(7, 60_000, &ALL, (1_000, 3_000));
        let b = schedule(7, 60_000, &ALL, (1_000, 3_000));
        let c = schedule(8, 60_000, &ALL, (1_000, 3_000));
        assert_eq!(a, b);
        assert_ne!(a, c);
        for k in ALL {
            assert!(a[..ALL.len()].iter().any(|f| f.kind == k), "{k:?}");
        }
        // A run too short for one round still gets every kind.
        assert!(schedule(1, 0, &ALL, (1_000, 3_000)).len() >= ALL.len());
        assert!(a.windows(2).all(|w| w[0].at_ms < w[1].at_ms));
        assert_eq!(Kind::parse("disk_full"), Some(Kind::DiskFull));
    }
}
