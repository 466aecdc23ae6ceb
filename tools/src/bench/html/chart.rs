//! The report's charts, drawn with plotters' SVG backend into strings.
//!
//! Two shapes cover every chart: horizontal [`bars`] (throughput with min-max whiskers,
//! memory, CPU, and the signed changes of `compare`), with vertical dashed [`Marker`] lines
//! (ceilings, thresholds), and [`latency`] curves over the percentiles on a log axis.
//!
//! Colours that must follow the page's light or dark mode (text, axes, grid) are drawn with
//! sentinel values ([`FG`], [`GRID`]) that the page's CSS restyles by attribute, because a
//! presentation attribute cannot hold a CSS variable. Series colours are mid-tones that read on
//! both backgrounds. No font is loaded: plotters only estimates text widths, the browser lays
//! the text out.

use plotters::element::{DashedPathElement, EmptyElement, ErrorBar};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::super::error::{BenchError, Result};

/// Text, axes and zero lines; restyled to the page's foreground by the CSS.
pub const FG: RGBColor = RGBColor(1, 2, 3);
/// Grid lines; restyled to the page's grid colour by the CSS.
pub const GRID: RGBColor = RGBColor(4, 5, 6);
/// Series colours (Tableau 10): distinct, and readable on white and on near-black.
pub const PALETTE: [RGBColor; 10] = [
    RGBColor(0x4E, 0x79, 0xA7),
    RGBColor(0xF2, 0x8E, 0x2B),
    RGBColor(0x59, 0xA1, 0x4F),
    RGBColor(0xB0, 0x7A, 0xA1),
    RGBColor(0x76, 0xB7, 0xB2),
    RGBColor(0xED, 0xC9, 0x48),
    RGBColor(0x9C, 0x75, 0x5F),
    RGBColor(0xFF, 0x9D, 0xA7),
    RGBColor(0xBA, 0xB0, 0xAC),
    RGBColor(0xE1, 0x57, 0x59),
];
/// A regression past the threshold.
pub const RED: RGBColor = RGBColor(0xD6, 0x27, 0x28);
/// An improvement past the threshold.
pub const GREEN: RGBColor = RGBColor(0x2C, 0xA0, 0x2C);
/// A change within the threshold.
pub const GREY: RGBColor = RGBColor(0x8C, 0x8C, 0x8C);

/// Width of every chart in pixels (it scales down with the page).
const WIDTH: u32 = 640;
/// Height of one bar's row in pixels.
const ROW: u32 = 24;
/// Font size of labels, in plotters' units (it divides by 1.24 for SVG).
const FONT: u32 = 16;
/// The percentiles of a latency curve, in the order of [`Curve::values`].
pub const PERCENTILES: [&str; 5] = ["p50", "p90", "p99", "p99.9", "max"];

/// One row of a bar chart.
#[derive(Debug, Clone)]
pub struct Bar {
    /// The row's label (a target name).
    pub label: String,
    /// The bar's length; negative bars grow to the left of zero.
    pub value: f64,
    /// The whisker's (min, max), e.g. over rounds.
    pub range: Option<(f64, f64)>,
    /// Text written past the bar's end (a ratio, a change).
    pub note: String,
    /// The bar's colour.
    pub color: RGBColor,
}

/// A vertical dashed line across the bars, labelled above them.
#[derive(Debug, Clone)]
pub struct Marker {
    /// The label, e.g. `ceiling disk/o_direct: 12.3k ops/s`.
    pub label: String,
    /// Where the line stands on the value axis.
    pub value: f64,
    /// The line's colour.
    pub color: RGBColor,
}

/// One target's latency curve.
#[derive(Debug, Clone)]
pub struct Curve {
    /// The target's name (for the chart's description).
    pub label: String,
    /// Microseconds at each of [`PERCENTILES`]; non-positive values are left out (log axis).
    pub values: [f64; 5],
    /// The curve's colour.
    pub color: RGBColor,
    /// Dashed (ceilings) or solid.
    pub dashed: bool,
}

