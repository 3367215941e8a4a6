//! Harness for end-to-end tests: real `slotmail` processes on loopback,
//! driven by independent clients (Python's standard library, isync).
#![allow(dead_code)]

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
