//! Symbolic saddle-point equations of a model file, for `toolkit equations FILE [--latex]`.
//!
//! The free energy Phi is the sum of the `term`s; the unknowns are the `order` parameters and
//! the `conjugate`s in declaration order, and each equation is dPhi/dtheta = 0. The syntax tree
//! is turned into a private expression type with every user `fn` and every `let` that depends
//! on an unknown inlined (a `let` of params and constants stays a name, for reading; binders
//! are renamed where inlining would capture a name), differentiated with the chain rule, and
//! simplified as it is built (constant folding, `0*x`, `1*x`, `x+0`, `x^1`, `-(-x)`, constants
//! of a product gathered in front, common constant factors of a fraction cancelled).
//!
//! Expectations are differentiated under the integral, pathwise: a Gaussian binding whose mean
//! or covariance depends on theta is first standardised, `x = mean + sqrt(var) x` with the new
//! `x ~ N(0, 1)` (`chol(cov)` for vectors). Minima use the envelope theorem,
//! d/dtheta min_h F = [dF/dtheta] at h = argmin F, printed `[dF/dtheta]_{h = argmin { F }}`;
//! a scalar argmin uses the implicit-function theorem. Derivatives without a closed form
//! (unknown functions, `chol`, `sqrtm`, `softmax`, ...) stay as an operator `d/dm[f(...)]`.
//!
//! For a vector or matrix unknown `Q` the equation is the directional derivative along a
//! symbolic direction `dQ` (written `dPhi/dQ[dQ]`), which must vanish for every `dQ`: the
//! scalar chain rule is then exact, matrix products keep their order.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;

use crate::syntax::{BinaryOp, Distribution, Expr, ExprKind, FunctionDecl, Item, ModelFile, ShapeExpr};

/// One saddle-point equation `lhs = rhs = 0`.
#[derive(Debug, Clone, PartialEq)]
pub struct Equation {
    /// The unknown it is the stationarity condition of.
    pub variable: String,
    /// `dPhi/dm`, or `dPhi/dQ[dQ]` for a vector or matrix unknown.
    pub lhs: String,
    /// The derivative in the model language's syntax, extended by `d/dm[...]` and `[...]_{h = argmin {...}}`.
    pub rhs_text: String,
    pub rhs_latex: String,
}

/// Inlined expressions larger than this are reported instead of built (nested `fn` calls can
/// grow exponentially).
const MAX_NODES: usize = 200_000;
/// Deeper inlined expressions are reported: the symbolic passes recurse on the tree.
const MAX_DEPTH: usize = 200;

/// The equations dPhi/dtheta = 0 for every unknown theta, in declaration order.
pub fn derive_equations(file: &ModelFile) -> Result<Vec<Equation>, String> {
    Ok(derive_symbolic(file)?
        .into_iter()
        .map(|derived| {
            let lhs = match &derived.direction {
                None => format!("dPhi/d{}", derived.variable),
                Some(direction) => format!("dPhi/d{}[{direction}]", derived.variable),
            };
            Equation {
                lhs,
                rhs_text: text(&derived.derivative),
                rhs_latex: latex(&derived.derivative),
                variable: derived.variable,
            }
        })
        .collect())
}

/// One line per equation: `dPhi/dm = 0:  <derivative> = 0`.
pub fn render_text(eqs: &[Equation]) -> String {
    let mut out = String::new();
    for eq in eqs {
        let _ = writeln!(out, "{} = 0:  {} = 0", eq.lhs, eq.rhs_text);
    }
    out
}

/// An `align*` environment, one equation per row.
pub fn render_latex(eqs: &[Equation]) -> String {
    let mut out = String::from("\\begin{align*}\n");
    for (i, eq) in eqs.iter().enumerate() {
        let name = latex_name(&eq.variable);
        let lhs = if eq.lhs == format!("dPhi/d{}", eq.variable) {
            format!("\\frac{{\\partial \\Phi}}{{\\partial {name}}}")
        } else {
            format!("\\mathrm{{D}}_{{{name}}} \\Phi\\left[ \\mathrm{{d}}{name} \\right]")
        };
        let end = if i + 1 < eqs.len() { " \\\\" } else { "" };
        let _ = writeln!(out, "  {lhs} &= {} = 0{end}", eq.rhs_latex);
    }
    out.push_str("\\end{align*}\n");
    out
}

// ---------------------------------------------------------------- the expression type

/// An expression after inlining, closed under differentiation.
#[derive(Debug, Clone, PartialEq)]
enum Sym {
    Num(f64),
    /// The constant pi (from erf'), kept apart from any user name `pi`.
    Pi,
    Var(String),
    Qualified(String, String),
    Neg(Box<Sym>),
    Bin(BinaryOp, Box<Sym>, Box<Sym>),
    Call(String, Vec<Sym>),
    Index(Box<Sym>, Vec<Sym>),
    Transpose(Box<Sym>),
    List(Vec<Sym>),
    Expect(Box<SymExpect>),
    Min(Box<SymMin>),
    /// `[value]_{var = argmin objective}`: a derivative evaluated at the minimiser.
    AtMinimum(Box<AtMinimum>),
    /// `d/dvar[of]`: a derivative with no closed form here.
    Derivative(String, Box<Sym>),
    /// The direction `dQ` of a directional derivative along a vector or matrix unknown `Q`.
    Direction(String),
}

#[derive(Debug, Clone, PartialEq)]
struct SymExpect {
    bindings: Vec<SymBinding>,
    weight: Option<Sym>,
    body: Sym,
}

#[derive(Debug, Clone, PartialEq)]
struct SymBinding {
    var: String,
    distribution: SymDistribution,
}

#[derive(Debug, Clone, PartialEq)]
enum SymDistribution {
    Normal { mean: Sym, covariance: Sym },
    Rademacher(Option<Sym>),
    GaussBernoulli(Sym),
}

#[derive(Debug, Clone, PartialEq)]
struct SymMin {
    returns_argument: bool,
    var: String,
    dimension: Option<Sym>,
    body: Sym,
}

#[derive(Debug, Clone, PartialEq)]
struct AtMinimum {
    var: String,
    dimension: Option<Sym>,
    value: Sym,
    objective: Sym,
}

impl SymDistribution {
    fn parameters(&self) -> Vec<&Sym> {
        match self {
            SymDistribution::Normal { mean, covariance } => vec![mean, covariance],
            SymDistribution::Rademacher(size) => size.iter().collect(),
            SymDistribution::GaussBernoulli(density) => vec![density],
        }
    }

    fn map(&self, mut f: impl FnMut(&Sym) -> Sym) -> SymDistribution {
        match self {
            SymDistribution::Normal { mean, covariance } => {
                SymDistribution::Normal { mean: f(mean), covariance: f(covariance) }
            }
            SymDistribution::Rademacher(size) => SymDistribution::Rademacher(size.as_ref().map(f)),
            SymDistribution::GaussBernoulli(density) => SymDistribution::GaussBernoulli(f(density)),
        }
    }
}

impl Sym {
    fn is_zero(&self) -> bool {
        matches!(self, Sym::Num(x) if *x == 0.0)
    }

    fn is_number(&self, value: f64) -> bool {
        matches!(self, Sym::Num(x) if *x == value)
    }

    /// The direct subexpressions, for iterative measuring.
    fn children(&self) -> Vec<&Sym> {
        match self {
            Sym::Num(_) | Sym::Pi | Sym::Var(_) | Sym::Qualified(..) | Sym::Direction(_) => vec![],
            Sym::Neg(a) | Sym::Transpose(a) | Sym::Derivative(_, a) => vec![a],
            Sym::Bin(_, a, b) => vec![a, b],
            Sym::Call(_, args) | Sym::List(args) => args.iter().collect(),
            Sym::Index(base, indices) => std::iter::once(&**base).chain(indices).collect(),
            Sym::Expect(e) => e
                .bindings
                .iter()
                .flat_map(|b| b.distribution.parameters())
                .chain(e.weight.as_ref())
                .chain(std::iter::once(&e.body))
                .collect(),
            Sym::Min(m) => m.dimension.iter().chain(std::iter::once(&m.body)).collect(),
            Sym::AtMinimum(a) => a.dimension.iter().chain([&a.value, &a.objective]).collect(),
        }
    }

    /// Node count and depth, without recursion (the tree may be deeper than is safe).
    fn measure(&self) -> (usize, usize) {
        let mut stack = vec![(self, 1)];
        let (mut size, mut depth) = (0, 0);
        while let Some((node, level)) = stack.pop() {
            size += 1;
            depth = depth.max(level);
            stack.extend(node.children().into_iter().map(|child| (child, level + 1)));
        }
        (size, depth)
    }

    /// Whether `name` occurs free (binders shadow it).
    fn has_free(&self, name: &str) -> bool {
        match self {
            Sym::Var(n) => n == name,
            Sym::Expect(e) => {
                if e.bindings.iter().any(|b| b.distribution.parameters().iter().any(|p| p.has_free(name))) {
                    return true;
                }
                !e.bindings.iter().any(|b| b.var == name)
                    && (e.weight.as_ref().is_some_and(|w| w.has_free(name)) || e.body.has_free(name))
            }
            Sym::Min(m) => {
                m.dimension.as_ref().is_some_and(|d| d.has_free(name)) || (m.var != name && m.body.has_free(name))
            }
            Sym::AtMinimum(a) => {
                a.dimension.as_ref().is_some_and(|d| d.has_free(name))
                    || (a.var != name && (a.value.has_free(name) || a.objective.has_free(name)))
            }
            other => other.children().iter().any(|c| c.has_free(name)),
        }
    }
}

/// Unique names for renamed binders: never equal to any name of the file.
#[derive(Debug, Default)]
struct NameSupply {
    taken: BTreeSet<String>,
}

impl NameSupply {
    fn fresh(&mut self, base: &str) -> String {
        let mut k = 1usize;
        loop {
            let candidate = format!("{base}_{k}");
            if self.taken.insert(candidate.clone()) {
                return candidate;
            }
            k += 1;
        }
    }
}

