//! The `toolkit` binary end to end: exit codes and messages for bad input, the main job.

use std::process::Command;

fn toolkit(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_toolkit"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the binary runs");
    (output.status.success(), String::from_utf8_lossy(&output.stdout).into(), String::from_utf8_lossy(&output.stderr).into())
}

#[test]
fn a_broken_model_file_exits_non_zero_with_line_and_column() {
    let (ok, _, stderr) = toolkit(&["check", "tests/bad/unknown_name.lra"]);
    assert!(!ok);
    assert!(stderr.contains("tests/bad/unknown_name.lra:6:60"), "{stderr}");
}

#[test]
fn a_bad_flag_names_the_flag() {
    let (ok, _, stderr) = toolkit(&["run", "models/ridge.lra", "--set", "alhpa=2"]);
    assert!(!ok);
    assert!(stderr.contains("--set alhpa"), "{stderr}");
    let (ok, _, stderr) = toolkit(&["run", "models/ridge.lra", "--sweep", "alpha=1:2"]);
    assert!(!ok);
    assert!(stderr.contains("--sweep"), "{stderr}");
    let (ok, _, stderr) = toolkit(&["run", "models/ridge.lra", "--set", "alpha=-1"]);
    assert!(!ok);
    assert!(stderr.contains("must be positive"), "{stderr}");
}

#[test]
fn a_solver_that_does_not_converge_says_so() {
    let (ok, stdout, stderr) = toolkit(&["run", "models/ridge.lra", "--solver", "max_iter=2"]);
    assert!(!ok, "{stdout}");
    assert!(stderr.contains("no start converged"), "{stderr}");
}

#[test]
fn a_solver_setting_prefixed_with_a_stage_applies_to_that_stage_only() {
    // `stage0.` reaches the imported pre-training and nothing else: it fails, named by its file.
    let (ok, _, stderr) = toolkit(&["run", "models/lora.lra", "--no-stability", "--solver", "stage0.max_iter=1"]);
    assert!(!ok);
    assert!(stderr.contains("models/pretrain.lra") && stderr.contains("no convergence after 1 iterations"), "{stderr}");
    // `main.` reaches the file being run only: pre-training converges, fine-tuning does not.
    let (ok, _, stderr) = toolkit(&["run", "models/lora.lra", "--no-stability", "--solver", "main.max_iter=1"]);
    assert!(!ok);
    assert!(stderr.contains("`models/lora.lra` (") && !stderr.contains("`models/pretrain.lra` ("), "{stderr}");
    // A prefix that names no import, and a bad key behind a good prefix, name the flag.
    let (ok, _, stderr) = toolkit(&["run", "models/lora.lra", "--solver", "stag0.damping=0.5"]);
    assert!(!ok);
    assert!(stderr.contains("--solver stag0.damping") && stderr.contains("imports: stage0"), "{stderr}");
    let (ok, _, stderr) = toolkit(&["run", "models/lora.lra", "--solver", "stage0.dampnig=0.5"]);
    assert!(!ok);
    assert!(stderr.contains("--solver stage0.dampnig") && stderr.contains("unknown solver setting"), "{stderr}");
}

#[test]
fn run_prints_json_with_the_documented_keys() {
    let (ok, stdout, stderr) = toolkit(&["run", "models/ridge.lra", "--format", "json"]);
    assert!(ok, "{stderr}");
    let value: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    for key in ["params", "order_parameters", "observables", "free_energy", "converged", "iterations"] {
        assert!(value.get(key).is_some(), "missing {key}");
    }
}

