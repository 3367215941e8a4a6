//! `slotmail demo`: a whole replicated cluster on this machine in one
//! command.
//!
//! First run: a cluster (`DIR/cluster.toml`, its directory and secret) of
//! three machines on distinct loopback addresses with two slots each,
//! stores paired by the placement planner, an admin and demo users with
//! random passwords (written to the 0600 file `DIR/credentials.txt`), and
//! sample mail delivered through the proxy's LMTP. Every run: one
//! `slotmail machine run` supervisor per machine (each runs its slots as
//! processes) and a proxy on 127.0.0.1 for IMAP and LMTP, then the live
//! replication lag until Ctrl-C, which stops every process.
//!
//! Everything is done the way an operator would do it — the demo runs
//! `slotmail ctl` commands and the same binaries — so what it prints can be
//! repeated by hand (docs/operations.md).

use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::io::{IsTerminal, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The machines, named m1, m2, m3, on consecutive loopback addresses.
const MACHINES: usize = 3;
/// Slots per machine.
const SLOTS_PER_MACHINE: u32 = 2;
/// Demo users besides the admin.
const DEMO_USERS: [&str; 3] = ["alice", "bob", "carol"];
/// The admin account (may act as any user: operators, the check).
const ADMIN: &str = "admin";
/// Longest wait for the cluster to come up.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// Longest wait for every process to exit after Ctrl-C, all together.
const STOP_TIMEOUT: Duration = Duration::from_millis(4500);
/// How often the lag line is refreshed.
const LAG_INTERVAL: Duration = Duration::from_secs(1);

/// What the user asked for.
pub struct DemoOptions {
    pub dir: PathBuf,
    pub imap_port: u16,
    pub lmtp_port: u16,
    /// The first machine's address; the others follow it.
    pub first_machine: Ipv4Addr,
}

pub fn run(options: DemoOptions) -> Result<()> {
    std::fs::create_dir_all(&options.dir)
        .with_context(|| format!("creating {}", options.dir.display()))?;
    let dir = options.dir.canonicalize()?;
    let cluster = dir.join("cluster.toml");
    let credentials = dir.join("credentials.txt");
    let imap: SocketAddr = ([127, 0, 0, 1], options.imap_port).into();
    let lmtp: SocketAddr = ([127, 0, 0, 1], options.lmtp_port).into();
    for addr in [imap, lmtp] {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            bail!(
                "{addr} is already in use (another demo running?); choose other ports with --imap-port/--lmtp-port"
            );
        }
    }
    let first_run = !cluster.exists();
    let ctl = Ctl {
        cluster: cluster.clone(),
    };
    if first_run {
        println!("creating the cluster in {} ...", dir.display());
        create_cluster(&dir, &ctl, options.first_machine)?;
    }
    let machines = machine_names(&ctl)?;
    let proxy_config = write_proxy_config(&dir, imap, lmtp)?;
    std::fs::create_dir_all(dir.join("logs"))?;

    let mut procs = Processes::default();
    for m in &machines {
        procs.spawn(
            &format!("machine {m}"),
            Command::new(std::env::current_exe()?)
                .args(["machine", "run", "--cluster"])
                .arg(&cluster)
                .args(["--machine", m]),
            &dir.join("logs").join(format!("machine-{m}.log")),
        )?;
    }
    wait_until(
        &mut procs,
        "every store's master and replicas are up",
        || {
            let (_, doc) = ctl.json(&["status"], "")?;
            Ok(all_slots_up(&doc))
        },
    )?;
    if first_run {
        create_users(&ctl, &credentials)?;
    }
    procs.spawn(
        "proxy",
        Command::new(std::env::current_exe()?)
            .args(["proxy", "run", "--config"])
            .arg(&proxy_config),
        &dir.join("logs").join("proxy.log"),
    )?;
    wait_until(&mut procs, "the proxy listens", || {
        Ok([imap, lmtp]
            .iter()
            .all(|a| std::net::TcpStream::connect_timeout(a, Duration::from_millis(200)).is_ok()))
    })?;
    if first_run {
        deliver_samples(lmtp)?;
    }

    println!("slotmail demo is running (data in {})", dir.display());
    println!();
    println!("  IMAP   {imap}   (STARTTLS offered; plaintext login allowed on loopback)");
    println!("  LMTP   {lmtp}");
    println!(
        "  users  {} and {ADMIN} (admin); passwords in {}",
        DEMO_USERS.join(", "),
        credentials.display()
    );
    println!(
        "  ctl    slotmail ctl --cluster {} status",
        cluster.display()
    );
    println!();
    println!(
        "  try:   python3 -c \"import imaplib; i=imaplib.IMAP4('127.0.0.1', {}); i.login('alice', open('{}').read().split('alice ')[1].split()[0]); print(i.select('INBOX'))\"",
        imap.port(),
        credentials.display()
    );
    println!();
    let (_, status_text) = ctl.text(&["status"])?;
    print!("{status_text}");
    println!();
    println!("Ctrl-C stops everything.");
    std::io::stdout().flush()?;
    show_lag_until_signal(&ctl, &mut procs)?;
    println!();
    println!("stopping...");
    procs.stop_all()?;
    println!("stopped.");
    Ok(())
}

