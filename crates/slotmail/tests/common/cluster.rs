//! A cluster of real processes for end-to-end tests: `slotmail ctl` builds
//! it (machines are loopback addresses), `slotmail machine run` supervisors
//! run its slots, and Python's smtplib and imaplib deliver and read mail at
//! each user's master.

use super::*;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Longest wait for the cluster to become healthy.
pub const HEALTHY_TIMEOUT: Duration = Duration::from_secs(60);

/// Deliver (optionally) and read each user's INBOX subjects.
pub const MAIL: &str = r##"
import imaplib, json, smtplib, sys
out = {}
for u in json.loads(sys.argv[1]):
    if u.get("subject"):
        l = smtplib.LMTP(u["lmtp"][0], u["lmtp"][1])
        msg = "From: sender@example.org\r\nTo: %s@e2e.test\r\nSubject: %s\r\n\r\nhello %s\r\n" % (u["user"], u["subject"], u["user"])
        refused = l.sendmail("sender@example.org", [u["user"] + "@e2e.test"], msg.encode())
        assert not refused, refused
        l.quit()
    i = imaplib.IMAP4(u["imap"][0], u["imap"][1])
    i.login(u["user"], u["password"])
    typ, data = i.select("INBOX")
    assert typ == "OK", (typ, data)
    subjects = []
    if int(data[0]) > 0:
        typ, parts = i.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        subjects = [p[1].decode().strip() for p in parts if isinstance(p, tuple)]
    i.logout()
    out[u["user"]] = subjects
print(json.dumps(out))
"##;