/// Turns a plotters error into the benchmark's.
fn chart_err(e: impl std::fmt::Display) -> BenchError {
    BenchError::Internal(format!("cannot draw a chart: {e}"))
}

/// A compact axis number: 1.2M, 35k, 950, 2.5, 0.25.
pub fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 10.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A log axis's label: only at 1, 2 and 5 times a power of ten (the grid keeps the others),
/// so the labels never crowd.
fn log_label(v: f64) -> String {
    if !(v.is_finite() && v > 0.0) {
        return String::new();
    }
    let mantissa = v / 10f64.powf(v.log10().floor());
    let nearest = mantissa.round();
    // plotters computes the key points in floating point: 5000 may come as 4999.999999.
    if (mantissa - nearest).abs() < 1e-3 && [1.0, 2.0, 5.0, 10.0].contains(&nearest) {
        short(v)
    } else {
        String::new()
    }
}

/// Marks the SVG as an image with a description, for screen readers and for the tests.
fn finish(svg: String, kind: &str, description: &str) -> String {
    let attrs = format!(
        "<svg class=\"chart {kind}\" role=\"img\" aria-label=\"{}\" ",
        super::escape(description)
    );
    svg.replacen("<svg ", &attrs, 1)
}

/// A horizontal bar chart: one row per bar (first at the top), whiskers where given, the
/// markers as dashed lines each labelled in a row of its own above the bars, and `axis` under
/// the value axis. `format` writes the axis numbers.
pub fn bars(
    description: &str,
    rows: &[Bar],
    markers: &[Marker],
    axis: &str,
    format: &dyn Fn(f64) -> String,
) -> Result<String> {
    let n = rows.len();
    let m = markers.len();
    let mut lo = 0.0f64;
    let mut hi = 0.0f64;
    for r in rows {
        let (a, b) = r.range.unwrap_or((r.value, r.value));
        lo = lo.min(r.value).min(a);
        hi = hi.max(r.value).max(b);
    }
    for mk in markers {
        lo = lo.min(mk.value);
        hi = hi.max(mk.value);
    }
    if !(hi - lo).is_finite() || hi - lo <= 0.0 {
        hi = lo + 1.0;
    }
    // Room for the notes past the bars' ends.
    let span = hi - lo;
    if hi > 0.0 {
        hi += span * 0.22;
    }
    if lo < 0.0 {
        lo -= span * 0.22;
    }
    let label_chars = rows
        .iter()
        .map(|r| r.label.chars().count())
        .max()
        .unwrap_or(4);
    let label_area = (label_chars as u32) * 7 + 14;
    let height = ((n + m) as u32) * ROW + 70;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        // Segments of 0..=k are k + 1 rows; an empty chart still gets one row for its axes.
        let last_row = (n + m).max(1) as i32 - 1;
        let mut chart = ChartBuilder::on(&root)
            .margin_right(16)
            .margin_top(6)
            .x_label_area_size(48)
            .y_label_area_size(label_area)
            .build_cartesian_2d(lo..hi, (0..last_row).into_segmented())
            .map_err(chart_err)?;
        let label = |i: &SegmentValue<i32>| match i {
            SegmentValue::CenterOf(i) if (*i as usize) < n => {
                rows[n - 1 - *i as usize].label.clone()
            }
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_y_mesh()
            .bold_line_style(GRID)
            .light_line_style(TRANSPARENT)
            .axis_style(FG)
            .label_style(("sans-serif", FONT).into_font().color(&FG))
            .axis_desc_style(("sans-serif", FONT).into_font().color(&FG))
            .x_labels(6)
            .x_label_formatter(&|v| format(*v))
            .y_labels(n + m)
            .y_label_formatter(&label)
            .x_desc(axis)
            .draw()
            .map_err(chart_err)?;
        // Row i (from the top) is segment n-1-i: plotters counts upwards.
        let seg = |i: usize| (n - 1 - i) as i32;
        chart
            .draw_series(rows.iter().enumerate().map(|(i, r)| {
                let (a, b) = if r.value < 0.0 {
                    (r.value, 0.0)
                } else {
                    (0.0, r.value)
                };
                let mut rect = Rectangle::new(
                    [
                        (a, SegmentValue::Exact(seg(i))),
                        (b, SegmentValue::Exact(seg(i) + 1)),
                    ],
                    r.color.filled(),
                );
                rect.set_margin(4, 4, 0, 0);
                rect
            }))
            .map_err(chart_err)?;
        chart
            .draw_series(rows.iter().enumerate().filter_map(|(i, r)| {
                r.range.map(|(a, b)| {
                    ErrorBar::new_horizontal(
                        SegmentValue::CenterOf(seg(i)),
                        a,
                        r.value,
                        b,
                        FG.stroke_width(1),
                        8,
                    )
                })
            }))
            .map_err(chart_err)?;
        let note_style = ("sans-serif", FONT).into_font().color(&FG);
        chart
            .draw_series(rows.iter().enumerate().map(|(i, r)| {
                let (end, anchor, dx) = if r.value < 0.0 {
                    let end = r.range.map_or(r.value, |(a, _)| a.min(r.value));
                    (end, HPos::Right, -6)
                } else {
                    let end = r.range.map_or(r.value, |(_, b)| b.max(r.value));
                    (end, HPos::Left, 6)
                };
                EmptyElement::at((end, SegmentValue::CenterOf(seg(i))))
                    + Text::new(
                        r.note.clone(),
                        (dx, 0),
                        note_style.pos(Pos::new(anchor, VPos::Center)),
                    )
            }))
            .map_err(chart_err)?;
        if lo < 0.0 {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![
                        (0.0, SegmentValue::Exact(0)),
                        (0.0, SegmentValue::Exact(n as i32)),
                    ],
                    FG.stroke_width(1),
                )))
                .map_err(chart_err)?;
        }
        for (k, mk) in markers.iter().enumerate() {
            chart
                .draw_series(std::iter::once(DashedPathElement::new(
                    vec![
                        (mk.value, SegmentValue::Exact(0)),
                        (mk.value, SegmentValue::Exact((n + k + 1) as i32)),
                    ],
                    6,
                    4,
                    mk.color.stroke_width(2),
                )))
                .map_err(chart_err)?;
            // The label stays inside the chart: left of the line in its right half.
            let (anchor, dx) = if mk.value > (lo + hi) / 2.0 {
                (HPos::Right, -6)
            } else {
                (HPos::Left, 6)
            };
            chart
                .draw_series(std::iter::once(
                    EmptyElement::at((mk.value, SegmentValue::CenterOf((n + k) as i32)))
                        + Text::new(
                            mk.label.clone(),
                            (dx, 0),
                            ("sans-serif", FONT)
                                .into_font()
                                .color(&mk.color)
                                .pos(Pos::new(anchor, VPos::Center)),
                        ),
                ))
                .map_err(chart_err)?;
        }
        root.present().map_err(chart_err)?;
    }
    Ok(finish(svg, "bars", description))
}

