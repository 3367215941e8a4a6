//! What every `slotmail bench` program does with its report after printing
//! the table: optionally write it as JSON, to a file or ("-") to stdout.

use std::path::Path;
use std::process::ExitCode;

/// Write `report` as pretty JSON to `path` (`-` is stdout); the exit code
/// says whether that worked. `who` prefixes error messages.
pub fn write_json(who: &str, report: &impl serde::Serialize, path: Option<&Path>) -> ExitCode {
    let Some(path) = path else {
        return ExitCode::SUCCESS;
    };
    let json = serde_json::to_string_pretty(report).expect("report serializes");
    if path.as_os_str() == "-" {
        println!("{json}");
    } else if let Err(e) = std::fs::write(path, json + "\n") {
        eprintln!("{who}: writing {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
