//! Results for people (text) or scripts (`--json`).

use std::io::Write;

use serde::Serialize;

use super::error::{Error, Result};

/// A command's result: JSON for scripts, text for people.
pub trait Report: Serialize {
    /// The text for people, ending with a newline.
    fn human(&self) -> String;
}

/// Prints a report on stdout in the chosen form.
pub fn print(report: &impl Report, json: bool) -> Result<()> {
    let text = if json {
        let mut text = serde_json::to_string_pretty(report)
            .map_err(|e| Error::Usage(format!("cannot render JSON: {e}")))?;
        text.push('\n');
        text
    } else {
        report.human()
    };
    write_stdout(text.as_bytes())
}

/// Writes to stdout; a closed pipe (`| head`) is not an error worth a message.
pub fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::io("cannot write to", "stdout", e))
        }
        _ => Ok(()),
    }
}

/// A byte count for people: "1.5 MiB (1572864 bytes)".
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {} ({n} bytes)", UNITS[unit])
    }
}
