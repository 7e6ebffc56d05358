//! Theory-vs-simulation comparison tables and figures.
//!
//! A [`Comparison`] pairs the replica-symmetric prediction along a one-parameter sweep
//! ([`TheoryPoint`]s) with finite-size simulation estimates at several dimensions `d`
//! ([`SimulationPoint`]s: mean, standard error of the mean and number of seeds per
//! observable). Each simulation point belongs to a series ([`SimulationPoint::run`]): the
//! best run per seed ([`BEST_RUN`], the lowest training objective over initialisations, which
//! is what the theory describes) or one initialisation on its own, so that minima the
//! practitioners' initialisation ends in are reported next to the best ones. Three renderings
//! are offered:
//!
//! * [`write_csv`]: a long-format table, one row per (observable, source, series, point),
//!   with the deviation of every simulation mean from the linearly interpolated theory in
//!   units of the combined standard error of simulation and prediction;
//! * [`write_svg`]: one SVG file per observable (theory as a black line, the best run as
//!   coloured markers with ±1 sem error bars, one colour per dimension; the initialisations
//!   at the largest dimension as unfilled markers, one shape each), on a linear or
//!   logarithmic x axis ([`XScale`]);
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
//! * series are ordered best run first, then initialisations by name;
//! * output is deterministic: the same input always yields the same bytes (rows and series
//!   are sorted, numbers are printed with Rust's shortest round-trip `f64` formatting).
//!
//! Text in the SVGs is emitted as SVG `<text>` elements: with plotters'
//! `default-features = false` (no `ttf`/`ab_glyph` feature) plotters uses its built-in
//! "naive" font metrics, so no system font is loaded or required at run time.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

/// One solved point of a theory sweep: the swept value `x` and the observables there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TheoryPoint {
    /// Value of the swept parameter.
    pub x: f64,
    /// `(observable name, predicted value)`.
    pub values: Vec<(String, f64)>,
    /// `(observable name, standard error of the prediction)`: integration and solution
    /// errors combined in quadrature; absent observables have no error estimate.
    #[serde(default)]
    pub errors: Vec<(String, f64)>,
}

/// Series name of the best run per seed (lowest training objective over initialisations).
pub const BEST_RUN: &str = "best";

fn best_run() -> String {
    BEST_RUN.to_string()
}

/// One simulated point: dimension `d`, series, swept value `x`, and per-observable
/// statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimulationPoint {
    /// Simulation dimension `d`.
    pub dimension: usize,
    /// [`BEST_RUN`], or the name of the initialisation every seed was trained from. Absent
    /// in JSON written before per-initialisation series existed, which held the best run.
    #[serde(default = "best_run")]
    pub run: String,
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

/// The x axis of the figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XScale {
    /// Linear.
    Linear,
    /// Logarithmic (base 10); every `x` must be positive.
    Log,
}

