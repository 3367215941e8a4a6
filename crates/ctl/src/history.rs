//! `ctl history [--store STORE] [--limit N]`: every role change the
//! directory recorded, newest first: time, store, old and new master,
//! epoch, reason.

use crate::output::Table;
use crate::{CtlError, Ctx, Exit, Report};
use serde_json::json;
use slotmail_directory::{Directory, DirectoryError};

/// Entries shown when `--limit` is not given.
pub const HISTORY_LIMIT_DEFAULT: usize = 100;

/// A time in milliseconds since the Unix epoch as `YYYY-MM-DD hh:mm:ss.mmm`
/// UTC.
pub(crate) fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:03}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        ms % 1000
    )
}

pub(crate) fn history(ctx: &Ctx, store: Option<&str>, limit: usize) -> Result<Report, CtlError> {
    let t = ctx.directory.snapshot()?;
    if let Some(s) = store
        && !t.stores.contains_key(s)
    {
        return Err(DirectoryError::UnknownStore(s.to_string()).into());
    }
    let entries = ctx.directory.history(store, limit)?;
    let mut table = Table::new(&[
        "TIME (UTC)",
        "STORE",
        "OLD MASTER",
        "NEW MASTER",
        "EPOCH",
        "REASON",
    ]);
    for e in &entries {
        table.row(vec![
            utc(e.at_unix_ms),
            e.store.clone(),
            e.old_master.clone().unwrap_or_else(|| "-".into()),
            e.new_master.clone(),
            e.epoch.to_string(),
            e.reason.clone(),
        ]);
    }
    let mut text = table.render();
    if !t.fenced.is_empty() {
        text.push_str("\nfenced slots (awaiting `ctl reconcile`):\n");
        for f in t.fenced.values() {
            text.push_str(&format!(
                "  {} (store {}, since epoch {} at {}): {}\n",
                f.slot,
                f.store,
                f.epoch,
                utc(f.at_unix_ms),
                f.reason
            ));
        }
    }
    Ok(Report {
        text,
        json: json!({"history": entries, "fenced": t.fenced.values().collect::<Vec<_>>()}),
        exit: Exit::Ok,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_times() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00.000");
        assert_eq!(super::utc(951_782_400_123), "2000-02-29 00:00:00.123");
        assert_eq!(super::utc(1_795_000_000_000), "2026-11-18 11:06:40.000");
    }
}
