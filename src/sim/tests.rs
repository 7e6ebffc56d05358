//! Tests of the simulation engine against reference losses: ridge regression (closed form),
//! a two-token attention layer (stage 0) and a LoRA update of it (stage 1).

use std::time::Instant;

use approx::assert_relative_eq;
use nalgebra::DMatrix;
use num_dual::DualNum;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use super::*;

/// Numerically stable logistic function for any dual type.
fn sigmoid<D: DualNum<Primitive = f64> + Copy>(x: D) -> D {
    let one = D::from(1.0);
    if x.re() >= 0.0 {
        (one + (-x).exp()).recip()
    } else {
        let e = x.exp();
        e / (one + e)
    }
}

/// Ridge regression: `(h* + sqrt(noise_var) xi - h)^2 / 2`, one token, one column.
struct RidgeLoss {
    noise_var: f64,
}

impl SequenceLoss for RidgeLoss {
    fn tokens(&self) -> usize {
        1
    }
    fn noise_dim(&self) -> usize {
        1
    }
    fn loss<D: DualNum<Primitive = f64> + Copy>(
        &self,
        student: &[D],
        teacher: &[f64],
        noise: &[f64],
    ) -> D {
        let residual = -student[0] + teacher[0] + self.noise_var.sqrt() * noise[0];
        residual * residual * 0.5
    }
}

/// Diagonal of the row softmax of `beta * H` for a 2x2 logit matrix, as
/// `(sigmoid(H_11 - H_12), sigmoid(H_22 - H_21))` with `beta` and logit noise folded in.
fn attention_pair<D: DualNum<Primitive = f64> + Copy>(
    logit_gap_1: D,
    logit_gap_2: D,
    beta: f64,
) -> (D, D) {
    (sigmoid(logit_gap_1 * beta), sigmoid(logit_gap_2 * beta))
}

/// Noisy teacher attention: logit noise of the gap is `sigma sqrt(2) xi` (difference of two
/// independent N(0, sigma^2) logits).
fn teacher_pair(gap_1: f64, gap_2: f64, beta: f64, sigma: f64, noise: &[f64]) -> (f64, f64) {
    let spread = sigma * std::f64::consts::SQRT_2;
    let (xi_1, xi_2) = if noise.is_empty() {
        (0.0, 0.0)
    } else {
        (noise[0], noise[1])
    };
    attention_pair(gap_1 + spread * xi_1, gap_2 + spread * xi_2, beta)
}

/// Stage 0: `L = 2`, one student and one teacher column, logits `H_ll' = h_l h_l'`.
struct AttentionLoss {
    beta: f64,
    sigma: f64,
}

impl SequenceLoss for AttentionLoss {
    fn tokens(&self) -> usize {
        2
    }
    fn noise_dim(&self) -> usize {
        2
    }
    fn loss<D: DualNum<Primitive = f64> + Copy>(
        &self,
        student: &[D],
        teacher: &[f64],
        noise: &[f64],
    ) -> D {
        let (h_1, h_2) = (student[0], student[1]);
        let (s_1, s_2) = (teacher[0], teacher[1]);
        let (a_1, a_2) = attention_pair(h_1 * (h_1 - h_2), h_2 * (h_2 - h_1), self.beta);
        let (t_1, t_2) = teacher_pair(
            s_1 * (s_1 - s_2),
            s_2 * (s_2 - s_1),
            self.beta,
            self.sigma,
            noise,
        );
        (a_1 - t_1).powi(2) + (a_2 - t_2).powi(2)
    }
}

/// Stage 1 (LoRA): student fields per token `(hh, a, b)` (frozen `hh` first), teacher
/// `(h*, a*, b*)`, logits `H_ll' = hh_l hh_l' + a_l b_l'`.
struct LoraLoss {
    beta: f64,
    sigma: f64,
}

