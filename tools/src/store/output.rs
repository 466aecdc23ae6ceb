//! Results for people (text) or scripts (`--json`); [`super::caller::Caller::print`] prints
//! them where the command's output goes.

use serde::Serialize;

/// A command's result: JSON for scripts, text for people.
pub trait Report: Serialize {
    /// The text for people, ending with a newline.
    fn human(&self) -> String;
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
