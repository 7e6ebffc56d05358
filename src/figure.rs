//! Theory-vs-simulation comparison tables and figures.
//!
//! A [`Comparison`] pairs the replica-symmetric prediction along a one-parameter sweep
//! ([`TheoryPoint`]s) with finite-size simulation estimates at several dimensions `d`
//! ([`SimulationPoint`]s: mean, standard error of the mean and number of seeds per
//! observable). Three renderings are offered:
//!
//! * [`write_csv`]: a long-format table, one row per (observable, source, point), with the
//!   deviation of every simulation mean from the linearly interpolated theory in units of
//!   its standard error;
//! * [`write_svg`]: one SVG file per observable (theory as a black line, simulation as
//!   coloured markers with ±1 sem error bars, one colour per dimension);
//! * [`summary`]: a compact plain-text table of the worst and average deviations.
//!
//! Conventions shared by all three:
//!
//! * only observables listed in [`Comparison::observables`] are used, in that order;
//!   repeated names are used once (first occurrence);
//! * a point's value for an observable is the first entry of `values` with that name;
//! * non-finite numbers are skipped (a theory point or simulation mean with non-finite `x`
//!   or value produces no row, no marker and no line vertex; a non-finite or negative sem
//!   is treated as missing);
//! * theory is interpolated linearly in `x` between theory points sorted by `x` (for
//!   repeated `x` the first point in input order wins); outside `[min x, max x]` of the
//!   theory there is no prediction and hence no deviation;
//! * output is deterministic: the same input always yields the same bytes (rows and series
//!   are sorted, numbers are printed with Rust's shortest round-trip `f64` formatting).
//!
//! Text in the SVGs is emitted as SVG `<text>` elements: with plotters'
//! `default-features = false` (no `ttf`/`ab_glyph` feature) plotters uses its built-in
//! "naive" font metrics, so no system font is loaded or required at run time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

/// One solved point of a theory sweep: the swept value `x` and the observables there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TheoryPoint {
    /// Value of the swept parameter.
    pub x: f64,
    /// `(observable name, predicted value)`.
    pub values: Vec<(String, f64)>,
}

/// One simulated point: dimension `d`, swept value `x`, and per-observable statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimulationPoint {
    /// Simulation dimension `d`.
    pub dimension: usize,
    /// Value of the swept parameter.
    pub x: f64,
    /// `(observable name, mean over seeds, standard error of the mean, number of seeds)`.
    pub values: Vec<(String, f64, f64, usize)>,
}

/// Theory and simulation for the same sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Name of the swept parameter (x-axis label, first CSV column header).
    pub swept: String,
    /// Observables to tabulate and plot, in order.
    pub observables: Vec<String>,
    /// Theory points (any order).
    pub theory: Vec<TheoryPoint>,
    /// Simulation points (any order, any mix of dimensions).
    pub simulation: Vec<SimulationPoint>,
}

/// Failure to write a comparison table or figure; every variant names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum FigureError {
    /// Creating a directory or writing a file failed.
    #[error("I/O error on `{}`: {source}", path.display())]
    Io {
        /// File or directory being written.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Serialising the CSV table failed.
    #[error("CSV error while writing `{}`: {source}", path.display())]
    Csv {
        /// CSV file being written.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: csv::Error,
    },
    /// plotters failed to render a figure.
    #[error("plotting error while rendering `{}`: {message}", path.display())]
    Plot {
        /// SVG file being rendered.
        path: PathBuf,
        /// plotters' error message.
        message: String,
    },
}

/// Fixed column names after the first (swept-value) column of [`write_csv`].
const CSV_COLUMNS: [&str; 7] = [
    "observable",
    "source",
    "dimension",
    "value",
    "sem",
    "seeds",
    "deviation_in_sem",
];

