//! The command line (clap): `toolkit run | simulate | compare | check | equations`. Flag
//! values are validated here and errors name the flag.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use clap::{Parser, Subcommand};
use indexmap::IndexMap;
use indicatif::{ProgressBar, ProgressStyle};

use crate::output::{self, Format};
use crate::pipeline::{self, PointResult, RunOptions, ToolkitError};
use crate::solve::sweep::{distinct_branches, linspace, run_segments};
use crate::syntax::{Item, SettingValue};

#[derive(Debug, Parser)]
#[command(name = "toolkit", version, about = "Sharp asymptotics of high-dimensional learning models from .lra model files")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Solve the saddle-point equations and print order parameters and observables.
    Run(RunArgs),
    /// Simulate the model's `simulate { }` section at finite d, averaging reports over seeds.
    Simulate(SimulateArgs),
    /// Theory and simulation on the same sweep: a CSV and SVG figures in --out.
    Compare(CompareArgs),
    /// Parse and type-check a model file (and its imports) without solving.
    Check { file: PathBuf },
    /// Print the saddle-point equations dPhi/dtheta = 0 derived from the free energy.
    Equations {
        file: PathBuf,
        /// LaTeX instead of plain text.
        #[arg(long)]
        latex: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    pub file: PathBuf,
    /// Override a param: NAME=VALUE (repeatable).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<String>,
    /// Sweep a param: NAME=START:STOP:COUNT, or NAME alone for the range declared in the file.
    #[arg(long, value_name = "NAME=START:STOP:COUNT")]
    pub sweep: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Also write results here (sweeps: JSON Lines, one point per line as it finishes).
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
    /// Continue a sweep: keep the points already in --out and solve only the missing ones.
    #[arg(long)]
    pub resume: bool,
    /// Solver setting KEY=VALUE (method, damping, tol, residual_tol, max_iter, anderson, trace=1 prints every iteration); overrides the file.
    #[arg(long = "solver", value_name = "KEY=VALUE")]
    pub solver: Vec<String>,
    /// Skip the local-stability analysis of fixed points (saves one Hessian per fixed point).
    #[arg(long)]
    pub no_stability: bool,
}

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    pub file: PathBuf,
    /// Dimensions d, comma separated.
    #[arg(long = "d", value_name = "D[,D...]", value_delimiter = ',', required = true)]
    pub dimensions: Vec<usize>,
    /// Number of seeds per point (seeds are 0..S, shifted by --first-seed).
    #[arg(long, default_value_t = 8)]
    pub seeds: u64,
    #[arg(long, default_value_t = 0)]
    pub first_seed: u64,
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<String>,
    #[arg(long, value_name = "NAME=START:STOP:COUNT")]
    pub sweep: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Also write results here, one JSON line per (point, d) as it finishes.
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
    /// Continue: keep the (point, d) results already in --out and simulate only the missing ones.
    #[arg(long)]
    pub resume: bool,
}

#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    pub file: PathBuf,
    /// Dimensions d, comma separated (one colour each in the figures).
    #[arg(long = "d", value_name = "D[,D...]", value_delimiter = ',', required = true)]
    pub dimensions: Vec<usize>,
    #[arg(long, default_value_t = 16)]
    pub seeds: u64,
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<String>,
    /// The swept param: NAME=START:STOP:COUNT, NAME=V1,V2,... or NAME (range declared in the file).
    #[arg(long, value_name = "NAME=...", required = true)]
    pub sweep: String,
    /// Theory curve resolution: points between the first and last swept value (0: only the swept values).
    #[arg(long, default_value_t = 0)]
    pub theory_points: usize,
    /// Directory for comparison.csv, the SVG figures, theory.jsonl and simulation.jsonl.
    #[arg(long, value_name = "DIR", required = true)]
    pub out: PathBuf,
    /// Logarithmic x axis in the figures (every swept value must be positive).
    #[arg(long)]
    pub log_x: bool,
    /// Solver setting KEY=VALUE for the theory sweep, as for `run` (e.g. solution_error=1: the
    /// deviations then count the prediction's integration and solution errors too).
    #[arg(long = "solver", value_name = "KEY=VALUE")]
    pub solver: Vec<String>,
    /// Continue an interrupted or extended comparison: keep the theory points and simulated
    /// (point, d) results already in --out and compute only the missing ones.
    #[arg(long)]
    pub resume: bool,
}

