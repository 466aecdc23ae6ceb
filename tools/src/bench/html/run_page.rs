//! The page of one run: header, command, machine and settings, one section per workload
//! (throughput and latency charts, the table of figures), then memory and CPU per target.

use std::fmt::Write as _;

use super::super::doc::{Document, RoundFigures, Spread, TargetFigures, WorkloadReport};
use super::super::error::Result;
use super::chart::{self, Bar, Curve, FG, GREY, Marker, PALETTE};
use super::{escape, page, shell_line};

/// A target's colour: by its place in the run's target list, so it is the same in every chart.
fn color(doc: &Document, target: &str) -> plotters::style::RGBColor {
    let i = doc.targets.iter().position(|t| t == target).unwrap_or(0);
    PALETTE[i % PALETTE.len()]
}

/// A number for a table cell, as the printed tables write it: no decimals from 100 on.
pub fn cell(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

/// The report of a run.
pub fn run_page(doc: &Document) -> Result<String> {
    let s = &doc.settings;
    let mut body = String::new();
    let _ = write!(
        body,
        "<header>\n<h1>ipfrs-bench {} report</h1>\n<p class=\"sub\">{} workload{}, {} target{}, \
         {} round{} each (targets interleaved), {:.1} s in all</p>\n",
        escape(&doc.version),
        doc.workloads.len(),
        plural(doc.workloads.len()),
        doc.targets.len(),
        plural(doc.targets.len()),
        s.rounds,
        plural(s.rounds as usize),
        doc.wall_seconds,
    );
    if !doc.machine.release_build {
        body.push_str(
            "<p class=\"warn\">Debug build: these figures mean little; run a --release build.</p>\n",
        );
    }
    body.push_str("<nav>");
    for w in &doc.workloads {
        let _ = write!(body, "<a href=\"#w-{0}\">{0}</a>", escape(&w.name));
    }
    body.push_str("<a href=\"#resources\">memory and CPU</a><a href=\"#run\">machine and settings</a></nav>\n</header>\n");
    for w in &doc.workloads {
        workload(&mut body, doc, w)?;
    }
    resources(&mut body, doc)?;
    run_block(&mut body, doc);
    Ok(page(
        &format!("ipfrs-bench report ({} targets)", doc.targets.len()),
        &body,
    ))
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// One workload's section.
fn workload(body: &mut String, doc: &Document, w: &WorkloadReport) -> Result<()> {
    let rounds = doc.settings.rounds;
    let stores: Vec<&TargetFigures> = w.results.iter().filter(|r| !r.is_ceiling).collect();
    let bars: Vec<Bar> = stores
        .iter()
        .map(|r| {
            let base_of_others = w
                .results
                .iter()
                .any(|o| o.baseline.as_deref() == Some(r.target.as_str()));
            let ratio = match (r.vs_baseline, base_of_others) {
                (Some(v), _) => format!(" · {v:.2}x"),
                (None, true) => " · base".to_string(),
                (None, false) => String::new(),
            };
            Bar {
                label: r.target.clone(),
                value: r.ops_per_s.median,
                range: (r.rounds.len() > 1).then_some((r.ops_per_s.min, r.ops_per_s.max)),
                note: format!("{}{ratio}", chart::short(r.ops_per_s.median)),
                color: color(doc, &r.target),
            }
        })
        .collect();
    let markers: Vec<Marker> = w
        .results
        .iter()
        .filter(|r| r.is_ceiling && r.ops_per_s.median > 0.0)
        .map(|r| Marker {
            label: format!(
                "ceiling {}: {} ops/s",
                r.target,
                chart::short(r.ops_per_s.median)
            ),
            value: r.ops_per_s.median,
            // The ceiling the ratios divide by stands out; any other is grey.
            color: if w.ceiling.as_deref() == Some(r.target.as_str()) {
                FG
            } else {
                GREY
            },
        })
        .collect();
    let throughput = chart::bars(
        &format!("{}: throughput per target, ops/s", w.name),
        &bars,
        &markers,
        "ops/s (median over rounds; whiskers: min-max)",
        &chart::short,
    )?;
    let curves: Vec<Curve> = w
        .results
        .iter()
        .map(|r| {
            let l = &r.latency_us;
            Curve {
                label: r.target.clone(),
                values: [l.p50, l.p90, l.p99, l.p99_9, l.max],
                color: color(doc, &r.target),
                dashed: r.is_ceiling,
            }
        })
        .collect();
    let latency = chart::latency(
        &format!("{}: latency percentiles per target, µs", w.name),
        &curves,
        "latency, µs (log scale)",
    )?;
    let base = match doc.settings.baseline.as_str() {
        "raw" => "the raw backend under the same engine".to_string(),
        other => escape(other),
    };
    let _ = write!(
        body,
        "<section class=\"workload\" id=\"w-{name}\" data-workload=\"{name}\">\n<h2>{name}</h2>\n\
         <p class=\"desc\">{desc}</p>\n<div class=\"grid\">\n\
         <figure class=\"throughput\"><figcaption>Throughput, ops/s: the median of {rounds} \
         round{pl}, whiskers from the slowest to the fastest round; on each bar the ratio to the \
         baseline ({base}); dashed: the ceilings.</figcaption>\n{throughput}</figure>\n\
         <figure class=\"latency\"><figcaption>Latency per call, µs, median over rounds of each \
         percentile (log scale; dashed: ceilings).</figcaption>\n{latency}\n<ul class=\"legend\">",
        name = escape(&w.name),
        desc = escape(&w.description),
        pl = plural(rounds as usize),
    );
    for c in &curves {
        let _ = write!(
            body,
            "<li><span class=\"sw{}\" style=\"border-color:#{:02X}{:02X}{:02X}\"></span>{}</li>",
            if c.dashed { " dashed" } else { "" },
            c.color.0,
            c.color.1,
            c.color.2,
            escape(&c.label)
        );
    }
    body.push_str("</ul></figure>\n</div>\n");
    figures_table(body, w);
    body.push_str("</section>\n");
    Ok(())
}

/// The table of a workload's figures, the printed table's columns.
fn figures_table(body: &mut String, w: &WorkloadReport) {
    body.push_str(
        "<table class=\"figures\">\n<thead><tr><th>target</th><th>ops/s</th><th>min</th>\
         <th>max</th><th>MiB/s</th><th>p50 µs</th><th>p90 µs</th><th>p99 µs</th>\
         <th>p99.9 µs</th><th>max µs</th><th>+RSS MiB</th><th>vs base</th><th>vs ceil</th>\
         </tr></thead>\n<tbody>\n",
    );
    let dash = || "-".to_string();
    for r in &w.results {
        let l = &r.latency_us;
        let _ = writeln!(
            body,
            "<tr data-target=\"{}\"{}><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td></tr>",
            escape(&r.target),
            if r.is_ceiling {
                " class=\"ceiling\""
            } else {
                ""
            },
            escape(&r.target),
            cell(r.ops_per_s.median),
            cell(r.ops_per_s.min),
            cell(r.ops_per_s.max),
            r.mib_per_s.map_or_else(dash, |m| cell(m.median)),
            cell(l.p50),
            cell(l.p90),
            cell(l.p99),
            cell(l.p99_9),
            cell(l.max),
            r.rss_growth_mib
                .map_or_else(dash, |m| format!("{:.0}", m.median)),
            r.vs_baseline.map_or_else(dash, |v| format!("{v:.2}x")),
            r.vs_ceiling
                .map_or_else(dash, |v| format!("{:.0}%", v * 100.0)),
        );
    }
    body.push_str("</tbody></table>\n");
    if let Some(c) = &w.ceiling {
        let _ = writeln!(
            body,
            "<p class=\"note\">vs ceil: MiB/s (ops/s where no data moves) over the slowest \
             ceiling's, {}.</p>",
            escape(c)
        );
    }
}

/// A figure of a target's rounds (every workload of a target carries the same per-round
/// memory and CPU): the first workload that ran the target.
fn per_target(doc: &Document, f: fn(&RoundFigures) -> Option<f64>) -> Vec<(String, Spread)> {
    doc.targets
        .iter()
        .filter_map(|name| {
            let r = doc
                .workloads
                .iter()
                .flat_map(|w| &w.results)
                .find(|r| &r.target == name)?;
            let values: Vec<f64> = r.rounds.iter().filter_map(f).collect();
            Spread::of(&values).map(|s| (name.clone(), s))
        })
        .collect()
}

/// Peak memory and CPU seconds per target, charts and a table; absent figures (older reports,
/// other systems) leave their chart out.
fn resources(body: &mut String, doc: &Document) -> Result<()> {
    let peak = per_target(doc, |r| r.peak_rss_mib);
    let growth = per_target(doc, |r| r.rss_growth_mib);
    let cpu = per_target(doc, |r| r.target_cpu_s);
    let faults = per_target(doc, |r| r.target_major_faults.map(|f| f as f64));
    body.push_str(
        "<section class=\"resources\" id=\"resources\">\n<h2>Memory and CPU per target</h2>\n\
         <p class=\"desc\">Measured per target and round, over all its workloads (the process's \
         peak resident memory, VmHWM reset per target, and the CPU seconds of all threads): \
         the same for every workload, so shown once. Medians over rounds, whiskers min-max.</p>\n",
    );
    if peak.is_empty() && cpu.is_empty() {
        body.push_str(
            "<p class=\"note\">Not in this report (an older --json file).</p>\n</section>\n",
        );
        return Ok(());
    }
    body.push_str("<div class=\"grid\">\n");
    let bars = |figures: &[(String, Spread)], unit: &str, digits: usize| -> Vec<Bar> {
        figures
            .iter()
            .map(|(name, s)| Bar {
                label: name.clone(),
                value: s.median,
                range: Some((s.min, s.max)),
                note: format!("{:.digits$} {unit}", s.median),
                color: color(doc, name),
            })
            .collect()
    };
    if !peak.is_empty() {
        let svg = chart::bars(
            "peak resident memory per target, MiB",
            &bars(&peak, "MiB", 0),
            &[],
            "peak memory, MiB (median over rounds; whiskers: min-max)",
            &chart::short,
        )?;
        let _ = write!(
            body,
            "<figure class=\"memory\"><figcaption>Peak resident memory, MiB (the whole \
             process: the generated blocks and the tool are included).</figcaption>\n{svg}</figure>\n"
        );
    }
    if !cpu.is_empty() {
        let svg = chart::bars(
            "CPU seconds per target and round",
            &bars(&cpu, "s", 2),
            &[],
            "CPU s per round (median; whiskers: min-max)",
            &chart::short,
        )?;
        let _ = write!(
            body,
            "<figure class=\"cpu\"><figcaption>CPU seconds (user + system, all threads) per \
             round of all the target's workloads.</figcaption>\n{svg}</figure>\n"
        );
    }
    body.push_str(
        "</div>\n<table class=\"resources\">\n<thead><tr><th>target</th><th>CPU s</th>\
         <th>major faults</th><th>peak MiB</th><th>+RSS MiB</th></tr></thead>\n<tbody>\n",
    );
    let find = |v: &[(String, Spread)], name: &str, digits: usize| {
        v.iter()
            .find(|(n, _)| n == name)
            .map_or_else(|| "-".into(), |(_, s)| format!("{:.digits$}", s.median))
    };
    for name in &doc.targets {
        let _ = writeln!(
            body,
            "<tr data-target=\"{0}\"><td>{0}</td><td>{1}</td><td>{2}</td><td>{3}</td><td>{4}</td></tr>",
            escape(name),
            find(&cpu, name, 2),
            find(&faults, name, 0),
            find(&peak, name, 0),
            find(&growth, name, 0),
        );
    }
    body.push_str("</tbody></table>\n</section>\n");
    Ok(())
}

/// The command, the machine and the settings.
fn run_block(body: &mut String, doc: &Document) {
    let m = &doc.machine;
    let s = &doc.settings;
    let _ = write!(
        body,
        "<section id=\"run\">\n<h2>Command, machine and settings</h2>\n\
         <pre class=\"command\"><code>{}</code></pre>\n<div class=\"meta\">\n<div>\n<h3>Machine</h3>\n<dl>",
        escape(&shell_line(&doc.command))
    );
    let mut item = |k: &str, v: String| {
        let _ = write!(body, "<dt>{}</dt><dd>{}</dd>", escape(k), escape(&v));
    };
    item("CPU", format!("{} ({} cores)", m.cpu_model, m.cores));
    if let Some(sha) = m.sha_ni {
        item("SHA-NI", if sha { "yes" } else { "no" }.into());
    }
    item("kernel", m.kernel.clone());
    if !m.io_uring.is_empty() {
        item("io_uring", m.io_uring.clone());
    }
    item("data filesystem", m.fs_type.clone());
    item(
        "memory",
        format!(
            "{} MiB available, {} MiB free at the start",
            m.mem_available_mib, m.mem_free_mib
        ),
    );
    item(
        "build",
        if m.release_build { "release" } else { "debug" }.into(),
    );
    let versions: Vec<String> = m
        .crate_versions
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    item("crates", versions.join(", "));
    body.push_str("</dl>\n</div>\n<div>\n<h3>Settings</h3>\n<dl>");
    let mut item = |k: &str, v: String| {
        let _ = write!(body, "<dt>{}</dt><dd>{}</dd>", escape(k), escape(&v));
    };
    item(
        "blocks",
        format!(
            "{} per round ({:.1} MiB; {})",
            s.blocks,
            s.stored_bytes as f64 / (1 << 20) as f64,
            s.size_description
        ),
    );
    item("rounds", s.rounds.to_string());
    item(
        "clients",
        format!(
            "{} threads x {} in flight, batches of {}",
            s.threads, s.in_flight, s.batch
        ),
    );
    item(
        "duration",
        match s.duration_s {
            Some(d) => format!("{d} s per timed workload, {} s warm-up", s.warmup_s),
            None => "a fixed number of ops (--ops)".into(),
        },
    );
    item(
        "loop",
        s.rate.map_or_else(
            || "closed".into(),
            |r| format!("open at {r} ops/s (latency from each op's intended start)"),
        ),
    );
    item("durability", s.durability.clone());
    item(
        "shards",
        s.shards
            .map_or_else(|| "one per core".into(), |n| n.to_string()),
    );
    if let Some(c) = s.cache_bytes {
        item("cache", format!("{c} bytes"));
    }
    item("backends", s.backends.join(", "));
    item("baseline", s.baseline.clone());
    item(
        "zipf skew / read ratio",
        format!("{} / {}", s.zipf_skew, s.read_ratio),
    );
    item("seed", s.seed.to_string());
    if let Some(file) = &s.car_file {
        item("car", file.clone());
    }
    for reason in [&doc.disk_ceiling_unavailable, &doc.sync_ceiling_unavailable]
        .into_iter()
        .flatten()
    {
        item("ceiling not measured", reason.clone());
    }
    for missing in &doc.missing {
        item("not measured yet", missing.clone());
    }
    body.push_str("</dl>\n</div>\n</div>\n</section>\n");
}
