//! Progress bars on stderr, only when stderr is a terminal (scripts and logs stay clean),
//! and never for a command a daemon runs for another process: the daemon's stderr is not the
//! caller's.

use std::cell::Cell;
use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

thread_local! {
    /// Set while this thread runs a command handed to the daemon.
    static HIDDEN: Cell<bool> = const { Cell::new(false) };
}

/// Hides the bars this thread makes until the guard is dropped.
pub fn hide_on_this_thread() -> HiddenGuard {
    HIDDEN.with(|h| h.set(true));
    HiddenGuard(())
}

/// See [`hide_on_this_thread`].
pub struct HiddenGuard(());

impl Drop for HiddenGuard {
    fn drop(&mut self) {
        HIDDEN.with(|h| h.set(false));
    }
}

/// A bar over `total` units (bytes when `bytes`), or a spinner when the total is unknown;
/// hidden unless stderr is a terminal, and on a thread that runs a handed command.
pub fn bar(what: &str, total: Option<u64>, bytes: bool) -> ProgressBar {
    if HIDDEN.with(Cell::get) || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    let template = match (total.is_some(), bytes) {
        (true, true) => "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        (true, false) => "{msg} [{bar:30}] {pos}/{len} {per_sec} eta {eta}",
        (false, _) => "{msg} {spinner} {pos} {per_sec}",
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}
