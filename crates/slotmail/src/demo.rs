//! `slotmail demo`: a working mail system on this machine in one command.
//!
//! Today the demo runs one slot (IMAP + LMTP) as its own process, with an
//! admin and demo users whose random passwords are written to a 0600 file,
//! and sample mail delivered through LMTP on first run. It grows into the
//! full cluster (machines, stores, proxy) as those parts land.
//!
//! First run creates `DIR`; later runs reuse it. Ctrl-C (SIGINT) or SIGTERM
//! stops the slot process cleanly.

use anyhow::{Context, Result, bail};
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Demo users besides the admin.
const DEMO_USERS: [&str; 3] = ["alice", "bob", "carol"];
/// The admin account (may act as any user: operators, the replication check).
const ADMIN: &str = "admin";
/// Longest wait for the slot's listeners.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for the slot to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// What the user asked for.
pub struct DemoOptions {
    pub dir: PathBuf,
    pub imap_port: u16,
    pub lmtp_port: u16,
}

pub fn run(options: DemoOptions) -> Result<()> {
    let dir = &options.dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let imap: SocketAddr = ([127, 0, 0, 1], options.imap_port).into();
    let lmtp: SocketAddr = ([127, 0, 0, 1], options.lmtp_port).into();
    let config = dir.join("slot-a1.toml");
    let credentials = dir.join("credentials.txt");
    let first_run = !dir.join("slot-a1").exists();
    if first_run {
        create(&dir, &credentials)?;
    }
    write_config(&config, imap, lmtp)?;
    for addr in [imap, lmtp] {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            bail!(
                "{addr} is already in use (another demo running?); choose other ports with --imap-port/--lmtp-port"
            );
        }
    }
    let mut slot = Command::new(std::env::current_exe()?)
        .args(["slot", "run", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("slot-a1.log"))?)
        .spawn()
        .context("starting the slot")?;
    let guard = ChildGuard(Some(&mut slot));
    wait_for(&[imap, lmtp], guard)?;
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
    println!();
    println!(
        "  try:   python3 -c \"import imaplib; i=imaplib.IMAP4('127.0.0.1', {}); i.login('alice', open('{}').read().split('alice ')[1].split()[0]); print(i.select('INBOX'))\"",
        imap.port(),
        credentials.display()
    );
    println!();
    println!("Ctrl-C stops everything.");
    wait_for_signal()?;
    println!("stopping...");
    stop(&mut slot)
}

/// Create the slot's data directory and accounts, and the credentials file.
fn create(dir: &Path, credentials: &Path) -> Result<()> {
    let slot = slotmail_store::Slot::open(dir.join("slot-a1"), slotmail_store::Options::default())?;
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
        slot.create_user(name, &password, admin)?;
        writeln!(file, "{name} {password}")?;
    }
    file.sync_all()?;
    Ok(())
}

fn write_config(path: &Path, imap: SocketAddr, lmtp: SocketAddr) -> Result<()> {
    let dir = path.parent().expect("config in a directory");
    let (cert, key) = (dir.join("tls-cert.pem"), dir.join("tls-key.pem"));
    if !cert.exists() || !key.exists() {
        slotmail_slot::tls::write_self_signed(
            &["localhost".to_string(), "127.0.0.1".to_string()],
            &cert,
            &key,
        )?;
    }
    let text = format!(
        "# Written by `slotmail demo`.\nversion = 1\nname = \"a1\"\ndata = \"slot-a1\"\nhostname = \"a1.demo.slotmail\"\n\n\
         [imap]\nlisten = \"{imap}\"\nallow_plaintext_auth = true\n\n[lmtp]\nlisten = \"{lmtp}\"\n\n\
         [tls]\ncert = \"tls-cert.pem\"\nkey = \"tls-key.pem\"\n"
    );
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn random_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    (0..16)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Kills the child if we bail out before it is handed over.
struct ChildGuard<'a>(Option<&'a mut Child>);

impl Drop for ChildGuard<'_> {
    fn drop(&mut self) {
        if let Some(child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn wait_for(addrs: &[SocketAddr], mut guard: ChildGuard<'_>) -> Result<()> {
    let start = Instant::now();
    for addr in addrs {
        while std::net::TcpStream::connect_timeout(addr, Duration::from_millis(200)).is_err() {
            if let Some(child) = guard.0.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "the slot exited ({status}) during start-up; see its log in the demo directory"
                );
            }
            if start.elapsed() > START_TIMEOUT {
                bail!("the slot did not listen on {addr} within {START_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
    guard.0 = None;
    Ok(())
}

/// A few sample messages for every demo user, through LMTP like any MTA.
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
        "This message came in over LMTP and was stored durably before the 250 reply.\r\nEvery message carries a BLAKE3 content hash that is checked whenever it is read.",
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

/// Block until SIGINT or SIGTERM.
fn wait_for_signal() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        Ok(())
    })
}

/// SIGTERM the slot and wait for it; SIGKILL after `STOP_TIMEOUT`.
fn stop(child: &mut Child) -> Result<()> {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let start = Instant::now();
    while start.elapsed() < STOP_TIMEOUT {
        if child.try_wait()?.is_some() {
            println!("stopped.");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill()?;
    child.wait()?;
    bail!("the slot did not stop within {STOP_TIMEOUT:?} and was killed")
}
