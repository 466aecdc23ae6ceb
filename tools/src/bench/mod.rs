//! The benchmark's pieces: command line, workload, targets and phases, report.

mod cli;
mod error;
mod report;
mod run;
mod workload;

use std::process::ExitCode;

use clap::Parser;

/// Exit code for bad arguments (as clap uses).
const EXIT_USAGE: u8 = 2;
/// Exit code for a failure while running.
const EXIT_FAILURE: u8 = 1;

/// Parses the command line, runs the benchmark, and turns any error into one line on stderr
/// and a non-zero exit code.
pub fn main() -> ExitCode {
    let args = match cli::Args::try_parse() {
        Ok(args) => args,
        Err(err) => return clap_exit(&err),
    };
    match cli::Plan::from_args(args).and_then(|plan| run::run(&plan)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ipfrs-bench: error: {err}");
            ExitCode::from(if err.is_usage() {
                EXIT_USAGE
            } else {
                EXIT_FAILURE
            })
        }
    }
}

/// Prints clap's `--help`/`--version` in full, and any parse error as its first line only.
fn clap_exit(err: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match err.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            print!("{}", err.render());
            ExitCode::SUCCESS
        }
        _ => {
            let text = err.render().to_string();
            let line = text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("invalid arguments");
            let line = line.strip_prefix("error: ").unwrap_or(line);
            eprintln!("ipfrs-bench: error: {line} (see --help)");
            ExitCode::from(EXIT_USAGE)
        }
    }
}
