//! The abstract syntax tree of a `.lra` model file. Every node carries the byte span of the
//! source text it came from, so later stages can point at the offending text.

use serde::Serialize;

/// Byte offsets `[start, end)` into the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }
    /// The smallest span covering both.
    pub fn join(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ident {
    pub name: String,
    #[serde(skip)]
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct ModelFile {
    pub items: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Item {
    Model(ModelDecl),
    Import(ImportDecl),
    Param(ParamDecl),
    Order(OrderDecl),
    Conjugate(ConjugateDecl),
    Let(LetDecl),
    Function(FunctionDecl),
    Term(NamedExpr),
    Observe(NamedExpr),
    Extremize(ExtremizeDecl),
    Solve(SolveDecl),
    Start(StartDecl),
    Sweep(SweepDecl),
    Simulate(SimulateDecl),
}

/// `simulate { tokens = 2, loss = ..., report eps0 = test_error }`: the finite-size model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimulateDecl {
    pub settings: Vec<(Ident, Expr)>,
    pub reports: Vec<NamedExpr>,
    #[serde(skip)]
    pub span: Span,
}

/// `model "title"`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelDecl {
    pub title: String,
    #[serde(skip)]
    pub span: Span,
}

/// `import "file.lra" as alias`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImportDecl {
    pub path: String,
    pub alias: Ident,
    #[serde(skip)]
    pub span: Span,
}

/// Sets of admissible values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Domain {
    Real,
    Positive,
    Nonnegative,
    Integer,
    Unit,
    Psd,
}

impl Domain {
    pub fn keyword(self) -> &'static str {
        match self {
            Domain::Real => "real",
            Domain::Positive => "positive",
            Domain::Nonnegative => "nonnegative",
            Domain::Integer => "integer",
            Domain::Unit => "unit",
            Domain::Psd => "psd",
        }
    }
}

/// `param alpha = 2.0 in positive "samples per dimension"`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParamDecl {
    pub name: Ident,
    pub default: f64,
    pub domain: Domain,
    pub doc: Option<String>,
    #[serde(skip)]
    pub span: Span,
}

/// Shape annotations: `scalar`, `vector[n]`, `matrix[n, m]`, `sym[n]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum ShapeExpr {
    Scalar,
    Vector(Box<Expr>),
    Matrix(Box<Expr>, Box<Expr>),
    Symmetric(Box<Expr>),
}

/// `order q : scalar in positive "self-overlap"`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderDecl {
    pub name: Ident,
    pub shape: ShapeExpr,
    pub domain: Domain,
    pub doc: Option<String>,
    #[serde(skip)]
    pub span: Span,
}

/// `conjugate qh of q in nonnegative`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConjugateDecl {
    pub name: Ident,
    pub of: Ident,
    pub domain: Domain,
    pub doc: Option<String>,
    #[serde(skip)]
    pub span: Span,
}

/// `let name = expr`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LetDecl {
    pub name: Ident,
    pub value: Expr,
    #[serde(skip)]
    pub span: Span,
}

/// `fn name(a, b) = expr`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionDecl {
    pub name: Ident,
    pub params: Vec<Ident>,
    pub body: Expr,
    #[serde(skip)]
    pub span: Span,
}

/// `term name = expr "doc"` and `observe name = expr "doc"`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NamedExpr {
    pub name: Ident,
    pub value: Expr,
    pub doc: Option<String>,
    #[serde(skip)]
    pub span: Span,
}

/// What the saddle point selects among several fixed points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Objective {
    /// Zero-temperature ERM: the sum of terms is the training energy; lowest wins.
    Energy,
    /// Bayes-optimal: the sum of terms is the free entropy; highest wins.
    FreeEntropy,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExtremizeDecl {
    pub objective: Objective,
    #[serde(skip)]
    pub span: Span,
}

/// A `key = value` setting in a `solve { }` block.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Setting {
    pub key: Ident,
    pub value: SettingValue,
    #[serde(skip)]
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum SettingValue {
    Number(f64),
    Word(String),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SolveDecl {
    pub settings: Vec<Setting>,
    #[serde(skip)]
    pub span: Span,
}

/// `start informed { m = 0.9, q = 1 }`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StartDecl {
    pub name: Ident,
    pub values: Vec<(Ident, Expr)>,
    #[serde(skip)]
    pub span: Span,
}

/// `sweep alpha = 0.1 : 5 : 30` (start, stop, number of points)
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepDecl {
    pub param: Ident,
    pub start: f64,
    pub stop: f64,
    pub count: usize,
    #[serde(skip)]
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Expr {
    pub kind: ExprKind,
    #[serde(skip)]
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
}

impl BinaryOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Pow => "^",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum ExprKind {
    Number(f64),
    Var(Ident),
    /// `alias.name`: a solved quantity of an imported model.
    Qualified(Ident, Ident),
    Neg(Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    Call(Ident, Vec<Expr>),
    /// `v[i]` or `M[i, j]`, 1-based.
    Index(Box<Expr>, Vec<Expr>),
    /// `A'`
    Transpose(Box<Expr>),
    /// `[a, b]` (vector) or `[[a, b], [c, d]]` (matrix, rows).
    List(Vec<Expr>),
    Expect(Box<Expectation>),
    Minimize(Box<Minimization>),
    Hessian(Box<HessianExpr>),
}

/// `E[z ~ N(0, 1), t ~ N(0, C); hermite(16), weight = w] { body }`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Expectation {
    pub bindings: Vec<Binding>,
    pub rule: Option<RuleSpec>,
    pub weight: Option<Expr>,
    pub body: Expr,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Binding {
    pub var: Ident,
    pub distribution: Distribution,
    #[serde(skip)]
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Distribution {
    /// `N(mean, covariance)`: scalar variance gives a scalar, a k x k covariance a k-vector.
    Normal { mean: Expr, covariance: Expr },
    /// `rademacher` or `rademacher[k]`
    Rademacher(Option<Expr>),
    /// `gauss_bernoulli(rho)`: 0 with probability 1 - rho, else N(0, 1/rho) (unit variance).
    GaussBernoulli(Expr),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RuleSpec {
    /// Product Gauss-Hermite with this many nodes per dimension.
    Hermite(usize),
    /// Owen-scrambled Sobol points; `scrambles` independent scrambles give an error estimate.
    Sobol { points: usize, scrambles: usize },
}

/// `min h in R[2] from (a, b) { body }` / `argmin ...`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Minimization {
    pub returns_argument: bool,
    pub var: Ident,
    pub dimension: Option<Expr>,
    pub starts: Vec<Expr>,
    pub body: Expr,
}

/// `hessian y in R[2] at (p) { body }`: the matrix of second derivatives of `body` in `y` at
/// `y = p` (values only; observables).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HessianExpr {
    pub var: Ident,
    pub dimension: Option<Expr>,
    pub point: Expr,
    pub body: Expr,
}