fn flag_error(flag: &str, message: impl Into<String>) -> ToolkitError {
    ToolkitError::Flag { flag: flag.to_string(), message: message.into() }
}

pub fn parse_assignments(values: &[String], flag: &str) -> Result<BTreeMap<String, f64>, ToolkitError> {
    let mut out = BTreeMap::new();
    for text in values {
        let (name, value) = text.split_once('=').ok_or_else(|| flag_error(flag, format!("expected NAME=VALUE, found `{text}`")))?;
        let number: f64 = value.trim().parse().map_err(|_| flag_error(&format!("{flag} {name}"), format!("`{value}` is not a number")))?;
        if !number.is_finite() {
            return Err(flag_error(&format!("{flag} {name}"), "the value must be finite"));
        }
        out.insert(name.trim().to_string(), number);
    }
    Ok(out)
}

fn parse_solver_settings(values: &[String]) -> Result<Vec<(String, SettingValue)>, ToolkitError> {
    values
        .iter()
        .map(|text| {
            let (key, value) = text.split_once('=').ok_or_else(|| flag_error("--solver", format!("expected KEY=VALUE, found `{text}`")))?;
            let value = match value.trim().parse::<f64>() {
                Ok(n) => SettingValue::Number(n),
                Err(_) => SettingValue::Word(value.trim().to_string()),
            };
            Ok((key.trim().to_string(), value))
        })
        .collect()
}

/// The swept param and its values, from the flag or the file's `sweep` declaration.
fn parse_sweep(text: &str, loaded: &pipeline::LoadedModel) -> Result<(String, Vec<f64>), ToolkitError> {
    if let Some((name, range)) = text.split_once('=') {
        if !range.contains(':') {
            let values: Result<Vec<f64>, _> = range.split(',').map(|v| v.trim().parse::<f64>()).collect();
            return match values {
                Ok(v) if !v.is_empty() && v.iter().all(|x| x.is_finite()) => Ok((name.trim().to_string(), v)),
                _ => Err(flag_error("--sweep", format!("expected NAME=START:STOP:COUNT or NAME=V1,V2,..., found `{text}`"))),
            };
        }
        let parts: Vec<&str> = range.split(':').collect();
        if parts.len() != 3 {
            return Err(flag_error("--sweep", format!("expected NAME=START:STOP:COUNT, found `{text}`")));
        }
        let start: f64 = parts[0].trim().parse().map_err(|_| flag_error("--sweep", format!("START `{}` is not a number", parts[0])))?;
        let stop: f64 = parts[1].trim().parse().map_err(|_| flag_error("--sweep", format!("STOP `{}` is not a number", parts[1])))?;
        let count: usize = parts[2].trim().parse().map_err(|_| flag_error("--sweep", format!("COUNT `{}` is not a whole number", parts[2])))?;
        if count == 0 || !start.is_finite() || !stop.is_finite() {
            return Err(flag_error("--sweep", "COUNT must be at least 1 and START, STOP finite"));
        }
        return Ok((name.trim().to_string(), linspace(start, stop, count)));
    }
    let declared = loaded.file.items.iter().find_map(|i| match i {
        Item::Sweep(s) if s.param.name == text.trim() => Some(s),
        _ => None,
    });
    match declared {
        Some(s) => Ok((s.param.name.clone(), linspace(s.start, s.stop, s.count))),
        None => Err(flag_error("--sweep", format!("`{}` declares no `sweep {text} = ...`; give NAME=START:STOP:COUNT", loaded.path.display()))),
    }
}