/// `slotmail ctl --cluster FILE ...` as a child process.
struct Ctl {
    cluster: PathBuf,
}

impl Ctl {
    fn command(&self, args: &[&str]) -> Result<Command> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg("ctl")
            .arg("--cluster")
            .arg(&self.cluster)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Ok(cmd)
    }

    fn output(&self, args: &[&str], stdin: &str) -> Result<std::process::Output> {
        let mut child = self
            .command(args)?
            .spawn()
            .context("running slotmail ctl")?;
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(stdin.as_bytes())?;
        Ok(child.wait_with_output()?)
    }

    /// Run with `--json`; (exit code, document).
    fn json(&self, args: &[&str], stdin: &str) -> Result<(i32, Value)> {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.output(&all, stdin)?;
        let code = out.status.code().unwrap_or(-1);
        let doc = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        Ok((code, doc))
    }

    /// Run with `--json` and require exit 0.
    fn must(&self, args: &[&str], stdin: &str) -> Result<Value> {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.output(&all, stdin)?;
        if !out.status.success() {
            bail!(
                "slotmail ctl {} failed: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            );
        }
        Ok(serde_json::from_slice(&out.stdout).unwrap_or(Value::Null))
    }

    /// Run for its text output; (exit code, stdout).
    fn text(&self, args: &[&str]) -> Result<(i32, String)> {
        let out = self.output(args, "")?;
        Ok((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ))
    }
}

/// `ctl init`, three machines with two slots each, stores by `plan --apply`.
fn create_cluster(dir: &Path, ctl: &Ctl, first_machine: Ipv4Addr) -> Result<()> {
    let out = ctl.output(
        &["init", "--name", "demo", "--allow-plaintext-auth", "--json"],
        "",
    )?;
    if !out.status.success() {
        bail!(
            "slotmail ctl init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let base = u32::from(first_machine);
    for i in 0..MACHINES {
        let name = format!("m{}", i + 1);
        let address = Ipv4Addr::from(base + i as u32);
        if !address.is_loopback() {
            bail!("machine address {address} is not a loopback address");
        }
        ctl.must(
            &["machine", "add", &name, "--address", &address.to_string()],
            "",
        )?;
        ctl.must(
            &[
                "slot",
                "add",
                &name,
                "--count",
                &SLOTS_PER_MACHINE.to_string(),
            ],
            "",
        )?;
    }
    ctl.must(&["plan", "--replicas", "1", "--apply"], "")?;
    let (cert, key) = tls_paths(dir);
    slotmail_slot::tls::write_self_signed(
        &["localhost".to_string(), "127.0.0.1".to_string()],
        &cert,
        &key,
    )?;
    Ok(())
}

fn tls_paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("proxy-cert.pem"), dir.join("proxy-key.pem"))
}