/// Capture-avoiding substitution of `replacement` for the free `name` in `sym`.
fn substitute(sym: &Sym, name: &str, replacement: &Sym, names: &mut NameSupply) -> Sym {
    let mut go = |s: &Sym| substitute(s, name, replacement, names);
    match sym {
        Sym::Var(n) if n == name => replacement.clone(),
        Sym::Num(_) | Sym::Pi | Sym::Var(_) | Sym::Qualified(..) | Sym::Direction(_) => sym.clone(),
        Sym::Neg(a) => Sym::Neg(Box::new(go(a))),
        Sym::Transpose(a) => Sym::Transpose(Box::new(go(a))),
        Sym::Derivative(v, a) => Sym::Derivative(v.clone(), Box::new(go(a))),
        Sym::Bin(op, a, b) => Sym::Bin(*op, Box::new(go(a)), Box::new(go(b))),
        Sym::Call(f, args) => Sym::Call(f.clone(), args.iter().map(go).collect()),
        Sym::List(items) => Sym::List(items.iter().map(go).collect()),
        Sym::Index(base, indices) => Sym::Index(Box::new(go(base)), indices.iter().map(go).collect()),
        Sym::Expect(e) => {
            let mut bindings = Vec::new();
            let mut weight = e.weight.clone();
            let mut body = e.body.clone();
            let mut shadowed = false;
            for binding in &e.bindings {
                let distribution = binding.distribution.map(|p| substitute(p, name, replacement, names));
                let mut var = binding.var.clone();
                if var == name {
                    shadowed = true;
                } else if replacement.has_free(&var) {
                    let renamed = names.fresh(&var);
                    let to = Sym::Var(renamed.clone());
                    weight = weight.map(|w| substitute(&w, &var, &to, names));
                    body = substitute(&body, &var, &to, names);
                    var = renamed;
                }
                bindings.push(SymBinding { var, distribution });
            }
            if !shadowed {
                weight = weight.map(|w| substitute(&w, name, replacement, names));
                body = substitute(&body, name, replacement, names);
            }
            Sym::Expect(Box::new(SymExpect { bindings, weight, body }))
        }
        Sym::Min(m) => {
            let dimension = m.dimension.as_ref().map(|d| substitute(d, name, replacement, names));
            let (var, parts) = substitute_under_binder(&m.var, &[&m.body], name, replacement, names);
            let body = parts.into_iter().next().unwrap_or_else(|| m.body.clone());
            Sym::Min(Box::new(SymMin { returns_argument: m.returns_argument, var, dimension, body }))
        }
        Sym::AtMinimum(a) => {
            let dimension = a.dimension.as_ref().map(|d| substitute(d, name, replacement, names));
            let (var, parts) = substitute_under_binder(&a.var, &[&a.value, &a.objective], name, replacement, names);
            let mut parts = parts.into_iter();
            let value = parts.next().unwrap_or_else(|| a.value.clone());
            let objective = parts.next().unwrap_or_else(|| a.objective.clone());
            Sym::AtMinimum(Box::new(AtMinimum { var, dimension, value, objective }))
        }
    }
}

/// Substitute in the scope of one binder `var`, renaming it if it would capture.
fn substitute_under_binder(
    var: &str,
    parts: &[&Sym],
    name: &str,
    replacement: &Sym,
    names: &mut NameSupply,
) -> (String, Vec<Sym>) {
    if var == name {
        return (var.to_string(), parts.iter().map(|p| (*p).clone()).collect());
    }
    let mut var = var.to_string();
    let mut parts: Vec<Sym> = parts.iter().map(|p| (*p).clone()).collect();
    if replacement.has_free(&var) {
        let renamed = names.fresh(&var);
        let to = Sym::Var(renamed.clone());
        parts = parts.iter().map(|p| substitute(p, &var, &to, names)).collect();
        var = renamed;
    }
    (var, parts.iter().map(|p| substitute(p, name, replacement, names)).collect())
}

// ---------------------------------------------------------------- simplifying constructors

/// Short enough to print as a folded constant (`0.5`, not `0.30000000000000004`).
fn is_nice(value: f64) -> bool {
    value.is_finite() && format!("{value}").len() <= 8
}

fn num(value: f64) -> Sym {
    Sym::Num(value)
}

fn call(name: &str, args: Vec<Sym>) -> Sym {
    // Zero in, zero out for the linear and bilinear builtins.
    let linear = matches!(name, "sum" | "tr" | "transpose" | "diag" | "dot" | "outer");
    if linear && args.iter().any(Sym::is_zero) {
        return num(0.0);
    }
    Sym::Call(name.to_string(), args)
}

/// `(true, m)` when `s` is `-m` in disguise: a negative constant, a negation, or a product or
/// fraction whose first factor is one of those.
fn split_sign(s: &Sym) -> (bool, Sym) {
    match s {
        Sym::Num(x) if *x < 0.0 => (true, num(-x)),
        Sym::Neg(inner) => (true, (**inner).clone()),
        Sym::Bin(BinaryOp::Mul, a, b) => match split_sign(a) {
            (true, magnitude) => (true, mul(magnitude, (**b).clone())),
            _ => (false, s.clone()),
        },
        Sym::Bin(BinaryOp::Div, a, b) => match split_sign(a) {
            (true, magnitude) => (true, Sym::Bin(BinaryOp::Div, Box::new(magnitude), b.clone())),
            _ => (false, s.clone()),
        },
        _ => (false, s.clone()),
    }
}

/// `-s`, with the sign on the first factor (`-x * y`, `-2 * x / y`) rather than around it.
fn neg(a: Sym) -> Sym {
    match a {
        Sym::Num(x) => num(if x == 0.0 { 0.0 } else { -x }),
        Sym::Neg(inner) => *inner,
        Sym::Bin(BinaryOp::Sub, x, y) => Sym::Bin(BinaryOp::Sub, y, x),
        Sym::Bin(BinaryOp::Mul, x, y) => mul(neg(*x), *y),
        // Built directly: `div` would pull the sign out again.
        Sym::Bin(BinaryOp::Div, x, y) => Sym::Bin(BinaryOp::Div, Box::new(neg(*x)), y),
        other => Sym::Neg(Box::new(other)),
    }
}

/// `-x * y * z` for the product `x * y * z`.
fn negate_first_factor(s: Sym) -> Sym {
    match s {
        Sym::Bin(BinaryOp::Mul, x, y) => Sym::Bin(BinaryOp::Mul, Box::new(negate_first_factor(*x)), y),
        other => Sym::Neg(Box::new(other)),
    }
}

fn add(a: Sym, b: Sym) -> Sym {
    if a.is_zero() {
        return b;
    }
    if b.is_zero() {
        return a;
    }
    if let (Sym::Num(x), Sym::Num(y)) = (&a, &b) {
        if is_nice(x + y) {
            return num(x + y);
        }
    }
    if let (true, magnitude) = split_sign(&b) {
        return sub(a, magnitude);
    }
    if let (true, magnitude) = split_sign(&a) {
        return Sym::Bin(BinaryOp::Sub, Box::new(b), Box::new(magnitude));
    }
    Sym::Bin(BinaryOp::Add, Box::new(a), Box::new(b))
}

fn sub(a: Sym, b: Sym) -> Sym {
    if b.is_zero() {
        return a;
    }
    if a.is_zero() {
        return neg(b);
    }
    if a == b {
        return num(0.0);
    }
    if let (Sym::Num(x), Sym::Num(y)) = (&a, &b) {
        if is_nice(x - y) {
            return num(x - y);
        }
    }
    if let (true, magnitude) = split_sign(&b) {
        return add(a, magnitude);
    }
    Sym::Bin(BinaryOp::Sub, Box::new(a), Box::new(b))
}

/// The factors of a product chain, in order, with negations split off as `-1`.
fn factors(s: Sym, out: &mut Vec<Sym>) {
    match s {
        Sym::Bin(BinaryOp::Mul, a, b) => {
            factors(*a, out);
            factors(*b, out);
        }
        Sym::Neg(inner) => {
            out.push(num(-1.0));
            factors(*inner, out);
        }
        other => out.push(other),
    }
}

/// A left-associated product of non-constant factors (order kept: they may be matrices).
fn product_of(factors: Vec<Sym>) -> Sym {
    factors
        .into_iter()
        .reduce(|left, right| Sym::Bin(BinaryOp::Mul, Box::new(left), Box::new(right)))
        .unwrap_or(num(1.0))
}

fn mul(a: Sym, b: Sym) -> Sym {
    if a.is_zero() || b.is_zero() {
        return num(0.0);
    }
    // Fractions float outwards (denominators are scalars, so this holds for matrices too).
    if let Sym::Bin(BinaryOp::Div, n, d) = b {
        return div(mul(a, *n), *d);
    }
    if let Sym::Bin(BinaryOp::Div, n, d) = a {
        return div(mul(*n, b), *d);
    }
    let mut all = Vec::new();
    factors(a, &mut all);
    factors(b, &mut all);
    let (constants, rest): (Vec<Sym>, Vec<Sym>) = all.into_iter().partition(|f| matches!(f, Sym::Num(_)));
    let values: Vec<f64> = constants.iter().map(|c| if let Sym::Num(x) = c { *x } else { 1.0 }).collect();
    let folded: f64 = values.iter().product();
    if folded == 0.0 {
        return num(0.0);
    }
    // Keep ugly constants as written rather than print 17 digits.
    let leading: Vec<Sym> =
        if is_nice(folded) { vec![num(folded)] } else { values.into_iter().filter(|v| *v != 1.0).map(num).collect() };
    match leading.as_slice() {
        [] => product_of(rest),
        [Sym::Num(c)] if *c == 1.0 => product_of(rest),
        [Sym::Num(c)] if *c == -1.0 && !rest.is_empty() => negate_first_factor(product_of(rest)),
        _ => product_of(leading.into_iter().chain(rest).collect()),
    }
}

