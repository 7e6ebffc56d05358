//! The pretty printer: a syntax tree back to `.lra` source text.
//!
//! The output re-parses to the same tree (spans aside): parentheses are inserted exactly where
//! the grammar's precedence needs them, and numbers are printed in Rust's shortest round-trip
//! form, switching to exponent notation (`1e-7`, which `recognize_float` accepts) for very
//! small or large magnitudes so they stay short. A few trees have no source form and are
//! printed as the nearest text: a negative `Number` literal prints as `-x` (it re-parses as a
//! negation), NaN as `(0 / 0)` inside expressions (`NaN` where only a literal is allowed), and
//! a string holding `"` or a line break is printed as is.

use std::fmt::Write as _;

use super::ast::*;

/// The whole file, one item per line.
pub fn pretty(file: &ModelFile) -> String {
    let mut out = String::new();
    for item in &file.items {
        write_item(&mut out, item);
        out.push('\n');
    }
    out
}

/// One expression with the fewest parentheses that keep its tree.
pub fn pretty_expr(expr: &Expr) -> String {
    let mut out = String::new();
    write_expr(&mut out, expr, Level::Sum);
    out
}

/// Binding strength, weakest first; mirrors the grammar rules `expr`, `product`, `unary`,
/// `power`, `postfix` and `primary`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Sum,
    Product,
    Unary,
    Power,
    Postfix,
    Primary,
}

fn level(expr: &Expr) -> Level {
    match &expr.kind {
        ExprKind::Number(value) if value.is_sign_negative() && !value.is_nan() => Level::Unary,
        ExprKind::Binary(BinaryOp::Add | BinaryOp::Sub, ..) => Level::Sum,
        ExprKind::Binary(BinaryOp::Mul | BinaryOp::Div, ..) => Level::Product,
        ExprKind::Binary(BinaryOp::Pow, ..) => Level::Power,
        ExprKind::Neg(_) => Level::Unary,
        ExprKind::Index(..) | ExprKind::Transpose(_) => Level::Postfix,
        ExprKind::Number(_)
        | ExprKind::Var(_)
        | ExprKind::Qualified(..)
        | ExprKind::Call(..)
        | ExprKind::List(_)
        | ExprKind::Expect(_)
        | ExprKind::Minimize(_)
        | ExprKind::Hessian(_) => Level::Primary,
    }
}

/// Print `expr`, parenthesised if it binds more loosely than its position requires.
fn write_expr(out: &mut String, expr: &Expr, required: Level) {
    if level(expr) < required {
        out.push('(');
        write_bare(out, expr);
        out.push(')');
    } else {
        write_bare(out, expr);
    }
}

fn write_bare(out: &mut String, expr: &Expr) {
    match &expr.kind {
        ExprKind::Number(value) => write_number_in_expr(out, *value),
        ExprKind::Var(name) => {
            // `min` / `argmin` followed by a word on the next line would start a minimisation.
            if is_min_word(&name.name) {
                let _ = write!(out, "({})", name.name);
            } else {
                out.push_str(&name.name);
            }
        }
        ExprKind::Qualified(alias, field) => {
            let _ = write!(out, "{}.{}", alias.name, field.name);
        }
        ExprKind::Neg(operand) => {
            out.push('-');
            write_expr(out, operand, Level::Unary);
        }
        ExprKind::Binary(op, left, right) => {
            let (left_level, right_level) = match op {
                BinaryOp::Add | BinaryOp::Sub => (Level::Sum, Level::Product),
                BinaryOp::Mul | BinaryOp::Div => (Level::Product, Level::Unary),
                // Right-associative, and the exponent may carry a unary minus: `a^-b^c`.
                BinaryOp::Pow => (Level::Postfix, Level::Unary),
            };
            write_expr(out, left, left_level);
            if *op == BinaryOp::Pow {
                out.push('^');
            } else {
                let _ = write!(out, " {} ", op.symbol());
            }
            write_expr(out, right, right_level);
        }
        ExprKind::Call(name, arguments) => {
            out.push_str(&name.name);
            out.push('(');
            write_list(out, arguments);
            out.push(')');
        }
        ExprKind::Index(base, indices) => {
            write_expr(out, base, Level::Postfix);
            out.push('[');
            write_list(out, indices);
            out.push(']');
        }
        ExprKind::Transpose(base) => {
            write_expr(out, base, Level::Postfix);
            out.push('\'');
        }
        ExprKind::List(elements) => {
            out.push('[');
            write_list(out, elements);
            out.push(']');
        }
        ExprKind::Expect(expectation) => write_expectation(out, expectation),
        ExprKind::Minimize(minimization) => write_minimization(out, minimization),
        ExprKind::Hessian(hessian) => write_hessian(out, hessian),
    }
}

