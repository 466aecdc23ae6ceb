//! The benchmark's pieces: command line, workloads, targets, the lane driver, rounds, the
//! report (tables and JSON) and the comparison of two reports.

mod car;
mod cli;
mod compare;
mod disk;
mod doc;
mod driver;
mod error;
mod html;
mod machine;
mod markdown;
mod report;
mod rss;
mod run;
mod s3;
mod sync_ceiling;
mod target;
mod usage;
mod workload;

use std::process::ExitCode;

use clap::Parser;

/// Exit code for bad arguments (as clap uses).
const EXIT_USAGE: u8 = 2;
/// Exit code for a failure while running, and for a comparison that found a regression.
const EXIT_FAILURE: u8 = 1;

/// Parses the command line, runs the benchmark or the comparison, and turns any error into
/// one line on stderr and a non-zero exit code.
pub fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return clap_exit(&err),
    };
    let outcome = match cli.command {
        Some(cli::Command::Compare(args)) => compare_main(&args),
        Some(cli::Command::Report(args)) => report_main(&args),
        None => {
            let command: Vec<String> = std::env::args().collect();
            cli::Plan::from_args(cli.run)
                .and_then(|plan| run::run(&plan, command))
                .map(|()| ExitCode::SUCCESS)
        }
    };
    match outcome {
        Ok(code) => code,
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

/// `compare`: prints every change (and with `--report`, writes them as an HTML page); exit
/// code 1 if any figure regressed.
fn compare_main(args: &cli::CompareArgs) -> error::Result<ExitCode> {
    let old = compare::load(&args.old)?;
    let new = compare::load(&args.new)?;
    let changes = compare::changes(&old, &new, args.threshold);
    if let Some(path) = &args.report {
        let page = html::compare_page(
            &old,
            &new,
            &changes,
            args.threshold,
            (
                &args.old.display().to_string(),
                &args.new.display().to_string(),
            ),
        )?;
        html::write(html::create(path, "--report")?, path, "--report", &page)?;
    }
    emit(&compare::render(&old, &new, &changes, args.threshold));
    Ok(if changes.iter().any(|c| c.regression) {
        ExitCode::from(EXIT_FAILURE)
    } else {
        ExitCode::SUCCESS
    })
}

/// `report RUN.json -o FILE.html`: the HTML report of a saved run.
fn report_main(args: &cli::ReportArgs) -> error::Result<ExitCode> {
    let doc = compare::load(&args.run)?;
    let page = html::run_page(&doc)?;
    html::write(
        html::create(&args.output, "--output")?,
        &args.output,
        "--output",
        &page,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Prints a line on stdout. A closed stdout (`ipfrs-bench | head`) is not an error worth a
/// panic: the output is simply dropped.
pub fn emit(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
}

/// Prints clap's `--help`/`--version` in full, and any parse error as its first line only.
fn clap_exit(err: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match err.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            use std::io::Write;
            let _ = write!(std::io::stdout().lock(), "{}", err.render());
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
