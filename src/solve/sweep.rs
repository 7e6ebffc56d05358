//! Sweeps over one param: the path is cut into contiguous segments, one per worker thread;
//! each segment walks its points in order and warm-starts every solve from the fixed points
//! of the previous point. Finished points are handed to a callback at once (streaming to
//! disk, progress), so an interrupted sweep loses nothing it finished.

use rayon::prelude::*;

/// `count` evenly spaced values from `start` to `stop` inclusive.
pub fn linspace(start: f64, stop: f64, count: usize) -> Vec<f64> {
    match count {
        0 => Vec::new(),
        1 => vec![start],
        _ => (0..count).map(|i| start + (stop - start) * i as f64 / (count - 1) as f64).collect(),
    }
}

/// Relative distance (max norm) below which two fixed points continue one branch: starting the
/// next point from both would find the same fixed point twice.
pub const BRANCH_DISTANCE: f64 = 1e-2;

/// Relative difference of free energies below which two fixed points are images of each other
/// under a symmetry of the energy (e.g. W -> -W): continuing one of them suffices.
pub const SYMMETRIC_ENERGY: f64 = 1e-10;

/// One representative per branch among `(unknowns, free energy)` fixed points, in the given
/// order (put the preferred one, e.g. the selected fixed point, first): a fixed point is
/// dropped if a kept one lies within [`BRANCH_DISTANCE`] of it or has the same free energy.
pub fn distinct_branches(points: &[(Vec<f64>, f64)]) -> Vec<Vec<f64>> {
    let mut kept: Vec<&(Vec<f64>, f64)> = Vec::new();
    for p in points {
        let same_branch = |(k, energy): &&(Vec<f64>, f64)| {
            super::solvers::relatively_close(k, &p.0, BRANCH_DISTANCE)
                || (energy - p.1).abs() <= SYMMETRIC_ENERGY * (1.0 + energy.abs())
        };
        if !kept.iter().any(same_branch) {
            kept.push(p);
        }
    }
    kept.into_iter().map(|(x, _)| x.clone()).collect()
}

/// Solves one point of a sweep from the given warm starts.
pub type SolveOne<'a, T, E> = dyn Fn(f64, &[Vec<f64>]) -> Result<T, E> + Sync + 'a;

/// The points of one segment: (index in the sweep, result; `None` if skipped).
type SegmentResults<T, E> = Vec<(usize, Option<Result<T, E>>)>;

/// Run `solve_one(value, warm_starts)` along `values`; `skip(i)` marks points already done
/// (resumed sweeps): they are neither solved nor reported, and the walk restarts cold after them.
pub fn run_segments<T: Send, E: Send>(
    values: &[f64],
    skip: &(dyn Fn(usize) -> bool + Sync),
    solve_one: &SolveOne<T, E>,
    warm_of: &(dyn Fn(&T) -> Vec<Vec<f64>> + Sync),
    on_done: &(dyn Fn(usize, &Result<T, E>) + Sync),
) -> Vec<Option<Result<T, E>>> {
    let threads = rayon::current_num_threads().max(1);
    let segments = threads.min(values.len()).max(1);
    let per = values.len().div_ceil(segments);
    let ranges: Vec<std::ops::Range<usize>> =
        (0..segments).map(|s| (s * per)..((s + 1) * per).min(values.len())).filter(|r| !r.is_empty()).collect();
    let results: Vec<SegmentResults<T, E>> = ranges
        .into_par_iter()
        .map(|range| {
            let mut warm: Vec<Vec<f64>> = Vec::new();
            let mut out = Vec::with_capacity(range.len());
            for i in range {
                if skip(i) {
                    warm.clear();
                    out.push((i, None));
                    continue;
                }
                let result = solve_one(values[i], &warm);
                match &result {
                    Ok(found) => warm = warm_of(found),
                    Err(_) => warm.clear(),
                }
                on_done(i, &result);
                out.push((i, Some(result)));
            }
            out
        })
        .collect();
    let mut ordered: Vec<Option<Result<T, E>>> = (0..values.len()).map(|_| None).collect();
    for (i, r) in results.into_iter().flatten() {
        ordered[i] = r;
    }
    ordered
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linspace_hits_both_ends() {
        assert_eq!(linspace(0.0, 1.0, 3), vec![0.0, 0.5, 1.0]);
        assert_eq!(linspace(2.0, 5.0, 1), vec![2.0]);
    }

    #[test]
    fn nearby_fixed_points_continue_one_branch() {
        let points = vec![(vec![0.0, 1.0], 1.0), (vec![0.001, 1.005], 1.1), (vec![0.5, 1.0], 2.0), (vec![-0.5, 1.0], 3.0)];
        assert_eq!(distinct_branches(&points), vec![vec![0.0, 1.0], vec![0.5, 1.0], vec![-0.5, 1.0]]);
    }

    #[test]
    fn mirror_images_with_one_free_energy_continue_one_branch() {
        let points = vec![(vec![0.9, 1.0], 0.25), (vec![0.0, 0.5], 0.8), (vec![-0.9, 1.0], 0.25)];
        assert_eq!(distinct_branches(&points), vec![vec![0.9, 1.0], vec![0.0, 0.5]]);
    }

    #[test]
    fn segments_warm_start_in_order_and_report_every_point() {
        let values = linspace(0.0, 9.0, 10);
        let seen = std::sync::Mutex::new(Vec::new());
        let results = run_segments::<(f64, usize), ()>(
            &values,
            &|i| i == 4,
            &|v, warm| Ok((v, warm.len())),
            &|_| vec![vec![0.0]],
            &|i, _| seen.lock().unwrap().push(i),
        );
        assert!(results[4].is_none());
        let mut seen = seen.into_inner().unwrap();
        seen.sort();
        assert_eq!(seen, vec![0, 1, 2, 3, 5, 6, 7, 8, 9]);
        // The first point of a segment and the point after a skipped one start cold.
        assert_eq!(results[5].as_ref().unwrap().as_ref().unwrap().1, 0);
    }
}