impl SequenceLoss for LoraLoss {
    fn tokens(&self) -> usize {
        2
    }
    fn noise_dim(&self) -> usize {
        2
    }
    fn loss<D: DualNum<Primitive = f64> + Copy>(
        &self,
        student: &[D],
        teacher: &[f64],
        noise: &[f64],
    ) -> D {
        let logit = |l: usize, m: usize| {
            student[3 * l] * student[3 * m] + student[3 * l + 1] * student[3 * m + 2]
        };
        let teacher_logit = |l: usize, m: usize| {
            teacher[3 * l] * teacher[3 * m] + teacher[3 * l + 1] * teacher[3 * m + 2]
        };
        let (a_1, a_2) = attention_pair(
            logit(0, 0) - logit(0, 1),
            logit(1, 1) - logit(1, 0),
            self.beta,
        );
        let (t_1, t_2) = teacher_pair(
            teacher_logit(0, 0) - teacher_logit(0, 1),
            teacher_logit(1, 1) - teacher_logit(1, 0),
            self.beta,
            self.sigma,
            noise,
        );
        (a_1 - t_1).powi(2) + (a_2 - t_2).powi(2)
    }
}

/// A smooth loss with many trainable fields (exercises the one-pass-per-field fallback).
struct WideLoss;

impl SequenceLoss for WideLoss {
    fn tokens(&self) -> usize {
        2
    }
    fn noise_dim(&self) -> usize {
        1
    }
    fn loss<D: DualNum<Primitive = f64> + Copy>(
        &self,
        student: &[D],
        teacher: &[f64],
        noise: &[f64],
    ) -> D {
        let width = student.len() / 2;
        let mut total = D::from(0.0);
        for j in 0..width {
            let product = student[j] * student[width + (j + 1) % width];
            total += (product - teacher[0] * teacher[1] - noise[0] * 0.1).powi(2)
                + student[j].sin() * 0.3;
        }
        total
    }
}

const ATTENTION: AttentionLoss = AttentionLoss {
    beta: 1.0,
    sigma: 0.5,
};
const LORA: LoraLoss = LoraLoss {
    beta: 1.0,
    sigma: 0.5,
};

fn attention_spec(dimension: usize, alpha: f64) -> SimSpec {
    let mut spec = SimSpec::new(2, dimension, alpha, 1);
    spec.ridge = 0.01;
    spec.inits = vec![
        NamedInit::new(
            "teacher",
            InitKind::Teacher {
                columns: vec![0],
                noise: 0.1,
            },
        ),
        NamedInit::new("random", InitKind::Random { scale: 1.0 }),
    ];
    spec
}

/// Max-norm relative difference between the analytic gradient and central differences.
fn finite_difference_mismatch<S: SequenceLoss>(
    objective: &Objective<'_, S>,
    weights: &DMatrix<f64>,
) -> f64 {
    let (_, gradient) = objective.value_and_gradient(weights).expect("gradient");
    let step = 1e-5;
    let mut worst: f64 = 0.0;
    for index in 0..weights.len() {
        let mut plus = weights.clone();
        plus[index] += step;
        let mut minus = weights.clone();
        minus[index] -= step;
        let numeric = (objective.value(&plus).expect("value")
            - objective.value(&minus).expect("value"))
            / (2.0 * step);
        worst = worst.max((numeric - gradient[index]).abs());
    }
    worst / gradient.amax().max(1e-300)
}

fn random_matrix(rows: usize, cols: usize, rng: &mut ChaCha8Rng) -> DMatrix<f64> {
    DMatrix::from_fn(rows, cols, |_, _| StandardNormal.sample(rng))
}