fn write_file(path: &Path, text: &str) -> Result<(), ToolkitError> {
    std::fs::write(path, text).map_err(|e| flag_error("--out", format!("cannot write `{}`: {e}", path.display())))
}

/// Whether two param values are the same up to rounding in the JSON text.
fn same_value(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * (1.0 + a.abs())
}

/// The params of a point: the file's defaults with `overrides` applied.
fn point_params(loaded: &pipeline::LoadedModel, overrides: &BTreeMap<String, f64>) -> IndexMap<String, f64> {
    loaded.all_params().into_iter().map(|p| (p.name.clone(), overrides.get(&p.name).copied().unwrap_or(p.default))).collect()
}

/// The result lines an earlier run wrote to `path` (for --resume; none if there is no file).
/// Every line must have been computed with `params`, the swept param aside, and with the
/// `--solver` settings `solver_settings` (simulations have none): a line that was not is an
/// error, never a result silently mixed into this one. Lines that do not parse (a run killed
/// while writing) are skipped, and their points computed again.
fn resumed_lines(
    path: &Path,
    params: &IndexMap<String, f64>,
    swept: Option<&str>,
    solver_settings: &[String],
) -> Result<Vec<(serde_json::Value, String)>, ToolkitError> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(Vec::new()) };
    let mut lines = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let found: Vec<&str> = value["solver_settings"].as_array().map(|a| a.iter().filter_map(|s| s.as_str()).collect()).unwrap_or_default();
        if found != solver_settings {
            let shown = |settings: &[&str]| if settings.is_empty() { "no --solver settings".to_string() } else { format!("--solver {}", settings.join(" --solver ")) };
            let expected: Vec<&str> = solver_settings.iter().map(String::as_str).collect();
            return Err(flag_error(
                "--resume",
                format!(
                    "line {} of `{}` was solved with {}, this run has {}: resume with the same --solver settings, or write to another --out",
                    number + 1,
                    path.display(),
                    shown(&found),
                    shown(&expected)
                ),
            ));
        }
        for (name, &expected) in params.iter().filter(|(name, _)| Some(name.as_str()) != swept) {
            let found = value["params"][name].as_f64();
            if !found.is_some_and(|f| same_value(f, expected)) {
                let found = found.map_or("no value".to_string(), |f| format!("{name} = {f}"));
                return Err(flag_error(
                    "--resume",
                    format!(
                        "line {} of `{}` has {found}, this run has {name} = {expected}: resume with the same params, or write to another --out",
                        number + 1,
                        path.display()
                    ),
                ));
            }
        }
        lines.push((value, line.to_string()));
    }
    Ok(lines)
}

