//! The chart (`load.svg`): requests/s and sidecar CPU µs/request per cell, medians with
//! min–max whiskers, drawn with plotters' SVG backend (already in the dependency tree through
//! criterion; SVG needs no font files, unlike plotters' PNG backend).

use std::path::Path;

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::report::{summarize, Report, Summary, NONE_CELL};

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

/// One panel's values per cell: (median, min, max).
type Column = Vec<(f64, f64, f64)>;

/// Writes the chart of `report` to `path` (SVG).
pub fn write(report: &Report, path: &Path) -> Result<(), String> {
    draw(report, path).map_err(|e| format!("chart {}: {e}", path.display()))
}

fn draw(report: &Report, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let summary = summarize(&report.cells);
    // Bottom to top in chart coordinates, so the first cell is drawn on top.
    let rows: Vec<&(String, Summary)> = summary.iter().rev().collect();
    let n = rows.len().max(1);
    let height = (50 * n + 150) as u32;
    let root = SVGBackend::new(path, (1400, height)).into_drawing_area();
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
    let (left, right) = root.split_horizontally(700);
    let rps: Column = rows
        .iter()
        .map(|(_, s)| (s.rps, s.rps_min, s.rps_max))
        .collect();
    let cpu: Column = rows
        .iter()
        .map(|(_, s)| (s.cpu_us_per_req, s.cpu_min, s.cpu_max))
        .collect();
    let names: Vec<&str> = rows.iter().map(|(n, _)| n.as_str()).collect();
    let baseline = summary
        .iter()
        .find(|(n, _)| n == NONE_CELL)
        .map(|(_, s)| s.cpu_us_per_req);
    panel(
        &left,
        "Throughput",
        "requests/s (median, min–max)",
        &names,
        &rps,
        None,
        crate::report::thousands,
    )?;
    panel(
        &right,
        "CPU per request",
        "sidecar Envoy CPU µs per request (median, min–max)",
        &names,
        &cpu,
        baseline,
        |v| format!("{v:.1}"),
    )?;
    root.present()?;
    Ok(())
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    x_desc: &str,
    names: &[&str],
    values: &Column,
    baseline: Option<f64>,
    fmt: impl Fn(f64) -> String,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    let n = names.len().max(1) as i32;
    let hi = values
        .iter()
        .map(|v| v.2)
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let x_max = if hi > 0.0 { hi * 1.22 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(170)
        // `a..b` segmented has a segment for `b` too, so the last cell is `b` (but a one-cell
        // range `0..0` gets no labels: then one segment stays empty).
        .build_cartesian_2d(0f64..x_max, (0..(n - 1).max(1)).into_segmented())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc(x_desc)
        .x_label_formatter(&|x| fmt(*x))
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
    chart.draw_series(values.iter().zip(names).enumerate().map(|(i, (v, name))| {
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
    }))?;
    chart.draw_series(values.iter().enumerate().map(|(i, v)| {
        let y = SegmentValue::CenterOf(i as i32);
        PathElement::new(
            vec![(finite(v.1), y.clone()), (finite(v.2), y)],
            BLACK.stroke_width(1),
        )
    }))?;
    let label =
        TextStyle::from(("sans-serif", 12).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    // The value, 6 px right of the whisker's end.
    chart.draw_series(values.iter().enumerate().map(|(i, v)| {
        EmptyElement::at((finite(v.2), SegmentValue::CenterOf(i as i32)))
            + Text::new(fmt(v.0), (6, 0), label.clone())
    }))?;
    if let Some(b) = baseline.filter(|b| b.is_finite()) {
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
