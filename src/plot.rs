//! Pictures: line charts drawn with plotters into SVG or PNG, with the bundled
//! DejaVu Sans font (`assets/`), so that no system font library is needed.
//! Used for training curves, spectra and the approximations' cosines against the
//! damping (a log x axis, [`PlotLayout`]). Files are written atomically.

use crate::files::{write_atomic, FileError, Overwrite};
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

/// One line of a chart.
#[derive(Clone, Debug)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// One chart: a title, axis labels and its lines. Several panels are drawn side by side.
#[derive(Clone, Debug)]
pub struct Panel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Draw y on a log scale (for losses spanning decades); needs positive values.
    pub log_y: bool,
}

/// Where a chart's legend sits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Legend {
    #[default]
    UpperRight,
    LowerRight,
    LowerLeft,
    /// One legend for the whole picture, in a strip below the panels, from the first
    /// panel's series (for panels that share their series, colour for colour).
    Below,
}

/// Entries per row of a [`Legend::Below`] strip, per panel's width.
const BELOW_PER_PANEL: usize = 3;
/// Height of one row of a [`Legend::Below`] strip.
const BELOW_ROW_H: u32 = 20;

/// The strip below the panels (0 unless [`Legend::Below`]): its rows of entries.
fn below_rows(panels: &[Panel], layout: PlotLayout) -> u32 {
    if layout.legend != Legend::Below {
        return 0;
    }
    let entries = panels.first().map_or(0, |p| p.series.len());
    let per_row = BELOW_PER_PANEL * panels.len().max(1);
    entries.div_ceil(per_row) as u32
}

/// How every panel of a picture lays out its axes and legend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlotLayout {
    /// Draw x on a log scale (a damping grid over decades); needs positive values.
    pub log_x: bool,
    pub legend: Legend,
}

/// A picture that could not be drawn or written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("{path}: unknown picture format, use a file name ending in .png or .svg")]
    Format { path: std::path::PathBuf },
    #[error("cannot draw {path}: {reason}")]
    Draw {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error(transparent)]
    File(#[from] FileError),
}

const PANEL_W: u32 = 560;
/// The ratio max/min of y above which a panel that asks for a log axis gets one.
const LOG_AXIS_MIN_SPAN: f64 = 20.0;
const PANEL_H: u32 = 400;
/// matplotlib's tab10, in its order.
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are compiled in; registering them cannot fail for a valid TTF.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            include_bytes!("../assets/DejaVuSans.ttf"),
        );
    });
}

/// Draws `panels` side by side into `path` (.svg or .png), atomically.
pub fn draw(path: &Path, panels: &[Panel], overwrite: Overwrite) -> Result<(), PlotError> {
    draw_with(path, panels, PlotLayout::default(), overwrite)
}

/// [`draw`] with a layout for every panel.
pub fn draw_with(
    path: &Path,
    panels: &[Panel],
    layout: PlotLayout,
    overwrite: Overwrite,
) -> Result<(), PlotError> {
    register_font();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase());
    let strip = below_rows(panels, layout) * BELOW_ROW_H;
    let size = (
        PANEL_W * panels.len().max(1) as u32,
        PANEL_H + strip + if strip > 0 { 10 } else { 0 },
    );
    let draw_err = |e: String| PlotError::Draw {
        path: path.into(),
        reason: e,
    };
    let bytes = match ext.as_deref() {
        Some("svg") => {
            let mut svg = String::new();
            {
                let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
                render(&root, panels, layout).map_err(draw_err)?;
            }
            svg.into_bytes()
        }
        Some("png") => {
            let mut rgb = vec![0u8; (size.0 * size.1 * 3) as usize];
            {
                let root = BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area();
                render(&root, panels, layout).map_err(draw_err)?;
            }
            encode_png(&rgb, size).map_err(draw_err)?
        }
        _ => return Err(PlotError::Format { path: path.into() }),
    };
    write_atomic(path, &bytes, overwrite)?;
    Ok(())
}

fn encode_png(rgb: &[u8], (w, h): (u32, u32)) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().map_err(|e| e.to_string())?;
    writer.write_image_data(rgb).map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())?;
    Ok(out)
}

fn render<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    panels: &[Panel],
    layout: PlotLayout,
) -> Result<(), String> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (charts, strip) = root.split_vertically(PANEL_H);
    let areas = charts.split_evenly((1, panels.len().max(1)));
    for (area, panel) in areas.iter().zip(panels) {
        render_panel(area, panel, layout)?;
    }
    if layout.legend == Legend::Below {
        if let Some(first) = panels.first() {
            legend_strip(&strip, &first.series, BELOW_PER_PANEL * panels.len().max(1))?;
        }
    }
    root.present().map_err(|e| e.to_string())
}

