//! Helpers for end-to-end tests of whole clusters: `slotmail machine run`
//! supervisors and `slotmail ctl` invocations.

use super::{run, slotmail, tail};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Longest wait for the cluster to become healthy.
pub const HEALTHY_TIMEOUT: Duration = Duration::from_secs(60);

/// A `slotmail machine run` process, stopped with SIGTERM when dropped.
pub struct Supervisor {
    pub name: String,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Supervisor {
    pub fn start(cluster: &Path, dir: &Path, name: &str) -> Supervisor {
        let log = dir.join(format!("machine-{name}.log"));
        let child = slotmail()
            .args(["machine", "run", "--cluster"])
            .arg(cluster)
            .args(["--machine", name])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn slotmail machine run");
        Supervisor {
            name: name.into(),
            child: Some(child),
            log,
        }
    }

    /// SIGTERM and wait; returns whether it exited successfully in time.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.success();
            }
            if start.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Run `slotmail ctl --cluster FILE ARGS` with `stdin`; (exit code, stdout, stderr).
pub fn ctl(cluster: &Path, args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut cmd = slotmail();
    cmd.arg("ctl").arg("--cluster").arg(cluster).args(args);
    let out = run(&mut cmd, stdin, false);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `ctl ARGS --json`, expecting `code`; the parsed document.
pub fn ctl_json(cluster: &Path, args: &[&str], stdin: &str, code: i32) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let (got, stdout, stderr) = ctl(cluster, &all, stdin);
    assert_eq!(
        got, code,
        "ctl {args:?}: exit {got}, expected {code}\nstdout: {stdout}\nstderr: {stderr}"
    );
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("ctl {args:?}: not JSON ({e}): {stdout}\nstderr: {stderr}"))
}

/// Wait until `ctl status --json` satisfies `f`; return the last document.
pub fn wait_status(
    cluster: &Path,
    sups: &[Supervisor],
    what: &str,
    f: impl Fn(i32, &Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let (code, stdout, stderr) = ctl(cluster, &["status", "--json"], "");
        let doc: Value = serde_json::from_str(&stdout).unwrap_or(Value::Null);
        if f(code, &doc) {
            return doc;
        }
        if start.elapsed() > HEALTHY_TIMEOUT {
            let logs: String = sups
                .iter()
                .map(|s| {
                    format!(
                        "--- {} log\n{}\n",
                        s.name,
                        tail(&std::fs::read_to_string(&s.log).unwrap_or_default(), 4000)
                    )
                })
                .collect();
            panic!("timed out waiting for {what}: exit {code}\n{stdout}\n{stderr}\n{logs}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn store_of<'a>(status: &'a Value, id: &str) -> &'a Value {
    status["stores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no store {id} in {status}"))
}