/// Writes the comparison as a long-format CSV table to `path` (the parent directory must
/// exist; the file is overwritten).
///
/// Columns: `swept, observable, source, dimension, value, sem, seeds, deviation_in_sem`.
/// The first column holds the swept value `x`; its header is the swept parameter's name
/// ([`Comparison::swept`]), or literally `swept` if that name is empty or clashes with
/// another column name. `source` is `theory` or `simulation`. Theory rows leave
/// `dimension`, `sem`, `seeds` and `deviation_in_sem` empty. For simulation rows `value`
/// is the mean and `deviation_in_sem = (mean - theory(x)) / sem`, with `theory(x)`
/// linearly interpolated from the theory points; it is empty if `x` is outside the theory
/// range or the sem is zero/missing.
///
/// Row order: by observable (as listed), then all theory rows sorted by `x`, then
/// simulation rows sorted by `(dimension, x)`. An empty comparison yields the header only.
pub fn write_csv(comparison: &Comparison, path: &Path) -> Result<(), FigureError> {
    let csv_err = |source| FigureError::Csv {
        path: path.to_path_buf(),
        source,
    };
    let mut writer = csv::Writer::from_writer(Vec::new());
    let mut header = vec![csv_swept_header(&comparison.swept)];
    header.extend(CSV_COLUMNS.iter().map(|c| c.to_string()));
    writer.write_record(&header).map_err(csv_err)?;

    for obs in unique_observables(comparison) {
        let curve = TheoryCurve::new(comparison, obs);
        for &(x, value) in &curve.points {
            writer
                .write_record([
                    fmt_f64(x),
                    obs.to_string(),
                    "theory".into(),
                    String::new(),
                    fmt_f64(value),
                    String::new(),
                    String::new(),
                    String::new(),
                ])
                .map_err(csv_err)?;
        }
        for p in simulation_points(comparison, obs) {
            let deviation = p.deviation_in_sem(&curve);
            writer
                .write_record([
                    fmt_f64(p.x),
                    obs.to_string(),
                    "simulation".into(),
                    p.dimension.to_string(),
                    fmt_f64(p.mean),
                    p.sem.map(fmt_f64).unwrap_or_default(),
                    p.seeds.to_string(),
                    deviation.map(fmt_f64).unwrap_or_default(),
                ])
                .map_err(csv_err)?;
        }
    }

    let bytes = writer.into_inner().map_err(|e| FigureError::Io {
        path: path.to_path_buf(),
        source: e.into_error(),
    })?;
    std::fs::write(path, bytes).map_err(|source| FigureError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes one SVG per observable into `dir` (created if missing) and returns the written
/// paths, in the order of [`Comparison::observables`].
///
/// The file name is `<observable>.svg`, with every character other than ASCII letters,
/// digits, `-`, `_` and `.` replaced by `_` (an empty name becomes `observable`); names that
/// would collide (case-insensitively) get a suffix `_2`, `_3`, ... in order.
///
/// Each figure (800x600 px) shows the theory as a solid black line through the theory
/// points sorted by `x` (legend "theory"), and the simulation as filled circles with
/// vertical error bars of ±1 sem, one colour per dimension in increasing `d` (legend
/// "d = 100 (mean +/- 1 sem)"). Axis labels are the swept name (x) and the observable name
/// (y); the title is "<observable> vs <swept>". The x range spans all finite data (theory
/// and simulation) padded by 2%; the y range covers theory values and error bars, padded
/// by 5% on each side. An observable without any finite data still gets a figure (empty
/// axes on a unit range). If there are no observables, nothing is written (not even the
/// directory) and `Ok(vec![])` is returned.
pub fn write_svg(comparison: &Comparison, dir: &Path) -> Result<Vec<PathBuf>, FigureError> {
    let observables = unique_observables(comparison);
    if observables.is_empty() {
        return Ok(Vec::new());
    }
    std::fs::create_dir_all(dir).map_err(|source| FigureError::Io {
        path: dir.to_path_buf(),
        source,
    })?;

    let mut taken: Vec<String> = Vec::new();
    let mut written = Vec::with_capacity(observables.len());
    for obs in observables {
        let stem = unique_stem(&sanitize_file_stem(obs), &mut taken);
        let path = dir.join(format!("{stem}.svg"));
        let svg = render_svg(comparison, obs).map_err(|message| FigureError::Plot {
            path: path.clone(),
            message,
        })?;
        std::fs::write(&path, svg).map_err(|source| FigureError::Io {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}

/// A compact plain-text summary: for each observable and dimension, the number of
/// simulation points compared with theory (those with `x` inside the theory range), the
/// largest `|deviation_in_sem|` (over points with a positive sem) and the mean absolute
/// deviation `|mean - theory|` of the simulation means. `-` marks an undefined entry.
pub fn summary(comparison: &Comparison) -> String {
    let swept = if comparison.swept.is_empty() {
        "x"
    } else {
        comparison.swept.as_str()
    };
    let observables = unique_observables(comparison);
    let mut out = format!(
        "theory vs simulation over {swept}: {} theory point(s), {} simulation point(s)\n",
        comparison.theory.len(),
        comparison.simulation.len()
    );
    if observables.is_empty() {
        out.push_str("(no observables)\n");
        return out;
    }

    let header = [
        "observable".to_string(),
        "d".to_string(),
        "compared".to_string(),
        "max|dev|/sem".to_string(),
        "mean|sim-theory|".to_string(),
    ];
    let mut rows: Vec<[String; 5]> = Vec::new();
    for obs in observables {
        let curve = TheoryCurve::new(comparison, obs);
        let mut by_dim: BTreeMap<usize, (usize, usize, Option<f64>, f64)> = BTreeMap::new();
        for p in simulation_points(comparison, obs) {
            let entry = by_dim.entry(p.dimension).or_insert((0, 0, None, 0.0));
            entry.1 += 1;
            if let Some(theory) = curve.at(p.x) {
                let abs = (p.mean - theory).abs();
                if abs.is_finite() {
                    entry.0 += 1;
                    entry.3 += abs;
                }
            }
            if let Some(dev) = p.deviation_in_sem(&curve) {
                let dev = dev.abs();
                entry.2 = Some(entry.2.map_or(dev, |m: f64| m.max(dev)));
            }
        }
        if by_dim.is_empty() {
            let note = if curve.points.is_empty() {
                "no data"
            } else {
                "no simulation points"
            };
            rows.push([
                obs.to_string(),
                "-".into(),
                note.into(),
                String::new(),
                String::new(),
            ]);
            continue;
        }
        for (d, (compared, total, max_dev, sum_abs)) in by_dim {
            let mean_abs = if compared > 0 {
                format_sig(sum_abs / compared as f64)
            } else {
                "-".into()
            };
            rows.push([
                obs.to_string(),
                d.to_string(),
                format!("{compared}/{total}"),
                max_dev.map_or_else(|| "-".into(), |m| format!("{m:.2}")),
                mean_abs,
            ]);
        }
    }

    let mut widths = header.each_ref().map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(rows.iter()) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = w - cell.chars().count();
            if i == 0 {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad));
            } else {
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

// ---------------------------------------------------------------------------------------
// Data extraction
// ---------------------------------------------------------------------------------------

/// Observables in listed order, without repeats.
fn unique_observables(comparison: &Comparison) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for o in &comparison.observables {
        if !out.contains(&o.as_str()) {
            out.push(o);
        }
    }
    out
}

/// Finite theory points of one observable, sorted by `x`, one per `x`.
struct TheoryCurve {
    points: Vec<(f64, f64)>,
}

impl TheoryCurve {
    fn new(comparison: &Comparison, obs: &str) -> Self {
        let mut points: Vec<(f64, f64)> = comparison
            .theory
            .iter()
            .filter_map(|p| {
                let (_, v) = p.values.iter().find(|(name, _)| name == obs)?;
                (p.x.is_finite() && v.is_finite()).then_some((p.x, *v))
            })
            .collect();
        // Stable sort: among equal x the first point in input order comes first and is kept.
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        points.dedup_by(|later, earlier| later.0 == earlier.0);
        Self { points }
    }

    /// Linear interpolation; `None` outside `[min x, max x]` or without points.
    fn at(&self, x: f64) -> Option<f64> {
        let pts = &self.points;
        let (first, last) = (pts.first()?, pts.last()?);
        if !x.is_finite() || x < first.0 || x > last.0 {
            return None;
        }
        let i = pts.partition_point(|p| p.0 <= x);
        if i == pts.len() {
            return Some(last.1);
        }
        let (x0, y0) = pts[i - 1];
        let (x1, y1) = pts[i];
        if x == x0 {
            return Some(y0);
        }
        let t = (x - x0) / (x1 - x0);
        Some(y0 + t * (y1 - y0))
    }
}

/// A finite simulation estimate of one observable.
struct SimPoint {
    dimension: usize,
    x: f64,
    mean: f64,
    /// `None` if the sem is non-finite or negative.
    sem: Option<f64>,
    seeds: usize,
}

impl SimPoint {
    fn deviation_in_sem(&self, curve: &TheoryCurve) -> Option<f64> {
        let sem = self.sem.filter(|&s| s > 0.0)?;
        let dev = (self.mean - curve.at(self.x)?) / sem;
        dev.is_finite().then_some(dev)
    }
}

/// Finite simulation points of one observable, sorted by `(dimension, x)` (stable).
fn simulation_points(comparison: &Comparison, obs: &str) -> Vec<SimPoint> {
    let mut points: Vec<SimPoint> = comparison
        .simulation
        .iter()
        .filter_map(|p| {
            let (_, mean, sem, seeds) = p.values.iter().find(|(name, ..)| name == obs)?;
            (p.x.is_finite() && mean.is_finite()).then(|| SimPoint {
                dimension: p.dimension,
                x: p.x,
                mean: *mean,
                sem: (sem.is_finite() && *sem >= 0.0).then_some(*sem),
                seeds: *seeds,
            })
        })
        .collect();
    points.sort_by(|a, b| a.dimension.cmp(&b.dimension).then(a.x.total_cmp(&b.x)));
    points
}

// ---------------------------------------------------------------------------------------
// Formatting helpers
// ---------------------------------------------------------------------------------------

fn csv_swept_header(swept: &str) -> String {
    if swept.is_empty() || CSV_COLUMNS.contains(&swept) {
        "swept".to_string()
    } else {
        swept.to_string()
    }
}

/// Shortest round-trip representation (deterministic, lossless).
fn fmt_f64(v: f64) -> String {
    format!("{v}")
}

/// Four significant digits, switching to exponent notation for very small/large values.
fn format_sig(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if (1e-3..1e5).contains(&a) {
        let decimals = (3 - a.log10().floor() as i32).clamp(0, 6) as usize;
        format!("{v:.decimals$}")
    } else {
        format!("{v:.3e}")
    }
}

fn sanitize_file_stem(name: &str) -> String {
    let stem: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if stem.is_empty() {
        "observable".into()
    } else {
        stem
    }
}

/// Appends `_2`, `_3`, ... until the stem is unique (case-insensitively) among `taken`.
fn unique_stem(stem: &str, taken: &mut Vec<String>) -> String {
    let mut candidate = stem.to_string();
    let mut k = 2;
    while taken.contains(&candidate.to_ascii_lowercase()) {
        candidate = format!("{stem}_{k}");
        k += 1;
    }
    taken.push(candidate.to_ascii_lowercase());
    candidate
}

// ---------------------------------------------------------------------------------------
// Plotting
// ---------------------------------------------------------------------------------------

const FIGURE_SIZE: (u32, u32) = (800, 600);

/// Colours for successive dimensions (tab10 without grey); theory is black.
const DIMENSION_COLOURS: [RGBColor; 9] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// `(lo, hi)` of finite values, padded by `fraction` of the span on each side; a
/// degenerate span is widened around its value, no data gives `(0, 1)`.
fn padded_range(values: impl IntoIterator<Item = f64>, fraction: f64) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.into_iter().filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        return (0.0, 1.0);
    }
    let span = hi - lo;
    let pad = if span > 0.0 && span.is_finite() {
        span * fraction
    } else if lo != 0.0 {
        (lo.abs() * fraction).max(f64::MIN_POSITIVE)
    } else {
        0.5
    };
    let (plo, phi) = (lo - pad, hi + pad);
    if plo.is_finite() && phi.is_finite() && plo < phi {
        (plo, phi)
    } else if lo < hi {
        (lo, hi)
    } else {
        (0.0, 1.0)
    }
}

fn render_svg(comparison: &Comparison, obs: &str) -> Result<String, String> {
    let curve = TheoryCurve::new(comparison, obs);
    let sims = simulation_points(comparison, obs);
    let swept = if comparison.swept.is_empty() {
        "x"
    } else {
        comparison.swept.as_str()
    };

    let xs = curve
        .points
        .iter()
        .map(|p| p.0)
        .chain(sims.iter().map(|p| p.x));
    let (x_lo, x_hi) = padded_range(xs, 0.02);
    let ys = curve
        .points
        .iter()
        .map(|p| p.1)
        .chain(sims.iter().flat_map(|p| {
            let s = p.sem.unwrap_or(0.0);
            [p.mean - s, p.mean + s]
        }));
    let (y_lo, y_hi) = padded_range(ys, 0.05);

    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, FIGURE_SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("{obs} vs {swept}"), ("sans-serif", 26))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(75)
            .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc(swept)
            .y_desc(obs)
            .axis_desc_style(("sans-serif", 20))
            .label_style(("sans-serif", 15))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(|e| e.to_string())?;

        if !curve.points.is_empty() {
            let theory_style = BLACK.stroke_width(2);
            chart
                .draw_series(LineSeries::new(curve.points.iter().copied(), theory_style))
                .map_err(|e| e.to_string())?
                .label("theory")
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], theory_style));
        }

        let mut dims: Vec<usize> = sims.iter().map(|p| p.dimension).collect();
        dims.dedup(); // sims are sorted by dimension
        for (k, &d) in dims.iter().enumerate() {
            let colour = DIMENSION_COLOURS[k % DIMENSION_COLOURS.len()];
            let pts: Vec<&SimPoint> = sims.iter().filter(|p| p.dimension == d).collect();
            // Error bars: vertical segment in data coordinates plus 8 px caps.
            let bars = pts.iter().filter_map(|p| {
                let s = p.sem.filter(|&s| s > 0.0)?;
                Some((p.x, p.mean - s, p.mean + s))
            });
            for (x, lo, hi) in bars {
                let cap = |y: f64| {
                    EmptyElement::at((x, y))
                        + PathElement::new(vec![(-4, 0), (4, 0)], colour.stroke_width(1))
                };
                chart
                    .draw_series([PathElement::new(
                        vec![(x, lo), (x, hi)],
                        colour.stroke_width(1),
                    )])
                    .map_err(|e| e.to_string())?;
                chart
                    .draw_series([cap(lo), cap(hi)])
                    .map_err(|e| e.to_string())?;
            }
            chart
                .draw_series(
                    pts.iter()
                        .map(|p| Circle::new((p.x, p.mean), 4, colour.filled())),
                )
                .map_err(|e| e.to_string())?
                .label(format!("d = {d} (mean +/- 1 sem)"))
                .legend(move |(x, y)| Circle::new((x + 10, y), 4, colour.filled()));
        }

        if !curve.points.is_empty() || !dims.is_empty() {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 16))
                .draw()
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("figure_test_{}_{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Theory `m = 2 x + 1` at x = 0, 1, 2; simulation at d = 100 and d = 400.
    fn linear_example() -> Comparison {
        let theory = (0..3)
            .map(|i| {
                let x = i as f64;
                TheoryPoint {
                    x,
                    values: vec![("m".into(), 2.0 * x + 1.0), ("q".into(), 0.5)],
                }
            })
            .collect();
        let simulation = vec![
            // Out of order on purpose; theory(0.5) = 2.0, theory(1.5) = 4.0.
            SimulationPoint {
                dimension: 400,
                x: 1.5,
                values: vec![("m".into(), 3.5, 0.25, 8), ("q".into(), 0.5, 0.0, 8)],
            },
            SimulationPoint {
                dimension: 100,
                x: 0.5,
                values: vec![("m".into(), 2.5, 0.25, 4), ("q".into(), 0.75, 0.125, 4)],
            },
            // Outside the theory range: no deviation.
            SimulationPoint {
                dimension: 100,
                x: 3.0,
                values: vec![("m".into(), 7.0, 0.5, 4)],
            },
            // Non-finite mean: skipped entirely.
            SimulationPoint {
                dimension: 100,
                x: 1.0,
                values: vec![("m".into(), f64::NAN, 0.5, 4)],
            },
        ];
        Comparison {
            swept: "alpha".into(),
            observables: vec!["m".into(), "q".into()],
            theory,
            simulation,
        }
    }

    #[test]
    fn interpolation_is_linear_and_bounded() {
        let c = linear_example();
        let curve = TheoryCurve::new(&c, "m");
        assert_eq!(curve.at(0.0), Some(1.0));
        assert_eq!(curve.at(0.5), Some(2.0));
        assert_eq!(curve.at(1.5), Some(4.0));
        assert_eq!(curve.at(2.0), Some(5.0));
        assert_eq!(curve.at(-0.1), None);
        assert_eq!(curve.at(2.1), None);
        assert_eq!(curve.at(f64::NAN), None);
        assert_eq!(TheoryCurve::new(&c, "missing").at(0.0), None);
    }

    #[test]
    fn csv_header_rows_and_deviation() {
        let dir = tmp_dir("csv");
        let path = dir.join("cmp.csv");
        write_csv(&linear_example(), &path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "alpha,observable,source,dimension,value,sem,seeds,deviation_in_sem"
        );
        let expected = [
            "0,m,theory,,1,,,",
            "1,m,theory,,3,,,",
            "2,m,theory,,5,,,",
            // (2.5 - 2.0) / 0.25 = 2
            "0.5,m,simulation,100,2.5,0.25,4,2",
            // outside the theory range
            "3,m,simulation,100,7,0.5,4,",
            // (3.5 - 4.0) / 0.25 = -2
            "1.5,m,simulation,400,3.5,0.25,8,-2",
            "0,q,theory,,0.5,,,",
            "1,q,theory,,0.5,,,",
            "2,q,theory,,0.5,,,",
            "0.5,q,simulation,100,0.75,0.125,4,2",
            // sem == 0: no deviation
            "1.5,q,simulation,400,0.5,0,8,",
        ];
        assert_eq!(&lines[1..], &expected[..]);

        // Parse back the deviation column as numbers.
        let mut reader = csv::Reader::from_path(&path).unwrap();
        let devs: Vec<Option<f64>> = reader
            .records()
            .map(|r| r.unwrap()[7].parse::<f64>().ok())
            .collect();
        assert_eq!(devs[3], Some(2.0));
        assert_eq!(devs[5], Some(-2.0));
        assert_eq!(devs[9], Some(2.0));
        assert_eq!(devs[10], None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn csv_header_falls_back_to_swept() {
        let dir = tmp_dir("csv_empty");
        let path = dir.join("empty.csv");
        let empty = Comparison {
            swept: String::new(),
            observables: vec![],
            theory: vec![],
            simulation: vec![],
        };
        write_csv(&empty, &path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "swept,observable,source,dimension,value,sem,seeds,deviation_in_sem\n"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn csv_error_names_path() {
        let path = Path::new("/nonexistent_dir_for_figure_test/out.csv");
        let err = write_csv(&linear_example(), path).unwrap_err();
        assert!(matches!(err, FigureError::Io { .. }));
        assert!(err
            .to_string()
            .contains("/nonexistent_dir_for_figure_test/out.csv"));
    }

    #[test]
    fn svg_files_written_with_legend() {
        let dir = tmp_dir("svg");
        let paths = write_svg(&linear_example(), &dir).unwrap();
        assert_eq!(paths, vec![dir.join("m.svg"), dir.join("q.svg")]);
        for p in &paths {
            let svg = std::fs::read_to_string(p).unwrap();
            assert!(svg.contains("<svg"), "{}", p.display());
            assert!(svg.contains("<text"));
            assert!(svg.contains("theory"));
            assert!(svg.contains("d = 100 (mean +/- 1 sem)"));
            assert!(svg.contains("d = 400 (mean +/- 1 sem)"));
            assert!(svg.contains("alpha"));
            assert!(svg.trim_end().ends_with("</svg>"));
        }
        // Deterministic: rendering again gives identical bytes.
        let first = std::fs::read(&paths[0]).unwrap();
        write_svg(&linear_example(), &dir).unwrap();
        assert_eq!(first, std::fs::read(&paths[0]).unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn svg_empty_and_degenerate_inputs() {
        let dir = tmp_dir("svg_empty");
        let target = dir.join("not_created");
        let empty = Comparison {
            swept: "alpha".into(),
            observables: vec![],
            theory: vec![],
            simulation: vec![],
        };
        assert!(write_svg(&empty, &target).unwrap().is_empty());
        assert!(!target.exists());

        // Observables without data, NaNs everywhere, odd names, duplicates.
        let odd = Comparison {
            swept: String::new(),
            observables: vec![
                "a/b".into(),
                "a_b".into(),
                "".into(),
                "A_B".into(),
                "a/b".into(),
            ],
            theory: vec![TheoryPoint {
                x: f64::NAN,
                values: vec![("a/b".into(), 1.0)],
            }],
            simulation: vec![SimulationPoint {
                dimension: 10,
                x: 1.0,
                values: vec![("a_b".into(), 2.0, f64::INFINITY, 3)],
            }],
        };
        let paths = write_svg(&odd, &target).unwrap();
        let names: Vec<String> = paths
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["a_b.svg", "a_b_2.svg", "observable.svg", "A_B_3.svg"]
        );
        for p in &paths {
            assert!(std::fs::read_to_string(p).unwrap().contains("<svg"));
        }
        // Constant data (zero span) renders too.
        let flat = Comparison {
            swept: "x".into(),
            observables: vec!["c".into()],
            theory: vec![TheoryPoint {
                x: 1.0,
                values: vec![("c".into(), 0.0)],
            }],
            simulation: vec![],
        };
        assert_eq!(write_svg(&flat, &target).unwrap().len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn padded_range_covers_and_pads() {
        assert_eq!(padded_range([], 0.05), (0.0, 1.0));
        assert_eq!(padded_range([f64::NAN], 0.05), (0.0, 1.0));
        assert_eq!(padded_range([0.0, 10.0], 0.05), (-0.5, 10.5));
        assert_eq!(padded_range([0.0], 0.05), (-0.5, 0.5));
        let (lo, hi) = padded_range([2.0], 0.05);
        assert!(lo < 2.0 && hi > 2.0);
        let (lo, hi) = padded_range([-f64::MAX, f64::MAX], 0.05);
        assert!(lo.is_finite() && hi.is_finite() && lo < hi);
    }

    #[test]
    fn summary_reports_max_and_mean_deviation() {
        let s = summary(&linear_example());
        assert!(s.starts_with(
            "theory vs simulation over alpha: 3 theory point(s), 4 simulation point(s)\n"
        ));
        let lines: Vec<&str> = s.lines().collect();
        assert!(lines[1].starts_with("observable"));
        // m, d = 100: one of two finite points inside the range, |dev| = 2, |diff| = 0.5.
        let m100: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(m100, ["m", "100", "1/2", "2.00", "0.5000"]);
        let m400: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(m400, ["m", "400", "1/1", "2.00", "0.5000"]);
        // q, d = 400: sem == 0, so no max deviation, but a mean deviation of 0.
        let q400: Vec<&str> = lines[5].split_whitespace().collect();
        assert_eq!(q400, ["q", "400", "1/1", "-", "0"]);
        assert_eq!(s, summary(&linear_example()));

        let empty = Comparison {
            swept: String::new(),
            observables: vec!["m".into()],
            theory: vec![],
            simulation: vec![],
        };
        assert!(summary(&empty).contains("no data"));
    }
}