pub fn run(args: RunArgs) -> Result<String, ToolkitError> {
    let loaded = pipeline::load(&args.file)?;
    let mut overrides = parse_assignments(&args.set, "--set")?;
    loaded.check_overrides(&overrides)?;
    let options = RunOptions { solver: parse_solver_settings(&args.solver)?, stability: !args.no_stability };

    let Some(sweep) = &args.sweep else {
        if args.resume {
            return Err(flag_error("--resume", "only sweeps can be resumed; add --sweep"));
        }
        let point = pipeline::solve(&loaded, &overrides, &options, &[])?;
        let text = match args.format {
            Format::Table => output::table(&point),
            Format::Json => output::json_line(&point) + "\n",
            Format::Csv => output::csv(std::slice::from_ref(&point)),
        };
        if let Some(path) = &args.out {
            write_file(path, &text)?;
        }
        return Ok(text);
    };

    let (swept, values) = parse_sweep(sweep, &loaded)?;
    let mut probe = overrides.clone();
    probe.insert(swept.clone(), values[0]);
    loaded.check_overrides(&probe).map_err(|_| flag_error("--sweep", format!("`{swept}` is not a param of `{}`", args.file.display())))?;
    overrides.remove(&swept);

    let previous: Vec<f64> = match (&args.out, args.resume) {
        (Some(path), true) => resumed_lines(path, &point_params(&loaded, &overrides), Some(&swept), &options.result_settings())?
            .iter()
            .filter_map(|(line, _)| line["params"][&swept].as_f64())
            .collect(),
        (None, true) => return Err(flag_error("--resume", "needs --out, the file to continue")),
        _ => Vec::new(),
    };
    let already_done = |i: usize| previous.iter().any(|&x| same_value(x, values[i]));
    let sink = match &args.out {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .append(args.resume)
                .truncate(!args.resume)
                .open(path)
                .map_err(|e| flag_error("--out", format!("cannot open `{}`: {e}", path.display())))?;
            Some(Mutex::new(file))
        }
        None => None,
    };
    let progress = ProgressBar::new(values.len() as u64);
    progress.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} points  {elapsed_precise} (eta {eta})").unwrap_or_else(|_| ProgressStyle::default_bar()));
    progress.inc((0..values.len()).filter(|&i| already_done(i)).count() as u64);

    let solve_one = |value: f64, warm: &[Vec<f64>]| {
        let mut point_overrides = overrides.clone();
        point_overrides.insert(swept.clone(), value);
        pipeline::solve(&loaded, &point_overrides, &options, warm)
    };
    let on_done = |_: usize, result: &Result<PointResult, ToolkitError>| {
        if let (Some(sink), Ok(point)) = (&sink, result) {
            if let Ok(mut file) = sink.lock() {
                let _ = writeln!(file, "{}", output::json_line(point));
                let _ = file.flush();
            }
        }
        progress.inc(1);
    };
    let results = run_segments(&values, &already_done, &solve_one, &|p: &PointResult| distinct_branches(&p.all_fixed_points), &on_done);
    progress.finish_and_clear();

    let mut points = Vec::new();
    let mut failures = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Some(Ok(p)) => points.push(p),
            Some(Err(e)) => failures.push(format!("{swept} = {}: {e}", values[i])),
            None => {}
        }
    }
    let mut text = match args.format {
        Format::Table => output::sweep_table(&points, &swept),
        Format::Json => points.iter().map(|p| output::json_line(p) + "\n").collect(),
        Format::Csv => output::csv(&points),
    };
    let resumed = (0..values.len()).filter(|&i| already_done(i)).count();
    if resumed > 0 {
        text.push_str(&format!("({resumed} points resumed from {})\n", args.out.as_ref().map(|p| p.display().to_string()).unwrap_or_default()));
    }
    if !failures.is_empty() {
        return Err(ToolkitError::Solve {
            path: args.file.clone(),
            params: format!("sweep over {swept}"),
            message: format!("{} of {} points failed (the others are {}):\n{}\n{text}", failures.len(), values.len(), if args.out.is_some() { "in --out" } else { "printed below" }, failures.join("\n")),
        });
    }
    Ok(text)
}

pub fn check(file: &Path) -> Result<String, ToolkitError> {
    let loaded = pipeline::load(file)?;
    pipeline::check(&loaded)?;
    Ok(format!("{}: ok\n", file.display()))
}

pub fn equations(file: &Path, latex: bool) -> Result<String, ToolkitError> {
    let loaded = pipeline::load(file)?;
    pipeline::check(&loaded)?;
    let equations = crate::solve::equations::derive_equations(&loaded.file)
        .map_err(|message| ToolkitError::Solve { path: file.to_path_buf(), params: "equations".into(), message })?;
    Ok(if latex { crate::solve::equations::render_latex(&equations) } else { crate::solve::equations::render_text(&equations) })
}

/// The swept values, or the single point.
fn points(sweep: &Option<String>, loaded: &pipeline::LoadedModel) -> Result<Option<(String, Vec<f64>)>, ToolkitError> {
    sweep.as_ref().map(|text| parse_sweep(text, loaded)).transpose()
}