#[test]
fn gradient_matches_finite_differences() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let dimension = 20;
    let teacher = random_matrix(dimension, 1, &mut rng);
    let none = DMatrix::zeros(dimension, 0);
    let data = Dataset::draw(&mut rng, 40, 2, &teacher, &none, 2).expect("data");
    let objective = Objective::new(&ATTENTION, &data, 1, 0.3).expect("objective");
    let weights = random_matrix(dimension, 1, &mut rng);
    let mismatch = finite_difference_mismatch(&objective, &weights);
    println!("attention gradient relative mismatch {mismatch:.2e}");
    assert!(mismatch < 1e-6, "attention gradient mismatch {mismatch}");

    // LoRA: frozen column plus two trainable columns (vector duals with N = 4).
    let teacher = random_matrix(dimension, 3, &mut rng);
    let frozen = random_matrix(dimension, 1, &mut rng);
    let data = Dataset::draw(&mut rng, 40, 2, &teacher, &frozen, 2).expect("data");
    let objective = Objective::new(&LORA, &data, 2, 0.1).expect("objective");
    let mismatch = finite_difference_mismatch(&objective, &random_matrix(dimension, 2, &mut rng));
    assert!(mismatch < 1e-6, "LoRA gradient mismatch {mismatch}");

    // Ten trainable fields: one Dual64 pass per field.
    let teacher = random_matrix(dimension, 2, &mut rng);
    let data = Dataset::draw(&mut rng, 30, 2, &teacher, &none, 1).expect("data");
    let objective = Objective::new(&WideLoss, &data, 5, 0.0).expect("objective");
    let mismatch = finite_difference_mismatch(&objective, &random_matrix(dimension, 5, &mut rng));
    assert!(mismatch < 1e-6, "wide gradient mismatch {mismatch}");
}

#[test]
fn ridge_lbfgs_matches_normal_equations() {
    let loss = RidgeLoss { noise_var: 0.5 };
    let mut spec = SimSpec::new(1, 50, 4.0, 1);
    spec.ridge = 0.1;
    spec.lbfgs.grad_tol = 1e-6;
    let mut rng = seed_stream(3, 0, StreamPurpose::Teacher);
    let teacher = draw_teacher(&spec.teacher, spec.dimension, &mut rng).expect("teacher");
    let none = DMatrix::zeros(spec.dimension, 0);
    let data =
        Dataset::draw(&mut rng, spec.training_samples(), 1, &teacher, &none, 1).expect("data");
    let trained = train(&spec, &loss, &data, &teacher, &InitKind::Zero, &mut rng).expect("train");

    // Stationarity of sum (y - x.w/sqrt d)^2/2 + lambda/2 |w|^2 with X = inputs (d x n):
    // (X X^T + lambda d I) w = sqrt(d) X y.
    let dimension = spec.dimension as f64;
    let inputs = data.inputs();
    let targets = DMatrix::from_fn(data.samples(), 1, |mu, _| {
        data.teacher_fields(mu)[0] + loss.noise_var.sqrt() * data.noise(mu)[0]
    });
    let system = inputs * inputs.transpose()
        + DMatrix::identity(spec.dimension, spec.dimension) * (spec.ridge * dimension);
    let right = inputs * &targets * dimension.sqrt();
    let direct = system.lu().solve(&right).expect("solvable");
    let difference = (&trained.weights - &direct).amax();
    println!(
        "ridge: |w_lbfgs - w_direct|_inf = {difference:.2e}, iterations {}, grad {:.2e} ({})",
        trained.iterations, trained.grad_norm, trained.termination
    );
    assert!(
        difference < 1e-6,
        "L-BFGS and direct solve differ by {difference}"
    );
    assert!(trained.converged);
    let m_direct = (direct.transpose() * &teacher)[(0, 0)] / dimension;
    let m_lbfgs = (trained.weights.transpose() * &teacher)[(0, 0)] / dimension;
    assert_relative_eq!(m_lbfgs, m_direct, epsilon = 1e-7);
}

