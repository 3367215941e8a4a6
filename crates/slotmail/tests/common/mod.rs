//! Harness for end-to-end tests: real `slotmail` processes on loopback,
//! driven by independent clients (Python's standard library, isync).
#![allow(dead_code)]

pub mod cluster;
pub mod mbsync;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub fn slotmail() -> Command {
    Command::new(env!("CARGO_BIN_EXE_slotmail"))
}

/// A free TCP port on 127.0.0.1 (bound and released; good enough on loopback).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait until something accepts connections on `addr`.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) {
    let start = Instant::now();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            start.elapsed() < timeout,
            "nothing listens on {addr} after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Run a command to completion and return its output; panics with stderr
/// when it fails and `expect_ok`.
pub fn run(cmd: &mut Command, stdin: &str, expect_ok: bool) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if expect_ok {
        assert!(
            out.status.success(),
            "{cmd:?} failed: {}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// Run a Python script (standard library only) with arguments.
pub fn python(script: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(script).args(args);
    run(&mut cmd, "", true)
}

/// One slot process with its own data directory and ports.
pub struct TestSlot {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub data: PathBuf,
    pub imap: SocketAddr,
    pub lmtp: SocketAddr,
    child: Option<Child>,
}

impl TestSlot {
    /// Prepare a slot in `dir` with users (name, password, admin); not started.
    pub fn create(dir: &Path, users: &[(&str, &str, bool)]) -> TestSlot {
        let data = dir.join("data");
        for (name, password, admin) in users {
            let mut cmd = slotmail();
            cmd.args(["slot", "user", "add", "--data"])
                .arg(&data)
                .arg(name)
                .arg("--password-stdin");
            if *admin {
                cmd.arg("--admin");
            }
            run(&mut cmd, &format!("{password}\n"), true);
        }
        let imap: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let lmtp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let config = dir.join("slot.toml");
        std::fs::write(
            &config,
            format!(
                "version = 1\nname = \"test\"\ndata = \"data\"\nhostname = \"slot.test\"\n\n[imap]\nlisten = \"{imap}\"\nallow_plaintext_auth = true\n\n[lmtp]\nlisten = \"{lmtp}\"\n"
            ),
        )
        .unwrap();
        TestSlot {
            dir: dir.to_path_buf(),
            config,
            data,
            imap,
            lmtp,
            child: None,
        }
    }

    /// Start the process and wait for its listeners.
    pub fn start(&mut self) {
        self.start_wrapped(&[]);
    }

    /// Like `start`, with the slot's command line run by the program and
    /// arguments `wrapper` (for example `faketime -f +5h`).
    pub fn start_wrapped(&mut self, wrapper: &[&str]) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::File::create(self.dir.join("slot.log")).unwrap();
        let mut command = match wrapper.split_first() {
            None => slotmail(),
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(slotmail().get_program());
                c
            }
        };
        let child = command
            .args(["slot", "run", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn slotmail slot run");
        self.child = Some(child);
        wait_for_port(self.lmtp, Duration::from_secs(20));
        wait_for_port(self.imap, Duration::from_secs(20));
    }

    /// SIGKILL the process (a crash).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM the process and wait for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let start = Instant::now();
            loop {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                if start.elapsed() > Duration::from_secs(10) {
                    child.kill().unwrap();
                    child.wait().unwrap();
                    panic!("slot did not stop within 10 s of SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// The slot's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("slot.log")).unwrap_or_default()
    }
}

impl Drop for TestSlot {
    fn drop(&mut self) {
        self.kill9();
    }
}

impl TestSlot {
    /// Like `start`, but waits for the LMTP listener only (for tests that
    /// check `serves_imap` and otherwise read the store).
    pub fn start_lmtp_only(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::File::create(self.dir.join("slot.log")).unwrap();
        let child = slotmail()
            .args(["slot", "run", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn slotmail slot run");
        self.child = Some(child);
        wait_for_port(self.lmtp, Duration::from_secs(20));
    }

    /// Whether something accepts connections on the IMAP address now.
    pub fn serves_imap(&self) -> bool {
        TcpStream::connect_timeout(&self.imap, Duration::from_millis(500)).is_ok()
    }
}

// ---------------------------------------------------------------------------
// Helpers for the IMAP conformance and mbsync tests.

/// Run a command to completion within `timeout` (killed after it), returning
/// its output and whether it finished in time.
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> (Output, bool) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    // Drain both pipes on threads so a chatty child never blocks.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_thread = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut v);
        v
    });
    let err_thread = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stderr, &mut v);
        v
    });
    let start = Instant::now();
    let mut in_time = true;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > timeout {
            in_time = false;
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let output = Output {
        status,
        stdout: out_thread.join().unwrap(),
        stderr: err_thread.join().unwrap(),
    };
    (output, in_time)
}

/// The directory of the Python scripts (`tests/python`).
pub fn python_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python")
}