/// A `slotmail machine run` process, stopped with SIGTERM when dropped.
pub struct Supervisor {
    pub name: String,
    pub child: Option<Child>,
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
        self.child
            .take()
            .is_none_or(|child| terminate(child, Duration::from_secs(20)))
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

/// The mail spec for one user: their master's addresses from `user show`.
pub fn mail_spec(cluster: &Path, user: &str, password: &str, subject: Option<&str>) -> Value {
    let show = ctl_json(cluster, &["user", "show", user], "", 0);
    let split = |s: &Value| {
        let s = s.as_str().unwrap();
        let (host, port) = s.rsplit_once(':').unwrap();
        serde_json::json!([host, port.parse::<u16>().unwrap()])
    };
    serde_json::json!({
        "user": user,
        "password": password,
        "subject": subject,
        "imap": split(&show["master"]["imap"]),
        "lmtp": split(&show["master"]["lmtp"]),
    })
}

pub fn mail(specs: &[Value]) -> Value {
    let out = python(MAIL, &[&serde_json::to_string(specs).unwrap()]);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A running cluster: `machines` (name, loopback address) with
/// `slots_per_machine` slots each, stores of 2 placed by `ctl plan`, one
/// supervisor per machine, and `users` (name, password) added through
/// `ctl user add`, each on the store with the fewest users.
pub struct TestCluster {
    pub dir: PathBuf,
    pub cluster: PathBuf,
    pub sups: Vec<Supervisor>,
}

impl TestCluster {
    pub fn start(
        dir: &Path,
        name: &str,
        machines: &[(&str, &str)],
        slots_per_machine: u32,
        users: &[(&str, &str)],
    ) -> TestCluster {
        let cluster = dir.join("cluster.toml");
        ctl_json(
            &cluster,
            &["init", "--name", name, "--allow-plaintext-auth"],
            "",
            0,
        );
        for (m, address) in machines {
            ctl_json(
                &cluster,
                &["machine", "add", m, "--address", address],
                "",
                0,
            );
            ctl_json(
                &cluster,
                &["slot", "add", m, "--count", &slots_per_machine.to_string()],
                "",
                0,
            );
        }
        ctl_json(&cluster, &["plan", "--replicas", "1", "--apply"], "", 0);
        let sups: Vec<Supervisor> = machines
            .iter()
            .map(|(m, _)| Supervisor::start(&cluster, dir, m))
            .collect();
        let c = TestCluster {
            dir: dir.to_path_buf(),
            cluster,
            sups,
        };
        c.wait_status("a healthy cluster", |code, _| code == 0);
        for (user, password) in users {
            ctl_json(
                &c.cluster,
                &["user", "add", user, "--password-stdin"],
                &format!("{password}\n"),
                0,
            );
        }
        c
    }

    /// Wait until `ctl status --json` satisfies `f`.
    pub fn wait_status(&self, what: &str, f: impl Fn(i32, &Value) -> bool) -> Value {
        wait_status(&self.cluster, &self.sups, what, f)
    }

    /// `ctl ARGS --json`, expecting `code`.
    pub fn ctl_json(&self, args: &[&str], code: i32) -> Value {
        ctl_json(&self.cluster, args, "", code)
    }

    /// The store of `user`.
    pub fn store_of_user(&self, user: &str) -> String {
        self.ctl_json(&["user", "show", user], 0)["store"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The tails of the supervisors' logs.
    pub fn logs(&self) -> String {
        self.sups
            .iter()
            .map(|s| {
                format!(
                    "--- {} log\n{}\n",
                    s.name,
                    tail(&std::fs::read_to_string(&s.log).unwrap_or_default(), 3000)
                )
            })
            .collect()
    }
}

/// A cluster of `machines` (name, loopback address) × 2 slots, stores of 2
/// placed by `plan --apply`, and a running supervisor per machine, healthy.
pub fn start_cluster(
    dir: &Path,
    name: &str,
    machines: &[(&str, &str)],
) -> (PathBuf, Vec<Supervisor>) {
    let cluster = dir.join("cluster.toml");
    ctl_json(
        &cluster,
        &["init", "--name", name, "--allow-plaintext-auth"],
        "",
        0,
    );
    for (m, address) in machines {
        ctl_json(
            &cluster,
            &["machine", "add", m, "--address", address],
            "",
            0,
        );
        ctl_json(&cluster, &["slot", "add", m, "--count", "2"], "", 0);
    }
    ctl_json(&cluster, &["plan", "--replicas", "1", "--apply"], "", 0);
    let sups: Vec<Supervisor> = machines
        .iter()
        .map(|(m, _)| Supervisor::start(&cluster, dir, m))
        .collect();
    wait_status(&cluster, &sups, "a healthy cluster", |code, _| code == 0);
    (cluster, sups)
}

/// The store whose master is on `machine`.
pub fn store_mastered_on(cluster: &Path, machine: &str) -> (String, String, String) {
    let stores = ctl_json(cluster, &["store", "list"], "", 0);
    let slots = ctl_json(cluster, &["slot", "list"], "", 0);
    let machine_of = |slot: &str| {
        slots["slots"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == slot)
            .unwrap()["machine"]
            .as_str()
            .unwrap()
            .to_string()
    };
    for s in stores["stores"].as_array().unwrap() {
        let master = s["master"].as_str().unwrap();
        if machine_of(master) == machine {
            let replica = s["replicas"][0].as_str().unwrap().to_string();
            return (
                s["id"].as_str().unwrap().to_string(),
                master.to_string(),
                replica,
            );
        }
    }
    panic!("no store mastered on {machine}: {stores}");
}

/// A `slotmail proxy run` process, stopped with SIGTERM when dropped.
pub struct Proxy {
    pub child: Option<Child>,
    pub log: PathBuf,
    pub imap: SocketAddr,
    pub imaps: SocketAddr,
    pub lmtp: SocketAddr,
}

impl Proxy {
    /// A proxy listening on 127.0.0.1.
    pub fn start(dir: &Path, cluster: &Path) -> Proxy {
        Proxy::start_on(dir, cluster, "127.0.0.1")
    }

    /// A proxy listening on loopback address `ip` (free ports).
    pub fn start_on(dir: &Path, cluster: &Path, ip: &str) -> Proxy {
        let cert = dir.join("proxy-cert.pem");
        let key = dir.join("proxy-key.pem");
        slotmail_slot::tls::write_self_signed(&["localhost".into()], &cert, &key).unwrap();
        let port = || -> SocketAddr { format!("{ip}:{}", free_port_on(ip)).parse().unwrap() };
        let (imap, imaps, lmtp) = (port(), port(), port());
        let config = dir.join("proxy.toml");
        std::fs::write(
            &config,
            format!(
                "version = 1\ncluster = \"{}\"\nhostname = \"proxy.test\"\n\n\
                 [imap]\nlisten = \"{imap}\"\ntls_listen = \"{imaps}\"\nallow_plaintext_auth = true\n\n\
                 [lmtp]\nlisten = \"{lmtp}\"\n\n\
                 [tls]\ncert = \"{}\"\nkey = \"{}\"\n\n\
                 [limits]\ndirectory_poll_ms = 100\nbackend_connect_timeout_ms = 1000\n",
                cluster.display(),
                cert.display(),
                key.display()
            ),
        )
        .unwrap();
        let log = dir.join("proxy.log");
        let child = slotmail()
            .args(["proxy", "run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn slotmail proxy run");
        for addr in [imap, imaps, lmtp] {
            wait_for_port(addr, Duration::from_secs(20));
        }
        Proxy {
            child: Some(child),
            log,
            imap,
            imaps,
            lmtp,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM and wait; whether it exited successfully within 10 s.
    pub fn stop(&mut self) -> bool {
        self.child
            .take()
            .is_none_or(|child| terminate(child, Duration::from_secs(10)))
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Continuous IMAP and LMTP writers (tests/python/writers.py) that write
/// through `proxy` to each user's current master, retrying on refusals,
/// BYE and dropped connections; stopped by [`Writers::stop`].
pub struct Writers {
    child: Option<Child>,
    stop: PathBuf,
    out: PathBuf,
}

impl Writers {
    pub fn start(cluster: &Path, dir: &Path, proxy: &Proxy, users: &[(&str, &str)]) -> Writers {
        let stop = dir.join("writers.stop");
        let out = dir.join("writers.json");
        let _ = std::fs::remove_file(&stop);
        let mut cmd = Command::new("python3");
        cmd.arg(python_dir().join("writers.py"))
            .arg("--proxy")
            .arg(proxy.imap.to_string())
            .arg(proxy.lmtp.to_string())
            .arg(env!("CARGO_BIN_EXE_slotmail"))
            .arg(cluster)
            .arg(&stop)
            .args(users.iter().map(|(u, p)| format!("{u}:{p}")))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(dir.join("writers.err")).unwrap());
        Writers {
            child: Some(cmd.spawn().expect("spawn writers.py")),
            stop,
            out,
        }
    }

    /// Stop the writers and return their report (written to `writers.json`).
    pub fn stop(mut self) -> (Value, PathBuf) {
        std::fs::write(&self.stop, b"stop").unwrap();
        let mut child = self.child.take().unwrap();
        let start = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "writers did not stop"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let text = std::fs::read_to_string(&self.out).unwrap();
        assert!(status.success(), "writers failed: {status}\n{text}");
        (serde_json::from_str(&text).unwrap(), self.out.clone())
    }
}

impl Drop for Writers {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = std::fs::write(&self.stop, b"stop");
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Run tests/python/mailcheck.py with `args`; its JSON output.
pub fn mailcheck(args: &[&str]) -> Value {
    let mut cmd = Command::new("python3");
    cmd.arg(python_dir().join("mailcheck.py"))
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let (out, in_time) = run_bounded(&mut cmd, Duration::from_secs(120));
    assert!(
        in_time && out.status.success(),
        "mailcheck {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// (host, port) of a user's current master's IMAP listener.
pub fn master_imap(cluster: &Path, user: &str) -> (String, String) {
    let show = ctl_json(cluster, &["user", "show", user], "", 0);
    let s = show["master"]["imap"].as_str().unwrap();
    let (h, p) = s.rsplit_once(':').unwrap();
    (h.to_string(), p.to_string())
}

/// The IMAP address of a slot, from `slot list`.
pub fn slot_imap(cluster: &Path, slot: &str) -> (String, String, String) {
    let slots = ctl_json(cluster, &["slot", "list"], "", 0);
    let s = slots["slots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == slot)
        .unwrap()
        .clone();
    (
        s["address"].as_str().unwrap().to_string(),
        s["imap_port"].to_string(),
        s["lmtp_port"].to_string(),
    )
}

/// `slotmail check --cluster FILE ARGS --json --no-progress`: (exit, report).
pub fn check_json(cluster: &Path, args: &[&str]) -> (i32, Value) {
    let mut cmd = slotmail();
    cmd.arg("check")
        .arg("--cluster")
        .arg(cluster)
        .args(args)
        .args(["--json", "--no-progress"]);
    let out = run(&mut cmd, "", false);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let doc: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "check {args:?}: not JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), doc)
}

/// The check, full, over every store: exit 0, no divergence, no failure,
/// `users` users compared in full.
pub fn assert_check_clean(cluster: &Path, users: usize) -> Value {
    let (code, doc) = check_json(cluster, &["--all", "--full"]);
    assert_eq!(code, 0, "the check: {doc}");
    assert_eq!(doc["diverged"], 0, "{doc}");
    assert_eq!(doc["failures"], serde_json::json!([]), "{doc}");
    assert_eq!(doc["users"], users, "{doc}");
    assert_eq!(doc["users_full"], users, "{doc}");
    assert_eq!(doc["lagging"], 0, "{doc}");
    doc
}

/// Every acknowledged message of `user` is on its master, byte for byte.
pub fn assert_all_acked_present(cluster: &Path, user: &str, password: &str, acked: &Path) -> Value {
    let (h, p) = master_imap(cluster, user);
    let v = mailcheck(&["verify", &h, &p, user, password, acked.to_str().unwrap()]);
    assert_eq!(v["missing"], serde_json::json!([]), "{user}: {v}");
    assert_eq!(v["mismatched"], serde_json::json!([]), "{user}: {v}");
    v
}

/// Wait until master and replica of `user`'s store show the same mailboxes
/// and messages (UIDVALIDITY, UIDs, flags, bytes) over IMAP.
pub fn wait_imap_equal(cluster: &Path, user: &str, password: &str) -> Value {
    let start = Instant::now();
    loop {
        let show = ctl_json(cluster, &["user", "show", user], "", 0);
        let (h, p) = master_imap(cluster, user);
        let replica = show["replicas"][0]["imap"].as_str().unwrap();
        let (rh, rp) = replica.rsplit_once(':').unwrap();
        let m = mailcheck(&["dump", &h, &p, user, password]);
        let r = mailcheck(&["dump", rh, rp, user, password]);
        if m == r {
            return m;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{user}: master and replica differ:\n{m}\n{r}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// SIGTERM `child` and wait up to `grace` (then SIGKILL); whether it exited
/// successfully in time.
fn terminate(mut child: Child, grace: Duration) -> bool {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.success();
        }
        if start.elapsed() > grace {
            let _ = child.kill();
            let _ = child.wait();
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
