//! Node tables of expectations: the fixed points and weights of each expectation's rule,
//! built once per program. Product Gauss-Hermite for low dimension, Owen-scrambled Sobol
//! points for high dimension; discrete components (Rademacher, the atom of Gauss-Bernoulli)
//! are summed exactly under a product rule and sampled by their quantile under Sobol.

use super::quadrature::gauss_hermite;
use super::special::inverse_normal_cdf;
use crate::ir::{Component, IntegrationRule};

#[derive(Debug, Clone)]
pub struct NodeTable {
    pub dimension: usize,
    /// Row-major, `len() x dimension`.
    pub nodes: Vec<f64>,
    pub weights: Vec<f64>,
    /// Independent scrambles (Sobol): node i belongs to group i / (len / groups).
    pub groups: usize,
    /// Node i is node `first_index + i` of a rule of `full_len` nodes (a table cut down to
    /// one scramble keeps the whole rule's numbering, so minimiser caches stay aligned).
    pub first_index: usize,
    pub full_len: usize,
}

impl NodeTable {
    pub fn len(&self) -> usize {
        self.weights.len()
    }
    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }
    pub fn node(&self, i: usize) -> &[f64] {
        &self.nodes[i * self.dimension..(i + 1) * self.dimension]
    }
}

fn one_dimensional(component: Component, nodes_per_dimension: usize) -> (Vec<f64>, Vec<f64>) {
    match component {
        Component::Normal => gauss_hermite(nodes_per_dimension),
        Component::Rademacher => (vec![-1.0, 1.0], vec![0.5, 0.5]),
        Component::GaussBernoulli { density } => {
            let (x, w) = gauss_hermite(nodes_per_dimension);
            let scale = 1.0 / density.sqrt();
            let mut nodes = vec![0.0];
            let mut weights = vec![1.0 - density];
            nodes.extend(x.iter().map(|v| v * scale));
            weights.extend(w.iter().map(|v| v * density));
            (nodes, weights)
        }
    }
}

fn quantile(component: Component, u: f64) -> f64 {
    match component {
        Component::Normal => inverse_normal_cdf(u),
        Component::Rademacher => {
            if u < 0.5 {
                -1.0
            } else {
                1.0
            }
        }
        Component::GaussBernoulli { density } => {
            // Atom at 0 in the middle of the unit interval keeps the map monotone.
            let low = density / 2.0;
            if u < low {
                inverse_normal_cdf(u / density) / density.sqrt()
            } else if u < low + (1.0 - density) {
                0.0
            } else {
                inverse_normal_cdf((u - (1.0 - density)) / density) / density.sqrt()
            }
        }
    }
}

pub fn build(components: &[Component], rule: IntegrationRule) -> NodeTable {
    let dimension = components.len();
    match rule {
        IntegrationRule::Hermite { nodes_per_dimension } => {
            let axes: Vec<(Vec<f64>, Vec<f64>)> =
                components.iter().map(|&c| one_dimensional(c, nodes_per_dimension)).collect();
            let total: usize = axes.iter().map(|a| a.0.len()).product();
            let mut nodes = Vec::with_capacity(total * dimension);
            let mut weights = Vec::with_capacity(total);
            let mut counter = vec![0usize; dimension];
            for _ in 0..total {
                let mut weight = 1.0;
                for (d, axis) in axes.iter().enumerate() {
                    nodes.push(axis.0[counter[d]]);
                    weight *= axis.1[counter[d]];
                }
                weights.push(weight);
                for d in (0..dimension).rev() {
                    counter[d] += 1;
                    if counter[d] < axes[d].0.len() {
                        break;
                    }
                    counter[d] = 0;
                }
            }
            let full_len = weights.len();
            NodeTable { dimension, nodes, weights, groups: 1, first_index: 0, full_len }
        }
        IntegrationRule::Sobol { points, scrambles } => {
            let total = points * scrambles;
            let mut nodes = Vec::with_capacity(total * dimension);
            for scramble in 0..scrambles {
                for i in 0..points {
                    for (d, &component) in components.iter().enumerate() {
                        let u = sobol_burley::sample(i as u32, d as u32, 0x5eed_0000 + scramble as u32) as f64;
                        // Samples are multiples of 2^-23: centre them in their cell, away from 0 and 1.
                        let u = ((u * 8_388_608.0).floor() + 0.5) / 8_388_608.0;
                        nodes.push(quantile(component, u));
                    }
                }
            }
            NodeTable { dimension, nodes, weights: vec![1.0 / total as f64; total], groups: scrambles, first_index: 0, full_len: total }
        }
    }
}