pub fn simulate(args: SimulateArgs) -> Result<String, ToolkitError> {
    use crate::sim::experiment::{simulate_seed, summarise_seeds, SimulationResult};
    use rayon::prelude::*;
    let loaded = pipeline::load(&args.file)?;
    let overrides = parse_assignments(&args.set, "--set")?;
    loaded.check_overrides(&overrides)?;
    if args.seeds == 0 {
        return Err(flag_error("--seeds", "needs at least one seed"));
    }
    if let Some(&d) = args.dimensions.iter().find(|&&d| d < 2) {
        return Err(flag_error("--d", format!("a dimension must be at least 2, found {d}")));
    }
    let sweep = points(&args.sweep, &loaded)?;
    let values: Vec<Option<f64>> = match &sweep {
        Some((_, v)) => v.iter().map(|x| Some(*x)).collect(),
        None => vec![None],
    };
    let seeds: Vec<u64> = (args.first_seed..args.first_seed + args.seeds).collect();
    let total = (values.len() * args.dimensions.len() * seeds.len()) as u64;
    let progress = ProgressBar::new(total);
    progress.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} seeds  {elapsed_precise} (eta {eta})").unwrap_or_else(|_| ProgressStyle::default_bar()));
    let swept = sweep.as_ref().map(|(name, _)| name.as_str());
    let previous: Vec<SimulationResult> = match (&args.out, args.resume) {
        (Some(path), true) => resumed_lines(path, &point_params(&loaded, &overrides), swept, &[])?
            .into_iter()
            // Read from the text: it keeps the order of the reports.
            .filter_map(|(_, text)| serde_json::from_str(&text).ok())
            .collect(),
        (None, true) => return Err(flag_error("--resume", "needs --out, the file to continue")),
        _ => Vec::new(),
    };
    let mut sink = match &args.out {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .append(args.resume)
                .truncate(!args.resume)
                .open(path)
                .map_err(|e| flag_error("--out", format!("cannot write `{}`: {e}", path.display())))?,
        ),
        None => None,
    };
    let mut results: Vec<SimulationResult> = Vec::new();
    let mut resumed = 0;
    for value in &values {
        let mut point = overrides.clone();
        if let (Some(name), Some(x)) = (swept, value) {
            point.insert(name.to_string(), *x);
        }
        let simulation = pipeline::simulation(&loaded, &point)?;
        let params = point_params(&loaded, &point);
        for &d in &args.dimensions {
            let done = previous.iter().find(|r| r.dimension == d && swept.is_none_or(|name| r.params.get(name).is_some_and(|&x| same_value(x, params[name]))));
            if let Some(done) = done {
                if (done.seeds as u64, done.first_seed) != (args.seeds, args.first_seed) {
                    return Err(flag_error(
                        "--resume",
                        format!(
                            "`{}` has d = {d}{} with seeds {}..{}, this run asks for {}..{}: resume with the same --seeds and --first-seed, or write to another --out",
                            args.out.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
                            swept.map(|name| format!(", {name} = {}", params[name])).unwrap_or_default(),
                            done.first_seed,
                            done.first_seed + done.seeds as u64,
                            args.first_seed,
                            args.first_seed + args.seeds
                        ),
                    ));
                }
                progress.inc(args.seeds);
                results.push(done.clone());
                resumed += 1;
                continue;
            }
            let reports: Result<Vec<_>, _> = seeds
                .par_iter()
                .map(|&seed| {
                    let r = simulate_seed(&simulation.spec, simulation.chained.as_ref(), d, seed);
                    progress.inc(1);
                    r
                })
                .collect();
            let reports = reports.map_err(|e| ToolkitError::Solve { path: args.file.clone(), params: format!("d = {d}"), message: e.to_string() })?;
            let result = summarise_seeds(&simulation.spec, loaded.title(), params.clone(), d, &reports);
            if let Some(file) = sink.as_mut() {
                let _ = writeln!(file, "{}", serde_json::to_string(&result).unwrap_or_default());
                let _ = file.flush();
            }
            results.push(result);
        }
    }
    progress.finish_and_clear();
    let mut text = match args.format {
        Format::Json => results.iter().map(|r| serde_json::to_string(r).unwrap_or_default() + "\n").collect(),
        Format::Csv => output::simulation_csv(&results),
        Format::Table => output::simulation_table(&results, swept),
    };
    if resumed > 0 && args.format == Format::Table {
        text.push_str(&format!("({resumed} of {} (point, d) results resumed from {})\n", results.len(), args.out.as_ref().map(|p| p.display().to_string()).unwrap_or_default()));
    }
    Ok(text)
}

