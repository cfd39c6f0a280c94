//! `latest.png`: calls/s and busy CPU per call, grouped by call type, one bar per server.
//!
//! Text is drawn with ab_glyph from a TTF we load ourselves (DejaVu Sans, installed by
//! `cargo xtask setup`), so rendering needs neither fontconfig nor a display.
use anyhow::{anyhow, Context, Result};
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use std::path::Path;

use super::report::{variant_label, workload_label, Report};

/// Where Debian's fonts-dejavu-core puts the font.
const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

/// One colour per server, the same in every chart.
fn colour(variant: &str) -> RGBColor {
    match variant {
        "xdp-native" => RGBColor(0x1f, 0x77, 0xb4),
        "xdp-generic" => RGBColor(0x2c, 0xa0, 0x2c),
        "socket" => RGBColor(0xff, 0x7f, 0x0e),
        "ganesha" => RGBColor(0xd6, 0x27, 0x28),
        "gateway" => RGBColor(0x8c, 0x56, 0x4b),
        _ => RGBColor(0x94, 0x67, 0xbd),
    }
}

fn load_font() -> Result<()> {
    let path = FONT_PATHS
        .iter()
        .find(|p| Path::new(p).exists())
        .ok_or_else(|| anyhow!("no DejaVuSans.ttf (install fonts-dejavu-core)"))?;
    let bytes = std::fs::read(path).with_context(|| format!("reading {path}"))?;
    // plotters keeps registered fonts for the life of the process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow!("{path} is not a usable font"))
}

/// One panel's data: per workload, per variant, a value.
struct Panel<'a> {
    title: &'a str,
    y_label: &'a str,
    values: Vec<Vec<f64>>,
}

/// Draw the chart for `report` into `out` (PNG).
pub fn draw(report: &Report, out: &Path) -> Result<()> {
    load_font()?;
    let variants = ordered(report.cells.iter().map(|c| c.variant.as_str()));
    let workloads = ordered(report.cells.iter().map(|c| c.workload.as_str()));
    let pick = |f: &dyn Fn(&super::report::Cell) -> Option<f64>| -> Vec<Vec<f64>> {
        workloads
            .iter()
            .map(|w| {
                variants
                    .iter()
                    .map(|v| report.cell(v, w).and_then(f).unwrap_or(0.0))
                    .collect()
            })
            .collect()
    };
    let panels = [
        Panel {
            title: "Calls/s at saturation (higher is better)",
            y_label: "calls/s",
            values: pick(&|c| Some(c.saturation.calls_per_sec)),
        },
        Panel {
            title: "Busy CPU per call, both CPUs, generator included (lower is better)",
            y_label: "µs/call",
            values: pick(&|c| c.saturation.cpu_us_per_call),
        },
        Panel {
            title: "p99 latency at 50% of saturation (lower is better)",
            y_label: "µs",
            values: pick(&|c| Some(c.half.p99_us)),
        },
    ];

    let root = BitMapBackend::new(out, (1500, 620)).into_drawing_area();
    root.fill(&WHITE)?;
    let (title_area, body) = root.split_vertically(50);
    let subtitle = format!(
        "xdp-mountd vs NFS-Ganesha — {} — {} × {}, Linux {} — commit {}{}",
        report.date,
        report.machine.nproc,
        report.machine.cpu_model,
        report.machine.kernel,
        report.commit.rev.get(..12).unwrap_or(&report.commit.rev),
        if report.commit.dirty { " (dirty)" } else { "" }
    );
    title_area.draw(&Text::new(
        subtitle,
        (10, 15),
        ("sans-serif", 18).into_font(),
    ))?;
    let (plots, legend) = body.split_vertically(520);
    let areas = plots.split_evenly((1, panels.len()));
    for (area, panel) in areas.iter().zip(&panels) {
        draw_panel(area, panel, &workloads, &variants)?;
    }
    for (i, v) in variants.iter().enumerate() {
        let x = 20 + 370 * i32::try_from(i).unwrap_or(0);
        legend.draw(&Rectangle::new([(x, 15), (x + 20, 35)], colour(v).filled()))?;
        legend.draw(&Text::new(
            variant_label(v).to_string(),
            (x + 28, 17),
            ("sans-serif", 16).into_font(),
        ))?;
    }
    root.present()
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    panel: &Panel<'_>,
    workloads: &[&str],
    variants: &[&str],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let groups = workloads.len().max(1);
    let bars = panel.values.first().map_or(1, Vec::len).max(1);
    let top = panel
        .values
        .iter()
        .flatten()
        .copied()
        .fold(0.0_f64, f64::max)
        .max(1e-9)
        * 1.12;
    let mut chart = ChartBuilder::on(area)
        .caption(panel.title, ("sans-serif", 15))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..groups as f64, 0.0..top)
        .map_err(|e| anyhow!("chart: {e}"))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(groups * 2 + 1)
        .x_label_formatter(&|x| {
            // Label only the group centres (k + 0.5).
            let k = x.floor();
            if (x - k - 0.5).abs() < 1e-6 {
                workloads
                    .get(k as usize)
                    .map_or(String::new(), |w| workload_label(w).to_string())
            } else {
                String::new()
            }
        })
        .y_desc(panel.y_label)
        .y_label_formatter(&|y| short_number(*y))
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(|e| anyhow!("chart mesh: {e}"))?;
    let width = 0.8 / bars as f64;
    for (g, row) in panel.values.iter().enumerate() {
        for (b, value) in row.iter().enumerate() {
            let x0 = g as f64 + 0.1 + b as f64 * width;
            let fill = colour(variants.get(b).copied().unwrap_or(""));
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x0, 0.0), (x0 + width * 0.9, *value)],
                    fill.filled(),
                )))
                .map_err(|e| anyhow!("chart bars: {e}"))?;
            // The value above the bar: small bars (Ganesha's rate) stay readable.
            chart
                .draw_series(std::iter::once(Text::new(
                    short_number(*value),
                    (x0, *value + top * 0.06),
                    ("sans-serif", 12).into_font(),
                )))
                .map_err(|e| anyhow!("chart labels: {e}"))?;
        }
    }
    Ok(())
}