fn is_min_word(name: &str) -> bool {
    name == "min" || name == "argmin"
}

fn write_list(out: &mut String, elements: &[Expr]) {
    for (i, element) in elements.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_expr(out, element, Level::Sum);
    }
}

fn write_expectation(out: &mut String, expectation: &Expectation) {
    out.push_str("E[");
    for (i, binding) in expectation.bindings.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{} ~ ", binding.var.name);
        write_distribution(out, &binding.distribution);
    }
    let mut options = Vec::new();
    match expectation.rule {
        Some(RuleSpec::Hermite(nodes)) => options.push(format!("hermite({nodes})")),
        Some(RuleSpec::Sobol { points, scrambles }) => options.push(format!("sobol({points}, {scrambles})")),
        None => {}
    }
    if let Some(weight) = &expectation.weight {
        options.push(format!("weight = {}", pretty_expr(weight)));
    }
    if !options.is_empty() {
        out.push_str("; ");
        out.push_str(&options.join(", "));
    }
    out.push_str("] { ");
    write_expr(out, &expectation.body, Level::Sum);
    out.push_str(" }");
}

fn write_distribution(out: &mut String, distribution: &Distribution) {
    match distribution {
        Distribution::Normal { mean, covariance } => {
            out.push_str("N(");
            write_expr(out, mean, Level::Sum);
            out.push_str(", ");
            write_expr(out, covariance, Level::Sum);
            out.push(')');
        }
        Distribution::Rademacher(None) => out.push_str("rademacher"),
        Distribution::Rademacher(Some(size)) => {
            out.push_str("rademacher[");
            write_expr(out, size, Level::Sum);
            out.push(']');
        }
        Distribution::GaussBernoulli(density) => {
            out.push_str("gauss_bernoulli(");
            write_expr(out, density, Level::Sum);
            out.push(')');
        }
    }
}

fn write_minimization(out: &mut String, minimization: &Minimization) {
    let word = if minimization.returns_argument { "argmin" } else { "min" };
    let _ = write!(out, "{word} {} in R", minimization.var.name);
    if let Some(dimension) = &minimization.dimension {
        out.push('[');
        write_expr(out, dimension, Level::Sum);
        out.push(']');
    }
    // The grammar has no empty `from ()`: no starts means no clause.
    if !minimization.starts.is_empty() {
        out.push_str(" from (");
        write_list(out, &minimization.starts);
        out.push(')');
    }
    out.push_str(" { ");
    write_expr(out, &minimization.body, Level::Sum);
    out.push_str(" }");
}

fn write_hessian(out: &mut String, hessian: &HessianExpr) {
    let _ = write!(out, "hessian {} in R", hessian.var.name);
    if let Some(dimension) = &hessian.dimension {
        out.push('[');
        write_expr(out, dimension, Level::Sum);
        out.push(']');
    }
    out.push_str(" at ");
    write_expr(out, &hessian.point, Level::Sum);
    out.push_str(" { ");
    write_expr(out, &hessian.body, Level::Sum);
    out.push_str(" }");
}

/// A literal inside an expression, where a negative value can only be written as a negation.
fn write_number_in_expr(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("(0 / 0)");
    } else {
        out.push_str(&signed_literal(value));
    }
}

/// A literal where the grammar allows a leading `-` (param defaults, settings, sweeps).
fn signed_literal(value: f64) -> String {
    if value.is_nan() {
        // No source form; printed so that the parser rejects it visibly.
        return "NaN".to_string();
    }
    let magnitude = unsigned_literal(value.abs());
    if value.is_sign_negative() {
        format!("-{magnitude}")
    } else {
        magnitude
    }
}