#[test]
fn ridgeless_test_error_matches_least_squares_theory() {
    // Least squares on n Gaussian samples: E|w - w*|^2 / d = noise_var d / (n - d - 1)
    // (E (X^T X)^-1 = I / (n - d - 1)); the clean test loss (h* - h)^2 / 2 is half of it,
    // ~ noise_var / (2 (alpha - 1)) = 0.0833 for alpha = 4, noise_var = 0.5.
    let loss = RidgeLoss { noise_var: 0.5 };
    let mut spec = SimSpec::new(1, 200, 4.0, 1);
    spec.ridge = 1e-8;
    spec.inits = vec![NamedInit::new("zero", InitKind::Zero)];
    let seeds: Vec<u64> = (1..=12).collect();
    let results = run_seeds(&spec, &loss, &seeds).expect("run");
    let errors: Vec<f64> = results
        .iter()
        .map(|r| r.best().observables.test_error)
        .collect();
    let summary = summarise(&errors);
    let (n, d) = (spec.training_samples() as f64, spec.dimension as f64);
    let theory = 0.5 * loss.noise_var * d / (n - d - 1.0);
    println!(
        "ridgeless test error {:.4} +- {:.4}, theory {theory:.4}",
        summary.mean, summary.sem
    );
    assert!(
        (summary.mean - theory).abs() < 4.0 * summary.sem,
        "{summary:?} vs {theory}"
    );
}

/// Debug output prints every float exactly (shortest round-trip form), weights included.
fn fingerprint(results: &[SeedResult]) -> String {
    format!("{results:?}")
}

#[test]
fn seeds_are_reproducible_across_runs_and_thread_counts() {
    let spec = attention_spec(30, 3.0);
    let seeds = [11, 12, 13];
    let pool = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool")
    };
    let single = pool(1)
        .install(|| run_seeds(&spec, &ATTENTION, &seeds))
        .expect("run");
    let again = pool(1)
        .install(|| run_seeds(&spec, &ATTENTION, &seeds))
        .expect("run");
    let double = pool(2)
        .install(|| run_seeds(&spec, &ATTENTION, &seeds))
        .expect("run");
    assert_eq!(fingerprint(&single), fingerprint(&again));
    assert_eq!(fingerprint(&single), fingerprint(&double));
    assert_eq!(single.iter().map(|r| r.seed).collect::<Vec<_>>(), seeds);
    // Seeds differ from each other.
    assert_ne!(single[0].best().objective, single[1].best().objective);
}

#[test]
fn callback_sees_every_seed() {
    let spec = attention_spec(20, 2.0);
    let seen = std::sync::Mutex::new(Vec::new());
    let results = run_seeds_with(&spec, &ATTENTION, &[5, 6], |result| {
        seen.lock().expect("lock").push(result.seed);
    })
    .expect("run");
    let mut seen = seen.into_inner().expect("lock");
    seen.sort_unstable();
    assert_eq!(seen, vec![5, 6]);
    assert_eq!(results.len(), 2);
}

#[test]
fn sign_flip_leaves_invariants_unchanged() {
    let spec = attention_spec(40, 3.0);
    let result = run_seed(&spec, &ATTENTION, 21).expect("run");
    let teacher = &result.teacher;
    let none = DMatrix::zeros(spec.dimension, 0);
    let test = Dataset::draw(
        &mut seed_stream(21, 0, StreamPurpose::Test),
        2000,
        2,
        teacher,
        &none,
        0,
    )
    .expect("test");
    let weights = &result.best().weights;
    let original = observe(&ATTENTION, &test, weights, teacher, &none).expect("observe");
    let flipped = observe(&ATTENTION, &test, &(-weights), teacher, &none).expect("observe");
    assert_relative_eq!(original.test_error, flipped.test_error, epsilon = 1e-14);
    assert_eq!(
        original.abs_overlap_with_teacher(),
        flipped.abs_overlap_with_teacher()
    );
    assert_eq!(
        original.cosines_with_teacher(&result.teacher_overlap),
        flipped.cosines_with_teacher(&result.teacher_overlap)
    );
    assert_relative_eq!(
        original.overlap_with_teacher[0][0],
        -flipped.overlap_with_teacher[0][0]
    );
}