/// Run `tests/python/<script>` with `args` against `slot` (at most
/// `timeout`), and return the JSON report it prints on its last line
/// (see `tests/python/imapt.py`). Panics, showing the script's output and
/// the slot's log, when the script fails, times out, or reports a failed
/// check.
pub fn python_report(
    slot: &TestSlot,
    script: &str,
    args: &[&str],
    timeout: Duration,
) -> serde_json::Value {
    python_report_with(&|| slot.log(), "slot", script, args, timeout)
}

/// [`python_report`] against any server: `log` gives its log so far (for
/// failure messages), `what` names it.
pub fn python_report_with(
    log: &dyn Fn() -> String,
    what: &str,
    script: &str,
    args: &[&str],
    timeout: Duration,
) -> serde_json::Value {
    let mut cmd = Command::new("python3");
    cmd.arg(python_dir().join(script))
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1");
    let started = Instant::now();
    let (out, in_time) = run_bounded(&mut cmd, timeout);
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let context = || {
        format!(
            "--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- {what} log (last 8000 bytes)\n{}",
            tail(&log(), 8000)
        )
    };
    assert!(
        in_time,
        "{script} did not finish within {timeout:?}\n{}",
        context()
    );
    assert!(
        out.status.success(),
        "{script} failed: {}\n{}",
        out.status,
        context()
    );
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let report: serde_json::Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("{script}: no JSON report ({e})\n{}", context()));
    let failures = report["failures"].as_array().cloned().unwrap_or_default();
    eprintln!(
        "{script}: {} checks, {} passed, {} failed in {:.2} s",
        report["checks"],
        report["passed"],
        failures.len(),
        elapsed.as_secs_f64()
    );
    if !report["info"].is_null() {
        eprintln!("{script} info: {}", report["info"]);
    }
    if !failures.is_empty() {
        let mut text = String::new();
        for f in &failures {
            text.push_str(&format!(
                "\n  FAILED {}\n      {}",
                f["check"].as_str().unwrap_or("?"),
                f["detail"].as_str().unwrap_or("").replace('\n', "\n      ")
            ));
        }
        panic!(
            "{script}: {} of {} checks failed:{text}\n--- stderr\n{stderr}\n--- {what} log (last 8000 bytes)\n{}",
            failures.len(),
            report["checks"],
            tail(&log(), 8000)
        );
    }
    report
}

/// The last `n` bytes of `s` (at a character boundary), without the ANSI
/// colour sequences of the slot's log.
pub fn tail(s: &str, n: usize) -> String {
    let mut plain = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
            continue;
        }
        plain.push(c);
    }
    let mut start = plain.len().saturating_sub(n);
    while !plain.is_char_boundary(start) {
        start += 1;
    }
    plain[start..].to_string()
}

impl TestSlot {
    /// Rewrite the (not yet started) slot's configuration file.
    pub fn edit_config(&self, edit: impl FnOnce(String) -> String) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        std::fs::write(&self.config, edit(text)).unwrap();
    }

    /// Whether the process is still running (it has not crashed).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => child.try_wait().unwrap().is_none(),
            None => false,
        }
    }
}

// ---------------------------------------------------------------------------
// Helpers for the replication tests: slots with a `[sync]` section, each on
// its own loopback address.

/// A free TCP port on `ip` (a loopback address; 127.0.0.0/8 binds on Linux).
pub fn free_port_on(ip: &str) -> u16 {
    TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The cluster secret of the replication tests, as its file holds it.
pub const TEST_SECRET_HEX: &str =
    "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// Write the cluster secret file into `dir`.
pub fn write_secret(dir: &Path) -> PathBuf {
    let path = dir.join("cluster.secret");
    std::fs::write(&path, format!("{TEST_SECRET_HEX}\n")).unwrap();
    path
}

impl TestSlot {
    /// Prepare (not start) a slot named `name` whose IMAP and LMTP listen on
    /// `ip`, with users (name, password, admin) and the body of its `[sync]`
    /// section (`sync`, without the header line).
    pub fn create_with_sync(
        dir: &Path,
        name: &str,
        ip: &str,
        users: &[(&str, &str, bool)],
        sync: &str,
    ) -> TestSlot {
        let mut slot = TestSlot::create(dir, users);
        slot.imap = format!("{ip}:{}", free_port_on(ip)).parse().unwrap();
        slot.lmtp = format!("{ip}:{}", free_port_on(ip)).parse().unwrap();
        std::fs::write(
            &slot.config,
            format!(
                "version = 1\nname = \"{name}\"\ndata = \"data\"\nhostname = \"{name}.test\"\n\n[imap]\nlisten = \"{}\"\nallow_plaintext_auth = true\n\n[lmtp]\nlisten = \"{}\"\n\n[sync]\n{sync}\n",
                slot.imap, slot.lmtp
            ),
        )
        .unwrap();
        slot
    }

    /// The slot's replication status file, parsed (`None` before the first
    /// write).
    pub fn replication_status(&self) -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(self.data.join("replication-status.json")).ok()?;
        serde_json::from_str(&text).ok()
    }
}

impl TestSlot {
    /// The running process's id (for `/proc/PID/status`).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}