/// Failure to write a comparison table or figure; every variant names the file or
/// observable involved.
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
    /// A logarithmic x axis was asked for data at `x <= 0`.
    #[error(
        "a logarithmic x axis needs positive values, but `{observable}` has data at {swept} = {x}"
    )]
    NonPositiveX {
        /// Observable whose figure cannot be drawn.
        observable: String,
        /// Name of the swept parameter.
        swept: String,
        /// The offending value.
        x: f64,
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
const CSV_COLUMNS: [&str; 9] = [
    "observable",
    "source",
    "dimension",
    "run",
    "value",
    "sem",
    "seeds",
    "theory_error",
    "deviation_in_sem",
];

/// Writes the comparison as a long-format CSV table to `path` (the parent directory must
/// exist; the file is overwritten).
///
/// Columns: `swept, observable, source, dimension, run, value, sem, seeds, theory_error,
/// deviation_in_sem`. The first column holds the swept value `x`; its header is the swept
/// parameter's name ([`Comparison::swept`]), or literally `swept` if that name is empty or
/// clashes with another column name. `source` is `theory` or `simulation`; `run` is the
/// series ([`SimulationPoint::run`]). `theory_error` is the prediction's standard error
/// ([`TheoryPoint::errors`]), interpolated to `x` on simulation rows, and empty where the
/// theory has none. Theory rows leave `dimension`, `run`, `sem`, `seeds` and
/// `deviation_in_sem` empty. For simulation rows `value` is the mean and
/// `deviation_in_sem = (mean - theory(x)) / sqrt(sem^2 + theory_error(x)^2)`, with
/// `theory(x)` linearly interpolated from the theory points; it is empty if `x` is outside
/// the theory range or the sem is zero/missing. Every series, at every dimension, gets its rows and deviations.
///
/// Row order: by observable (as listed), then all theory rows sorted by `x`, then
/// simulation rows sorted by series (best run first, then initialisations by name),
/// dimension and `x`. An empty comparison yields the header only.
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
                    String::new(),
                    fmt_f64(value),
                    String::new(),
                    String::new(),
                    curve.error_at(x).map(fmt_f64).unwrap_or_default(),
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
                    p.run.to_string(),
                    fmt_f64(p.mean),
                    p.sem.map(fmt_f64).unwrap_or_default(),
                    p.seeds.to_string(),
                    curve.error_at(p.x).map(fmt_f64).unwrap_or_default(),
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
/// points sorted by `x` (legend "theory"), and the best run as filled circles with
/// vertical error bars of ±1 sem, one colour per dimension in increasing `d` (legend
/// "d = 100 (mean +/- 1 sem)"). Each initialisation's series is drawn only at the largest
/// dimension of the observable's simulation data (more would be unreadable; the CSV has
/// them all), in that dimension's colour with ±1 sem bars and its own unfilled marker shape,
/// at its true `x` (legend "d = 400, init lora"). Axis labels are the swept name (x) and
/// the observable name (y); the title is "<observable> vs <swept>". The x range spans all
/// drawn finite data (theory and simulation) padded by 2% (of its logarithm with
/// [`XScale::Log`]); the y range covers theory values and drawn error bars, padded by 5% on
/// each side. An observable without any finite data still gets a figure (empty axes on a
/// unit range). If there are no observables, nothing is written (not even the directory)
/// and `Ok(vec![])` is returned.
///
/// With [`XScale::Log`] any finite `x <= 0` in the theory or simulation data of a listed
/// observable is a [`FigureError::NonPositiveX`], reported before anything is written.
pub fn write_svg(
    comparison: &Comparison,
    dir: &Path,
    x_scale: XScale,
) -> Result<Vec<PathBuf>, FigureError> {
    let observables = unique_observables(comparison);
    if observables.is_empty() {
        return Ok(Vec::new());
    }
    if x_scale == XScale::Log {
        check_positive_x(comparison, &observables)?;
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
        let svg = render_svg(comparison, obs, x_scale).map_err(|message| FigureError::Plot {
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

/// A compact plain-text summary: for each observable, one line per dimension for the best
/// run, then one line per initialisation at the largest dimension (labelled `init <name>`
/// in the `run` column). Each line gives the number of simulation points compared with
/// theory (those with `x` inside the theory range), the largest `|deviation_in_sem|` (over
/// points with a positive sem), the swept value where it occurs, how many of those points lie
/// within [`AGREEMENT_IN_SEM`] standard errors, and the mean absolute deviation
/// `|mean - theory|` of the simulation means. `-` marks an undefined entry.
pub fn summary(comparison: &Comparison) -> String {
    let swept = swept_name(comparison);
    let observables = unique_observables(comparison);
    let best_points = comparison
        .simulation
        .iter()
        .filter(|p| p.run == BEST_RUN)
        .count();
    let inits = init_runs(comparison);
    let mut out = format!(
        "theory vs simulation over {swept}: {} theory point(s), {best_points} simulation point(s)",
        comparison.theory.len(),
    );
    if !inits.is_empty() {
        out.push_str(&format!(
            " of the best run, also per initialisation ({})",
            inits.join(", ")
        ));
    }
    out.push('\n');
    if observables.is_empty() {
        out.push_str("(no observables)\n");
        return out;
    }

    let header = [
        "observable".to_string(),
        "d".to_string(),
        "run".to_string(),
        "compared".to_string(),
        "max|dev|/sem".to_string(),
        format!("at {swept}"),
        format!("within {AGREEMENT_IN_SEM}"),
        "mean|sim-theory|".to_string(),
    ];
    let mut rows: Vec<[String; 8]> = Vec::new();
    for obs in observables {
        let curve = TheoryCurve::new(comparison, obs);
        let sims = simulation_points(comparison, obs);
        if sims.is_empty() {
            let note = if curve.points.is_empty() {
                "no data"
            } else {
                "no simulation points"
            };
            rows.push([
                obs.to_string(),
                "-".into(),
                "-".into(),
                note.into(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ]);
            continue;
        }
        // Best run at every dimension, then each initialisation at the largest one.
        let mut series: BTreeMap<(bool, &str, usize), Deviations> = BTreeMap::new();
        let largest = largest_dimension(&sims);
        for p in &sims {
            let is_init = p.run != BEST_RUN;
            if is_init && Some(p.dimension) != largest {
                continue;
            }
            series
                .entry((is_init, p.run, p.dimension))
                .or_default()
                .add(p, &curve);
        }
        for ((is_init, run, d), dev) in series {
            let run = if is_init {
                format!("init {run}")
            } else {
                run.to_string()
            };
            let mean_abs = if dev.compared > 0 {
                format_sig(dev.sum_abs / dev.compared as f64)
            } else {
                "-".into()
            };
            rows.push([
                obs.to_string(),
                d.to_string(),
                run,
                format!("{}/{}", dev.compared, dev.total),
                dev.max_in_sem
                    .map_or_else(|| "-".into(), |m| format!("{m:.2}")),
                dev.worst_x.map_or_else(|| "-".into(), |x| format!("{x}")),
                format!("{}/{}", dev.within, dev.with_deviation),
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
            // Names are left-aligned, numbers right-aligned.
            if i == 0 || i == 2 {
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

/// Deviations (in combined standard errors) up to which a simulation point counts as
/// agreeing with the theory in the summary.
pub const AGREEMENT_IN_SEM: f64 = 3.0;

/// Deviation statistics of one series (one summary line).
#[derive(Default)]
struct Deviations {
    /// Points with a theory value inside the range.
    compared: usize,
    /// All finite points.
    total: usize,
    /// Largest `|deviation_in_sem|`, if any point has a positive sem.
    max_in_sem: Option<f64>,
    /// The swept value of the largest deviation.
    worst_x: Option<f64>,
    /// Points with a deviation, and those within [`AGREEMENT_IN_SEM`].
    with_deviation: usize,
    within: usize,
    /// Sum of `|mean - theory|` over the compared points.
    sum_abs: f64,
}

impl Deviations {
    fn add(&mut self, p: &SimPoint, curve: &TheoryCurve) {
        self.total += 1;
        if let Some(theory) = curve.at(p.x) {
            let abs = (p.mean - theory).abs();
            if abs.is_finite() {
                self.compared += 1;
                self.sum_abs += abs;
            }
        }
        if let Some(dev) = p.deviation_in_sem(curve) {
            let dev = dev.abs();
            self.with_deviation += 1;
            if dev <= AGREEMENT_IN_SEM {
                self.within += 1;
            }
            if self.max_in_sem.is_none_or(|m| dev > m) {
                self.max_in_sem = Some(dev);
                self.worst_x = Some(p.x);
            }
        }
    }
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
    /// `(x, standard error of the prediction)` where the theory gave one.
    errors: Vec<(f64, f64)>,
}

impl TheoryCurve {
    fn new(comparison: &Comparison, obs: &str) -> Self {
        // `(x, entry named obs)` of every theory point, sorted by x; stable, so among equal x
        // the first point in input order is kept.
        let series = |entries: fn(&TheoryPoint) -> &Vec<(String, f64)>| {
            let mut series: Vec<(f64, f64)> = comparison
                .theory
                .iter()
                .filter_map(|p| {
                    let (_, v) = entries(p).iter().find(|(name, _)| name == obs)?;
                    (p.x.is_finite() && v.is_finite()).then_some((p.x, *v))
                })
                .collect();
            series.sort_by(|a, b| a.0.total_cmp(&b.0));
            series.dedup_by(|later, earlier| later.0 == earlier.0);
            series
        };
        let (points, errors) = (series(|p| &p.values), series(|p| &p.errors));
        Self { points, errors }
    }

    /// Linear interpolation; `None` outside `[min x, max x]` or without points.
    fn at(&self, x: f64) -> Option<f64> {
        interpolate(&self.points, x)
    }

    /// The prediction's standard error, interpolated like the prediction; `None` where the
    /// theory gave no error estimate.
    fn error_at(&self, x: f64) -> Option<f64> {
        interpolate(&self.errors, x)
    }
}

/// Linear interpolation in `(x, y)` points sorted by `x`; `None` outside their range.
fn interpolate(pts: &[(f64, f64)], x: f64) -> Option<f64> {
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

/// A finite simulation estimate of one observable.
struct SimPoint<'a> {
    run: &'a str,
    dimension: usize,
    x: f64,
    mean: f64,
    /// `None` if the sem is non-finite or negative.
    sem: Option<f64>,
    seeds: usize,
}

impl SimPoint<'_> {
    /// `(mean - theory) / sqrt(sem^2 + theory_error^2)`: the deviation in units of the
    /// combined standard error of simulation and prediction.
    fn deviation_in_sem(&self, curve: &TheoryCurve) -> Option<f64> {
        let sem = self.sem.filter(|&s| s > 0.0)?;
        let combined = sem.hypot(curve.error_at(self.x).unwrap_or(0.0));
        let dev = (self.mean - curve.at(self.x)?) / combined;
        dev.is_finite().then_some(dev)
    }
}

/// Finite simulation points of one observable, sorted by series ([`run_order`]), dimension
/// and `x` (stable).
fn simulation_points<'a>(comparison: &'a Comparison, obs: &str) -> Vec<SimPoint<'a>> {
    let mut points: Vec<SimPoint> = comparison
        .simulation
        .iter()
        .filter_map(|p| {
            let (_, mean, sem, seeds) = p.values.iter().find(|(name, ..)| name == obs)?;
            (p.x.is_finite() && mean.is_finite()).then(|| SimPoint {
                run: &p.run,
                dimension: p.dimension,
                x: p.x,
                mean: *mean,
                sem: (sem.is_finite() && *sem >= 0.0).then_some(*sem),
                seeds: *seeds,
            })
        })
        .collect();
    points.sort_by(|a, b| {
        run_order(a.run, b.run)
            .then(a.dimension.cmp(&b.dimension))
            .then(a.x.total_cmp(&b.x))
    });
    points
}

/// Best run first, then initialisations by name.
fn run_order(a: &str, b: &str) -> Ordering {
    (a != BEST_RUN).cmp(&(b != BEST_RUN)).then(a.cmp(b))
}

/// Names of the initialisations with a series anywhere in the comparison, sorted; a
/// marker shape is tied to the position here, so it is the same in every figure.
fn init_runs(comparison: &Comparison) -> Vec<&str> {
    let mut runs: Vec<&str> = comparison
        .simulation
        .iter()
        .map(|p| p.run.as_str())
        .filter(|&run| run != BEST_RUN)
        .collect();
    runs.sort_unstable();
    runs.dedup();
    runs
}

/// The dimension at which the initialisations' series are shown.
fn largest_dimension(points: &[SimPoint]) -> Option<usize> {
    points.iter().map(|p| p.dimension).max()
}

/// The first finite `x <= 0` in the data of the listed observables, as an error.
fn check_positive_x(comparison: &Comparison, observables: &[&str]) -> Result<(), FigureError> {
    for &obs in observables {
        let theory = TheoryCurve::new(comparison, obs)
            .points
            .into_iter()
            .map(|p| p.0);
        let simulated = simulation_points(comparison, obs).into_iter().map(|p| p.x);
        if let Some(x) = theory.chain(simulated).find(|&x| x <= 0.0) {
            return Err(FigureError::NonPositiveX {
                observable: obs.to_string(),
                swept: swept_name(comparison).to_string(),
                x,
            });
        }
    }
    Ok(())
}

/// The swept parameter's name for labels (`x` if unnamed).
fn swept_name(comparison: &Comparison) -> &str {
    if comparison.swept.is_empty() {
        "x"
    } else {
        &comparison.swept
    }
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

/// Marker outlines (pixel offsets, y down) of the initialisations' series, by position in
/// [`init_runs`]: triangle, cross, square, diamond, plus. Unfilled and larger than the best
/// run's filled circle, so both stay visible where an initialisation found the best minimum.
const INIT_MARKERS: [&[(i32, i32)]; 5] = [
    &[(0, -8), (7, 4), (-7, 4), (0, -8)],
    &[(-6, -6), (6, 6), (0, 0), (-6, 6), (6, -6)],
    &[(-6, -6), (6, -6), (6, 6), (-6, 6), (-6, -6)],
    &[(0, -7), (7, 0), (0, 7), (-7, 0), (0, -7)],
    &[(-7, 0), (7, 0), (0, 0), (0, -7), (0, 7)],
];

/// One simulation series of a figure.
struct Series<'p, 'a> {
    label: String,
    colour: RGBColor,
    /// An outline from [`INIT_MARKERS`]; `None` for the best run's filled circle.
    marker: Option<&'static [(i32, i32)]>,
    points: Vec<&'p SimPoint<'a>>,
}

/// The series one figure draws: the best run at every dimension (one colour each, in
/// increasing `d`), then each initialisation at the largest dimension, in that dimension's
/// colour.
fn figure_series<'p, 'a>(comparison: &Comparison, sims: &'p [SimPoint<'a>]) -> Vec<Series<'p, 'a>> {
    let mut dims: Vec<usize> = sims.iter().map(|p| p.dimension).collect();
    dims.sort_unstable();
    dims.dedup();
    let colour_of = |d: usize| {
        let k = dims.iter().position(|&e| e == d).unwrap_or(0);
        DIMENSION_COLOURS[k % DIMENSION_COLOURS.len()]
    };
    let points_of = |run: &str, d: usize| -> Vec<&'p SimPoint<'a>> {
        sims.iter()
            .filter(|p| p.run == run && p.dimension == d)
            .collect()
    };

    let mut series = Vec::new();
    for &d in &dims {
        let points = points_of(BEST_RUN, d);
        if !points.is_empty() {
            series.push(Series {
                label: format!("d = {d} (mean +/- 1 sem)"),
                colour: colour_of(d),
                marker: None,
                points,
            });
        }
    }
    if let Some(largest) = largest_dimension(sims) {
        for (k, init) in init_runs(comparison).into_iter().enumerate() {
            let points = points_of(init, largest);
            if !points.is_empty() {
                series.push(Series {
                    label: format!("d = {largest}, init {init}"),
                    colour: colour_of(largest),
                    marker: Some(INIT_MARKERS[k % INIT_MARKERS.len()]),
                    points,
                });
            }
        }
    }
    series
}

/// Tick values for a logarithmic axis on `[lo, hi]` (`0 < lo < hi`): powers of ten, or their
/// 1-2-5 or 1..9 multiples when fewer than three powers fall inside (plotters' own log ticks
/// are only the powers, which would leave a sweep within one decade unlabelled), or linear
/// ticks for a range too narrow even for those. Never more than about ten.
fn log_key_points(lo: f64, hi: f64) -> Vec<f64> {
    const MANTISSAS: [&[u32]; 3] = [&[1], &[1, 2, 5], &[1, 2, 3, 4, 5, 6, 7, 8, 9]];
    let (first, last) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    for mantissas in MANTISSAS {
        // Parsing `m e k` gives the f64 nearest to the decimal tick, e.g. exactly 0.3.
        let ticks: Vec<f64> = (first..=last)
            .flat_map(|e| mantissas.iter().map(move |m| format!("{m}e{e}")))
            .filter_map(|text| text.parse::<f64>().ok())
            .filter(|v| (lo..=hi).contains(v))
            .collect();
        if ticks.len() >= 3 {
            let stride = ticks.len().div_ceil(10);
            return ticks.into_iter().step_by(stride).collect();
        }
    }
    RangedCoordf64::from(lo..hi).key_points(10)
}

/// A tick label: the value rounded to seven significant digits, so that accumulated
/// floating-point noise (3.9000000000000004) does not show.
fn fmt_tick(v: f64) -> String {
    fmt_f64(format!("{v:.6e}").parse().unwrap_or(v))
}

fn render_svg(comparison: &Comparison, obs: &str, x_scale: XScale) -> Result<String, String> {
    let curve = TheoryCurve::new(comparison, obs);
    let sims = simulation_points(comparison, obs);
    let series = figure_series(comparison, &sims);
    let swept = swept_name(comparison);

    let drawn = || series.iter().flat_map(|s| s.points.iter().copied());
    let xs = curve.points.iter().map(|p| p.0).chain(drawn().map(|p| p.x));
    let ys = curve
        .points
        .iter()
        .map(|p| p.1)
        .chain(drawn().flat_map(|p| {
            let s = p.sem.unwrap_or(0.0);
            [p.mean - s, p.mean + s]
        }));
    let (y_lo, y_hi) = padded_range(ys, 0.05);

    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, FIGURE_SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut builder = ChartBuilder::on(&root);
        builder
            .caption(format!("{obs} vs {swept}"), ("sans-serif", 26))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(75);
        // The two axes are different coordinate types, hence one generic drawing routine.
        match x_scale {
            XScale::Linear => {
                let (x_lo, x_hi) = padded_range(xs, 0.02);
                let chart = builder
                    .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)
                    .map_err(|e| e.to_string())?;
                draw_figure(chart, obs, swept, &curve, &series, None)?;
            }
            XScale::Log => {
                let (lo, hi) = padded_range(xs.map(f64::log10), 0.02);
                let (x_lo, x_hi) = (10f64.powf(lo), 10f64.powf(hi));
                let x_axis = (x_lo..x_hi)
                    .log_scale()
                    .with_key_points(log_key_points(x_lo, x_hi));
                let chart = builder
                    .build_cartesian_2d(x_axis, y_lo..y_hi)
                    .map_err(|e| e.to_string())?;
                let label = |x: &f64| fmt_tick(*x);
                draw_figure(chart, obs, swept, &curve, &series, Some(&label))?;
            }
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(buf)
}

/// The legend corner whose box (an estimate of the legend's size in pixels) holds the fewest
/// of `drawn`; ties keep the order upper right, upper left, lower right, lower left.
fn emptiest_corner(drawn: &[(i32, i32)], x: (i32, i32), y: (i32, i32), entries: usize) -> SeriesLabelPosition {
    let width = 260;
    let height = 24 * entries.max(1) as i32 + 10;
    let corners = [
        (SeriesLabelPosition::UpperRight, (x.1 - width, x.1), (y.0, y.0 + height)),
        (SeriesLabelPosition::UpperLeft, (x.0, x.0 + width), (y.0, y.0 + height)),
        (SeriesLabelPosition::LowerRight, (x.1 - width, x.1), (y.1 - height, y.1)),
        (SeriesLabelPosition::LowerLeft, (x.0, x.0 + width), (y.1 - height, y.1)),
    ];
    let covered = |(xs, ys): ((i32, i32), (i32, i32))| {
        drawn.iter().filter(|(px, py)| *px >= xs.0 && *px <= xs.1 && *py >= ys.0 && *py <= ys.1).count()
    };
    // min_by_key keeps the first of equal minima.
    corners.into_iter().min_by_key(|(_, xs, ys)| covered((*xs, *ys))).map_or(SeriesLabelPosition::UpperRight, |c| c.0)
}

/// Mesh, theory line, series with error bars and legend, on either x axis; `x_label`
/// formats the x tick labels (plotters' default if `None`).
fn draw_figure<'a, 'b: 'a, X>(
    mut chart: ChartContext<'a, SVGBackend<'b>, Cartesian2d<X, RangedCoordf64>>,
    obs: &str,
    swept: &str,
    curve: &TheoryCurve,
    series: &[Series],
    x_label: Option<&dyn Fn(&f64) -> String>,
) -> Result<(), String>
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(swept)
        .y_desc(obs)
        .axis_desc_style(("sans-serif", 20))
        .label_style(("sans-serif", 15))
        .light_line_style(RGBColor(235, 235, 235));
    if let Some(format) = x_label {
        mesh.x_label_formatter(format);
    }
    mesh.draw().map_err(|e| e.to_string())?;

    if !curve.points.is_empty() {
        let theory_style = BLACK.stroke_width(2);
        chart
            .draw_series(LineSeries::new(curve.points.iter().copied(), theory_style))
            .map_err(|e| e.to_string())?
            .label("theory")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], theory_style));
    }

    for s in series {
        let colour = s.colour;
        // Error bars: vertical segment in data coordinates plus 8 px caps.
        let bars = s.points.iter().filter_map(|p| {
            let sem = p.sem.filter(|&sem| sem > 0.0)?;
            Some((p.x, p.mean - sem, p.mean + sem))
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
        match s.marker {
            None => {
                chart
                    .draw_series(
                        s.points
                            .iter()
                            .map(|p| Circle::new((p.x, p.mean), 4, colour.filled())),
                    )
                    .map_err(|e| e.to_string())?
                    .label(&s.label)
                    .legend(move |(x, y)| Circle::new((x + 10, y), 4, colour.filled()));
            }
            Some(outline) => {
                let style = colour.stroke_width(2);
                chart
                    .draw_series(s.points.iter().map(|p| {
                        EmptyElement::at((p.x, p.mean)) + PathElement::new(outline, style)
                    }))
                    .map_err(|e| e.to_string())?
                    .label(&s.label)
                    .legend(move |(x, y)| {
                        EmptyElement::at((x + 10, y)) + PathElement::new(outline, style)
                    });
            }
        }
    }

    if !curve.points.is_empty() || !series.is_empty() {
        // The legend goes to the corner that covers the fewest drawn points.
        let mut drawn: Vec<(i32, i32)> = curve.points.iter().map(|p| chart.backend_coord(p)).collect();
        for s in series {
            for p in &s.points {
                drawn.push(chart.backend_coord(&(p.x, p.mean)));
                if let Some(sem) = p.sem {
                    drawn.push(chart.backend_coord(&(p.x, p.mean - sem)));
                    drawn.push(chart.backend_coord(&(p.x, p.mean + sem)));
                }
            }
        }
        let entries = usize::from(!curve.points.is_empty()) + series.len();
        let (x_pixels, y_pixels) = chart.plotting_area().get_pixel_range();
        let corner = emptiest_corner(&drawn, (x_pixels.start, x_pixels.end), (y_pixels.start, y_pixels.end), entries);
        chart
            .configure_series_labels()
            .position(corner)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 16))
            .draw()
            .map_err(|e| e.to_string())?;
    }
    Ok(())
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
                    errors: Vec::new(),
                }
            })
            .collect();
        let simulation = vec![
            // Out of order on purpose; theory(0.5) = 2.0, theory(1.5) = 4.0.
            SimulationPoint {
                run: BEST_RUN.into(),
                dimension: 400,
                x: 1.5,
                values: vec![("m".into(), 3.5, 0.25, 8), ("q".into(), 0.5, 0.0, 8)],
            },
            SimulationPoint {
                run: BEST_RUN.into(),
                dimension: 100,
                x: 0.5,
                values: vec![("m".into(), 2.5, 0.25, 4), ("q".into(), 0.75, 0.125, 4)],
            },
            // Outside the theory range: no deviation.
            SimulationPoint {
                run: BEST_RUN.into(),
                dimension: 100,
                x: 3.0,
                values: vec![("m".into(), 7.0, 0.5, 4)],
            },
            // Non-finite mean: skipped entirely.
            SimulationPoint {
                run: BEST_RUN.into(),
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
    fn legend_avoids_the_corner_where_the_data_are() {
        // Pixel y grows downwards: points near y = 0 are at the top of the plot.
        let crowded_upper_right: Vec<(i32, i32)> = (0..20).map(|i| (900 - i, 10 + i)).collect();
        let corner = emptiest_corner(&crowded_upper_right, (0, 1000), (0, 600), 3);
        assert!(matches!(corner, SeriesLabelPosition::UpperLeft));
        let everywhere_but_lower_left: Vec<(i32, i32)> =
            [(950, 20), (50, 20), (950, 580)].into_iter().cycle().take(30).collect();
        let corner = emptiest_corner(&everywhere_but_lower_left, (0, 1000), (0, 600), 3);
        assert!(matches!(corner, SeriesLabelPosition::LowerLeft));
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
            "alpha,observable,source,dimension,run,value,sem,seeds,theory_error,deviation_in_sem"
        );
        let expected = [
            "0,m,theory,,,1,,,,",
            "1,m,theory,,,3,,,,",
            "2,m,theory,,,5,,,,",
            // (2.5 - 2.0) / 0.25 = 2
            "0.5,m,simulation,100,best,2.5,0.25,4,,2",
            // outside the theory range
            "3,m,simulation,100,best,7,0.5,4,,",
            // (3.5 - 4.0) / 0.25 = -2
            "1.5,m,simulation,400,best,3.5,0.25,8,,-2",
            "0,q,theory,,,0.5,,,,",
            "1,q,theory,,,0.5,,,,",
            "2,q,theory,,,0.5,,,,",
            "0.5,q,simulation,100,best,0.75,0.125,4,,2",
            // sem == 0: no deviation
            "1.5,q,simulation,400,best,0.5,0,8,,",
        ];
        assert_eq!(&lines[1..], &expected[..]);

        // Parse back the deviation column as numbers.
        let mut reader = csv::Reader::from_path(&path).unwrap();
        let devs: Vec<Option<f64>> = reader
            .records()
            .map(|r| r.unwrap()[9].parse::<f64>().ok())
            .collect();
        assert_eq!(devs[3], Some(2.0));
        assert_eq!(devs[5], Some(-2.0));
        assert_eq!(devs[9], Some(2.0));
        assert_eq!(devs[10], None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_deviation_combines_simulation_and_theory_errors() {
        let mut comparison = linear_example();
        for p in &mut comparison.theory {
            p.errors = vec![("m".into(), 0.25 * (1.0 + p.x))];
        }
        let curve = TheoryCurve::new(&comparison, "m");
        // At x = 0.5 the theory error interpolates to 0.375; with sem 0.25 the combined error
        // is hypot(0.25, 0.375) and the deviation (2.5 - 2.0) / that.
        assert_eq!(curve.error_at(0.5), Some(0.375));
        let point = simulation_points(&comparison, "m").into_iter().find(|p| p.x == 0.5).unwrap();
        let expected = 0.5 / 0.25f64.hypot(0.375);
        assert!((point.deviation_in_sem(&curve).unwrap() - expected).abs() < 1e-15);
        // q has no error estimate: the deviation stays in units of the sem alone.
        let q = TheoryCurve::new(&comparison, "q");
        assert_eq!(q.error_at(0.5), None);
        let dir = tmp_dir("csv_errors");
        let path = dir.join("cmp.csv");
        write_csv(&comparison, &path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.lines().any(|l| l == "0,m,theory,,,1,,,0.25,"), "{text}");
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
            "swept,observable,source,dimension,run,value,sem,seeds,theory_error,deviation_in_sem\n"
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
        let paths = write_svg(&linear_example(), &dir, XScale::Linear).unwrap();
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
        write_svg(&linear_example(), &dir, XScale::Linear).unwrap();
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
        assert!(write_svg(&empty, &target, XScale::Linear)
            .unwrap()
            .is_empty());
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
                errors: Vec::new(),
            }],
            simulation: vec![SimulationPoint {
                run: BEST_RUN.into(),
                dimension: 10,
                x: 1.0,
                values: vec![("a_b".into(), 2.0, f64::INFINITY, 3)],
            }],
        };
        let paths = write_svg(&odd, &target, XScale::Linear).unwrap();
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
                errors: Vec::new(),
            }],
            simulation: vec![],
        };
        assert_eq!(write_svg(&flat, &target, XScale::Linear).unwrap().len(), 1);
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
        // m, d = 100: one of two finite points inside the range, |dev| = 2 at alpha = 0.5
        // (within 3 sem), |diff| = 0.5.
        let m100: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(m100, ["m", "100", "best", "1/2", "2.00", "0.5", "1/1", "0.5000"]);
        let m400: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(m400, ["m", "400", "best", "1/1", "2.00", "1.5", "1/1", "0.5000"]);
        // q, d = 400: sem == 0, so no deviation in sem, but a mean deviation of 0.
        let q400: Vec<&str> = lines[5].split_whitespace().collect();
        assert_eq!(q400, ["q", "400", "best", "1/1", "-", "-", "0/0", "0"]);
        assert_eq!(lines.len(), 6);
        assert_eq!(s, summary(&linear_example()));

        let empty = Comparison {
            swept: String::new(),
            observables: vec!["m".into()],
            theory: vec![],
            simulation: vec![],
        };
        assert!(summary(&empty).contains("no data"));
    }

    /// [`linear_example`] plus each initialisation on its own: at d = 400 `teacher` found the
    /// best run's minimum (nearly) and `lora` a worse one; `lora` also at d = 100.
    fn with_initialisations() -> Comparison {
        let mut c = linear_example();
        let init = |run: &str, dimension: usize, x: f64, m: f64| SimulationPoint {
            run: run.into(),
            dimension,
            x,
            values: vec![("m".into(), m, 0.25, 8), ("q".into(), 0.5, 0.125, 8)],
        };
        // theory(1.5) = 4.0, theory(0.5) = 2.0 for m; q = 0.5 throughout.
        c.simulation.push(init("teacher", 400, 1.5, 3.75));
        c.simulation.push(init("lora", 400, 1.5, 5.0));
        c.simulation.push(init("lora", 100, 0.5, 3.0));
        c
    }

    #[test]
    fn json_without_a_run_loads_as_the_best_run() {
        let old = r#"{"dimension": 100, "x": 0.5, "values": [["m", 2.5, 0.25, 4]]}"#;
        let p: SimulationPoint = serde_json::from_str(old).unwrap();
        assert_eq!(p.run, BEST_RUN);
        assert_eq!(p.values, vec![("m".to_string(), 2.5, 0.25, 4)]);
        let back: SimulationPoint =
            serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn csv_has_every_series_at_every_dimension() {
        let dir = tmp_dir("csv_inits");
        let path = dir.join("cmp.csv");
        write_csv(&with_initialisations(), &path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let m_sims: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(",m,simulation,"))
            .collect();
        assert_eq!(
            m_sims,
            [
                "0.5,m,simulation,100,best,2.5,0.25,4,,2",
                "3,m,simulation,100,best,7,0.5,4,,",
                "1.5,m,simulation,400,best,3.5,0.25,8,,-2",
                // Initialisations by name, each at every dimension it was simulated at.
                "0.5,m,simulation,100,lora,3,0.25,8,,4",
                "1.5,m,simulation,400,lora,5,0.25,8,,4",
                "1.5,m,simulation,400,teacher,3.75,0.25,8,,-1",
            ]
        );
        // The best run's rows are those of a comparison without initialisations.
        write_csv(&linear_example(), &path).unwrap();
        let best_only = std::fs::read_to_string(&path).unwrap();
        let without_inits: Vec<&str> = text
            .lines()
            .filter(|l| !l.contains(",lora,") && !l.contains(",teacher,"))
            .collect();
        assert_eq!(without_inits, best_only.lines().collect::<Vec<_>>());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn initialisations_are_drawn_only_at_the_largest_dimension() {
        let c = with_initialisations();
        let sims = simulation_points(&c, "m");
        let series = figure_series(&c, &sims);
        let labels: Vec<&str> = series.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "d = 100 (mean +/- 1 sem)",
                "d = 400 (mean +/- 1 sem)",
                "d = 400, init lora",
                "d = 400, init teacher",
            ]
        );
        // Best runs are filled circles; each initialisation has its own outline, in the
        // largest dimension's colour, at its true x.
        assert!(series[..2].iter().all(|s| s.marker.is_none()));
        let (lora, teacher) = (&series[2], &series[3]);
        assert_eq!(lora.marker, Some(INIT_MARKERS[0]));
        assert_eq!(teacher.marker, Some(INIT_MARKERS[1]));
        assert_ne!(INIT_MARKERS[0], INIT_MARKERS[1]);
        assert_eq!(lora.colour, series[1].colour);
        assert_eq!(lora.points.len(), 1);
        assert_eq!((lora.points[0].x, lora.points[0].mean), (1.5, 5.0));

        let dir = tmp_dir("svg_inits");
        let paths = write_svg(&c, &dir, XScale::Linear).unwrap();
        let svg = std::fs::read_to_string(&paths[0]).unwrap();
        assert!(svg.contains("d = 400, init lora"));
        assert!(svg.contains("d = 400, init teacher"));
        assert!(!svg.contains("d = 100, init"));
        // The figure differs from the best-run one, and is deterministic.
        let best_only = render_svg(&linear_example(), "m", XScale::Linear).unwrap();
        assert_ne!(svg, best_only);
        assert_eq!(svg, render_svg(&c, "m", XScale::Linear).unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn marker_shapes_follow_the_initialisation_names_in_every_figure() {
        let mut c = with_initialisations();
        // `q` has no `lora` series: `teacher` still gets the second shape.
        for p in &mut c.simulation {
            if p.run == "lora" {
                p.values.retain(|v| v.0 != "q");
            }
        }
        let sims = simulation_points(&c, "q");
        let series = figure_series(&c, &sims);
        let teacher = series.iter().find(|s| s.label.ends_with("init teacher"));
        assert_eq!(teacher.unwrap().marker, Some(INIT_MARKERS[1]));
        assert!(series.iter().all(|s| !s.label.ends_with("init lora")));
    }

    #[test]
    fn summary_adds_each_initialisation_at_the_largest_dimension() {
        let s = summary(&with_initialisations());
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(
            lines[0],
            "theory vs simulation over alpha: 3 theory point(s), 4 simulation point(s) \
             of the best run, also per initialisation (lora, teacher)"
        );
        let rows: Vec<Vec<&str>> = lines[2..]
            .iter()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(rows[0], ["m", "100", "best", "1/2", "2.00", "0.5", "1/1", "0.5000"]);
        assert_eq!(rows[1], ["m", "400", "best", "1/1", "2.00", "1.5", "1/1", "0.5000"]);
        // lora: (5 - 4) / 0.25 = 4, beyond 3 sem; teacher: (3.75 - 4) / 0.25 = -1. Not lora at
        // d = 100.
        assert_eq!(
            rows[2],
            ["m", "400", "init", "lora", "1/1", "4.00", "1.5", "0/1", "1.000"]
        );
        assert_eq!(
            rows[3],
            ["m", "400", "init", "teacher", "1/1", "1.00", "1.5", "1/1", "0.2500"]
        );
        assert_eq!(rows[4][..3], ["q", "100", "best"]);
        assert_eq!(rows[6][..4], ["q", "400", "init", "lora"]);
        assert_eq!(rows.len(), 8);
    }

    #[test]
    fn log_axis_renders_positive_data() {
        let mut c = with_initialisations();
        c.theory.retain(|p| p.x > 0.0);
        let dir = tmp_dir("svg_log");
        let paths = write_svg(&c, &dir, XScale::Log).unwrap();
        let svg = std::fs::read_to_string(&paths[0]).unwrap();
        assert!(svg.contains("d = 400, init lora"));
        // The data span less than a decade (0.5 to 3): ticks at 1-2-5 multiples of ten.
        for tick in ["0.5", "1", "2"] {
            let text = format!("\n{tick}\n</text>");
            assert!(svg.contains(&text), "missing tick {tick}");
        }
        assert_ne!(svg, render_svg(&c, "m", XScale::Linear).unwrap());
        assert_eq!(svg, render_svg(&c, "m", XScale::Log).unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn log_axis_refuses_non_positive_x_before_writing() {
        let dir = tmp_dir("svg_log_zero");
        let target = dir.join("figures");
        // The theory starts at x = 0.
        let err = write_svg(&linear_example(), &target, XScale::Log).unwrap_err();
        assert!(matches!(err, FigureError::NonPositiveX { x, .. } if x == 0.0));
        let message = err.to_string();
        assert!(message.contains("logarithmic"), "{message}");
        assert!(message.contains("`m` has data at alpha = 0"), "{message}");
        assert!(!target.exists());
        // A negative simulated x, with the theory positive.
        let mut c = linear_example();
        c.theory.retain(|p| p.x > 0.0);
        c.simulation[0].x = -1.0;
        let err = write_svg(&c, &target, XScale::Log).unwrap_err();
        assert!(matches!(err, FigureError::NonPositiveX { x, .. } if x == -1.0));
        // The linear axis is fine with either.
        assert_eq!(write_svg(&c, &target, XScale::Linear).unwrap().len(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn log_ticks_label_any_range() {
        assert_eq!(log_key_points(0.49, 2.04), [0.5, 1.0, 2.0]);
        assert_eq!(log_key_points(3.9, 8.2), [4.0, 5.0, 6.0, 7.0, 8.0]);
        assert_eq!(log_key_points(0.09, 0.31), [0.09, 0.1, 0.2, 0.3]);
        assert_eq!(
            log_key_points(9e-4, 1.1e3),
            [1e-3, 1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3]
        );
        // Forty decades: every fifth power.
        let wide = log_key_points(1e-20, 1e20);
        assert_eq!(wide.len(), 9);
        assert_eq!((wide[0], wide[1], wide[8]), (1e-20, 1e-15, 1e20));
        // Narrower than the gap between 1..9 multiples: linear ticks inside the range.
        let narrow = log_key_points(4.01, 4.09);
        assert!(narrow.len() >= 3);
        assert!(
            narrow.iter().all(|v| (4.01..=4.09).contains(v)),
            "{narrow:?}"
        );
        assert_eq!(fmt_tick(3.9000000000000004), "3.9");
        assert_eq!(fmt_tick(1e-3), "0.001");
    }
}
