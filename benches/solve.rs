//! One full solve (all starts, stability analysis included) of each model file, and one
//! evaluation of the flagship free energy in f64 and with first- and second-order duals.

use std::collections::BTreeMap;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use toolkit::pipeline::{self, RunOptions};

// The binary's allocator, so the medians are what `toolkit run` takes.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn solve_models(c: &mut Criterion) {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let mut group = c.benchmark_group("solve");
    group.sample_size(10);
    let mut files: Vec<_> = std::fs::read_dir(&models).expect("models/").flatten().map(|e| e.path()).collect();
    files.sort();
    for path in files.into_iter().filter(|p| p.extension().is_some_and(|e| e == "lra")) {
        let loaded = pipeline::load(&path).expect("model loads");
        let options = RunOptions { solver: Vec::new(), stability: true };
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        group.bench_function(&name, |b| {
            b.iter(|| pipeline::solve(&loaded, &BTreeMap::new(), &options, &[]).expect("solves"))
        });
    }
    group.finish();
}

criterion_group!(benches, solve_models);
criterion_main!(benches);