/// A leading constant factor and the rest: `2*x*y` is `(2, x*y)`.
fn leading_constant(s: &Sym) -> (f64, Sym) {
    let mut all = Vec::new();
    factors(s.clone(), &mut all);
    match all.first() {
        Some(Sym::Num(c)) if all.len() > 1 => (*c, product_of(all[1..].to_vec())),
        Some(Sym::Num(c)) => (*c, num(1.0)),
        _ => (1.0, s.clone()),
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn div(a: Sym, b: Sym) -> Sym {
    if a.is_zero() || b.is_number(1.0) {
        return a;
    }
    if let (true, magnitude) = split_sign(&a) {
        return neg(div(magnitude, b));
    }
    if let (true, magnitude) = split_sign(&b) {
        return neg(div(a, magnitude));
    }
    if let Sym::Bin(BinaryOp::Div, n, d) = a {
        return div(*n, mul(*d, b));
    }
    if let Sym::Bin(BinaryOp::Div, n, d) = b {
        return div(mul(a, *d), *n);
    }
    if a == b {
        return num(1.0);
    }
    let (top, top_rest) = leading_constant(&a);
    let (bottom, bottom_rest) = leading_constant(&b);
    let (top, bottom) = reduce_fraction(top, bottom);
    let numerator = if top == 1.0 { top_rest } else { mul(num(top), top_rest) };
    let denominator = if bottom == 1.0 { bottom_rest } else { mul(num(bottom), bottom_rest) };
    if denominator.is_number(1.0) {
        return numerator;
    }
    if let (Sym::Num(x), Sym::Num(y)) = (&numerator, &denominator) {
        if is_nice(x / y) {
            return num(x / y);
        }
    }
    Sym::Bin(BinaryOp::Div, Box::new(numerator), Box::new(denominator))
}

/// Cancel two positive constants: whole numbers by their gcd, others when the ratio is short.
fn reduce_fraction(top: f64, bottom: f64) -> (f64, f64) {
    let whole = |x: f64| x.fract() == 0.0 && x > 0.0 && x < 1e15;
    if whole(top) && whole(bottom) {
        let g = gcd(top as u64, bottom as u64) as f64;
        return (top / g, bottom / g);
    }
    if bottom != 0.0 && is_nice(top / bottom) {
        return (top / bottom, 1.0);
    }
    (top, bottom)
}

fn pow(a: Sym, b: Sym) -> Sym {
    if b.is_number(1.0) {
        return a;
    }
    if b.is_zero() || a.is_number(1.0) {
        return num(1.0);
    }
    if let (Sym::Num(x), Sym::Num(y)) = (&a, &b) {
        if is_nice(x.powf(*y)) {
            return num(x.powf(*y));
        }
    }
    // (2 x)^2 is 4 x^2, so that the constant can cancel in a fraction (`^` takes scalars).
    if let Sym::Num(exponent) = b {
        let (constant, rest) = leading_constant(&a);
        if constant != 1.0 && is_nice(constant.powf(exponent)) {
            return mul(num(constant.powf(exponent)), pow(rest, num(exponent)));
        }
    }
    Sym::Bin(BinaryOp::Pow, Box::new(a), Box::new(b))
}

// ---------------------------------------------------------------- inlining

type Scope = HashMap<String, Sym>;

/// Turns syntax into `Sym`, inlining `let`s and user functions.
struct Inliner<'a> {
    lets: HashMap<&'a str, &'a Expr>,
    functions: HashMap<&'a str, &'a FunctionDecl>,
    /// Definitions being expanded, to report recursion instead of looping.
    expanding: Vec<String>,
    /// Names that inlined definitions may refer to: a binder with such a name is renamed.
    protected: BTreeSet<String>,
    names: NameSupply,
    nodes: usize,
    /// Order parameters and conjugates: a `let` that depends on none of them stays a name.
    unknowns: BTreeSet<String>,
    /// Expanded `let`s, so that each is converted once.
    expanded: HashMap<String, Sym>,
    /// The `let`s kept as names, with their values, in dependency order.
    constants: Vec<(String, Sym)>,
}

impl<'a> Inliner<'a> {
    fn new(file: &'a ModelFile) -> Self {
        let mut lets = HashMap::new();
        let mut functions = HashMap::new();
        let mut protected = BTreeSet::new();
        let mut taken = BTreeSet::new();
        for item in &file.items {
            match item {
                Item::Let(decl) => {
                    lets.entry(decl.name.name.as_str()).or_insert(&decl.value);
                    protected.insert(decl.name.name.clone());
                    free_names(&decl.value, &mut Vec::new(), &mut protected);
                }
                Item::Function(decl) => {
                    functions.entry(decl.name.name.as_str()).or_insert(decl);
                    let mut bound: Vec<String> = decl.params.iter().map(|p| p.name.clone()).collect();
                    free_names(&decl.body, &mut bound, &mut protected);
                    taken.extend(decl.params.iter().map(|p| p.name.clone()));
                }
                Item::Param(decl) => {
                    protected.insert(decl.name.name.clone());
                }
                Item::Order(decl) => {
                    protected.insert(decl.name.name.clone());
                }
                Item::Conjugate(decl) => {
                    protected.insert(decl.name.name.clone());
                }
                Item::Import(decl) => {
                    protected.insert(decl.alias.name.clone());
                }
                _ => {}
            }
            for expr in item_expressions(item) {
                all_names(expr, &mut taken);
            }
        }
        taken.extend(protected.iter().cloned());
        let unknowns = file
            .items
            .iter()
            .filter_map(|item| match item {
                Item::Order(decl) => Some(decl.name.name.clone()),
                Item::Conjugate(decl) => Some(decl.name.name.clone()),
                _ => None,
            })
            .collect();
        Inliner {
            lets,
            functions,
            expanding: Vec::new(),
            protected,
            names: NameSupply { taken },
            nodes: 0,
            unknowns,
            expanded: HashMap::new(),
            constants: Vec::new(),
        }
    }

    fn charge(&mut self, nodes: usize) -> Result<(), String> {
        self.nodes += nodes;
        if self.nodes > MAX_NODES {
            return Err(format!("the free energy has more than {MAX_NODES} nodes once lets and functions are inlined"));
        }
        Ok(())
    }

    /// A binder's name, renamed if inlined text could refer to an outer meaning of it.
    fn bind(&mut self, name: &str, scope: &Scope) -> String {
        if self.protected.contains(name) || scope.values().any(|value| value.has_free(name)) {
            self.names.fresh(name)
        } else {
            name.to_string()
        }
    }

    /// A `let` is inlined where it depends on an unknown (its derivative matters) and kept
    /// as a name otherwise, which reads better (`rho * mh`, not `1 * mh`).
    fn expand_let(&mut self, name: &str, value: &Expr, depth: usize) -> Result<Sym, String> {
        if let Some(done) = self.expanded.get(name) {
            let done = done.clone();
            self.charge(done.measure().0)?;
            return Ok(done);
        }
        if self.expanding.iter().any(|n| n == name) {
            return Err(format!("`{name}` is defined in terms of itself"));
        }
        self.expanding.push(name.to_string());
        let result = self.convert(value, &Scope::new(), depth + 1);
        self.expanding.pop();
        let inlined = result?;
        let use_site = if self.unknowns.iter().any(|u| inlined.has_free(u)) {
            inlined
        } else {
            self.constants.push((name.to_string(), inlined));
            Sym::Var(name.to_string())
        };
        self.expanded.insert(name.to_string(), use_site.clone());
        Ok(use_site)
    }

    fn expand_call(&mut self, decl: &FunctionDecl, args: Vec<Sym>, depth: usize) -> Result<Sym, String> {
        let name = &decl.name.name;
        if decl.params.len() != args.len() {
            return Err(format!("`{name}` takes {} arguments, found {}", decl.params.len(), args.len()));
        }
        if self.expanding.iter().any(|n| n == name) {
            return Err(format!("`{name}` calls itself"));
        }
        // A function body sees its parameters and the file's names, not the caller's binders.
        let scope: Scope = decl.params.iter().map(|p| p.name.clone()).zip(args).collect();
        self.expanding.push(name.clone());
        let result = self.convert(&decl.body, &scope, depth + 1);
        self.expanding.pop();
        result
    }

    fn convert(&mut self, expr: &Expr, scope: &Scope, depth: usize) -> Result<Sym, String> {
        if depth > MAX_DEPTH {
            return Err(format!("definitions nest more than {MAX_DEPTH} levels deep"));
        }
        self.charge(1)?;
        let go = |e: &Expr, this: &mut Self| this.convert(e, scope, depth + 1);
        Ok(match &expr.kind {
            ExprKind::Number(x) => num(*x),
            ExprKind::Var(ident) => {
                let name = ident.name.as_str();
                if let Some(value) = scope.get(name) {
                    self.charge(value.measure().0)?;
                    value.clone()
                } else if let Some(value) = self.lets.get(name).copied() {
                    self.expand_let(name, value, depth)?
                } else {
                    Sym::Var(name.to_string())
                }
            }
            ExprKind::Qualified(alias, field) => Sym::Qualified(alias.name.clone(), field.name.clone()),
            ExprKind::Neg(a) => Sym::Neg(Box::new(go(a, self)?)),
            ExprKind::Binary(op, a, b) => Sym::Bin(*op, Box::new(go(a, self)?), Box::new(go(b, self)?)),
            ExprKind::Call(name, args) => {
                let args = args.iter().map(|a| go(a, self)).collect::<Result<Vec<_>, _>>()?;
                match self.functions.get(name.name.as_str()).copied() {
                    Some(decl) => self.expand_call(decl, args, depth)?,
                    None => Sym::Call(name.name.clone(), args),
                }
            }
            ExprKind::Index(base, indices) => {
                Sym::Index(Box::new(go(base, self)?), indices.iter().map(|i| go(i, self)).collect::<Result<_, _>>()?)
            }
            ExprKind::Transpose(a) => Sym::Transpose(Box::new(go(a, self)?)),
            ExprKind::List(items) => Sym::List(items.iter().map(|i| go(i, self)).collect::<Result<_, _>>()?),
            ExprKind::Expect(expectation) => {
                // Distribution parameters are evaluated outside the expectation's own binders.
                let mut inner = scope.clone();
                let mut bindings = Vec::new();
                for binding in &expectation.bindings {
                    let distribution = match &binding.distribution {
                        Distribution::Normal { mean, covariance } => {
                            SymDistribution::Normal { mean: go(mean, self)?, covariance: go(covariance, self)? }
                        }
                        Distribution::Rademacher(size) => {
                            SymDistribution::Rademacher(size.as_ref().map(|s| go(s, self)).transpose()?)
                        }
                        Distribution::GaussBernoulli(density) => SymDistribution::GaussBernoulli(go(density, self)?),
                    };
                    let var = self.bind(&binding.var.name, scope);
                    inner.insert(binding.var.name.clone(), Sym::Var(var.clone()));
                    bindings.push(SymBinding { var, distribution });
                }
                let weight = match &expectation.weight {
                    Some(w) => Some(self.convert(w, &inner, depth + 1)?),
                    None => None,
                };
                let body = self.convert(&expectation.body, &inner, depth + 1)?;
                Sym::Expect(Box::new(SymExpect { bindings, weight, body }))
            }
            ExprKind::Minimize(minimization) => {
                let dimension = minimization.dimension.as_ref().map(|d| go(d, self)).transpose()?;
                let var = self.bind(&minimization.var.name, scope);
                let mut inner = scope.clone();
                inner.insert(minimization.var.name.clone(), Sym::Var(var.clone()));
                // Starting points do not change the minimum, so they are left out.
                let body = self.convert(&minimization.body, &inner, depth + 1)?;
                Sym::Min(Box::new(SymMin { returns_argument: minimization.returns_argument, var, dimension, body }))
            }
            ExprKind::Hessian(_) => return Err("`hessian` has no symbolic derivative (it is allowed only in observables)".into()),
        })
    }
}

/// The expressions an item holds.
fn item_expressions(item: &Item) -> Vec<&Expr> {
    match item {
        Item::Let(decl) => vec![&decl.value],
        Item::Function(decl) => vec![&decl.body],
        Item::Term(named) | Item::Observe(named) => vec![&named.value],
        Item::Start(decl) => decl.values.iter().map(|(_, e)| e).collect(),
        Item::Order(decl) => match &decl.shape {
            ShapeExpr::Scalar => vec![],
            ShapeExpr::Vector(n) | ShapeExpr::Symmetric(n) => vec![&**n],
            ShapeExpr::Matrix(r, c) => vec![&**r, &**c],
        },
        _ => vec![],
    }
}

/// Every name used anywhere in `expr` (variables and binders).
fn all_names(expr: &Expr, out: &mut BTreeSet<String>) {
    visit(expr, &mut |e| match &e.kind {
        ExprKind::Expect(x) => out.extend(x.bindings.iter().map(|b| b.var.name.clone())),
        ExprKind::Minimize(m) => {
            out.insert(m.var.name.clone());
        }
        ExprKind::Hessian(h) => {
            out.insert(h.var.name.clone());
        }
        ExprKind::Var(v) => {
            out.insert(v.name.clone());
        }
        _ => {}
    });
}

/// Calls `f` on every subexpression.
fn visit(expr: &Expr, f: &mut impl FnMut(&Expr)) {
    f(expr);
    match &expr.kind {
        ExprKind::Number(_) | ExprKind::Var(_) | ExprKind::Qualified(..) => {}
        ExprKind::Neg(a) | ExprKind::Transpose(a) => visit(a, f),
        ExprKind::Binary(_, a, b) => {
            visit(a, f);
            visit(b, f);
        }
        ExprKind::Call(_, args) | ExprKind::List(args) => args.iter().for_each(|a| visit(a, f)),
        ExprKind::Index(base, indices) => {
            visit(base, f);
            indices.iter().for_each(|i| visit(i, f));
        }
        ExprKind::Expect(e) => {
            for binding in &e.bindings {
                match &binding.distribution {
                    Distribution::Normal { mean, covariance } => {
                        visit(mean, f);
                        visit(covariance, f);
                    }
                    Distribution::Rademacher(size) => size.iter().for_each(|s| visit(s, f)),
                    Distribution::GaussBernoulli(density) => visit(density, f),
                }
            }
            e.weight.iter().for_each(|w| visit(w, f));
            visit(&e.body, f);
        }
        ExprKind::Minimize(m) => {
            m.dimension.iter().for_each(|d| visit(d, f));
            m.starts.iter().for_each(|s| visit(s, f));
            visit(&m.body, f);
        }
        ExprKind::Hessian(h) => {
            h.dimension.iter().for_each(|d| visit(d, f));
            visit(&h.point, f);
            visit(&h.body, f);
        }
    }
}

/// The names `expr` uses without binding them (`bound` holds the binders in scope).
fn free_names(expr: &Expr, bound: &mut Vec<String>, out: &mut BTreeSet<String>) {
    match &expr.kind {
        ExprKind::Var(v) => {
            if !bound.contains(&v.name) {
                out.insert(v.name.clone());
            }
        }
        ExprKind::Number(_) | ExprKind::Qualified(..) => {}
        ExprKind::Neg(a) | ExprKind::Transpose(a) => free_names(a, bound, out),
        ExprKind::Binary(_, a, b) => {
            free_names(a, bound, out);
            free_names(b, bound, out);
        }
        ExprKind::Call(_, args) | ExprKind::List(args) => args.iter().for_each(|a| free_names(a, bound, out)),
        ExprKind::Index(base, indices) => {
            free_names(base, bound, out);
            indices.iter().for_each(|i| free_names(i, bound, out));
        }
        ExprKind::Expect(e) => {
            for binding in &e.bindings {
                match &binding.distribution {
                    Distribution::Normal { mean, covariance } => {
                        free_names(mean, bound, out);
                        free_names(covariance, bound, out);
                    }
                    Distribution::Rademacher(size) => size.iter().for_each(|s| free_names(s, bound, out)),
                    Distribution::GaussBernoulli(density) => free_names(density, bound, out),
                }
            }
            let depth = bound.len();
            bound.extend(e.bindings.iter().map(|b| b.var.name.clone()));
            e.weight.iter().for_each(|w| free_names(w, bound, out));
            free_names(&e.body, bound, out);
            bound.truncate(depth);
        }
        ExprKind::Minimize(m) => {
            m.dimension.iter().for_each(|d| free_names(d, bound, out));
            m.starts.iter().for_each(|s| free_names(s, bound, out));
            bound.push(m.var.name.clone());
            free_names(&m.body, bound, out);
            bound.pop();
        }
        ExprKind::Hessian(h) => {
            h.dimension.iter().for_each(|d| free_names(d, bound, out));
            free_names(&h.point, bound, out);
            bound.push(h.var.name.clone());
            free_names(&h.body, bound, out);
            bound.pop();
        }
    }
}

// ---------------------------------------------------------------- differentiation

/// One derived equation before printing.
struct Derived {
    variable: String,
    /// The symbolic direction for a vector or matrix unknown.
    direction: Option<String>,
    derivative: Sym,
}

fn derive_symbolic(file: &ModelFile) -> Result<Vec<Derived>, String> {
    let mut inliner = Inliner::new(file);
    let mut terms = Vec::new();
    for item in &file.items {
        if let Item::Term(term) = item {
            let value = inliner
                .convert(&term.value, &Scope::new(), 0)
                .map_err(|message| format!("in term `{}`: {message}", term.name.name))?;
            if value.measure().1 > MAX_DEPTH {
                return Err(format!("term `{}` nests more than {MAX_DEPTH} levels deep once inlined", term.name.name));
            }
            terms.push(value);
        }
    }
    if terms.is_empty() {
        return Err("the model has no `term`: the free energy is empty".to_string());
    }
    let non_scalar = non_scalar_unknowns(file);
    let unknowns: Vec<&str> = file
        .items
        .iter()
        .filter_map(|item| match item {
            Item::Order(decl) => Some(decl.name.name.as_str()),
            Item::Conjugate(decl) => Some(decl.name.name.as_str()),
            _ => None,
        })
        .collect();
    if unknowns.is_empty() {
        return Err("the model declares no `order` parameter or `conjugate` to solve for".to_string());
    }
    let mut differ = Differ { names: inliner.names, non_scalar, direction: None };
    let mut equations = Vec::new();
    for variable in unknowns {
        differ.direction = differ.non_scalar.contains(variable).then(|| format!("d{variable}"));
        let mut total = num(0.0);
        for term in &terms {
            total = add(total, differ.diff(term, variable));
        }
        let (size, depth) = total.measure();
        if size > 4 * MAX_NODES || depth > 4 * MAX_DEPTH {
            return Err(format!("the derivative with respect to `{variable}` is too large to print"));
        }
        equations.push(Derived {
            variable: variable.to_string(),
            direction: differ.direction.clone(),
            derivative: total,
        });
    }
    Ok(equations)
}

/// Unknowns declared with a vector or matrix shape (conjugates take their order's shape).
fn non_scalar_unknowns(file: &ModelFile) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for item in &file.items {
        if let Item::Order(decl) = item {
            if decl.shape != ShapeExpr::Scalar {
                names.insert(decl.name.name.clone());
            }
        }
    }
    for item in &file.items {
        if let Item::Conjugate(decl) = item {
            if names.contains(&decl.of.name) {
                names.insert(decl.name.name.clone());
            }
        }
    }
    names
}

