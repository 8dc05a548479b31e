//! The chart (`load.svg`): requests/s and sidecar CPU µs/request per cell, medians with
//! min–max whiskers, drawn with plotters' SVG backend (already in the dependency tree through
//! criterion; SVG needs no font files, unlike plotters' PNG backend).

use std::path::Path;

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::report::{summarize, thousands, Report, Summary, FLOOR, NONE_CELL};

const GREY: RGBColor = RGBColor(0x9e, 0x9e, 0x9e);
const BLUE: RGBColor = RGBColor(0x64, 0xb5, 0xf6);
const RED: RGBColor = RGBColor(0xe5, 0x73, 0x73);
const LIGHT_GREEN: RGBColor = RGBColor(0x81, 0xc7, 0x84);
const GREEN: RGBColor = RGBColor(0x38, 0x8e, 0x3c);
const TEAL: RGBColor = RGBColor(0x26, 0xa6, 0x9a);
const PURPLE: RGBColor = RGBColor(0x95, 0x75, 0xcd);
const BASELINE: RGBColor = RGBColor(0x61, 0x61, 0x61);

fn color(cell: &str) -> RGBColor {
    if cell.starts_with("none") {
        GREY
    } else if cell.starts_with("noop") {
        BLUE
    } else if cell.starts_with("floor") {
        PURPLE
    } else if cell.starts_with("rbac") {
        RED
    } else if cell.ends_with("/allowed") {
        LIGHT_GREEN
    } else if cell.ends_with("/realistic") {
        TEAL
    } else {
        GREEN
    }
}

/// One panel: per cell (median, min, max) and the label printed after the bar.
struct Panel<'a> {
    title: &'a str,
    x_desc: &'a str,
    values: Vec<(f64, f64, f64)>,
    labels: Vec<String>,
    /// A vertical reference line (the no-filter cell's CPU).
    baseline: Option<f64>,
    tick: fn(f64) -> String,
}

/// Writes the chart of `report` to `path` (SVG).
pub fn write(report: &Report, path: &Path) -> Result<(), String> {
    draw(report, path).map_err(|e| format!("chart {}: {e}", path.display()))
}

fn one_decimal(v: f64) -> String {
    format!("{v:.1}")
}

