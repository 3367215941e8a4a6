//! Measures `analyze` (and the SEARCH helpers) on a real-looking mailbox:
//! `cargo run --release -p slotmail-mime --example mbox_throughput -- FILE.mbox`
//!
//! The mbox is split at `From ` lines and `>From ` quoting (mboxrd) is
//! undone; line ends are canonicalized to CRLF as a store would before
//! analyzing. Prints MB/s for analyze alone, for analyze + cache encoding,
//! and for body_text.

use std::time::Instant;

use slotmail_mime::{MessageInfo, analyze, body_text, canonicalize_line_endings};

fn split_mbox(data: &[u8]) -> Vec<Vec<u8>> {
    let mut messages = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    for line in data.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b"From ") {
            if let Some(m) = current.take() {
                messages.push(m);
            }
            current = Some(Vec::new());
            continue;
        }
        let Some(m) = current.as_mut() else { continue };
        let unquoted = match line.iter().position(|&b| b != b'>') {
            Some(n) if n > 0 && line[n..].starts_with(b"From ") => &line[1..],
            _ => line,
        };
        m.extend_from_slice(unquoted);
    }
    messages.extend(current);
    messages
}

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: mbox_throughput FILE.mbox");
        std::process::exit(2);
    };
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(1);
        }
    };
    let messages: Vec<Vec<u8>> = split_mbox(&data)
        .iter()
        .map(|m| canonicalize_line_endings(m).into_owned())
        .collect();
    let total: usize = messages.iter().map(Vec::len).sum();
    let mb = total as f64 / 1e6;
    println!("{} messages, {mb:.1} MB", messages.len());

    let rounds = 3;
    let mut parts = 0usize;
    let start = Instant::now();
    for _ in 0..rounds {
        for m in &messages {
            parts += analyze(m).root.count();
        }
    }
    let secs = start.elapsed().as_secs_f64() / f64::from(rounds);
    println!(
        "analyze:            {:8.1} MB/s  {:8.0} msg/s  ({} parts per round)",
        mb / secs,
        messages.len() as f64 / secs,
        parts / rounds as usize
    );

    let mut cached = 0usize;
    let start = Instant::now();
    for m in &messages {
        let bytes = analyze(m).to_bytes();
        cached += bytes.len();
        let back = MessageInfo::from_bytes(&bytes).map(|i| i.root.count());
        assert!(back.is_ok());
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "analyze+cache i/o:  {:8.1} MB/s  (cache {:.1} bytes/message)",
        mb / secs,
        cached as f64 / messages.len() as f64
    );

    let mut chars = 0usize;
    let start = Instant::now();
    for m in &messages {
        chars += body_text(m).len();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "body_text:          {:8.1} MB/s  ({chars} bytes of text)",
        mb / secs
    );
}