#[test]
fn stage_zero_attention_recovers_teacher() {
    let spec = attention_spec(100, 4.0);
    let started = Instant::now();
    let results = run_seeds(&spec, &ATTENTION, &[1, 2, 3, 4]).expect("run");
    println!(
        "stage-0 attention d=100 alpha=4, 4 seeds x 2 inits: {:.2?}",
        started.elapsed()
    );
    for result in &results {
        let best = result.best();
        let cosine = result.best_cosines()[0][0];
        println!(
            "seed {} best={} cos={cosine:.3} test_error={:.4} objective={:.4} spread={:.2e} iters={} converged={}",
            result.seed, best.name, best.observables.test_error, best.objective, result.objective_spread, best.iterations, best.converged
        );
        assert!(cosine > 0.8, "seed {}: cosine {cosine}", result.seed);
        assert!(result.run("random").is_some() && result.run("teacher").is_some());
    }
}

#[test]
fn two_stage_lora_run_completes() {
    let dimension = 60;
    let first = attention_spec(dimension, 4.0);
    let mut second = SimSpec::new(2, dimension, 4.0, 2);
    second.ridge = 0.01;
    second.teacher = vec![ColumnBlock::Drawn {
        prior: Prior::Gaussian,
        columns: 2,
    }];
    second.inits = vec![
        NamedInit::new("lora", InitKind::Lora { scale: 1.0 }),
        // Teacher columns of the chained stage are [W0*, u*, v*].
        NamedInit::new(
            "teacher",
            InitKind::Teacher {
                columns: vec![1, 2],
                noise: 0.1,
            },
        ),
    ];
    let started = Instant::now();
    let (stage0, stage1) = run_chained_seed(&first, &ATTENTION, &second, &LORA, 9).expect("chain");
    println!("two-stage d=60: {:.2?}", started.elapsed());
    assert_eq!(stage1.stage, 1);
    assert_eq!(stage1.teacher_overlap.len(), 3);
    assert_eq!(stage1.teacher.column(0), stage0.teacher.column(0));
    for run in stage0.runs.iter().chain(&stage1.runs) {
        let observables = &run.observables;
        println!(
            "stage run {}: objective {:.4} test_error {:.4} M {:?} Q {:?} F {:?}",
            run.name,
            run.objective,
            observables.test_error,
            observables.overlap_with_teacher,
            observables.self_overlap,
            observables.overlap_with_frozen
        );
        assert!(run.objective.is_finite() && observables.test_error.is_finite());
        let all = observables
            .overlap_with_teacher
            .iter()
            .chain(&observables.self_overlap)
            .chain(&observables.overlap_with_frozen);
        assert!(all.flatten().all(|v| v.is_finite()));
    }
    let lora = stage1.run("lora").expect("lora run");
    assert_eq!(lora.observables.overlap_with_teacher.len(), 2);
    assert_eq!(lora.observables.overlap_with_teacher[0].len(), 3);
    assert_eq!(lora.observables.overlap_with_frozen[0].len(), 1);
    assert!(stage1.objective_spread.is_finite());
}

#[test]
fn invalid_specs_are_rejected() {
    let mut spec = attention_spec(10, 2.0);
    spec.tokens = 3;
    assert!(matches!(
        run_seed(&spec, &ATTENTION, 0),
        Err(SimError::InvalidSpec(_))
    ));
    let mut spec = attention_spec(10, 2.0);
    spec.inits
        .push(NamedInit::new("lora", InitKind::Lora { scale: 1.0 }));
    assert!(matches!(
        run_seed(&spec, &ATTENTION, 0),
        Err(SimError::InvalidSpec(_))
    ));
    let mut spec = attention_spec(10, 2.0);
    spec.frozen = Some(DMatrix::zeros(9, 1));
    assert!(matches!(
        run_seed(&spec, &ATTENTION, 0),
        Err(SimError::Shape { .. })
    ));
}

