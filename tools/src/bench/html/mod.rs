//! The HTML report: one self-contained file (inline CSS and SVG charts, no script, nothing
//! fetched) that a person opens in any browser, in light or dark mode.
//!
//! - [`run_page`]: a run's `--json` document: per workload, throughput bars with min-max
//!   whiskers over rounds, the ceilings as dashed lines and the ratio to the baseline on each
//!   bar, latency percentiles as curves on a log axis and the table of figures; then peak
//!   memory and CPU seconds per target, the machine, the settings and the exact command line.
//! - [`compare_page`]: the change of every figure `compare` checks, regressions in red.
//!
//! Everything drawn comes from the [`Document`]: a figure missing from an older JSON file is
//! left out of the page, never invented.

mod chart;
mod compare_page;
mod run_page;

use std::io::Write as _;
use std::path::Path;

pub use compare_page::compare_page;
pub use run_page::run_page;

use super::error::{BenchError, Result};

/// The page's style: light by default, dark where the reader's system asks for it. The chart
/// sentinel colours (see `chart::FG`, `chart::GRID`) are restyled here by attribute.
const CSS: &str = r##"
:root { color-scheme: light dark; --bg: #ffffff; --fg: #1f2328; --muted: #59636e;
  --grid: #d8dee4; --rule: #d1d9e0; --panel: #f6f8fa; --red: #cf222e; --green: #1a7f37; }
@media (prefers-color-scheme: dark) {
  :root { --bg: #0d1117; --fg: #e6edf3; --muted: #9198a1; --grid: #30363d; --rule: #3d444d;
    --panel: #151b23; --red: #ff7b72; --green: #3fb950; }
}
* { box-sizing: border-box; }
body { margin: 0 auto; padding: 24px; max-width: 1400px; background: var(--bg); color: var(--fg);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 28px 0 6px; border-bottom: 1px solid var(--rule); padding-bottom: 4px; }
h3 { font-size: 15px; margin: 16px 0 6px; }
p.sub, p.desc, figcaption, .note { color: var(--muted); }
.warn { color: var(--red); font-weight: 600; }
nav a { margin-right: 12px; color: inherit; }
pre { background: var(--panel); padding: 8px 12px; border-radius: 6px; overflow-x: auto;
  white-space: pre-wrap; word-break: break-all; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap: 16px; }
figure { margin: 0; background: var(--panel); border-radius: 8px; padding: 10px 12px; }
figcaption { margin-bottom: 6px; }
/* A chart alone on its row would scale its text up past the page's. */
figure.changes { max-width: 820px; }
svg.chart { display: block; width: 100%; height: auto; }
svg.chart [fill="#010203"] { fill: var(--fg); }
svg.chart [stroke="#010203"] { stroke: var(--fg); }
svg.chart [stroke="#040506"] { stroke: var(--grid); }
ul.legend { list-style: none; padding: 0; margin: 6px 0 0; display: flex; flex-wrap: wrap; gap: 4px 14px; }
ul.legend li { white-space: nowrap; }
.sw { display: inline-block; width: 18px; height: 0; vertical-align: middle; margin-right: 5px;
  border-top: 3px solid; }
.sw.dashed { border-top-style: dashed; }
table { border-collapse: collapse; margin-top: 10px; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 9px; border-bottom: 1px solid var(--rule); text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
tr.ceiling td { color: var(--muted); font-style: italic; }
tr.regression td, td.regression { color: var(--red); font-weight: 600; }
td.better { color: var(--green); }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0; }
dt { color: var(--muted); }
dd { margin: 0; }
.meta { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 16px; }
"##;

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The command line as a shell would take it back: arguments with anything but plain
/// characters single-quoted.
pub fn shell_line(args: &[String]) -> String {
    let plain = |a: &str| {
        !a.is_empty()
            && a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    };
    args.iter()
        .map(|a| {
            if plain(a) {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A whole page around `body`.
fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"ipfrs-bench {}\">\n<title>{}</title>\n\
         <style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION"),
        escape(title),
    )
}

/// Creates `path` now, so a bad path fails before a run spends minutes measuring.
pub fn create(path: &Path, flag: &str) -> Result<std::fs::File> {
    std::fs::File::create(path)
        .map_err(|e| BenchError::io(format!("cannot create {flag}"), path, e))
}

/// Writes the page to a file made by [`create`] and syncs it.
pub fn write(mut file: std::fs::File, path: &Path, flag: &str, html: &str) -> Result<()> {
    file.write_all(html.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| BenchError::io(format!("cannot write {flag}"), path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_commands_quoted() {
        assert_eq!(
            escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        let args: Vec<String> = ["ipfrs-bench", "--dir", "/tmp/a b", "-w", "get,put", "it's"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            shell_line(&args),
            r"ipfrs-bench --dir '/tmp/a b' -w get,put 'it'\''s'"
        );
        let html = page("a<b", "<p>x</p>");
        assert!(html.starts_with("<!DOCTYPE html>") && html.contains("<title>a&lt;b</title>"));
        assert!(
            !html.contains("<script") && !html.contains("http://") && !html.contains("https://")
        );
    }
}
