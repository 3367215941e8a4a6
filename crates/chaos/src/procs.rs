//! The cluster's processes as the harness drives them: `slotmail ctl`,
//! `slotmail machine run` supervisors, `slotmail proxy run`, and a
//! size-limited tmpfs for one machine's data volume.

use crate::ChaosError;
use serde_json::Value;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Longest a `slotmail ctl` command may take: longer than reconcile and
/// rebuild wait for a full sync (`crate::REBUILD_TIMEOUT`).
pub const CTL_TIMEOUT: Duration = Duration::from_secs(crate::REBUILD_TIMEOUT.as_secs() + 120);

/// The binary and the cluster file.
#[derive(Debug, Clone)]
pub struct Ctl {
    pub slotmail: PathBuf,
    pub cluster: PathBuf,
}

impl Ctl {
    /// `slotmail ctl --cluster FILE ARGS`: (exit, stdout, stderr).
    pub fn run(&self, args: &[&str], stdin: &str) -> Result<(i32, String, String), ChaosError> {
        let mut child = Command::new(&self.slotmail)
            .arg("ctl")
            .arg("--cluster")
            .arg(&self.cluster)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| ChaosError::Spawn("slotmail ctl", e))?;
        if let Some(mut i) = child.stdin.take() {
            let _ = i.write_all(stdin.as_bytes());
        }
        let out = wait_output(child, CTL_TIMEOUT)
            .ok_or_else(|| ChaosError::Step(format!("ctl {args:?} timed out")))?;
        Ok((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    /// `ctl ARGS --json` that must exit 0: its document.
    pub fn json(&self, args: &[&str]) -> Result<Value, ChaosError> {
        let mut all = args.to_vec();
        all.push("--json");
        let (code, out, err) = self.run(&all, "")?;
        if code != 0 {
            return Err(ChaosError::Step(format!(
                "ctl {args:?}: exit {code}: {out} {err}"
            )));
        }
        serde_json::from_str(&out)
            .map_err(|e| ChaosError::Step(format!("ctl {args:?}: not JSON ({e}): {out}")))
    }

    /// `ctl ARGS --json` whatever its exit: (exit, document or Null, stderr).
    pub fn json_any(&self, args: &[&str]) -> Result<(i32, Value, String), ChaosError> {
        let mut all = args.to_vec();
        all.push("--json");
        let (code, out, err) = self.run(&all, "")?;
        Ok((code, serde_json::from_str(&out).unwrap_or(Value::Null), err))
    }
}

/// Wait for a child's output for at most `limit` (then kill it).
pub fn wait_output(mut child: Child, limit: Duration) -> Option<std::process::Output> {
    let start = Instant::now();
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let t_out = std::thread::spawn(move || {
        let mut b = Vec::new();
        if let Some(o) = out.as_mut() {
            let _ = std::io::Read::read_to_end(o, &mut b);
        }
        b
    });
    let t_err = std::thread::spawn(move || {
        let mut b = Vec::new();
        if let Some(o) = err.as_mut() {
            let _ = std::io::Read::read_to_end(o, &mut b);
        }
        b
    });
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Some(std::process::Output {
        status,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    })
}

/// SIGTERM, then SIGKILL after `grace`.
pub fn terminate(child: &mut Child, grace: Duration) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let start = Instant::now();
    while start.elapsed() < grace {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// kill -9 a process we did not spawn ourselves (a supervisor's slot).
pub fn kill9(pid: u64) {
    let _ = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A `slotmail machine run` process.
pub struct Supervisor {
    pub name: String,
    pub child: Option<Child>,
    pub log: PathBuf,
}

impl Supervisor {
    pub fn start(ctl: &Ctl, dir: &Path, name: &str) -> Result<Supervisor, ChaosError> {
        let log = dir.join(format!("machine-{name}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| ChaosError::Io(log.clone(), e))?;
        let child = Command::new(&ctl.slotmail)
            .args(["machine", "run", "--cluster"])
            .arg(&ctl.cluster)
            .args(["--machine", name])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .map_err(|e| ChaosError::Spawn("slotmail machine run", e))?;
        Ok(Supervisor {
            name: name.into(),
            child: Some(child),
            log,
        })
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// kill -9 of the supervisor (its slots are the caller's to kill).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            terminate(&mut c, Duration::from_secs(20));
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `slotmail proxy run` process.
pub struct Proxy {
    pub child: Option<Child>,
    pub log: PathBuf,
    pub imap: SocketAddr,
    pub lmtp: SocketAddr,
}

impl Proxy {
    pub fn start(ctl: &Ctl, dir: &Path, ip: std::net::IpAddr) -> Result<Proxy, ChaosError> {
        let cert = dir.join("proxy-cert.pem");
        let key = dir.join("proxy-key.pem");
        slotmail_slot::tls::write_self_signed(&["localhost".into()], &cert, &key)
            .map_err(|e| ChaosError::Step(format!("proxy certificate: {e}")))?;
        let port = || -> Result<SocketAddr, ChaosError> {
            let l = std::net::TcpListener::bind(SocketAddr::new(ip, 0))
                .map_err(|e| ChaosError::Io(PathBuf::from(ip.to_string()), e))?;
            l.local_addr()
                .map_err(|e| ChaosError::Io(PathBuf::from(ip.to_string()), e))
        };
        let (imap, imaps, lmtp) = (port()?, port()?, port()?);
        let config = dir.join("proxy.toml");
        let text = format!(
            "version = 1\ncluster = \"{}\"\nhostname = \"proxy.chaos\"\n\n\
             [imap]\nlisten = \"{imap}\"\ntls_listen = \"{imaps}\"\nallow_plaintext_auth = true\n\n\
             [lmtp]\nlisten = \"{lmtp}\"\n\n\
             [tls]\ncert = \"{}\"\nkey = \"{}\"\n\n\
             [limits]\ndirectory_poll_ms = 100\nbackend_connect_timeout_ms = 1000\n",
            ctl.cluster.display(),
            cert.display(),
            key.display()
        );
        std::fs::write(&config, text).map_err(|e| ChaosError::Io(config.clone(), e))?;
        let log = dir.join("proxy.log");
        let child = Command::new(&ctl.slotmail)
            .args(["proxy", "run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).map_err(|e| ChaosError::Io(log.clone(), e))?)
            .spawn()
            .map_err(|e| ChaosError::Spawn("slotmail proxy run", e))?;
        for addr in [imap, imaps, lmtp] {
            wait_for_port(addr, Duration::from_secs(30))?;
        }
        Ok(Proxy {
            child: Some(child),
            log,
            imap,
            lmtp,
        })
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            terminate(&mut c, Duration::from_secs(10));
        }
    }
}

pub fn wait_for_port(addr: SocketAddr, limit: Duration) -> Result<(), ChaosError> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(ChaosError::Step(format!("nothing listens on {addr}")))
}

/// A size-limited tmpfs mounted for the harness, unmounted when dropped
/// (also when a panic unwinds).
pub struct Tmpfs {
    pub path: PathBuf,
}

impl Tmpfs {
    /// `mount -t tmpfs -o size=SIZE tmpfs PATH`; fails loudly if it cannot.
    pub fn mount(path: &Path, size_mib: u64) -> Result<Tmpfs, ChaosError> {
        std::fs::create_dir_all(path).map_err(|e| ChaosError::Io(path.to_path_buf(), e))?;
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size_mib}m,mode=0755"),
                "tmpfs",
            ])
            .arg(path)
            .output()
            .map_err(|e| ChaosError::Spawn("mount", e))?;
        if !out.status.success() {
            return Err(ChaosError::Mount(format!(
                "mount -t tmpfs on {} failed ({}): {} — the disk-full fault needs root (CAP_SYS_ADMIN) to mount a size-limited tmpfs",
                path.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(Tmpfs {
            path: path.to_path_buf(),
        })
    }

    /// Fill the file system with a ballast file until ENOSPC; the bytes written.
    pub fn fill(&self) -> Result<(PathBuf, u64), ChaosError> {
        let ballast = self.path.join("chaos-ballast");
        let mut f =
            std::fs::File::create(&ballast).map_err(|e| ChaosError::Io(ballast.clone(), e))?;
        let chunk = vec![0u8; 1 << 20];
        let mut written = 0u64;
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => return Err(ChaosError::Io(ballast, e)),
            }
        }
        let _ = f.sync_all();
        Ok((ballast, written))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Something still holds it open (a slot being killed): detach.
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}