/// Latency curves: one per target over [`PERCENTILES`], microseconds on a log axis.
pub fn latency(description: &str, curves: &[Curve], axis: &str) -> Result<String> {
    let positive = || {
        curves
            .iter()
            .flat_map(|c| c.values)
            .filter(|v| v.is_finite() && *v > 0.0)
    };
    let (mut lo, mut hi) = positive().fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() || hi <= 0.0 {
        (lo, hi) = (1.0, 10.0);
    }
    // A decade's margin at most, so the curves never touch the frame.
    lo /= 1.5;
    hi *= 1.5;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 300)).into_drawing_area();
        let mut chart = ChartBuilder::on(&root)
            .margin_right(16)
            .margin_top(10)
            .x_label_area_size(48)
            .y_label_area_size(72)
            // 0..4 is the five segments 0..=4, one per percentile.
            .build_cartesian_2d((0..4i32).into_segmented(), (lo..hi).log_scale())
            .map_err(chart_err)?;
        chart
            .configure_mesh()
            .bold_line_style(GRID)
            .light_line_style(TRANSPARENT)
            .axis_style(FG)
            .label_style(("sans-serif", FONT).into_font().color(&FG))
            .axis_desc_style(("sans-serif", FONT).into_font().color(&FG))
            .x_labels(5)
            .x_label_formatter(&|i| match i {
                SegmentValue::CenterOf(i) => PERCENTILES
                    .get(*i as usize)
                    .map_or_else(String::new, |p| (*p).to_string()),
                _ => String::new(),
            })
            .y_label_formatter(&|v| log_label(*v))
            .x_desc("percentile")
            .y_desc(axis)
            .draw()
            .map_err(chart_err)?;
        for c in curves {
            let points: Vec<(SegmentValue<i32>, f64)> = c
                .values
                .iter()
                .enumerate()
                .filter(|(_, v)| v.is_finite() && **v > 0.0)
                .map(|(i, v)| (SegmentValue::CenterOf(i as i32), *v))
                .collect();
            let style = c.color.stroke_width(2);
            if c.dashed {
                chart
                    .draw_series(DashedLineSeries::new(points.clone(), 6, 4, style))
                    .map_err(chart_err)?;
            } else {
                chart
                    .draw_series(LineSeries::new(points.clone(), style))
                    .map_err(chart_err)?;
            }
            chart
                .draw_series(
                    points
                        .into_iter()
                        .map(|p| Circle::new(p, 3, c.color.filled())),
                )
                .map_err(chart_err)?;
        }
        root.present().map_err(chart_err)?;
    }
    Ok(finish(svg, "latency", description))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn bar(label: &str, value: f64) -> Bar {
        Bar {
            label: label.into(),
            value,
            range: Some((value * 0.9, value * 1.1)),
            note: format!("note-{label}"),
            color: PALETTE[0],
        }
    }

    #[test]
    fn bars_carry_labels_notes_markers_and_the_axis() {
        let svg = bars(
            "throughput",
            &[bar("raw/sled", 1000.0), bar("engine/sled", 2500.0)],
            &[Marker {
                label: "ceiling disk/o_direct".into(),
                value: 4000.0,
                color: FG,
            }],
            "ops/s",
            &short,
        )
        .unwrap();
        assert!(
            svg.starts_with("<svg class=\"chart bars\" role=\"img\""),
            "{svg}"
        );
        // plotters writes each text on a line of its own.
        for needle in [
            "\nraw/sled\n",
            "\nengine/sled\n",
            "\nnote-raw/sled\n",
            "\nceiling disk/o_direct\n",
            "\nops/s\n",
            "\"#4E79A7\"",
        ] {
            assert!(svg.contains(needle), "{needle} missing");
        }
        // The sentinel colours the page's CSS restyles.
        assert!(svg.contains("#010203") && svg.contains("#040506"));
    }

    #[test]
    fn negative_bars_and_empty_inputs_still_draw() {
        let svg = bars(
            "changes",
            &[bar("a ops/s", -12.0), bar("b", 30.0)],
            &[],
            "%",
            &short,
        )
        .unwrap();
        assert!(svg.contains("\nnote-a ops/s\n") && svg.contains("\n%\n"));
        assert!(bars("none", &[], &[], "ops/s", &short).is_ok());
        let flat = Curve {
            label: "x".into(),
            values: [0.0; 5],
            color: GREY,
            dashed: true,
        };
        let svg = latency("latency", &[flat], "latency, µs (log)").unwrap();
        assert!(svg.contains("\np99.9\n") && svg.contains("\nlatency, µs (log)\n"));
    }

    #[test]
    fn axis_numbers_are_short() {
        assert_eq!(short(1_234_567.0), "1.2M");
        assert_eq!(short(35_000.0), "35k");
        assert_eq!(short(1_500.0), "1.5k");
        assert_eq!(short(950.0), "950");
        assert_eq!(short(2.5), "2.5");
        assert_eq!(short(0.25), "0.25");
        assert_eq!(short(-20.0), "-20");
        assert_eq!(log_label(2000.0), "2.0k");
        assert_eq!(log_label(50.0), "50");
        assert_eq!(log_label(3000.0), "");
        assert_eq!(log_label(0.0), "");
    }
}