/// A loss that turns NaN away from the origin.
struct ExplodingLoss;

impl SequenceLoss for ExplodingLoss {
    fn tokens(&self) -> usize {
        1
    }
    fn noise_dim(&self) -> usize {
        0
    }
    fn loss<D: DualNum<Primitive = f64> + Copy>(
        &self,
        student: &[D],
        teacher: &[f64],
        _noise: &[f64],
    ) -> D {
        let residual = student[0] - teacher[0];
        if student[0].re().abs() > 1e-3 {
            residual * f64::NAN
        } else {
            residual * residual
        }
    }
}

#[test]
fn non_finite_runs_are_reported_not_panicking() {
    let mut spec = SimSpec::new(1, 10, 2.0, 1);
    spec.inits = vec![
        NamedInit::new("random", InitKind::Random { scale: 1.0 }),
        NamedInit::new("zero", InitKind::Zero),
    ];
    // The zero init starts finite; its line search steps into the NaN region and stops there.
    let result = run_seed(&spec, &ExplodingLoss, 4).expect("zero init stays finite");
    assert_eq!(result.best().name, "zero");
    assert!(result.best().objective.is_finite());
    let random = result.run("random").expect("random run");
    assert!(!random.converged && !random.objective.is_finite());
    spec.inits.truncate(1);
    assert!(matches!(
        run_seed(&spec, &ExplodingLoss, 4),
        Err(SimError::NonFinite { seed: 4 })
    ));
}

#[test]
fn priors_have_unit_second_moment() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for prior in [
        Prior::Gaussian,
        Prior::Rademacher,
        Prior::GaussBernoulli { density: 0.2 },
    ] {
        let teacher = draw_teacher(
            &[ColumnBlock::Drawn { prior, columns: 1 }],
            40_000,
            &mut rng,
        )
        .expect("teacher");
        let second_moment = teacher.norm_squared() / 40_000.0;
        assert!(
            (second_moment - 1.0).abs() < 0.05,
            "{prior:?}: {second_moment}"
        );
    }
}

#[test]
fn summary_uses_sample_standard_deviation() {
    let summary = summarise(&[1.0, 2.0, 3.0, 4.0]);
    assert_eq!(summary.n, 4);
    assert_relative_eq!(summary.mean, 2.5);
    // sample variance 5/3, sem = sqrt(5/3 / 4)
    assert_relative_eq!(summary.sem, (5.0_f64 / 12.0).sqrt(), epsilon = 1e-15);
    assert!(summarise(&[1.0]).sem.is_nan());
}

/// Timing of the d = 400 reference run; run with
/// `RAYON_NUM_THREADS=1 cargo test --release timing_stage_zero_d400 -- --ignored --nocapture`.
#[test]
#[ignore]
fn timing_stage_zero_d400() {
    let spec = attention_spec(400, 8.0);
    let mut seconds = Vec::new();
    for seed in 0..3 {
        let started = Instant::now();
        let result = run_seed(&spec, &ATTENTION, seed).expect("run");
        let elapsed = started.elapsed().as_secs_f64();
        seconds.push(elapsed);
        for run in &result.runs {
            println!(
                "seed {seed} {}: objective {:.6} grad {:.2e} iters {} converged {} ({}) test_error {:.5} cos {:.4}",
                run.name, run.objective, run.grad_norm, run.iterations, run.converged, run.termination,
                run.observables.test_error, run.observables.cosines_with_teacher(&result.teacher_overlap)[0][0]
            );
        }
        println!("seed {seed}: {elapsed:.2} s");
    }
    seconds.sort_by(f64::total_cmp);
    println!("median seconds per seed: {:.2}", seconds[1]);
}