struct Differ {
    names: NameSupply,
    non_scalar: BTreeSet<String>,
    /// `Some("dQ")` while differentiating along a vector or matrix unknown.
    direction: Option<String>,
}

impl Differ {
    /// The derivative of `s` with respect to `v` (directional along `dv` for non-scalar `v`).
    fn diff(&mut self, s: &Sym, v: &str) -> Sym {
        if !s.has_free(v) {
            return num(0.0);
        }
        match s {
            Sym::Var(_) => match &self.direction {
                Some(direction) if self.non_scalar.contains(v) => Sym::Direction(direction.clone()),
                _ => num(1.0),
            },
            Sym::Neg(a) => neg(self.diff(a, v)),
            Sym::Bin(op, a, b) => self.diff_binary(*op, a, b, v),
            Sym::Call(name, args) => self.diff_call(name, args, s, v),
            Sym::Index(base, indices) => {
                let d = self.diff(base, v);
                if d.is_zero() {
                    d
                } else {
                    Sym::Index(Box::new(d), indices.clone())
                }
            }
            Sym::Transpose(a) => {
                let d = self.diff(a, v);
                if d.is_zero() {
                    d
                } else {
                    Sym::Transpose(Box::new(d))
                }
            }
            Sym::List(items) => {
                let d: Vec<Sym> = items.iter().map(|i| self.diff(i, v)).collect();
                if d.iter().all(Sym::is_zero) {
                    num(0.0)
                } else {
                    Sym::List(d)
                }
            }
            Sym::Expect(e) => self.diff_expect(e, s, v),
            Sym::Min(m) => self.diff_min(m, s, v),
            _ => Sym::Derivative(v.to_string(), Box::new(s.clone())),
        }
    }

