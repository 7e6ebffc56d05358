//! Shapes of values: scalars, column vectors, matrices. Sizes are known once params are.

use serde::Serialize;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Shape {
    Scalar,
    Vector(usize),
    Matrix(usize, usize),
}

impl Shape {
    pub fn len(self) -> usize {
        match self {
            Shape::Scalar => 1,
            Shape::Vector(n) => n,
            Shape::Matrix(r, c) => r * c,
        }
    }
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
    /// Rows and columns, a vector being a column.
    pub fn dims(self) -> (usize, usize) {
        match self {
            Shape::Scalar => (1, 1),
            Shape::Vector(n) => (n, 1),
            Shape::Matrix(r, c) => (r, c),
        }
    }
    /// Canonical shape for rows x cols: 1x1 is a scalar, n x 1 a vector.
    pub fn from_dims(rows: usize, cols: usize) -> Shape {
        match (rows, cols) {
            (1, 1) => Shape::Scalar,
            (n, 1) => Shape::Vector(n),
            (r, c) => Shape::Matrix(r, c),
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shape::Scalar => write!(f, "scalar"),
            Shape::Vector(n) => write!(f, "vector[{n}]"),
            Shape::Matrix(r, c) => write!(f, "matrix[{r}, {c}]"),
        }
    }
}