/// A non-negative literal that `recognize_float` accepts and that parses back exactly.
fn unsigned_literal(value: f64) -> String {
    if value.is_infinite() {
        // Overflows to infinity when parsed: the only finite text for it.
        "1e999".to_string()
    } else if value == 0.0 || (1e-5..1e16).contains(&value) {
        format!("{value}")
    } else {
        // Shortest round-trip digits with an exponent, e.g. `1e-7`, `2.5e300`.
        format!("{value:e}")
    }
}

fn write_doc(out: &mut String, doc: &Option<String>) {
    if let Some(text) = doc {
        let _ = write!(out, " \"{text}\"");
    }
}

fn write_item(out: &mut String, item: &Item) {
    match item {
        Item::Model(decl) => {
            let _ = write!(out, "model \"{}\"", decl.title);
        }
        Item::Import(decl) => {
            let _ = write!(out, "import \"{}\" as {}", decl.path, decl.alias.name);
        }
        Item::Param(decl) => {
            let _ = write!(out, "param {} = {}", decl.name.name, signed_literal(decl.default));
            write_domain(out, decl.domain);
            write_doc(out, &decl.doc);
        }
        Item::Order(decl) => {
            let _ = write!(out, "order {}", decl.name.name);
            write_shape(out, &decl.shape);
            write_domain(out, decl.domain);
            write_doc(out, &decl.doc);
        }
        Item::Conjugate(decl) => {
            let _ = write!(out, "conjugate {} of {}", decl.name.name, decl.of.name);
            write_domain(out, decl.domain);
            write_doc(out, &decl.doc);
        }
        Item::Let(decl) => {
            let _ = write!(out, "let {} = {}", decl.name.name, pretty_expr(&decl.value));
        }
        Item::Function(decl) => {
            let params: Vec<&str> = decl.params.iter().map(|p| p.name.as_str()).collect();
            let _ = write!(out, "fn {}({}) = {}", decl.name.name, params.join(", "), pretty_expr(&decl.body));
        }
        Item::Term(named) => write_named(out, "term", named),
        Item::Observe(named) => write_named(out, "observe", named),
        Item::Extremize(decl) => {
            let word = match decl.objective {
                Objective::Energy => "energy",
                Objective::FreeEntropy => "free_entropy",
            };
            let _ = write!(out, "extremize {word}");
        }
        Item::Solve(decl) => {
            let settings: Vec<String> = decl
                .settings
                .iter()
                .map(|setting| {
                    let value = match &setting.value {
                        SettingValue::Number(number) => signed_literal(*number),
                        SettingValue::Word(word) => word.clone(),
                    };
                    format!("{} = {value}", setting.key.name)
                })
                .collect();
            write_braced(out, "solve", &settings);
        }
        Item::Start(decl) => {
            let values: Vec<String> =
                decl.values.iter().map(|(name, value)| format!("{} = {}", name.name, pretty_expr(value))).collect();
            write_braced(out, &format!("start {}", decl.name.name), &values);
        }
        Item::Sweep(decl) => {
            let _ = write!(
                out,
                "sweep {} = {} : {} : {}",
                decl.param.name,
                signed_literal(decl.start),
                signed_literal(decl.stop),
                decl.count
            );
        }
        Item::Simulate(decl) => {
            let mut entries: Vec<String> =
                decl.settings.iter().map(|(name, value)| format!("{} = {}", name.name, pretty_expr(value))).collect();
            for report in &decl.reports {
                let mut text = String::new();
                write_named(&mut text, "report", report);
                entries.push(text);
            }
            write_braced(out, "simulate", &entries);
        }
    }
}

fn write_named(out: &mut String, keyword: &str, named: &NamedExpr) {
    let _ = write!(out, "{keyword} {} = {}", named.name.name, pretty_expr(&named.value));
    write_doc(out, &named.doc);
}

/// `head { a, b }`, or `head { }` when empty.
fn write_braced(out: &mut String, head: &str, entries: &[String]) {
    if entries.is_empty() {
        let _ = write!(out, "{head} {{ }}");
    } else {
        let _ = write!(out, "{head} {{ {} }}", entries.join(", "));
    }
}