    fn diff_binary(&mut self, op: BinaryOp, a: &Sym, b: &Sym, v: &str) -> Sym {
        let (da, db) = (self.diff(a, v), self.diff(b, v));
        match op {
            BinaryOp::Add => add(da, db),
            BinaryOp::Sub => sub(da, db),
            BinaryOp::Mul => add(mul(da, b.clone()), mul(a.clone(), db)),
            BinaryOp::Div => sub(div(da, b.clone()), div(mul(a.clone(), db), pow(b.clone(), num(2.0)))),
            BinaryOp::Pow if db.is_zero() => {
                // d(a^c) = c a^(c-1) da
                mul(mul(b.clone(), pow(a.clone(), sub(b.clone(), num(1.0)))), da)
            }
            BinaryOp::Pow if da.is_zero() => mul(mul(pow(a.clone(), b.clone()), call("log", vec![a.clone()])), db),
            BinaryOp::Pow => mul(
                pow(a.clone(), b.clone()),
                add(mul(db, call("log", vec![a.clone()])), div(mul(b.clone(), da), a.clone())),
            ),
        }
    }

    fn diff_call(&mut self, name: &str, args: &[Sym], whole: &Sym, v: &str) -> Sym {
        let d: Vec<Sym> = args.iter().map(|a| self.diff(a, v)).collect();
        if let ([u], [du]) = (args, d.as_slice()) {
            if let Some(outer) = unary_derivative(name, u) {
                return mul(outer, du.clone());
            }
            match name {
                "sum" | "tr" | "transpose" | "diag" => return call(name, vec![du.clone()]),
                "norm2" => return mul(num(2.0), call("dot", vec![u.clone(), du.clone()])),
                "logsumexp" => return call("dot", vec![call("softmax", vec![u.clone()]), du.clone()]),
                "inv" => {
                    let inverse = call("inv", vec![u.clone()]);
                    return neg(mul(mul(inverse.clone(), du.clone()), inverse));
                }
                "logdet" => return call("tr", vec![mul(call("inv", vec![u.clone()]), du.clone())]),
                "det" => return mul(whole.clone(), call("tr", vec![mul(call("inv", vec![u.clone()]), du.clone())])),
                _ => {}
            }
        }
        if let ([a, b], [da, db]) = (args, d.as_slice()) {
            let step = |x: Sym, y: Sym| call("step", vec![sub(x, y)]);
            match name {
                "pow" => return self.diff_binary(BinaryOp::Pow, a, b, v),
                "max" => {
                    return add(
                        mul(step(a.clone(), b.clone()), da.clone()),
                        mul(step(b.clone(), a.clone()), db.clone()),
                    )
                }
                "min" => {
                    return add(
                        mul(step(b.clone(), a.clone()), da.clone()),
                        mul(step(a.clone(), b.clone()), db.clone()),
                    )
                }
                "dot" | "outer" => {
                    return add(call(name, vec![da.clone(), b.clone()]), call(name, vec![a.clone(), db.clone()]))
                }
                _ => {}
            }
        }
        Sym::Derivative(v.to_string(), Box::new(whole.clone()))
    }

    /// Under the integral; theta-dependent Gaussians are standardised first (pathwise).
    fn diff_expect(&mut self, e: &SymExpect, whole: &Sym, v: &str) -> Sym {
        let mut bindings = Vec::new();
        let mut weight = e.weight.clone();
        let mut body = e.body.clone();
        let operator = || Sym::Derivative(v.to_string(), Box::new(whole.clone()));
        for binding in &e.bindings {
            let mut var = binding.var.clone();
            if var == v {
                // A binder shadowing the variable: rename so the body's `v` is the outer one.
                let renamed = self.names.fresh(&var);
                let to = Sym::Var(renamed.clone());
                weight = weight.map(|w| substitute(&w, &var, &to, &mut self.names));
                body = substitute(&body, &var, &to, &mut self.names);
                var = renamed;
            }
            let depends = binding.distribution.parameters().iter().any(|p| p.has_free(v));
            let distribution = match &binding.distribution {
                SymDistribution::Normal { mean, covariance } if depends => {
                    let vector =
                        looks_non_scalar(mean, &self.non_scalar) || looks_non_scalar(covariance, &self.non_scalar);
                    let standard = Sym::Var(var.clone());
                    let scale = if covariance.is_number(1.0) {
                        standard
                    } else if vector {
                        mul(call("chol", vec![covariance.clone()]), standard)
                    } else {
                        mul(call("sqrt", vec![covariance.clone()]), standard)
                    };
                    let path = add(mean.clone(), scale);
                    weight = weight.map(|w| substitute(&w, &var, &path, &mut self.names));
                    body = substitute(&body, &var, &path, &mut self.names);
                    let identity = if vector { Sym::Var("I".to_string()) } else { num(1.0) };
                    SymDistribution::Normal { mean: num(0.0), covariance: identity }
                }
                // A discrete law or a mixture weight depending on theta has no pathwise form.
                _ if depends => return operator(),
                other => other.clone(),
            };
            bindings.push(SymBinding { var, distribution });
        }
        if weight.as_ref().is_some_and(|w| w.has_free(v)) {
            // E_w[f] = E[w f]: the product rule then covers a theta-dependent weight.
            body = mul(weight.take().unwrap_or(num(1.0)), body);
        }
        let derivative = self.diff(&body, v);
        if derivative.is_zero() {
            return derivative;
        }
        Sym::Expect(Box::new(SymExpect { bindings, weight, body: derivative }))
    }

    /// Envelope theorem for `min`; implicit-function theorem for a scalar `argmin`.
    fn diff_min(&mut self, m: &SymMin, whole: &Sym, v: &str) -> Sym {
        let (var, body) = if m.var == v {
            let renamed = self.names.fresh(&m.var);
            let body = substitute(&m.body, &m.var, &Sym::Var(renamed.clone()), &mut self.names);
            (renamed, body)
        } else {
            (m.var.clone(), m.body.clone())
        };
        let value = if !m.returns_argument {
            self.diff(&body, v)
        } else if m.dimension.is_none() {
            // dh*/dtheta = -F_{h theta} / F_{h h} at h = h*.
            let gradient = self.diff(&body, &var);
            let mixed = self.diff(&gradient, v);
            let curvature = self.diff(&gradient, &var);
            neg(div(mixed, curvature))
        } else {
            return Sym::Derivative(v.to_string(), Box::new(whole.clone()));
        };
        if value.is_zero() {
            return value;
        }
        Sym::AtMinimum(Box::new(AtMinimum { var, dimension: m.dimension.clone(), value, objective: body }))
    }
}

/// f'(u) for the scalar builtins.
fn unary_derivative(name: &str, u: &Sym) -> Option<Sym> {
    let of = |f: &str| call(f, vec![u.clone()]);
    let gaussian_bump = || call("exp", vec![neg(pow(u.clone(), num(2.0)))]);
    Some(match name {
        "exp" => of("exp"),
        "log" => div(num(1.0), u.clone()),
        "log1p" => div(num(1.0), add(num(1.0), u.clone())),
        "sqrt" => div(num(1.0), mul(num(2.0), of("sqrt"))),
        "abs" => of("sign"),
        "erf" => div(mul(num(2.0), gaussian_bump()), call("sqrt", vec![Sym::Pi])),
        "erfc" => neg(div(mul(num(2.0), gaussian_bump()), call("sqrt", vec![Sym::Pi]))),
        "H" => neg(of("phi")),
        "logH" => neg(div(of("phi"), of("H"))),
        "phi" => neg(mul(u.clone(), of("phi"))),
        "Phi" => of("phi"),
        "sigmoid" => mul(of("sigmoid"), sub(num(1.0), of("sigmoid"))),
        "logsigmoid" => sub(num(1.0), of("sigmoid")),
        "softplus" => of("sigmoid"),
        "tanh" => sub(num(1.0), pow(of("tanh"), num(2.0))),
        "logcosh" => of("tanh"),
        "sin" => of("cos"),
        "cos" => neg(of("sin")),
        // Piecewise constant: zero almost everywhere.
        "step" | "sign" => num(0.0),
        _ => return None,
    })
}

/// Whether a Gaussian's parameters make it a vector (its covariance a matrix).
fn looks_non_scalar(s: &Sym, non_scalar: &BTreeSet<String>) -> bool {
    match s {
        Sym::List(_) | Sym::Direction(_) => true,
        Sym::Var(name) => non_scalar.contains(name),
        Sym::Call(name, args) => match name.as_str() {
            "I" | "zeros" | "diag" | "outer" | "inv" | "chol" | "sqrtm" | "softmax" => true,
            "transpose" => args.iter().any(|a| looks_non_scalar(a, non_scalar)),
            _ => false,
        },
        Sym::Neg(a) | Sym::Transpose(a) => looks_non_scalar(a, non_scalar),
        Sym::Bin(BinaryOp::Pow, ..) => false,
        Sym::Bin(BinaryOp::Div, a, _) => looks_non_scalar(a, non_scalar),
        Sym::Bin(_, a, b) => looks_non_scalar(a, non_scalar) || looks_non_scalar(b, non_scalar),
        _ => false,
    }
}

// ---------------------------------------------------------------- printing: text

/// Binding strength, as in the grammar (and the pretty printer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Sum,
    Product,
    Unary,
    Power,
    Postfix,
    Primary,
}