pub fn compare(args: CompareArgs) -> Result<String, ToolkitError> {
    use crate::figure::{write_csv, write_svg, Comparison, FigureError, SimulationPoint, TheoryPoint, XScale, BEST_RUN};
    let loaded = pipeline::load(&args.file)?;
    let (swept, values) = parse_sweep(&args.sweep, &loaded)?;
    // Checked before the solves and simulations, which take long, rather than when plotting.
    if let Some(v) = values.iter().find(|&&v| v <= 0.0).filter(|_| args.log_x) {
        return Err(flag_error("--log-x", format!("a logarithmic x axis needs positive values of {swept}, but the sweep includes {v}")));
    }
    std::fs::create_dir_all(&args.out).map_err(|e| flag_error("--out", format!("cannot create `{}`: {e}", args.out.display())))?;
    // Theory on the swept values (and optionally a finer grid), warm-started along the sweep.
    let mut theory_values = values.clone();
    if args.theory_points > 1 {
        let (low, high) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
        theory_values.extend(linspace(low, high, args.theory_points));
        theory_values.sort_by(f64::total_cmp);
        theory_values.dedup();
    }
    let theory_file = args.out.join("theory.jsonl");
    run(RunArgs {
        file: args.file.clone(),
        set: args.set.clone(),
        sweep: Some(format!("{swept}={}", theory_values.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(","))),
        format: Format::Json,
        out: Some(theory_file.clone()),
        resume: args.resume,
        solver: args.solver.clone(),
        no_stability: true,
    })?;
    // The file holds every solved point, the resumed ones included.
    let theory_text = std::fs::read_to_string(&theory_file).map_err(|e| flag_error("--out", format!("cannot read `{}`: {e}", theory_file.display())))?;
    let theory: Vec<TheoryPoint> = theory_text
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|point| point["params"][&swept].as_f64().is_some_and(|x| theory_values.iter().any(|&v| same_value(x, v))))
        .map(|point| TheoryPoint {
            x: point["params"][&swept].as_f64().unwrap_or(f64::NAN),
            values: point["observables"]
                .as_object()
                .map(|o| o.iter().filter_map(|(k, v)| v.as_f64().map(|x| (k.clone(), x))).collect())
                .unwrap_or_default(),
            errors: prediction_errors(&point),
        })
        .collect();
    let simulation_file = args.out.join("simulation.jsonl");
    let simulation_text = simulate(SimulateArgs {
        file: args.file.clone(),
        dimensions: args.dimensions.clone(),
        seeds: args.seeds,
        first_seed: 0,
        set: args.set.clone(),
        sweep: Some(format!("{swept}={}", values.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(","))),
        format: Format::Json,
        out: Some(simulation_file),
        resume: args.resume,
    })?;
    let estimates = |reports: &serde_json::Value| -> Vec<(String, f64, f64, usize)> {
        reports
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), v["mean"].as_f64().unwrap_or(f64::NAN), v["sem"].as_f64().unwrap_or(f64::NAN), v["n"].as_u64().unwrap_or(0) as usize))
                    .collect()
            })
            .unwrap_or_default()
    };
    // Each simulated (point, d) gives the best-run series and one series per initialisation,
    // so minima that some initialisations end in are shown next to the best ones.
    let simulation: Vec<SimulationPoint> = simulation_text
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .flat_map(|point| {
            let dimension = point["dimension"].as_u64().unwrap_or(0) as usize;
            let x = point["params"][&swept].as_f64().unwrap_or(f64::NAN);
            let inits = point["inits"].as_object().into_iter().flatten().map(|(init, reports)| (init.clone(), estimates(reports)));
            std::iter::once((BEST_RUN.to_string(), estimates(&point["observables"])))
                .chain(inits)
                .map(|(run, values)| SimulationPoint { dimension, run, x, values })
                .collect::<Vec<_>>()
        })
        .collect();
    // Observables both sides know: the reports named like theory observables.
    let observables: Vec<String> = simulation
        .first()
        .map(|p| p.values.iter().map(|v| v.0.clone()).filter(|name| theory.iter().any(|t| t.values.iter().any(|(k, _)| k == name))).collect())
        .unwrap_or_default();
    if observables.is_empty() {
        return Err(flag_error("compare", "no simulation report has the name of a theory observable (name them alike: `report eps0 = test_error`)"));
    }
    let comparison = Comparison { swept: swept.clone(), observables, theory, simulation };
    let csv_path = args.out.join("comparison.csv");
    write_csv(&comparison, &csv_path).map_err(|e| flag_error("--out", e.to_string()))?;
    let x_scale = if args.log_x { XScale::Log } else { XScale::Linear };
    let figures = write_svg(&comparison, &args.out, x_scale).map_err(|e| match e {
        FigureError::NonPositiveX { .. } => flag_error("--log-x", e.to_string()),
        _ => flag_error("--out", e.to_string()),
    })?;
    let mut text = crate::figure::summary(&comparison);
    text.push_str(&format!("wrote {} and {} figure(s) in {}\n", csv_path.display(), figures.len(), args.out.display()));
    Ok(text)
}