/// The parser defaults to `real`, so it is left out.
fn write_domain(out: &mut String, domain: Domain) {
    if domain != Domain::Real {
        let _ = write!(out, " in {}", domain.keyword());
    }
}

/// `scalar` is the default shape and is left out.
fn write_shape(out: &mut String, shape: &ShapeExpr) {
    match shape {
        ShapeExpr::Scalar => {}
        ShapeExpr::Vector(size) => {
            let _ = write!(out, " : vector[{}]", pretty_expr(size));
        }
        ShapeExpr::Matrix(rows, cols) => {
            let _ = write!(out, " : matrix[{}, {}]", pretty_expr(rows), pretty_expr(cols));
        }
        ShapeExpr::Symmetric(size) => {
            let _ = write!(out, " : sym[{}]", pretty_expr(size));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::parse_model;

    fn round_trip(source: &str) -> String {
        let file = parse_model(source).unwrap_or_else(|e| panic!("{source}: {e:?}"));
        pretty(&file)
    }

    #[test]
    fn minimal_parentheses() {
        let cases = [
            ("let a = -(a + b)", "let a = -(a + b)\n"),
            ("let a = (a^b)^c", "let a = (a^b)^c\n"),
            ("let a = a^(b^c)", "let a = a^b^c\n"),
            ("let a = (-a)^2", "let a = (-a)^2\n"),
            ("let a = -(a^2)", "let a = -a^2\n"),
            ("let a = a - (b - c)", "let a = a - (b - c)\n"),
            ("let a = (a - b) - c", "let a = a - b - c\n"),
            ("let a = a / (b * c)", "let a = a / (b * c)\n"),
            ("let a = (a / b) * c", "let a = a / b * c\n"),
            ("let a = a * (-b)", "let a = a * -b\n"),
            ("let a = a^(-b)", "let a = a^-b\n"),
            ("let a = (a + b)'[1, 2]", "let a = (a + b)'[1, 2]\n"),
            ("let a = (2 * x)^(1/2)", "let a = (2 * x)^(1 / 2)\n"),
        ];
        for (source, expected) in cases {
            assert_eq!(round_trip(source), expected, "{source}");
        }
    }

    #[test]
    fn numbers_round_trip_exactly() {
        for value in [0.0, 1.0, 0.1, 1e-7, 2.5e-300, 1e16, 123456.789, 5e-324, f64::MAX, f64::INFINITY] {
            let text = unsigned_literal(value);
            let file = parse_model(&format!("let a = {text}")).unwrap();
            let Item::Let(decl) = &file.items[0] else { panic!() };
            assert_eq!(decl.value.kind, ExprKind::Number(value), "{text}");
        }
        assert_eq!(unsigned_literal(1e-7), "1e-7");
    }

    #[test]
    fn the_example_model_is_stable() {
        let source = r#"model "Ridge regression"
param alpha = 2 in positive "samples per dimension"
order m "overlap"
order q in positive
conjugate mh of m
conjugate qh of q in nonnegative
let rho = 1
fn envelope(w, y, V) = min h in R from (w, y) { (y - h)^2/2 + (h - w)^2/(2*V) }
term prior = -(rho*mh^2 + qh)/(2*(lambda + Vh)) + m*mh
term channel = alpha * E[u ~ N(0, 1), z ~ N(0, 1); hermite(32)] { envelope(m*u + sqrt(q - m^2)*z, u, V) }
observe eps = rho - 2*m + q "test error"
extremize energy
solve { method = fixed_point, damping = 0.5, tol = 1e-10 }
start informed { m = 0.9, q = 1 }
sweep alpha = 0.1 : 5 : 30
"#;
        let once = round_trip(source);
        assert_eq!(round_trip(&once), once);
        assert!(once.contains("fn envelope(w, y, V) = min h in R from (w, y) { (y - h)^2 / 2 + (h - w)^2 / (2 * V) }"));
        assert!(once.contains("solve { method = fixed_point, damping = 0.5, tol = 1e-10 }"));
        assert!(once.contains("conjugate qh of q in nonnegative\n"));
    }

    #[test]
    fn a_variable_named_min_is_parenthesised() {
        let once = round_trip("let a = (min)\nlet b = 1");
        assert_eq!(once, "let a = (min)\nlet b = 1\n");
    }
}