#[test]
fn a_sweep_streams_json_lines_and_resumes() {
    let dir = std::env::temp_dir().join(format!("toolkit-sweep-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("sweep.jsonl");
    let out = out.to_str().unwrap();
    let (ok, _, stderr) = toolkit(&["run", "models/ridge.lra", "--sweep", "alpha=0.5:2:4", "--format", "json", "--out", out]);
    assert!(ok, "{stderr}");
    assert_eq!(std::fs::read_to_string(out).unwrap().lines().count(), 4);
    let (ok, stdout, stderr) = toolkit(&["run", "models/ridge.lra", "--sweep", "alpha=0.5:2:4", "--out", out, "--resume"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("4 points resumed"), "{stdout}");
    assert_eq!(std::fs::read_to_string(out).unwrap().lines().count(), 4);
    // Points solved with other params are not mixed in.
    let (ok, _, stderr) = toolkit(&["run", "models/ridge.lra", "--set", "lambda=1", "--sweep", "alpha=0.5:2:4", "--out", out, "--resume"]);
    assert!(!ok);
    assert!(stderr.contains("--resume") && stderr.contains("lambda = 0.1") && stderr.contains("lambda = 1"), "{stderr}");
    // Nor are points solved with other solver settings; `trace` changes no result.
    let (ok, _, stderr) = toolkit(&["run", "models/ridge.lra", "--solver", "tol=1e-6", "--sweep", "alpha=0.5:2:4", "--out", out, "--resume"]);
    assert!(!ok);
    assert!(stderr.contains("--resume") && stderr.contains("no --solver settings") && stderr.contains("--solver tol=0.000001"), "{stderr}");
    let (ok, stdout, stderr) = toolkit(&["run", "models/ridge.lra", "--solver", "trace=1", "--sweep", "alpha=0.5:2:4", "--out", out, "--resume"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("4 points resumed"), "{stdout}");
}

#[test]
fn a_simulation_resumes_only_what_it_can_continue() {
    let dir = std::env::temp_dir().join(format!("toolkit-simulate-resume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("simulation.jsonl");
    let out = out.to_str().unwrap();
    let simulate = |extra: &[&str]| {
        let mut args = vec!["simulate", "models/ridge.lra", "--d", "20", "--format", "json", "--out", out];
        args.extend_from_slice(extra);
        toolkit(&args)
    };
    let (ok, first, stderr) = simulate(&["--seeds", "3", "--sweep", "alpha=1,2"]);
    assert!(ok, "{stderr}");
    // Extending the sweep simulates only the new point and returns the earlier ones unchanged.
    let (ok, extended, stderr) = simulate(&["--seeds", "3", "--sweep", "alpha=1,2,3", "--resume"]);
    assert!(ok, "{stderr}");
    assert!(extended.starts_with(&first), "{first}\n---\n{extended}");
    assert_eq!(extended.lines().count(), 3);
    assert_eq!(std::fs::read_to_string(out).unwrap().lines().count(), 3);
    // Other seeds or other params would mix two experiments: refused, naming the flag.
    let (ok, _, stderr) = simulate(&["--seeds", "4", "--sweep", "alpha=1,2", "--resume"]);
    assert!(!ok);
    assert!(stderr.contains("--resume") && stderr.contains("seeds 0..3") && stderr.contains("0..4"), "{stderr}");
    let (ok, _, stderr) = simulate(&["--seeds", "3", "--set", "lambda=1", "--sweep", "alpha=1,2", "--resume"]);
    assert!(!ok);
    assert!(stderr.contains("--resume") && stderr.contains("lambda"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_resumed_comparison_reproduces_the_interrupted_one() {
    let dir = std::env::temp_dir().join(format!("toolkit-compare-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = dir.to_str().unwrap();
    let compare = |resume: bool| {
        let mut args = vec!["compare", "models/ridge.lra", "--d", "20,40", "--seeds", "3", "--sweep", "alpha=1,2", "--out", out];
        if resume {
            args.push("--resume");
        }
        let (ok, stdout, stderr) = toolkit(&args);
        assert!(ok, "{stderr}");
        (stdout, std::fs::read_to_string(dir.join("comparison.csv")).unwrap())
    };
    let complete = compare(false);
    // Interrupted after the theory and the first simulated point.
    let simulation = dir.join("simulation.jsonl");
    let first_line = std::fs::read_to_string(&simulation).unwrap().lines().next().unwrap().to_string();
    std::fs::write(&simulation, first_line + "\n").unwrap();
    assert_eq!(compare(true), complete);
    assert_eq!(std::fs::read_to_string(&simulation).unwrap().lines().count(), 4);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn equations_are_derived_symbolically() {
    let (ok, stdout, stderr) = toolkit(&["equations", "models/ridge.lra"]);
    assert!(ok, "{stderr}");
    insta::with_settings!({snapshot_path => "../snapshots", prepend_module_to_snapshot => false}, {
        insta::assert_snapshot!("equations__ridge", stdout);
    });
}

#[test]
fn compare_reports_the_best_run_and_every_initialisation() {
    let dir = std::env::temp_dir().join(format!("toolkit-compare-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = dir.to_str().unwrap();
    let (ok, stdout, stderr) =
        toolkit(&["compare", "models/ridge.lra", "--d", "20,40", "--seeds", "3", "--sweep", "alpha=1,2", "--log-x", "--out", out]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("also per initialisation (random)"), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("m ") && l.contains(" 40  init random ")), "{stdout}");

    let csv = std::fs::read_to_string(dir.join("comparison.csv")).unwrap();
    assert!(csv.starts_with("alpha,observable,source,dimension,run,value,sem,seeds,theory_error,deviation_in_sem\n"), "{csv}");
    for series in ["20,best,", "40,best,", "20,random,", "40,random,"] {
        assert_eq!(csv.lines().filter(|l| l.contains(&format!(",m,simulation,{series}"))).count(), 2, "{series}\n{csv}");
    }
    let svg = std::fs::read_to_string(dir.join("m.svg")).unwrap();
    assert!(svg.contains("d = 40, init random"));
    assert!(!svg.contains("d = 20, init"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_log_axis_needs_positive_swept_values() {
    let dir = std::env::temp_dir().join(format!("toolkit-compare-log-{}", std::process::id()));
    let out = dir.to_str().unwrap();
    let (ok, _, stderr) = toolkit(&["compare", "models/ridge.lra", "--d", "20", "--sweep", "alpha=0,2", "--log-x", "--out", out]);
    assert!(!ok);
    assert!(stderr.contains("--log-x") && stderr.contains("alpha") && stderr.contains("includes 0"), "{stderr}");
    // Refused before any solve or simulation, so nothing was written.
    assert!(!dir.exists());
}