/// The entries of `series` in rows of `per_row`, colour for colour as the panels draw them.
fn legend_strip<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    series: &[Series],
    per_row: usize,
) -> Result<(), String> {
    let (width, _) = area.dim_in_pixel();
    let column = (width as usize / per_row.max(1)) as i32;
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let x = 24 + (i % per_row) as i32 * column;
        let y = 10 + (i / per_row) as i32 * BELOW_ROW_H as i32;
        area.draw(&PathElement::new(
            vec![(x, y), (x + 18, y)],
            color.stroke_width(2),
        ))
        .map_err(|e| e.to_string())?;
        area.draw(&Text::new(
            s.label.clone(),
            (x + 24, y - 7),
            ("sans-serif", 13).into_font(),
        ))
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The [min, max] of the finite values, padded by 5% so lines do not touch the frame.
fn padded_range(values: impl Iterator<Item = f64>, log: bool) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite() && (!log || *v > 0.0)) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return if log { (0.1, 1.0) } else { (0.0, 1.0) };
    }
    if log {
        return (lo / 1.2, hi * 1.2);
    }
    if hi - lo < 1e-12 {
        return (lo - 0.5, hi + 0.5);
    }
    let pad = 0.05 * (hi - lo);
    (lo - pad, hi + pad)
}

/// A tick label with at most 4 significant digits and no trailing zeros.
fn tick(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    if v.abs() >= 1e5 || v.abs() < 1e-3 {
        return format!("{v:.1e}");
    }
    let decimals = (3 - v.abs().log10().floor() as i32).clamp(0, 6) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

fn render_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    panel: &Panel,
    layout: PlotLayout,
) -> Result<(), String> {
    let log_x = layout.log_x;
    let xs = panel
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0));
    let ys = panel
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1));
    let (x0, x1) = padded_range(xs, log_x);
    // A log axis only helps across decades; over less than one, plotters labels
    // too few ticks, so a linear axis reads better.
    let log_y = panel.log_y && {
        let (lo, hi) = padded_range(ys.clone(), true);
        hi / lo > LOG_AXIS_MIN_SPAN
    };
    let (y0, y1) = padded_range(ys, log_y);
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(&panel.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64);
    macro_rules! finish {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(panel.x_label.as_str())
                .y_desc(panel.y_label.as_str())
                .label_style(("sans-serif", 13))
                .x_label_formatter(&|x: &f64| tick(*x))
                .y_label_formatter(&|y: &f64| tick(*y))
                .light_line_style(RGBColor(240, 240, 240))
                .draw()
                .map_err(|e| e.to_string())?;
            for (i, s) in panel.series.iter().enumerate() {
                let color = COLORS[i % COLORS.len()];
                let pts: Vec<(f64, f64)> = s
                    .points
                    .iter()
                    .copied()
                    .filter(|p| {
                        p.0.is_finite()
                            && p.1.is_finite()
                            && (!log_y || p.1 > 0.0)
                            && (!log_x || p.0 > 0.0)
                    })
                    .collect();
                chart
                    .draw_series(LineSeries::new(pts, color.stroke_width(2)))
                    .map_err(|e| e.to_string())?
                    .label(s.label.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                    });
            }
            let position = match layout.legend {
                Legend::UpperRight => Some(SeriesLabelPosition::UpperRight),
                Legend::LowerRight => Some(SeriesLabelPosition::LowerRight),
                Legend::LowerLeft => Some(SeriesLabelPosition::LowerLeft),
                Legend::Below => None,
            };
            if let Some(position) = position {
                chart
                    .configure_series_labels()
                    .position(position)
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .label_font(("sans-serif", 13))
                    .draw()
                    .map_err(|e| e.to_string())?;
            }
        }};
    }
    match (log_x, log_y) {
        (false, true) => finish!(builder
            .build_cartesian_2d(x0..x1, (y0..y1).log_scale())
            .map_err(|e| e.to_string())?),
        (false, false) => finish!(builder
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| e.to_string())?),
        (true, true) => finish!(builder
            .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
            .map_err(|e| e.to_string())?),
        (true, false) => finish!(builder
            .build_cartesian_2d((x0..x1).log_scale(), y0..y1)
            .map_err(|e| e.to_string())?),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panels() -> Vec<Panel> {
        let line = |label: &str, f: fn(f64) -> f64| Series {
            label: label.into(),
            points: (1..=20).map(|e| (e as f64, f(e as f64))).collect(),
        };
        vec![
            Panel {
                title: "loss".into(),
                x_label: "epoch".into(),
                y_label: "E".into(),
                series: vec![
                    line("train", |e| 2.0 / e),
                    line("validation", |e| 2.2 / e + 0.05),
                ],
                log_y: true,
            },
            Panel {
                title: "accuracy".into(),
                x_label: "epoch".into(),
                y_label: "fraction correct".into(),
                series: vec![line("train", |e| 1.0 - 0.5 / e)],
                log_y: false,
            },
        ]
    }

    #[test]
    fn draws_png_and_svg() {
        let dir = tempfile::tempdir().unwrap();
        let png_path = dir.path().join("c.png");
        draw(&png_path, &panels(), Overwrite::Refuse).unwrap();
        let bytes = std::fs::read(&png_path).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        let svg_path = dir.path().join("c.svg");
        draw(&svg_path, &panels(), Overwrite::Refuse).unwrap();
        let svg = std::fs::read_to_string(&svg_path).unwrap();
        assert!(svg.contains("<svg") && svg.contains("validation"));
        let log_x = PlotLayout {
            log_x: true,
            legend: Legend::Below,
        };
        let path = dir.path().join("x.svg");
        draw_with(&path, &panels(), log_x, Overwrite::Refuse).unwrap();
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .contains("validation"));
        let err = draw(&dir.path().join("c.gif"), &panels(), Overwrite::Refuse).unwrap_err();
        assert!(matches!(err, PlotError::Format { .. }));
    }
}