fn draw(report: &Report, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let summary = summarize(&report.cells);
    // Bottom to top in chart coordinates, so the first cell is drawn on top.
    let rows: Vec<&(String, Summary)> = summary.iter().rev().collect();
    let names: Vec<&str> = rows.iter().map(|(n, _)| n.as_str()).collect();
    let added = |name: &str| {
        summary
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, s)| s.added)
    };
    let mut panels = vec![
        Panel {
            title: "Throughput",
            x_desc: "requests/s (median, min–max)",
            values: rows
                .iter()
                .map(|(_, s)| (s.rps, s.rps_min, s.rps_max))
                .collect(),
            labels: rows.iter().map(|(_, s)| thousands(s.rps)).collect(),
            baseline: None,
            tick: thousands,
        },
        Panel {
            title: "CPU per request",
            x_desc: "sidecar Envoy CPU µs per request (median, min–max)",
            values: rows
                .iter()
                .map(|(_, s)| (s.cpu_us_per_req, s.cpu_min, s.cpu_max))
                .collect(),
            labels: rows
                .iter()
                .map(|(_, s)| one_decimal(s.cpu_us_per_req))
                .collect(),
            baseline: summary
                .iter()
                .find(|(n, _)| n == NONE_CELL)
                .map(|(_, s)| s.cpu_us_per_req),
            tick: one_decimal,
        },
    ];
    // Issue 14: what each filter adds, and its ratio to what the floor adds, same traffic.
    if added(NONE_CELL).is_some() {
        panels.push(Panel {
            title: "Added over no filter, and ÷ the floor's",
            x_desc: "added sidecar CPU µs per request (paired by round, same traffic)",
            values: rows
                .iter()
                .map(|(_, s)| {
                    let a = s.added.unwrap_or(f64::NAN);
                    (a, a, a)
                })
                .collect(),
            labels: rows
                .iter()
                .map(|(name, s)| {
                    let a = s.added.unwrap_or(f64::NAN);
                    let traffic = name.split_once('/').map_or("", |(_, t)| t);
                    match added(&format!("{FLOOR}/{traffic}")) {
                        Some(f) if f > 0.0 && !name.starts_with("none/") => {
                            format!("{a:+.1} ({:.2}x floor)", a / f)
                        }
                        _ => format!("{a:+.1}"),
                    }
                })
                .collect(),
            baseline: None,
            tick: one_decimal,
        });
    }

    let n = names.len().max(1);
    let width = 650 * panels.len() as u32;
    let root = SVGBackend::new(path, (width, (50 * n + 150) as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let m = &report.meta;
    let root = root.titled(
        &format!(
            "tenant-egress load benchmark · Envoy {} --concurrency 1 · {} connections · {}x{}s \
             per cell · {}",
            m.envoy, m.connections, m.rounds, m.duration, m.date
        ),
        ("sans-serif", 15),
    )?;
    let areas = root.split_evenly((1, panels.len()));
    for (area, p) in areas.iter().zip(&panels) {
        panel(area, &names, p)?;
    }
    root.present()?;
    Ok(())
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    names: &[&str],
    p: &Panel<'_>,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    let n = names.len().max(1) as i32;
    let finite_values = || {
        p.values
            .iter()
            .flat_map(|v| [v.0, v.1, v.2])
            .filter(|v| v.is_finite())
    };
    let hi = finite_values().fold(0.0f64, f64::max);
    let lo = finite_values().fold(0.0f64, f64::min);
    // Room on the right for the labels.
    let span = if hi - lo > 0.0 { hi - lo } else { 1.0 };
    let x_range = (lo - if lo < 0.0 { 0.05 * span } else { 0.0 })..(hi + 0.35 * span);
    let mut chart = ChartBuilder::on(area)
        .caption(p.title, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(170)
        // `a..b` segmented has a segment for `b` too, so the last cell is `b` (but a one-cell
        // range `0..0` gets no labels: then one segment stays empty).
        .build_cartesian_2d(x_range, (0..(n - 1).max(1)).into_segmented())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc(p.x_desc)
        .x_label_formatter(&|x| (p.tick)(*x))
        .y_labels(names.len().max(1))
        .y_label_formatter(&|y| match y {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => usize::try_from(*i)
                .ok()
                .and_then(|i| names.get(i))
                .map_or_else(String::new, |s| (*s).to_string()),
            SegmentValue::Last => String::new(),
        })
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.12))
        .draw()?;
    chart.draw_series(
        p.values
            .iter()
            .zip(names)
            .enumerate()
            .map(|(i, (v, name))| {
                let i = i as i32;
                let mut bar = Rectangle::new(
                    [
                        (0.0, SegmentValue::Exact(i)),
                        (finite(v.0), SegmentValue::Exact(i + 1)),
                    ],
                    color(name).filled(),
                );
                bar.set_margin(5, 5, 0, 0);
                bar
            }),
    )?;
    chart.draw_series(p.values.iter().enumerate().map(|(i, v)| {
        let y = SegmentValue::CenterOf(i as i32);
        PathElement::new(
            vec![(finite(v.1), y.clone()), (finite(v.2), y)],
            BLACK.stroke_width(1),
        )
    }))?;
    let style =
        TextStyle::from(("sans-serif", 12).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    // The label, 6 px right of the bar's or whisker's end.
    chart.draw_series(
        p.values
            .iter()
            .zip(&p.labels)
            .enumerate()
            .map(|(i, (v, label))| {
                EmptyElement::at((finite(v.2).max(0.0), SegmentValue::CenterOf(i as i32)))
                    + Text::new(label.clone(), (6, 0), style.clone())
            }),
    )?;
    if let Some(b) = p.baseline.filter(|b| b.is_finite()) {
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(b, SegmentValue::Exact(0)), (b, SegmentValue::Last)],
            BASELINE.stroke_width(1),
        )))?;
    }
    Ok(())
}

fn finite(x: f64) -> f64 {
    if x.is_finite() {
        x
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{CellResult, Sample};

    #[test]
    fn renders_every_cell() {
        let cell = |name: &str, cpu: f64| CellResult {
            cell: name.into(),
            host: "h".into(),
            expect: 200,
            samples: vec![Sample {
                cpu_us_per_req: cpu,
                rps: 1e6 / cpu,
                ..Sample::default()
            }],
        };
        let report = Report {
            cells: vec![cell(NONE_CELL, 30.0), cell("te-1k/denied", 20.0)],
            ..Report::default()
        };
        let dir = std::env::temp_dir().join(format!("load-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("load.svg");
        write(&report, &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("te-1k/denied") && svg.contains(NONE_CELL));
        assert!(svg.contains("33,333") && svg.contains("30.0"), "{svg}");

        // One cell, and none at all, still draw.
        let one = Report {
            cells: vec![cell("te-1k/allowed", 40.0)],
            ..Report::default()
        };
        let empty = Report::default();
        let path = std::env::temp_dir().join(format!("load-chart-{}.svg", std::process::id()));
        write(&one, &path).unwrap();
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .contains("te-1k/allowed"));
        write(&empty, &path).unwrap();
        std::fs::remove_file(&path).unwrap();
    }
}