/// Distinct values in first-seen order.
fn ordered<'a>(items: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

/// 1200000 → "1.2M", 20000 → "20k", 1200 → "1.2k", 3.5 → "3.5".
fn short_number(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if v >= 1e3 {
        // Axis ticks of a latency chart step by a few hundred µs: keep them distinct.
        format!("{:.1}k", v / 1e3)
    } else if v >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_numbers() {
        assert_eq!(short_number(1_260_000.0), "1.3M");
        assert_eq!(short_number(20_000.0), "20k");
        assert_eq!(short_number(1_200.0), "1.2k");
        assert_eq!(short_number(1_400.0), "1.4k");
        assert_eq!(short_number(42.4), "42");
        assert_eq!(short_number(3.26), "3.3");
    }

    #[test]
    fn draws_a_png_with_text() {
        use crate::bench::report::fixtures::{cell, report};
        let r = report(vec![
            cell("xdp-native", "null", 900_000.0, 1.0, 0),
            cell("xdp-native", "mnt", 850_000.0, 1.2, 0),
            cell("ganesha", "null", 30_000.0, 40.0, 0),
            cell("ganesha", "mnt", 20_000.0, 60.0, 3),
        ]);
        let out = std::env::temp_dir().join(format!("xtask-chart-{}.png", std::process::id()));
        draw(&r, &out).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        let _ = std::fs::remove_file(&out);
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert!(
            bytes.len() > 10_000,
            "suspiciously small chart: {} bytes",
            bytes.len()
        );
    }

    #[test]
    fn ordered_keeps_first_seen_order() {
        let v = ordered(["b", "a", "b", "c", "a"].into_iter());
        assert_eq!(v, vec!["b", "a", "c"]);
    }
}