fn text_level(s: &Sym) -> Level {
    match s {
        Sym::Num(x) if x.is_sign_negative() => Level::Unary,
        Sym::Neg(_) => Level::Unary,
        Sym::Bin(BinaryOp::Add | BinaryOp::Sub, ..) => Level::Sum,
        Sym::Bin(BinaryOp::Mul | BinaryOp::Div, ..) => Level::Product,
        Sym::Bin(BinaryOp::Pow, ..) => Level::Power,
        Sym::Index(..) | Sym::Transpose(_) => Level::Postfix,
        _ => Level::Primary,
    }
}

/// A literal that round-trips: shortest digits, exponent form for extreme magnitudes.
fn number_text(x: f64) -> String {
    let magnitude = x.abs();
    let digits = if magnitude == 0.0 || (1e-5..1e16).contains(&magnitude) {
        format!("{magnitude}")
    } else {
        format!("{magnitude:e}")
    };
    if x.is_sign_negative() && magnitude != 0.0 {
        format!("-{digits}")
    } else {
        digits
    }
}

fn text(s: &Sym) -> String {
    let mut out = String::new();
    write_text(&mut out, s, Level::Sum);
    out
}

fn write_text(out: &mut String, s: &Sym, required: Level) {
    if text_level(s) < required {
        out.push('(');
        write_text_bare(out, s);
        out.push(')');
    } else {
        write_text_bare(out, s);
    }
}

fn write_text_list(out: &mut String, items: &[Sym]) {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_text(out, item, Level::Sum);
    }
}

fn write_text_bare(out: &mut String, s: &Sym) {
    match s {
        Sym::Num(x) => out.push_str(&number_text(*x)),
        Sym::Pi => out.push_str("pi"),
        Sym::Var(name) | Sym::Direction(name) => out.push_str(name),
        Sym::Qualified(alias, field) => {
            let _ = write!(out, "{alias}.{field}");
        }
        Sym::Neg(a) => {
            out.push('-');
            write_text(out, a, Level::Unary);
        }
        Sym::Bin(op, a, b) => {
            let (left, right) = match op {
                BinaryOp::Add | BinaryOp::Sub => (Level::Sum, Level::Product),
                BinaryOp::Mul | BinaryOp::Div => (Level::Product, Level::Unary),
                BinaryOp::Pow => (Level::Postfix, Level::Unary),
            };
            write_text(out, a, left);
            if *op == BinaryOp::Pow {
                out.push('^');
            } else {
                let _ = write!(out, " {} ", op.symbol());
            }
            write_text(out, b, right);
        }
        Sym::Call(name, args) => {
            let _ = write!(out, "{name}(");
            write_text_list(out, args);
            out.push(')');
        }
        Sym::Index(base, indices) => {
            write_text(out, base, Level::Postfix);
            out.push('[');
            write_text_list(out, indices);
            out.push(']');
        }
        Sym::Transpose(a) => {
            write_text(out, a, Level::Postfix);
            out.push('\'');
        }
        Sym::List(items) => {
            out.push('[');
            write_text_list(out, items);
            out.push(']');
        }
        Sym::Expect(e) => {
            out.push_str("E[");
            for (i, binding) in e.bindings.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                let _ = write!(out, "{} ~ ", binding.var);
                match &binding.distribution {
                    SymDistribution::Normal { mean, covariance } => {
                        let _ = write!(out, "N({}, {})", text(mean), text(covariance));
                    }
                    SymDistribution::Rademacher(None) => out.push_str("rademacher"),
                    SymDistribution::Rademacher(Some(size)) => {
                        let _ = write!(out, "rademacher[{}]", text(size));
                    }
                    SymDistribution::GaussBernoulli(density) => {
                        let _ = write!(out, "gauss_bernoulli({})", text(density));
                    }
                }
            }
            if let Some(weight) = &e.weight {
                let _ = write!(out, "; weight = {}", text(weight));
            }
            let _ = write!(out, "] {{ {} }}", text(&e.body));
        }
        Sym::Min(m) => {
            let word = if m.returns_argument { "argmin" } else { "min" };
            let _ = write!(out, "{word} {} in R", m.var);
            if let Some(dimension) = &m.dimension {
                let _ = write!(out, "[{}]", text(dimension));
            }
            let _ = write!(out, " {{ {} }}", text(&m.body));
        }
        Sym::AtMinimum(a) => {
            let _ = write!(out, "[{}]_{{{} = argmin {{ {} }}}}", text(&a.value), a.var, text(&a.objective));
        }
        Sym::Derivative(v, of) => {
            let _ = write!(out, "d/d{v}[{}]", text(of));
        }
    }
}

// ---------------------------------------------------------------- printing: LaTeX

const GREEK: &[&str] = &[
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "varepsilon",
    "zeta",
    "eta",
    "theta",
    "vartheta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "pi",
    "rho",
    "sigma",
    "tau",
    "upsilon",
    "phi",
    "varphi",
    "chi",
    "psi",
    "omega",
    "Gamma",
    "Delta",
    "Theta",
    "Lambda",
    "Xi",
    "Pi",
    "Sigma",
    "Upsilon",
    "Phi",
    "Psi",
    "Omega",
];

/// `alpha` is `\alpha`, `q_0` and `q0` are `q_{0}`, `mh`, `qhat`, `chi_hat` carry a hat (the
/// usual naming of conjugates), other long names are upright.
fn latex_name(name: &str) -> String {
    let simple =
        |base: &str| (base.len() == 1 && base.chars().all(|c| c.is_ascii_alphabetic())) || GREEK.contains(&base);
    for suffix in ["_hat", "hat", "h"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if simple(base) {
                return format!("\\hat{{{}}}", latex_name(base));
            }
        }
    }
    if GREEK.contains(&name) {
        return format!("\\{name}");
    }
    if let Some((base, subscript)) = name.split_once('_') {
        if !base.is_empty() && !subscript.is_empty() {
            return format!("{}_{{{}}}", latex_name(base), latex_name(subscript));
        }
    }
    let digits_from = name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if digits_from > 0 && digits_from < name.len() {
        return format!("{}_{{{}}}", latex_name(&name[..digits_from]), &name[digits_from..]);
    }
    if name.chars().count() == 1 {
        return name.to_string();
    }
    format!("\\mathrm{{{}}}", name.replace('_', "\\_"))
}

fn latex_number(x: f64) -> String {
    let plain = number_text(x);
    match plain.split_once('e') {
        Some((mantissa, exponent)) if mantissa == "1" || mantissa == "-1" => {
            format!("{}10^{{{exponent}}}", if mantissa == "-1" { "-" } else { "" })
        }
        Some((mantissa, exponent)) => format!("{mantissa} \\times 10^{{{exponent}}}"),
        None => plain,
    }
}

/// Fractions are self-delimiting except as a base; a product's operands must not start with
/// a minus sign.
fn latex_level(s: &Sym) -> Level {
    match s {
        Sym::Bin(BinaryOp::Div, a, _) if split_sign(a).0 => Level::Unary,
        Sym::Bin(BinaryOp::Div, ..) => Level::Power,
        Sym::Call(name, _) if name == "inv" || name == "transpose" => Level::Postfix,
        other => text_level(other),
    }
}

fn latex(s: &Sym) -> String {
    let mut out = String::new();
    write_latex(&mut out, s, Level::Sum);
    out
}

fn write_latex(out: &mut String, s: &Sym, required: Level) {
    if latex_level(s) < required {
        out.push_str("\\left( ");
        write_latex_bare(out, s);
        out.push_str(" \\right)");
    } else {
        write_latex_bare(out, s);
    }
}

fn latex_list(items: &[Sym]) -> String {
    items.iter().map(latex).collect::<Vec<_>>().join(", ")
}

fn latex_function(name: &str) -> String {
    match name {
        "exp" | "log" | "sin" | "cos" | "tanh" | "det" => format!("\\{name}"),
        "phi" | "Phi" => format!("\\{name}"),
        "logH" => "\\log \\operatorname{H}".to_string(),
        "logcosh" => "\\log \\cosh".to_string(),
        _ => format!("\\operatorname{{{}}}", name.replace('_', "\\_")),
    }
}

