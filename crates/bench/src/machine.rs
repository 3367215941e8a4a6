//! Facts about the machine a benchmark ran on, recorded with every report:
//! a figure without its machine is not a result.

use serde::Serialize;
use std::path::Path;

/// What the machine was, when, and where the data went.
#[derive(Debug, Clone, Serialize)]
pub struct MachineFacts {
    /// UTC, `YYYY-MM-DDTHH:MM:SSZ`.
    pub date: String,
    /// Logical CPUs this process may use.
    pub nproc: usize,
    /// `model name` of the first CPU in /proc/cpuinfo.
    pub cpu: Option<String>,
    /// MemTotal, MiB.
    pub memory_mib: Option<u64>,
    /// /proc/sys/kernel/osrelease.
    pub kernel: Option<String>,
    /// File system type of the benchmark directory (from /proc/mounts).
    pub filesystem: Option<String>,
    /// The device or source mounted there.
    pub device: Option<String>,
    /// Its mount point.
    pub mount_point: Option<String>,
}

impl MachineFacts {
    /// Gather the facts; `dir` is where the benchmark writes.
    pub fn gather(dir: &Path) -> MachineFacts {
        let mount = mount_of(dir);
        MachineFacts {
            date: utc_now(),
            nproc: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            cpu: read("/proc/cpuinfo").and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            }),
            memory_mib: read("/proc/meminfo").and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<u64>().ok())
                    .map(|kb| kb / 1024)
            }),
            kernel: read("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()),
            filesystem: mount.as_ref().map(|m| m.2.clone()),
            device: mount.as_ref().map(|m| m.0.clone()),
            mount_point: mount.map(|m| m.1),
        }
    }
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// (device, mount point, type) of the longest mount point that contains `dir`.
fn mount_of(dir: &Path) -> Option<(String, String, String)> {
    let dir = dir.canonicalize().ok()?;
    let mounts = read("/proc/mounts")?;
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (dev, at, kind) = (f.next()?, f.next()?, f.next()?);
            let at = at.replace("\\040", " ");
            dir.starts_with(&at)
                .then(|| (dev.to_string(), at, kind.to_string()))
        })
        .max_by_key(|(_, at, _)| at.len())
}

/// The current time, UTC, ISO 8601 to the second.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Inverse of `mbox::days_from_civil` (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mbox::days_from_civil;

    #[test]
    fn civil_round_trip() {
        for days in [-1, 0, 11_017, 19_877, 20_000, 60_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
    }

    #[test]
    fn gathers_something_about_this_machine() {
        let facts = MachineFacts::gather(Path::new("."));
        assert!(facts.nproc >= 1);
        assert_eq!(facts.date.len(), 20);
    }
}