/// The machines of the cluster, by name.
fn machine_names(ctl: &Ctl) -> Result<Vec<String>> {
    let doc = ctl.must(&["machine", "list"], "")?;
    let names: Vec<String> = doc["machines"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .filter_map(|m| m["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        bail!(
            "the demo cluster has no machines (is {} intact?)",
            ctl.cluster.display()
        );
    }
    Ok(names)
}

/// Whether `ctl status --json` shows every store's slots running.
fn all_slots_up(doc: &Value) -> bool {
    let Some(stores) = doc["stores"].as_array() else {
        return false;
    };
    !stores.is_empty()
        && stores.iter().all(|s| {
            std::iter::once(&s["master"])
                .chain(s["replicas"].as_array().into_iter().flatten())
                .all(|slot| slot["healthy"].as_bool() == Some(true))
        })
}

/// The admin and the demo users, with random passwords in a 0600 file.
fn create_users(ctl: &Ctl, credentials: &Path) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(credentials)
        .with_context(|| format!("creating {}", credentials.display()))?;
    writeln!(file, "# slotmail demo accounts: user password")?;
    for (name, admin) in
        std::iter::once((ADMIN, true)).chain(DEMO_USERS.iter().map(|u| (*u, false)))
    {
        let password = random_password();
        let mut args = vec!["user", "add", name, "--password-stdin"];
        if admin {
            args.push("--admin");
        }
        ctl.must(&args, &format!("{password}\n"))?;
        writeln!(file, "{name} {password}")?;
    }
    file.sync_all()?;
    Ok(())
}