fn write_latex_bare(out: &mut String, s: &Sym) {
    match s {
        Sym::Num(x) => out.push_str(&latex_number(*x)),
        Sym::Pi => out.push_str("\\pi"),
        Sym::Var(name) => out.push_str(&latex_name(name)),
        Sym::Direction(name) => {
            let unknown = name.strip_prefix('d').unwrap_or(name);
            let _ = write!(out, "\\mathrm{{d}}{}", latex_name(unknown));
        }
        Sym::Qualified(alias, field) => {
            let _ = write!(out, "{}.{}", latex_name(alias), latex_name(field));
        }
        Sym::Neg(a) => {
            out.push('-');
            write_latex(out, a, Level::Unary);
        }
        Sym::Bin(BinaryOp::Div, a, b) => match split_sign(a) {
            (true, magnitude) => {
                let _ = write!(out, "-\\frac{{{}}}{{{}}}", latex(&magnitude), latex(b));
            }
            _ => {
                let _ = write!(out, "\\frac{{{}}}{{{}}}", latex(a), latex(b));
            }
        },
        Sym::Bin(BinaryOp::Pow, a, b) => {
            write_latex(out, a, Level::Postfix);
            let _ = write!(out, "^{{{}}}", latex(b));
        }
        Sym::Bin(op, a, b) => {
            let (left, right, symbol) = match op {
                BinaryOp::Add => (Level::Sum, Level::Product, " + "),
                BinaryOp::Sub => (Level::Sum, Level::Product, " - "),
                // A number after a factor would run into it: 2 \cdot 3, but 2 \, x.
                _ if matches!(**b, Sym::Num(_)) => (Level::Product, Level::Power, " \\cdot "),
                _ => (Level::Product, Level::Power, " \\, "),
            };
            write_latex(out, a, left);
            out.push_str(symbol);
            write_latex(out, b, right);
        }
        Sym::Call(name, args) => match (name.as_str(), args.as_slice()) {
            ("sqrt", [a]) => {
                let _ = write!(out, "\\sqrt{{{}}}", latex(a));
            }
            ("abs", [a]) => {
                let _ = write!(out, "\\left| {} \\right|", latex(a));
            }
            ("inv", [a]) => {
                write_latex(out, a, Level::Postfix);
                out.push_str("^{-1}");
            }
            ("transpose", [a]) => {
                write_latex(out, a, Level::Postfix);
                out.push_str("^\\top");
            }
            _ => {
                let _ = write!(out, "{}\\left( {} \\right)", latex_function(name), latex_list(args));
            }
        },
        Sym::Index(base, indices) => {
            write_latex(out, base, Level::Postfix);
            let _ = write!(out, "_{{{}}}", latex_list(indices));
        }
        Sym::Transpose(a) => {
            write_latex(out, a, Level::Postfix);
            out.push_str("^\\top");
        }
        Sym::List(items) => {
            // A list of lists is a matrix, written by rows; a flat list a column vector.
            let rows: Vec<String> = items
                .iter()
                .map(|item| match item {
                    Sym::List(row) => row.iter().map(latex).collect::<Vec<_>>().join(" & "),
                    other => latex(other),
                })
                .collect();
            let _ = write!(out, "\\begin{{pmatrix}} {} \\end{{pmatrix}}", rows.join(" \\\\ "));
        }
        Sym::Expect(e) => {
            let over: Vec<String> = e.bindings.iter().map(latex_binding).collect();
            let integrand = match &e.weight {
                Some(weight) => Sym::Bin(BinaryOp::Mul, Box::new(weight.clone()), Box::new(e.body.clone())),
                None => e.body.clone(),
            };
            let _ = write!(out, "\\mathbb{{E}}_{{{}}}\\left[ {} \\right]", over.join(", "), latex(&integrand));
        }
        Sym::Min(m) => {
            let operator = if m.returns_argument { "\\operatorname*{arg\\,min}" } else { "\\min" };
            let _ = write!(
                out,
                "{operator}_{{{}}} \\left\\{{ {} \\right\\}}",
                latex_domain(&m.var, &m.dimension),
                latex(&m.body)
            );
        }
        Sym::AtMinimum(a) => {
            let _ = write!(
                out,
                "\\left[ {} \\right]_{{{} = \\operatorname*{{arg\\,min}}_{{{}}} {}}}",
                latex(&a.value),
                latex_name(&a.var),
                latex_domain(&a.var, &a.dimension),
                latex(&a.objective)
            );
        }
        Sym::Derivative(v, of) => {
            let _ = write!(out, "\\frac{{\\partial}}{{\\partial {}}}\\left[ {} \\right]", latex_name(v), latex(of));
        }
    }
}

fn latex_domain(var: &str, dimension: &Option<Sym>) -> String {
    match dimension {
        None => latex_name(var),
        Some(d) => format!("{} \\in \\mathbb{{R}}^{{{}}}", latex_name(var), latex(d)),
    }
}

/// `1`, the identity `I` of a standardised vector, or `I(n)`.
fn is_identity(covariance: &Sym) -> bool {
    match covariance {
        Sym::Var(name) | Sym::Call(name, _) => name == "I",
        other => other.is_number(1.0),
    }
}

