//! The page of `compare OLD NEW --report FILE`: per workload, the change of every figure
//! `compare` checks (ops/s, p99 latency, +RSS) as signed bars, regressions past the threshold
//! in red, improvements past it in green; then the table and both runs' command lines.

use std::fmt::Write as _;

use super::super::compare::{Change, warnings};
use super::super::doc::Document;
use super::super::error::Result;
use super::chart::{self, Bar, GREEN, GREY, Marker, RED};
use super::{escape, page, shell_line};

/// Whether a change is better than the threshold (the opposite of a regression).
fn improved(c: &Change, threshold: f64) -> bool {
    let better = if c.metric == "ops/s" {
        c.change
    } else {
        -c.change
    };
    better > threshold
}

/// A percentage with its sign.
fn percent(change: f64) -> String {
    format!("{:+.1}%", change * 100.0)
}

/// The comparison page; `names` are how the two reports are called (their file paths).
pub fn compare_page(
    old: &Document,
    new: &Document,
    changes: &[Change],
    threshold: f64,
    names: (&str, &str),
) -> Result<String> {
    let regressions = changes.iter().filter(|c| c.regression).count();
    let mut body = String::new();
    let _ = write!(
        body,
        "<header>\n<h1>ipfrs-bench comparison</h1>\n<p class=\"sub\">old: {} · new: {}</p>\n\
         <p class=\"summary{}\">{regressions} of {} figures regressed by more than {:.1}%.</p>\n",
        escape(names.0),
        escape(names.1),
        if regressions > 0 { " warn" } else { "" },
        changes.len(),
        threshold * 100.0,
    );
    for w in warnings(old, new) {
        let _ = writeln!(body, "<p class=\"warn\">warning: {}</p>", escape(&w));
    }
    body.push_str("</header>\n");
    let mut workloads: Vec<&str> = Vec::new();
    for c in changes {
        if !workloads.contains(&c.workload.as_str()) {
            workloads.push(&c.workload);
        }
    }
    let t = threshold * 100.0;
    for name in workloads {
        let mine: Vec<&Change> = changes.iter().filter(|c| c.workload == name).collect();
        let bars: Vec<Bar> = mine
            .iter()
            .map(|c| Bar {
                label: format!("{} {}", c.target, c.metric),
                value: c.change * 100.0,
                range: None,
                note: format!(
                    "{}{}",
                    percent(c.change),
                    if c.regression { " regression" } else { "" }
                ),
                color: if c.regression {
                    RED
                } else if improved(c, threshold) {
                    GREEN
                } else {
                    GREY
                },
            })
            .collect();
        let markers = [
            Marker {
                label: format!("-{t:.0}%"),
                value: -t,
                color: GREY,
            },
            Marker {
                label: format!("+{t:.0}%"),
                value: t,
                color: GREY,
            },
        ];
        let svg = chart::bars(
            &format!("{name}: change of each figure, percent"),
            &bars,
            &markers,
            "change, % (new / old - 1; ops/s: higher is better, p99 us and +RSS MiB: lower)",
            &|v| format!("{v:+.0}%"),
        )?;
        let _ = write!(
            body,
            "<section class=\"workload\" id=\"w-{n}\" data-workload=\"{n}\">\n<h2>{n}</h2>\n\
             <figure class=\"changes\"><figcaption>Change per target and figure: red, a \
             regression past {t:.1}%; green, an improvement past it; grey, within it \
             (dashed lines).</figcaption>\n{svg}</figure>\n<table class=\"changes\">\n<thead><tr>\
             <th>target</th><th>figure</th><th>old</th><th>new</th><th>change</th></tr></thead>\n\
             <tbody>\n",
            n = escape(name),
        );
        for c in mine {
            let class = if c.regression {
                " class=\"regression\""
            } else {
                ""
            };
            let _ = writeln!(
                body,
                "<tr data-target=\"{0}\" data-metric=\"{1}\"{class}><td>{0}</td><td>{1}</td>\
                 <td>{2:.1}</td><td>{3:.1}</td><td{4}>{5}</td></tr>",
                escape(&c.target),
                escape(c.metric),
                c.old,
                c.new,
                if improved(c, threshold) {
                    " class=\"better\""
                } else {
                    ""
                },
                percent(c.change),
            );
        }
        body.push_str("</tbody></table>\n</section>\n");
    }
    let _ = write!(
        body,
        "<section id=\"run\">\n<h2>The two runs</h2>\n<h3>old ({})</h3>\n\
         <pre class=\"command\"><code>{}</code></pre>\n<p class=\"note\">{} ({} cores), {}</p>\n\
         <h3>new ({})</h3>\n<pre class=\"command\"><code>{}</code></pre>\n\
         <p class=\"note\">{} ({} cores), {}</p>\n</section>\n",
        escape(names.0),
        escape(&shell_line(&old.command)),
        escape(&old.machine.cpu_model),
        old.machine.cores,
        escape(&old.machine.kernel),
        escape(names.1),
        escape(&shell_line(&new.command)),
        escape(&new.machine.cpu_model),
        new.machine.cores,
        escape(&new.machine.kernel),
    );
    Ok(page("ipfrs-bench comparison", &body))
}