/// Standard error of each predicted observable at one solved point: the integration and
/// solution errors (where the point has them) and the solver's resolution, `solver_tolerance
/// (1 + |value|)`, combined in quadrature. The resolution is what keeps a prediction that sits
/// on a domain floor (an overlap of 1e-10 for an exact 0) from differing by millions of
/// standard errors from a simulated 1e-16.
fn prediction_errors(point: &serde_json::Value) -> Vec<(String, f64)> {
    let mut squared: IndexMap<String, f64> = IndexMap::new();
    let tolerance = point["solver_tolerance"].as_f64().unwrap_or(0.0);
    for (name, value) in point["observables"].as_object().into_iter().flatten() {
        if let Some(v) = value.as_f64() {
            squared.insert(name.clone(), (tolerance * (1.0 + v.abs())).powi(2));
        }
    }
    for kind in ["integration_error", "solution_error"] {
        for (name, error) in point[kind].as_object().into_iter().flatten() {
            if let Some(e) = error.as_f64() {
                *squared.entry(name.clone()).or_insert(0.0) += e * e;
            }
        }
    }
    squared.into_iter().map(|(name, s)| (name, s.sqrt())).collect()
}

/// Run a parsed command line; the text to print, or an error to render.
pub fn execute(cli: Cli) -> Result<String, ToolkitError> {
    match cli.command {
        Command::Run(args) => run(args),
        Command::Simulate(args) => simulate(args),
        Command::Compare(args) => compare(args),
        Command::Check { file } => check(&file),
        Command::Equations { file, latex } => equations(&file, latex),
    }
}

#[cfg(test)]
mod tests {
    use super::prediction_errors;

    #[test]
    fn a_prediction_is_resolved_no_finer_than_the_solver_tolerance() {
        let point = serde_json::json!({
            "observables": { "q0": 1e-10, "eps0": 0.5 },
            "integration_error": { "eps0": 3e-4 },
            "solver_tolerance": 1e-8,
        });
        let errors: std::collections::HashMap<String, f64> = prediction_errors(&point).into_iter().collect();
        // An overlap on its domain floor (1e-10 for an exact 0) is zero within the tolerance.
        assert!((errors["q0"] - 1e-8 * (1.0 + 1e-10)).abs() < 1e-20);
        // Elsewhere the resolution adds in quadrature to the integration error.
        assert!((errors["eps0"] - (3e-4f64).hypot(1.5e-8)).abs() < 1e-15);
    }
}