/// `u` for a standard Gaussian; otherwise `x \sim \mathcal{N}(m, v)` and so on.
fn latex_binding(binding: &SymBinding) -> String {
    let name = latex_name(&binding.var);
    match &binding.distribution {
        SymDistribution::Normal { mean, covariance } if mean.is_zero() && is_identity(covariance) => name,
        SymDistribution::Normal { mean, covariance } => {
            format!("{name} \\sim \\mathcal{{N}}({}, {})", latex(mean), latex(covariance))
        }
        SymDistribution::Rademacher(_) => format!("{name} \\sim \\pm 1"),
        SymDistribution::GaussBernoulli(density) => format!("{name} \\sim \\mathrm{{GB}}({})", latex(density)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::parse_model;

    fn file(source: &str) -> ModelFile {
        parse_model(source).unwrap_or_else(|e| panic!("{source}\n{e:?}"))
    }

    fn equations(source: &str) -> Vec<Equation> {
        derive_equations(&file(source)).unwrap_or_else(|e| panic!("{source}\n{e}"))
    }

    // ------------------------------------------------------------ a numeric evaluator

    /// Standard normal samples shared by every evaluation, so that an expectation is a fixed
    /// sample average: its finite differences then match the pathwise derivative exactly.
    fn normal_samples(stream: usize) -> Vec<f64> {
        let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ (stream as u64).wrapping_mul(0x2545_F491_4F6C_DD1D);
        let mut uniform = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        (0..64)
            .map(|_| {
                let (a, b) = (uniform(), uniform());
                (-2.0 * a.ln()).sqrt() * (2.0 * std::f64::consts::PI * b).cos()
            })
            .collect()
    }

    /// erf by its Taylor series: accurate to about 1e-13 for |x| < 3, enough for the tests.
    fn erf(x: f64) -> f64 {
        let (mut term, mut sum) = (x, x);
        for n in 1..200 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    fn gaussian_tail(x: f64) -> f64 {
        0.5 * (1.0 - erf(x / std::f64::consts::SQRT_2))
    }

    fn gaussian_pdf(x: f64) -> f64 {
        (-x * x / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt()
    }

    fn sigmoid(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    /// Scalar values only; NaN for anything else.
    fn eval(s: &Sym, env: &mut HashMap<String, f64>) -> f64 {
        match s {
            Sym::Num(x) => *x,
            Sym::Pi => std::f64::consts::PI,
            Sym::Var(name) => env.get(name).copied().unwrap_or(f64::NAN),
            Sym::Neg(a) => -eval(a, env),
            Sym::Bin(op, a, b) => {
                let (x, y) = (eval(a, env), eval(b, env));
                match op {
                    BinaryOp::Add => x + y,
                    BinaryOp::Sub => x - y,
                    BinaryOp::Mul => x * y,
                    BinaryOp::Div => x / y,
                    BinaryOp::Pow => x.powf(y),
                }
            }
            Sym::Call(name, args) => {
                let values: Vec<f64> = args.iter().map(|a| eval(a, env)).collect();
                match (name.as_str(), values.as_slice()) {
                    ("exp", [x]) => x.exp(),
                    ("log", [x]) => x.ln(),
                    ("log1p", [x]) => x.ln_1p(),
                    ("sqrt", [x]) => x.sqrt(),
                    ("abs", [x]) => x.abs(),
                    ("sign", [x]) => x.signum(),
                    ("step", [x]) => f64::from(u8::from(*x > 0.0)),
                    ("erf", [x]) => erf(*x),
                    ("erfc", [x]) => 1.0 - erf(*x),
                    ("H", [x]) => gaussian_tail(*x),
                    ("logH", [x]) => gaussian_tail(*x).ln(),
                    ("phi", [x]) => gaussian_pdf(*x),
                    ("Phi", [x]) => 1.0 - gaussian_tail(*x),
                    ("sigmoid", [x]) => sigmoid(*x),
                    ("logsigmoid", [x]) => sigmoid(*x).ln(),
                    ("softplus", [x]) => x.exp().ln_1p(),
                    ("tanh", [x]) => x.tanh(),
                    ("logcosh", [x]) => x.cosh().ln(),
                    ("sin", [x]) => x.sin(),
                    ("cos", [x]) => x.cos(),
                    ("pow", [x, y]) => x.powf(*y),
                    ("max", [x, y]) => x.max(*y),
                    ("min", [x, y]) => x.min(*y),
                    _ => f64::NAN,
                }
            }
            Sym::Expect(e) => {
                let streams: Vec<Vec<f64>> = (0..e.bindings.len()).map(normal_samples).collect();
                let draws: Vec<Vec<f64>> = (0..64).map(|i| streams.iter().map(|s| s[i]).collect()).collect();
                let mut total = 0.0;
                for draw in &draws {
                    let mut inner = env.clone();
                    for (binding, z) in e.bindings.iter().zip(draw) {
                        let value = match &binding.distribution {
                            SymDistribution::Normal { mean, covariance } => {
                                eval(mean, env) + eval(covariance, env).sqrt() * z
                            }
                            SymDistribution::Rademacher(None) => z.signum(),
                            _ => f64::NAN,
                        };
                        inner.insert(binding.var.clone(), value);
                    }
                    let weight = e.weight.as_ref().map_or(1.0, |w| eval(w, &mut inner));
                    total += weight * eval(&e.body, &mut inner);
                }
                total / 64.0
            }
            Sym::Min(m) => {
                let h = minimiser(&m.var, &m.body, env);
                if m.returns_argument {
                    h
                } else {
                    let mut inner = env.clone();
                    inner.insert(m.var.clone(), h);
                    eval(&m.body, &mut inner)
                }
            }
            Sym::AtMinimum(a) => {
                let h = minimiser(&a.var, &a.objective, env);
                let mut inner = env.clone();
                inner.insert(a.var.clone(), h);
                eval(&a.value, &mut inner)
            }
            _ => f64::NAN,
        }
    }

    /// Newton's method on a smooth convex scalar objective, to machine precision.
    fn minimiser(var: &str, objective: &Sym, env: &HashMap<String, f64>) -> f64 {
        let mut differ = Differ { names: NameSupply::default(), non_scalar: BTreeSet::new(), direction: None };
        let gradient = differ.diff(objective, var);
        let curvature = differ.diff(&gradient, var);
        let mut inner = env.clone();
        let mut h = 0.0;
        for _ in 0..100 {
            inner.insert(var.to_string(), h);
            h -= eval(&gradient, &mut inner) / eval(&curvature, &mut inner);
        }
        h
    }

    /// Compare every symbolic derivative with central differences of the summed terms.
    fn check_numerically(source: &str, ranges: &[(&str, f64, f64)]) {
        let model = file(source);
        let derived = derive_symbolic(&model).unwrap_or_else(|e| panic!("{e}"));
        let mut inliner = Inliner::new(&model);
        let phi = model
            .items
            .iter()
            .filter_map(|item| match item {
                Item::Term(t) => Some(inliner.convert(&t.value, &Scope::new(), 0).unwrap()),
                _ => None,
            })
            .reduce(|a, b| Sym::Bin(BinaryOp::Add, Box::new(a), Box::new(b)))
            .unwrap();
        let mut seed = 12345u64;
        let mut uniform = move || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
        for _ in 0..20 {
            let mut point: HashMap<String, f64> =
                ranges.iter().map(|(n, lo, hi)| (n.to_string(), lo + (hi - lo) * uniform())).collect();
            for (name, value) in &inliner.constants {
                let value = eval(value, &mut point);
                point.insert(name.clone(), value);
            }
            for equation in &derived {
                let x = point[&equation.variable];
                let step = 1e-6 * x.abs().max(1.0);
                let at = |value: f64| {
                    let mut env = point.clone();
                    env.insert(equation.variable.clone(), value);
                    eval(&phi, &mut env)
                };
                let finite = (at(x + step) - at(x - step)) / (2.0 * step);
                let symbolic = eval(&equation.derivative, &mut point.clone());
                assert!(
                    (symbolic - finite).abs() <= 1e-5 * (1.0 + finite.abs()),
                    "d/d{} at {point:?}: symbolic {symbolic} ({}) vs finite differences {finite}",
                    equation.variable,
                    text(&equation.derivative)
                );
            }
        }
    }

    #[test]
    fn polynomial_exp_log_derivatives_match_finite_differences() {
        check_numerically(
            "order m\norder q\nterm t = m^3 - 2*m*q + q^2/m + exp(m*q) + log(1 + m^2) + sqrt(q) - 1/(m*q)^2 + m^q",
            &[("m", 0.2, 1.5), ("q", 0.5, 2.0)],
        );
    }

    #[test]
    fn builtin_derivatives_match_finite_differences() {
        let builtins = "sigmoid(m)*softplus(q) - logH(m - q) + H(q)*Phi(m) + erf(m/2) + erfc(q) + tanh(m*q) \
                        + log1p(q) + abs(m - 3) + sin(m)*cos(q) + pow(q, m) + max(m, 2*q) + min(m, 2*q) \
                        + phi(m*q) + logsigmoid(q - m) + step(m) * sign(q) + logcosh(m*q)";
        check_numerically(&format!("order m\norder q\nterm t = {builtins}"), &[("m", -1.5, 1.5), ("q", 0.3, 1.2)]);
    }

    #[test]
    fn lets_functions_expectations_and_minima_match_finite_differences() {
        let source = "order m\norder q\nconjugate qh of q
let c = m*q
fn f(x, y) = x^2 * y + c
fn g(x) = E[z ~ N(0, 1)] { x * z^2 + z }
term a = f(m + q, qh) + qh*q
term b = E[z ~ N(m, q), s ~ rademacher] { g(z + m) * s + exp(z*m/4) }
term c = E[u ~ N(0, 1); weight = exp(m*u)] { u^2 * q }
term d = E[u ~ N(0, 1)] { min h in R { (h - m*u)^2/(2*q) + h^2/2 + h^4/4 } }
term e = q * argmin h in R { (h - m)^2 + h^4 + qh*h^2 }";
        check_numerically(source, &[("m", 0.2, 1.0), ("q", 0.5, 1.5), ("qh", 0.1, 1.0)]);
    }

    const RIDGE: &str = r#"model "Ridge regression"
param alpha = 2 in positive "samples per dimension"
param lambda = 0.1
order m "overlap"
order q in positive
order V in positive
conjugate mh of m
conjugate qh of q
conjugate Vh of V
let rho = 1
fn envelope(w, y, V) = min h in R from (w, y) { (y - h)^2/2 + (h - w)^2/(2*V) }
term prior = -(rho*mh^2 + qh)/(2*(lambda + Vh)) + m*mh
term channel = alpha * E[u ~ N(0, 1), z ~ N(0, 1); hermite(32)] { envelope(m*u + sqrt(q - m^2)*z, u, V) }
term entropy = (q*Vh - V*qh)/2
"#;

    #[test]
    fn ridge_equations_read_sensibly() {
        let eqs = equations(RIDGE);
        let names: Vec<&str> = eqs.iter().map(|e| e.variable.as_str()).collect();
        assert_eq!(names, ["m", "q", "V", "mh", "qh", "Vh"]);
        let by_name = |n: &str| eqs.iter().find(|e| e.variable == n).unwrap();
        assert_eq!(by_name("mh").rhs_text, "m - rho * mh / (lambda + Vh)");
        assert_eq!(by_name("mh").lhs, "dPhi/dmh");
        let m = &by_name("m").rhs_text;
        assert_eq!(
            m,
            "mh + alpha * E[u ~ N(0, 1), z ~ N(0, 1)] { [(h - (m * u + sqrt(q - m^2) * z)) * (m * z / sqrt(q - m^2) - u) / V]\
             _{h = argmin { (u - h)^2 / 2 + (h - (m * u + sqrt(q - m^2) * z))^2 / (2 * V) }} }"
        );
        assert_eq!(by_name("qh").rhs_text, "-1 / (2 * (lambda + Vh)) - V / 2");
        let text = render_text(&eqs);
        assert!(text.contains("dPhi/dmh = 0:  m - rho * mh / (lambda + Vh) = 0\n"), "{text}");
        let latex = render_latex(&eqs);
        println!("{text}\n{latex}");
        assert!(latex.contains("\\frac{\\partial \\Phi}{\\partial \\hat{m}} &= m - \\frac{\\rho \\, \\hat{m}}{\\lambda + \\hat{V}} = 0"), "{latex}");
        assert!(latex.contains("\\mathbb{E}_{u, z}\\left["), "{latex}");
        assert!(latex.contains("\\operatorname*{arg\\,min}_{h}"), "{latex}");
    }

    #[test]
    fn ridge_equations_match_finite_differences() {
        check_numerically(
            RIDGE,
            &[
                ("m", 0.1, 0.5),
                ("q", 0.6, 1.0),
                ("V", 0.5, 2.0),
                ("mh", 0.1, 1.0),
                ("qh", 0.1, 1.0),
                ("Vh", 0.1, 1.0),
                ("alpha", 2.0, 2.0),
                ("lambda", 0.1, 0.1),
            ],
        );
    }

    #[test]
    fn simplification_rules() {
        let x = || Sym::Var("x".into());
        assert_eq!(mul(num(0.0), x()), num(0.0));
        assert_eq!(mul(num(1.0), x()), x());
        assert_eq!(add(x(), num(0.0)), x());
        assert_eq!(pow(x(), num(1.0)), x());
        assert_eq!(neg(neg(x())), x());
        assert_eq!(text(&mul(num(2.0), mul(num(3.0), x()))), "6 * x");
        assert_eq!(text(&div(mul(num(2.0), x()), num(4.0))), "x / 2");
        assert_eq!(text(&add(x(), mul(num(-2.0), x()))), "x - 2 * x");
        assert_eq!(text(&div(num(1.0), num(3.0))), "1 / 3");
    }

    #[test]
    fn matrix_unknowns_get_directional_derivatives() {
        let eqs = equations("order Q : sym[2]\nconjugate Qh of Q\norder m\nterm t = logdet(Q) + tr(Qh * Q) + m * sum(chol([[1, m], [m, 2]]))");
        assert_eq!(eqs[0].lhs, "dPhi/dQ[dQ]");
        assert_eq!(eqs[0].rhs_text, "tr(inv(Q) * dQ) + tr(Qh * dQ)");
        assert_eq!(eqs[1].rhs_text, "tr(dQh * Q)");
        assert_eq!(eqs[2].rhs_text, "sum(chol([[1, m], [m, 2]])) + m * sum(d/dm[chol([[1, m], [m, 2]])])");
        assert!(render_latex(&eqs).contains("\\mathrm{D}_{Q} \\Phi\\left[ \\mathrm{d}Q \\right]"));
    }

    #[test]
    fn pathwise_gaussians_are_standardised() {
        let eqs = equations("order m\norder q\nterm t = E[x ~ N(m, q)] { x^3 }");
        assert_eq!(eqs[0].rhs_text, "E[x ~ N(0, 1)] { 3 * (m + sqrt(q) * x)^2 }");
        assert_eq!(eqs[1].rhs_text, "E[x ~ N(0, 1)] { 3 * (m + sqrt(q) * x)^2 * x / (2 * sqrt(q)) }");
    }

    #[test]
    fn inlining_does_not_capture_names() {
        // `g`'s binder `z` must not capture the caller's `z`.
        let eqs = equations("order m\nfn g(x) = E[z ~ N(0, 1)] { x * z }\nterm t = E[z ~ N(0, 1)] { g(m * z) }");
        assert_eq!(eqs[0].rhs_text, "E[z ~ N(0, 1)] { E[z_1 ~ N(0, 1)] { z * z_1 } }");
    }

    #[test]
    fn bad_models_are_errors_not_panics() {
        let errors = [
            ("order m\nlet a = b\nlet b = a * m\nterm t = a", "itself"),
            ("order m\nfn f(x) = f(x)\nterm t = f(m)", "calls itself"),
            ("order m\nfn f(x) = x\nterm t = f(m, m)", "takes 1 arguments"),
            ("order m\nlet a = m", "no `term`"),
            ("term t = 1", "no `order`"),
        ];
        for (source, expected) in errors {
            let error = derive_equations(&file(source)).unwrap_err();
            assert!(error.contains(expected), "{source}: {error}");
        }
        // Each call doubles the inlined size: reported, not built.
        let nested = format!("order m\nfn f(x) = x * x\nterm t = {}m{}", "f(".repeat(40), ")".repeat(40));
        assert!(derive_equations(&file(&nested)).unwrap_err().contains("nodes"));
    }

    #[test]
    fn latex_names() {
        assert_eq!(latex_name("alpha"), "\\alpha");
        assert_eq!(latex_name("qh"), "\\hat{q}");
        assert_eq!(latex_name("chi_hat"), "\\hat{\\chi}");
        assert_eq!(latex_name("q_0"), "q_{0}");
        assert_eq!(latex_name("q12"), "q_{12}");
        assert_eq!(latex_name("eps"), "\\mathrm{eps}");
        assert_eq!(latex_number(1e-7), "10^{-7}");
        assert_eq!(latex_number(2.5e-300), "2.5 \\times 10^{-300}");
    }
}