/// The proxy's configuration (rewritten every run: the ports may change).
fn write_proxy_config(dir: &Path, imap: SocketAddr, lmtp: SocketAddr) -> Result<PathBuf> {
    let (cert, key) = tls_paths(dir);
    if !cert.exists() || !key.exists() {
        slotmail_slot::tls::write_self_signed(
            &["localhost".to_string(), "127.0.0.1".to_string()],
            &cert,
            &key,
        )?;
    }
    let path = dir.join("proxy.toml");
    let text = format!(
        "# Written by `slotmail demo` on every start.\nversion = 1\ncluster = \"cluster.toml\"\nhostname = \"demo.slotmail\"\n\n\
         [imap]\nlisten = \"{imap}\"\nallow_plaintext_auth = true\n\n[lmtp]\nlisten = \"{lmtp}\"\n\n\
         [tls]\ncert = \"proxy-cert.pem\"\nkey = \"proxy-key.pem\"\n"
    );
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn random_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    (0..16)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// The demo's child processes; whatever is still running when this is
/// dropped (an error during start-up) is stopped.
#[derive(Default)]
struct Processes {
    children: Vec<(String, Child, PathBuf)>,
}

impl Processes {
    fn spawn(&mut self, name: &str, cmd: &mut Command, log: &Path) -> Result<()> {
        let out =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        self.children.push((name.to_owned(), child, log.to_owned()));
        Ok(())
    }

    /// An error naming the first child that exited, with its log's tail.
    fn check_running(&mut self) -> Result<()> {
        for (name, child, log) in &mut self.children {
            if let Some(status) = child.try_wait()? {
                let text = std::fs::read_to_string(&*log).unwrap_or_default();
                let tail: String = text
                    .lines()
                    .rev()
                    .take(15)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n");
                bail!(
                    "{name} exited ({status}); the end of {}:\n{tail}",
                    log.display()
                );
            }
        }
        Ok(())
    }

    /// One line for each child that exited since the last call.
    fn newly_exited(&mut self) -> Result<Vec<String>> {
        let mut notes = Vec::new();
        self.children
            .retain_mut(|(name, child, log)| match child.try_wait() {
                Ok(Some(status)) => {
                    notes.push(format!(
                        "{name} exited ({status}); its log is {}",
                        log.display()
                    ));
                    false
                }
                _ => true,
            });
        Ok(notes)
    }

    /// SIGTERM every child, wait for all of them together, SIGKILL what is
    /// left after [`STOP_TIMEOUT`].
    fn stop_all(&mut self) -> Result<()> {
        for (_, child, _) in &self.children {
            // The children may have had the terminal's SIGINT already.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .stderr(Stdio::null())
                .status();
        }
        let start = Instant::now();
        let mut stubborn = Vec::new();
        for (name, child, _) in &mut self.children {
            loop {
                if child.try_wait()?.is_some() {
                    break;
                }
                if start.elapsed() > STOP_TIMEOUT {
                    let _ = child.kill();
                    let _ = child.wait();
                    stubborn.push(name.clone());
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.children.clear();
        if !stubborn.is_empty() {
            bail!(
                "{} did not stop within {STOP_TIMEOUT:?} and were killed",
                stubborn.join(", ")
            );
        }
        Ok(())
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        if !self.children.is_empty() {
            let _ = self.stop_all();
        }
    }
}

/// Poll `ready` until it holds; fail if a child exits or time runs out.
fn wait_until(
    procs: &mut Processes,
    what: &str,
    mut ready: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let start = Instant::now();
    loop {
        if ready()? {
            return Ok(());
        }
        procs.check_running()?;
        if start.elapsed() > START_TIMEOUT {
            bail!(
                "timed out after {START_TIMEOUT:?} waiting until {what}; logs are in the demo directory"
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A few sample messages for every demo user, through the proxy's LMTP
/// like any MTA.
fn deliver_samples(lmtp: SocketAddr) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut client = slotmail_lmtp::Client::connect(lmtp, slotmail_lmtp::ClientConfig::new("demo.slotmail"))
            .await
            .context("connecting to LMTP")?;
        let recipients: Vec<String> = DEMO_USERS.iter().map(|u| format!("{u}@demo.slotmail")).collect();
        let recipients: Vec<&str> = recipients.iter().map(String::as_str).collect();
        for (i, (subject, body)) in SAMPLES.iter().enumerate() {
            let message = format!(
                "From: slotmail <hello@demo.slotmail>\r\nTo: demo users <users@demo.slotmail>\r\n\
                 Subject: {subject}\r\nMessage-ID: <sample-{i}@demo.slotmail>\r\n\
                 Date: Sun, 29 Nov 2026 10:0{i}:00 +0000\r\nMIME-Version: 1.0\r\n\
                 Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{body}\r\n"
            );
            let report = client
                .deliver("hello@demo.slotmail", &recipients, message.as_bytes())
                .await
                .context("delivering sample mail")?;
            for r in &report.recipients {
                if !r.delivered() {
                    bail!("sample mail to {} refused: {}", r.recipient, r.final_reply().text());
                }
            }
        }
        Ok(())
    })
}

const SAMPLES: [(&str, &str); 3] = [
    (
        "Welcome to slotmail",
        "This message came in over LMTP through the proxy, was stored durably on your store's\r\nmaster slot before the 250 reply, and was replicated to a slot on another machine.",
    ),
    (
        "Try IMAP",
        "Point any IMAP client at 127.0.0.1:1143 (STARTTLS or plain on loopback).\r\nFolders Drafts, Sent, Trash, Junk and Archive carry SPECIAL-USE attributes.",
    ),
    (
        "Grüße aus dem Slot",
        "8-bit UTF-8 text is stored byte for byte: äöü ß — 日本語 — ✉",
    ),
];

/// Print every store's replication lag once a second until SIGINT or
/// SIGTERM. A child that exits is reported once and the demo goes on: an
/// operator trying a failover kills a machine's processes on purpose.
fn show_lag_until_signal(ctl: &Ctl, procs: &mut Processes) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let tty = std::io::stdout().is_terminal();
    runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut tick = tokio::time::interval(LAG_INTERVAL);
        let mut printed = 0u64;
        loop {
            tokio::select! {
                _ = term.recv() => return Ok(()),
                _ = int.recv() => return Ok(()),
                _ = tick.tick() => {}
            }
            for note in procs.newly_exited()? {
                if tty {
                    println!();
                }
                println!("{note}");
            }
            let line = match ctl.json(&["status"], "") {
                Ok((_, doc)) => lag_line(&doc),
                Err(e) => format!("status unavailable: {e}"),
            };
            // On a terminal the line is redrawn; in a log, one line per 10 s.
            if tty {
                print!("\r\x1b[2K{line}");
            } else if printed.is_multiple_of(10) {
                println!("{line}");
            }
            printed += 1;
            std::io::stdout().flush()?;
        }
    })
}

/// `lag  s001 0 ms  s002 3 ms  s003 -` from `ctl status --json`.
fn lag_line(doc: &Value) -> String {
    let mut line = String::from("replication lag:");
    for s in doc["stores"].as_array().into_iter().flatten() {
        let id = s["id"].as_str().unwrap_or("?");
        let lag = s["lag_ms"]
            .as_u64()
            .map_or_else(|| "-".to_owned(), |ms| format!("{ms} ms"));
        line.push_str(&format!("  {id} {lag}"));
    }
    line
}
