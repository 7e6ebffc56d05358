//! Lowering with shape checking: expressions become tape instructions (`crate::ir`).
//! Params are constants, `let`s are computed once in a prelude, user functions are inlined,
//! transposes and indexing only rearrange slots. Errors are collected, not thrown: a broken
//! subexpression lowers to a placeholder so the rest of the file is still checked.

use std::collections::{BTreeMap, BTreeSet};

use super::declarations::Declarations;
use super::{CheckedModel, Exports, NamedOutput, ParamValue, Role, Shape, TypeError, Unknown};
use crate::ir::*;
use crate::syntax::*;

/// The name under which observables read the free energy at the selected fixed point (the
/// same name under which importers read an imported model's free energy).
pub const FREE_ENERGY: &str = "free_energy";

/// A lowered value: its shape and the slots holding its entries, row-major.
#[derive(Debug, Clone, PartialEq)]
struct Value {
    shape: Shape,
    slots: Vec<Slot>,
}

/// Scalar constant folding is not attempted on the tape; this evaluates compile-time
/// integers (sizes, indices) from numbers and params.
pub(super) fn constant(expr: &Expr, params: &BTreeMap<String, f64>) -> Result<f64, TypeError> {
    let value = match &expr.kind {
        ExprKind::Number(v) => *v,
        ExprKind::Var(name) => *params.get(&name.name).ok_or_else(|| {
            TypeError::new(name.span, format!("`{}` must be a number or a param here", name.name))
        })?,
        ExprKind::Neg(e) => -constant(e, params)?,
        ExprKind::Binary(op, a, b) => {
            crate::eval::tape::apply_binary(binary_fn(*op), constant(a, params)?, constant(b, params)?)
        }
        _ => return Err(TypeError::new(expr.span, "expected a constant (numbers and params only)")),
    };
    Ok(value)
}

/// The tape operation of an arithmetic operator.
fn binary_fn(op: BinaryOp) -> BinaryFn {
    match op {
        BinaryOp::Add => BinaryFn::Add,
        BinaryOp::Sub => BinaryFn::Sub,
        BinaryOp::Mul => BinaryFn::Mul,
        BinaryOp::Div => BinaryFn::Div,
        BinaryOp::Pow => BinaryFn::Pow,
    }
}

fn constant_size(expr: &Expr, params: &BTreeMap<String, f64>) -> Result<usize, TypeError> {
    let value = constant(expr, params)?;
    if value.fract() != 0.0 || !(1.0..=4096.0).contains(&value) {
        return Err(TypeError::new(expr.span, format!("expected a whole number >= 1, found {value}")));
    }
    Ok(value as usize)
}

struct Lowerer<'a> {
    decls: &'a Declarations<'a>,
    params: &'a BTreeMap<String, f64>,
    imports: &'a BTreeMap<String, Exports>,
    /// Order parameters, conjugates, observables already computed.
    globals: BTreeMap<String, Value>,
    /// Slots known to hold constants (for folding).
    constants: BTreeMap<Slot, f64>,
    lets: BTreeMap<String, Value>,
    lets_in_progress: BTreeSet<String>,
    /// Bound variables and function arguments, innermost last.
    scopes: Vec<BTreeMap<String, Value>>,
    prelude: Vec<Instr>,
    blocks: Vec<Vec<Instr>>,
    slot_count: usize,
    expect_count: usize,
    minimize_count: usize,
    minimize_cache_sizes: Vec<(usize, usize)>,
    /// Product of the node counts of the enclosing expectations.
    enclosing_nodes: usize,
    inside_minimization: bool,
    inside_hessian: bool,
    /// Whether `hessian` may appear (observables: values only, never differentiated).
    values_only: bool,
    /// Observables only: the slot that holds the free energy at the fixed point, and whether
    /// an observable read it.
    free_energy: Option<Slot>,
    reads_free_energy: bool,
    call_depth: usize,
    errors: Vec<TypeError>,
}

impl<'a> Lowerer<'a> {
    fn new(
        decls: &'a Declarations<'a>,
        params: &'a BTreeMap<String, f64>,
        imports: &'a BTreeMap<String, Exports>,
        slot_count: usize,
    ) -> Self {
        Lowerer {
            decls,
            params,
            imports,
            globals: BTreeMap::new(),
            constants: BTreeMap::new(),
            lets: BTreeMap::new(),
            lets_in_progress: BTreeSet::new(),
            scopes: Vec::new(),
            prelude: Vec::new(),
            blocks: vec![Vec::new()],
            slot_count,
            expect_count: 0,
            minimize_count: 0,
            minimize_cache_sizes: Vec::new(),
            enclosing_nodes: 1,
            inside_minimization: false,
            inside_hessian: false,
            values_only: false,
            free_energy: None,
            reads_free_energy: false,
            call_depth: 0,
            errors: Vec::new(),
        }
    }

    fn fresh(&mut self) -> Slot {
        self.slot_count += 1;
        self.slot_count - 1
    }

    fn fresh_value(&mut self, shape: Shape) -> Value {
        let slots = (0..shape.len()).map(|_| self.fresh()).collect();
        Value { shape, slots }
    }

    fn emit(&mut self, instr: Instr) {
        self.blocks.last_mut().expect("a block is open").push(instr);
    }

    fn constant_value(&mut self, value: f64) -> Value {
        let dst = self.fresh();
        self.emit(Instr::Const { dst, value });
        self.constants.insert(dst, value);
        Value { shape: Shape::Scalar, slots: vec![dst] }
    }

    /// Emit a plain instruction, folding it to a constant when all its inputs are constants
    /// (with the evaluator's own arithmetic, so folding changes no bit).
    fn emit_folded(&mut self, instr: Instr) -> Slot {
        use crate::eval::tape::{apply_binary, apply_unary};
        let known = |s: &Slot| self.constants.get(s).copied();
        let (dst, folded) = match &instr {
            Instr::Unary { op, dst, src } => (*dst, known(src).map(|x| apply_unary(*op, x))),
            Instr::Binary { op, dst, left, right } => {
                (*dst, known(left).zip(known(right)).map(|(a, b)| apply_binary(*op, a, b)))
            }
            Instr::PowI { dst, src, exponent } => (*dst, known(src).map(|x| x.powi(*exponent))),
            other => (reads_writes(other).1[0], None),
        };
        match folded {
            Some(value) => {
                self.emit(Instr::Const { dst, value });
                self.constants.insert(dst, value);
            }
            None => self.emit(instr),
        }
        dst
    }

    fn error(&mut self, error: TypeError) -> Value {
        self.errors.push(error);
        self.constant_value(f64::NAN)
    }

    fn into_program(self, instrs: Vec<Instr>) -> Program {
        let mut all = self.prelude;
        all.extend(instrs);
        Program {
            instrs: all,
            slot_count: self.slot_count,
            expect_count: self.expect_count,
            minimize_count: self.minimize_count,
            minimize_cache_sizes: self.minimize_cache_sizes,
        }
    }

    // ------------------------------------------------------------ names

    /// A compile-time constant, unless it reads a name bound here (a function argument or an
    /// integration variable shadows a param of the same name).
    fn constant_here(&self, expr: &Expr) -> Result<f64, TypeError> {
        fn reads_scoped(expr: &Expr, scopes: &[BTreeMap<String, Value>]) -> bool {
            match &expr.kind {
                ExprKind::Var(v) => scopes.iter().any(|s| s.contains_key(&v.name)),
                ExprKind::Neg(e) => reads_scoped(e, scopes),
                ExprKind::Binary(_, a, b) => reads_scoped(a, scopes) || reads_scoped(b, scopes),
                _ => false,
            }
        }
        if reads_scoped(expr, &self.scopes) {
            return Err(TypeError::new(expr.span, "not a constant"));
        }
        constant(expr, self.params)
    }

    fn lookup(&mut self, ident: &Ident) -> Value {
        for scope in self.scopes.iter().rev() {
            if let Some(v) = scope.get(&ident.name) {
                return v.clone();
            }
        }
        if let Some(v) = self.globals.get(&ident.name) {
            return v.clone();
        }
        if let Some(&value) = self.params.get(&ident.name) {
            return self.constant_value(value);
        }
        if let Some(v) = self.lets.get(&ident.name) {
            return v.clone();
        }
        if let Some(decl) = self.decls.lets.get(&ident.name) {
            return self.lower_let(decl);
        }
        if ident.name == FREE_ENERGY {
            if let Some(slot) = self.free_energy {
                self.reads_free_energy = true;
                return Value { shape: Shape::Scalar, slots: vec![slot] };
            }
            return self.error(
                TypeError::new(ident.span, "`free_energy` can be read only in observables")
                    .with_help("it is the sum of the terms at the selected fixed point; a term cannot depend on it"),
            );
        }
        if self.decls.functions.contains_key(&ident.name) {
            return self.error(TypeError::new(
                ident.span,
                format!("`{}` is a function; call it with arguments", ident.name),
            ));
        }
        let mut error = TypeError::new(ident.span, format!("unknown name `{}`", ident.name));
        if let Some(close) = self.closest_name(&ident.name) {
            error = error.with_help(format!("did you mean `{close}`?"));
        } else {
            error = error.with_help(
                "names are params, order parameters, conjugates, lets, observables, or variables bound by E[...] or min",
            );
        }
        self.error(error)
    }

    fn closest_name(&self, name: &str) -> Option<String> {
        let candidates = self
            .params
            .keys()
            .chain(self.globals.keys())
            .chain(self.decls.lets.keys())
            .chain(self.scopes.iter().flat_map(|s| s.keys()));
        candidates
            .map(|c| (edit_distance(c, name), c))
            .filter(|(d, c)| *d <= 2 && *d < c.len().max(2))
            .min()
            .map(|(_, c)| c.clone())
    }

    /// Lets are global: computed once, in the prelude, outside any expectation.
    fn lower_let(&mut self, decl: &LetDecl) -> Value {
        let name = decl.name.name.clone();
        if !self.lets_in_progress.insert(name.clone()) {
            return self.error(TypeError::new(decl.name.span, format!("`{name}` is defined in terms of itself")));
        }
        let saved_scopes = std::mem::take(&mut self.scopes);
        let saved_blocks = std::mem::replace(&mut self.blocks, vec![Vec::new()]);
        let saved_nodes = std::mem::replace(&mut self.enclosing_nodes, 1);
        let saved_inside = std::mem::replace(&mut self.inside_minimization, false);
        let saved_inside_hessian = std::mem::replace(&mut self.inside_hessian, false);
        let value = self.lower(&decl.value);
        let instrs = std::mem::replace(&mut self.blocks, saved_blocks).pop().unwrap_or_default();
        self.prelude.extend(instrs);
        self.scopes = saved_scopes;
        self.enclosing_nodes = saved_nodes;
        self.inside_minimization = saved_inside;
        self.inside_hessian = saved_inside_hessian;
        self.lets_in_progress.remove(&name);
        self.lets.insert(name, value.clone());
        value
    }

    // ------------------------------------------------------------ expressions

    fn lower(&mut self, expr: &Expr) -> Value {
        match &expr.kind {
            ExprKind::Number(v) => self.constant_value(*v),
            ExprKind::Var(ident) => self.lookup(ident),
            ExprKind::Qualified(alias, field) => self.lower_qualified(alias, field),
            ExprKind::Neg(e) => {
                let v = self.lower(e);
                self.map_unary(UnaryFn::Neg, &v)
            }
            ExprKind::Binary(op, a, b) => self.lower_binary(*op, a, b, expr.span),
            ExprKind::Call(name, args) => self.lower_call(name, args, expr.span),
            ExprKind::Index(e, indices) => self.lower_index(e, indices, expr.span),
            ExprKind::Transpose(e) => {
                let v = self.lower(e);
                transpose(&v)
            }
            ExprKind::List(items) => self.lower_list(items, expr.span),
            ExprKind::Expect(expectation) => self.lower_expectation(expectation, expr.span),
            ExprKind::Minimize(minimization) => self.lower_minimization(minimization, expr.span),
            ExprKind::Hessian(hessian) => self.lower_hessian(hessian, expr.span),
        }
    }

    fn lower_qualified(&mut self, alias: &Ident, field: &Ident) -> Value {
        let Some(exports) = self.imports.get(&alias.name) else {
            return self.error(
                TypeError::new(alias.span, format!("unknown import `{}`", alias.name))
                    .with_help("declare it with `import \"file.lra\" as name`"),
            );
        };
        let Some(exported) = exports.get(&field.name) else {
            let names: Vec<_> = exports.keys().cloned().collect();
            return self.error(
                TypeError::new(field.span, format!("`{}` has no solved quantity `{}`", alias.name, field.name))
                    .with_help(format!("available: {}", names.join(", "))),
            );
        };
        let exported = exported.clone();
        let slots: Vec<Slot> = exported
            .values
            .iter()
            .map(|&value| {
                let dst = self.fresh();
                self.emit(Instr::Const { dst, value });
                dst
            })
            .collect();
        Value { shape: exported.shape, slots }
    }

    fn map_unary(&mut self, op: UnaryFn, v: &Value) -> Value {
        let out = self.fresh_value(v.shape);
        for (&dst, &src) in out.slots.iter().zip(&v.slots) {
            self.emit_folded(Instr::Unary { op, dst, src });
        }
        out
    }

    fn scalar_binary(&mut self, op: BinaryFn, left: Slot, right: Slot) -> Slot {
        let dst = self.fresh();
        self.emit_folded(Instr::Binary { op, dst, left, right })
    }

    /// Elementwise with scalar broadcasting.
    fn elementwise(&mut self, op: BinaryFn, a: &Value, b: &Value, span: Span, what: &str) -> Value {
        let shape = if a.shape == b.shape {
            a.shape
        } else if a.shape == Shape::Scalar {
            b.shape
        } else if b.shape == Shape::Scalar {
            a.shape
        } else {
            return self.error(TypeError::new(
                span,
                format!("shape mismatch: cannot {what} a {} and a {}", a.shape, b.shape),
            ));
        };
        let slots = (0..shape.len())
            .map(|i| {
                let left = if a.shape == Shape::Scalar { a.slots[0] } else { a.slots[i] };
                let right = if b.shape == Shape::Scalar { b.slots[0] } else { b.slots[i] };
                self.scalar_binary(op, left, right)
            })
            .collect();
        Value { shape, slots }
    }

    fn matmul(&mut self, a: &Value, b: &Value, span: Span) -> Value {
        let (ar, ac) = a.shape.dims();
        let (br, bc) = b.shape.dims();
        if ac != br {
            return self.error(
                TypeError::new(span, format!("shape mismatch: cannot multiply a {} by a {}", a.shape, b.shape))
                    .with_help("`*` is the matrix product; use dot(a, b) or outer(a, b) for vectors"),
            );
        }
        let mut slots = Vec::with_capacity(ar * bc);
        for i in 0..ar {
            for j in 0..bc {
                let mut acc: Option<Slot> = None;
                for k in 0..ac {
                    let product = self.scalar_binary(BinaryFn::Mul, a.slots[i * ac + k], b.slots[k * bc + j]);
                    acc = Some(match acc {
                        None => product,
                        Some(sum) => self.scalar_binary(BinaryFn::Add, sum, product),
                    });
                }
                slots.push(acc.expect("inner dimension >= 1"));
            }
        }
        Value { shape: Shape::from_dims(ar, bc), slots }
    }

    fn lower_binary(&mut self, op: BinaryOp, a: &Expr, b: &Expr, span: Span) -> Value {
        // Integer powers are exact products: cheaper and defined for negative bases.
        if op == BinaryOp::Pow {
            if let Ok(exponent) = self.constant_here(b) {
                let base = self.lower(a);
                if base.shape != Shape::Scalar {
                    return self.error(TypeError::new(span, format!("`^` needs a scalar base, found a {}", base.shape)));
                }
                if exponent.fract() == 0.0 && exponent.abs() <= 64.0 {
                    let dst = self.fresh();
                    self.emit_folded(Instr::PowI { dst, src: base.slots[0], exponent: exponent as i32 });
                    return Value { shape: Shape::Scalar, slots: vec![dst] };
                }
                if exponent == 0.5 {
                    return self.map_unary(UnaryFn::Sqrt, &base);
                }
            }
        }
        let left = self.lower(a);
        let right = self.lower(b);
        match op {
            BinaryOp::Add => self.elementwise(BinaryFn::Add, &left, &right, span, "add"),
            BinaryOp::Sub => self.elementwise(BinaryFn::Sub, &left, &right, span, "subtract"),
            BinaryOp::Mul => {
                if left.shape == Shape::Scalar || right.shape == Shape::Scalar {
                    self.elementwise(BinaryFn::Mul, &left, &right, span, "multiply")
                } else {
                    self.matmul(&left, &right, span)
                }
            }
            BinaryOp::Div => {
                if right.shape != Shape::Scalar {
                    return self.error(
                        TypeError::new(span, format!("shape mismatch: cannot divide by a {}", right.shape))
                            .with_help("use inv(M) for matrices"),
                    );
                }
                self.elementwise(BinaryFn::Div, &left, &right, span, "divide")
            }
            BinaryOp::Pow => {
                if left.shape != Shape::Scalar || right.shape != Shape::Scalar {
                    return self.error(TypeError::new(span, "`^` needs scalars"));
                }
                self.elementwise(BinaryFn::Pow, &left, &right, span, "raise")
            }
        }
    }

    fn lower_index(&mut self, e: &Expr, indices: &[Expr], span: Span) -> Value {
        let v = self.lower(e);
        let mut positions = Vec::new();
        for index in indices {
            match constant_size(index, self.params) {
                Ok(i) => positions.push(i),
                Err(err) => return self.error(err.with_help("indices are constant and start at 1")),
            }
        }
        let (rows, cols) = v.shape.dims();
        let flat = match (v.shape, positions.as_slice()) {
            (Shape::Vector(n), [i]) if *i <= n => i - 1,
            (Shape::Matrix(..), [i, j]) if *i <= rows && *j <= cols => (i - 1) * cols + (j - 1),
            (Shape::Matrix(..), [i]) if *i <= rows => {
                // A row of a matrix, as a vector.
                let slots = v.slots[(i - 1) * cols..i * cols].to_vec();
                return Value { shape: Shape::Vector(cols), slots };
            }
            _ => {
                return self.error(TypeError::new(
                    span,
                    format!("index {:?} out of range for a {} (indices start at 1)", positions, v.shape),
                ))
            }
        };
        Value { shape: Shape::Scalar, slots: vec![v.slots[flat]] }
    }

    fn lower_list(&mut self, items: &[Expr], span: Span) -> Value {
        if items.is_empty() {
            return self.error(TypeError::new(span, "empty list"));
        }
        let values: Vec<Value> = items.iter().map(|e| self.lower(e)).collect();
        if values.iter().all(|v| v.shape == Shape::Scalar) {
            let slots = values.iter().map(|v| v.slots[0]).collect();
            return Value { shape: Shape::Vector(values.len()), slots };
        }
        // A list of equally long vectors is a matrix, row by row.
        if let Shape::Vector(n) = values[0].shape {
            if values.iter().all(|v| v.shape == Shape::Vector(n)) {
                let slots = values.iter().flat_map(|v| v.slots.clone()).collect();
                return Value { shape: Shape::Matrix(values.len(), n), slots };
            }
        }
        self.error(TypeError::new(span, "a list holds scalars (a vector) or equally long vectors (matrix rows)"))
    }

    fn expect_arity(&mut self, name: &Ident, args: &[Expr], arity: usize) -> bool {
        if args.len() != arity {
            self.errors.push(TypeError::new(
                name.span,
                format!("`{}` takes {arity} argument{}, found {}", name.name, if arity == 1 { "" } else { "s" }, args.len()),
            ));
            return false;
        }
        true
    }

    fn lower_call(&mut self, name: &Ident, args: &[Expr], span: Span) -> Value {
        if let Some(decl) = self.decls.functions.get(&name.name).copied() {
            return self.inline_function(decl, name, args);
        }
        if let Some(op) = unary_builtin(&name.name) {
            if !self.expect_arity(name, args, 1) {
                return self.constant_value(f64::NAN);
            }
            let v = self.lower(&args[0]);
            return self.map_unary(op, &v);
        }
        match name.name.as_str() {
            "max" | "min" | "pow" => {
                if !self.expect_arity(name, args, 2) {
                    return self.constant_value(f64::NAN);
                }
                if name.name == "pow" {
                    return self.lower_binary(BinaryOp::Pow, &args[0], &args[1], span);
                }
                let (a, b) = (self.lower(&args[0]), self.lower(&args[1]));
                let op = match name.name.as_str() {
                    "max" => BinaryFn::Max,
                    "min" => BinaryFn::Min,
                    _ => BinaryFn::Pow,
                };
                self.elementwise(op, &a, &b, span, &name.name)
            }
            "I" => {
                if !self.expect_arity(name, args, 1) {
                    return self.constant_value(f64::NAN);
                }
                match constant_size(&args[0], self.params) {
                    Ok(n) => {
                        let slots = (0..n * n)
                            .map(|k| {
                                let dst = self.fresh();
                                self.emit(Instr::Const { dst, value: if k % (n + 1) == 0 { 1.0 } else { 0.0 } });
                                dst
                            })
                            .collect();
                        Value { shape: Shape::from_dims(n, n), slots }
                    }
                    Err(e) => self.error(e),
                }
            }
            "zeros" => {
                if !self.expect_arity(name, args, 1) {
                    return self.constant_value(f64::NAN);
                }
                match constant_size(&args[0], self.params) {
                    Ok(n) => {
                        let slots = (0..n)
                            .map(|_| {
                                let dst = self.fresh();
                                self.emit(Instr::Const { dst, value: 0.0 });
                                dst
                            })
                            .collect();
                        Value { shape: Shape::from_dims(n, 1), slots }
                    }
                    Err(e) => self.error(e),
                }
            }
            "sum" | "tr" | "norm2" | "logsumexp" | "softmax" | "transpose" | "diag" | "inv" | "chol"
            | "sqrtm" | "logdet" | "det" | "eigvals" => {
                if !self.expect_arity(name, args, 1) {
                    return self.constant_value(f64::NAN);
                }
                let v = self.lower(&args[0]);
                self.lower_shape_builtin(&name.name, v, span)
            }
            "dot" | "outer" => {
                if !self.expect_arity(name, args, 2) {
                    return self.constant_value(f64::NAN);
                }
                let (a, b) = (self.lower(&args[0]), self.lower(&args[1]));
                let (Shape::Vector(n), Shape::Vector(m)) = (a.shape, b.shape) else {
                    return self.error(TypeError::new(
                        span,
                        format!("`{}` takes two vectors, found a {} and a {}", name.name, a.shape, b.shape),
                    ));
                };
                if name.name == "dot" {
                    if n != m {
                        return self.error(TypeError::new(span, format!("shape mismatch: dot of vector[{n}] and vector[{m}]")));
                    }
                    let row = transpose(&a);
                    self.matmul(&row, &b, span)
                } else {
                    let column = Value { shape: Shape::Matrix(n, 1), slots: a.slots.clone() };
                    let row = Value { shape: Shape::Matrix(1, m), slots: b.slots.clone() };
                    self.matmul(&column, &row, span)
                }
            }
            _ => {
                let mut error = TypeError::new(name.span, format!("unknown function `{}`", name.name));
                let known = BUILTIN_NAMES.iter().copied().map(String::from).chain(self.decls.functions.keys().cloned());
                if let Some((_, close)) =
                    known.map(|k| (edit_distance(&k, &name.name), k)).filter(|(d, _)| *d <= 2).min()
                {
                    error = error.with_help(format!("did you mean `{close}`?"));
                }
                self.error(error)
            }
        }
    }

    fn lower_shape_builtin(&mut self, name: &str, v: Value, span: Span) -> Value {
        let (rows, cols) = v.shape.dims();
        let square = rows == cols && v.shape != Shape::Scalar || v.shape == Shape::Scalar;
        match name {
            "sum" | "norm2" => {
                let squared;
                let terms = if name == "norm2" {
                    squared = self.elementwise(BinaryFn::Mul, &v, &v.clone(), span, "square");
                    &squared.slots
                } else {
                    &v.slots
                };
                let terms = terms.clone();
                let mut acc = terms[0];
                for &t in &terms[1..] {
                    acc = self.scalar_binary(BinaryFn::Add, acc, t);
                }
                Value { shape: Shape::Scalar, slots: vec![acc] }
            }
            "tr" => {
                if !square {
                    return self.error(TypeError::new(span, format!("`tr` needs a square matrix, found a {}", v.shape)));
                }
                let mut acc = v.slots[0];
                for i in 1..rows {
                    acc = self.scalar_binary(BinaryFn::Add, acc, v.slots[i * cols + i]);
                }
                Value { shape: Shape::Scalar, slots: vec![acc] }
            }
            "transpose" => transpose(&v),
            "diag" => match v.shape {
                Shape::Vector(n) => {
                    let zero = self.constant_value(0.0).slots[0];
                    let slots = (0..n * n).map(|k| if k % (n + 1) == 0 { v.slots[k / (n + 1)] } else { zero }).collect();
                    Value { shape: Shape::Matrix(n, n), slots }
                }
                _ => self.error(TypeError::new(span, format!("`diag` takes a vector, found a {}", v.shape))),
            },
            "logsumexp" => {
                let dst = self.fresh();
                self.emit(Instr::LogSumExp { dst, src: v.slots.clone() });
                Value { shape: Shape::Scalar, slots: vec![dst] }
            }
            "softmax" => {
                // Row-wise for matrices (attention), over the entries for vectors.
                let (row_count, row_len) = match v.shape {
                    Shape::Matrix(r, c) => (r, c),
                    _ => (1, v.shape.len()),
                };
                let mut slots = Vec::with_capacity(v.slots.len());
                for r in 0..row_count {
                    let row = v.slots[r * row_len..(r + 1) * row_len].to_vec();
                    let normaliser = self.fresh();
                    self.emit(Instr::LogSumExp { dst: normaliser, src: row.clone() });
                    for s in row {
                        let shifted = self.scalar_binary(BinaryFn::Sub, s, normaliser);
                        let dst = self.fresh();
                        self.emit(Instr::Unary { op: UnaryFn::Exp, dst, src: shifted });
                        slots.push(dst);
                    }
                }
                Value { shape: v.shape, slots }
            }
            _ => {
                if !square {
                    return self.error(TypeError::new(span, format!("`{name}` needs a square matrix, found a {}", v.shape)));
                }
                let op = match name {
                    "inv" => MatrixFn::Inverse,
                    "chol" => MatrixFn::Cholesky,
                    "sqrtm" => MatrixFn::SqrtSymmetric,
                    "logdet" => MatrixFn::LogDet,
                    "eigvals" => MatrixFn::EigenvaluesSymmetric,
                    _ => MatrixFn::Det,
                };
                let out_shape = match op {
                    MatrixFn::LogDet | MatrixFn::Det => Shape::Scalar,
                    MatrixFn::EigenvaluesSymmetric => Shape::from_dims(rows, 1),
                    _ => v.shape,
                };
                let out = self.fresh_value(out_shape);
                self.emit(Instr::Matrix { op, size: rows, src: v.slots.clone(), dst: out.slots.clone() });
                out
            }
        }
    }

    fn inline_function(&mut self, decl: &FunctionDecl, name: &Ident, args: &[Expr]) -> Value {
        if !self.expect_arity(name, args, decl.params.len()) {
            return self.constant_value(f64::NAN);
        }
        if self.call_depth > 64 {
            return self.error(TypeError::new(name.span, format!("`{}` calls itself: recursion is not supported", name.name)));
        }
        let mut frame = BTreeMap::new();
        for (param, arg) in decl.params.iter().zip(args) {
            let value = self.lower(arg);
            frame.insert(param.name.clone(), value);
        }
        // Lexical scoping: the body sees its arguments and globals, not the caller's variables.
        let saved = std::mem::replace(&mut self.scopes, vec![frame]);
        self.call_depth += 1;
        let value = self.lower(&decl.body);
        self.call_depth -= 1;
        self.scopes = saved;
        value
    }

    // ------------------------------------------------------------ expectations

    fn lower_expectation(&mut self, expectation: &Expectation, span: Span) -> Value {
        if self.inside_minimization {
            return self.error(TypeError::new(span, "an expectation cannot appear inside a minimisation"));
        }
        if self.inside_hessian {
            return self.error(TypeError::new(span, "an expectation cannot appear inside a `hessian`").with_help("put the `hessian` inside the expectation"));
        }
        struct Pending {
            name: String,
            transform: Transform,
            first_component: usize,
            count: usize,
            shape: Shape,
        }
        enum Transform {
            Identity,
            Scalar { mean: Slot, std: Slot },
            Vector { mean: Vec<Slot>, cholesky: Vec<Slot> },
        }
        let mut components = Vec::new();
        let mut pending = Vec::new();
        for binding in &expectation.bindings {
            match &binding.distribution {
                Distribution::Normal { mean, covariance } => {
                    let standard = is_standard(covariance) && is_zero(mean);
                    let mean_value = self.lower(mean);
                    let cov_value = self.lower(covariance);
                    match cov_value.shape {
                        Shape::Scalar => {
                            if mean_value.shape != Shape::Scalar {
                                self.error(TypeError::new(binding.span, "a scalar variance needs a scalar mean"));
                                continue;
                            }
                            let transform = if standard {
                                Transform::Identity
                            } else {
                                let std = self.map_unary(UnaryFn::Sqrt, &cov_value).slots[0];
                                Transform::Scalar { mean: mean_value.slots[0], std }
                            };
                            pending.push(Pending { name: binding.var.name.clone(), transform, first_component: components.len(), count: 1, shape: Shape::Scalar });
                            components.push(Component::Normal);
                        }
                        Shape::Matrix(n, m) if n == m => {
                            let mean_ok = mean_value.shape == Shape::Vector(n) || mean_value.shape == Shape::Scalar;
                            if !mean_ok {
                                self.error(TypeError::new(binding.span, format!("the mean must be a vector[{n}] (or 0), found a {}", mean_value.shape)));
                                continue;
                            }
                            let identity = matches!(&covariance.kind, ExprKind::Call(f, _) if f.name == "I") && is_zero(mean);
                            let transform = if identity {
                                Transform::Identity
                            } else {
                                let cholesky = self.fresh_value(cov_value.shape);
                                self.emit(Instr::Matrix { op: MatrixFn::Cholesky, size: n, src: cov_value.slots.clone(), dst: cholesky.slots.clone() });
                                let mean = if mean_value.shape == Shape::Scalar { vec![mean_value.slots[0]; n] } else { mean_value.slots.clone() };
                                Transform::Vector { mean, cholesky: cholesky.slots }
                            };
                            pending.push(Pending { name: binding.var.name.clone(), transform, first_component: components.len(), count: n, shape: Shape::Vector(n) });
                            components.extend(std::iter::repeat_n(Component::Normal, n));
                        }
                        other => {
                            self.error(TypeError::new(binding.span, format!("a covariance must be a scalar or a square matrix, found a {other}")));
                        }
                    }
                }
                Distribution::Rademacher(size) => {
                    let n = match size.as_ref().map(|s| constant_size(s, self.params)) {
                        None => 1,
                        Some(Ok(n)) => n,
                        Some(Err(e)) => {
                            self.error(e);
                            continue;
                        }
                    };
                    let shape = if size.is_some() { Shape::Vector(n) } else { Shape::Scalar };
                    pending.push(Pending { name: binding.var.name.clone(), transform: Transform::Identity, first_component: components.len(), count: n, shape });
                    components.extend(std::iter::repeat_n(Component::Rademacher, n));
                }
                Distribution::GaussBernoulli(density) => match constant(density, self.params) {
                    Ok(rho) if rho > 0.0 && rho <= 1.0 => {
                        pending.push(Pending { name: binding.var.name.clone(), transform: Transform::Identity, first_component: components.len(), count: 1, shape: Shape::Scalar });
                        components.push(Component::GaussBernoulli { density: rho });
                    }
                    Ok(rho) => {
                        self.error(TypeError::new(density.span, format!("a Gauss-Bernoulli density must lie in (0, 1], found {rho}")));
                    }
                    Err(e) => {
                        self.error(e.with_help("the density of a Gauss-Bernoulli prior must be a constant or a param"));
                    }
                },
            }
        }
        let rule = match expectation.rule {
            Some(RuleSpec::Hermite(n)) => IntegrationRule::Hermite { nodes_per_dimension: n.max(1) },
            Some(RuleSpec::Sobol { points, scrambles }) => IntegrationRule::Sobol { points: points.max(1), scrambles: scrambles.max(1) },
            None => default_rule(&components),
        };
        if matches!(rule, IntegrationRule::Sobol { .. }) && components.len() > 256 {
            return self.error(TypeError::new(span, format!("sobol rules support at most 256 dimensions, this expectation has {}", components.len())));
        }
        if let IntegrationRule::Sobol { points, .. } = rule {
            if points > 1 << 16 {
                return self.error(TypeError::new(span, format!("sobol rules support at most 65536 points per scramble, found {points}; use more scrambles")));
            }
        }
        let node_count = rule_size(&components, rule);
        if node_count > 20_000_000 {
            return self.error(TypeError::new(span, format!("this integration rule has {node_count} nodes; use sobol(points) for high dimensions")));
        }
        let node_slots: Vec<Slot> = components.iter().map(|_| self.fresh()).collect();

        // The body: transform standard nodes into the bound variables, then the integrand.
        self.blocks.push(Vec::new());
        let saved_nodes = self.enclosing_nodes;
        self.enclosing_nodes = self.enclosing_nodes.saturating_mul(node_count);
        let mut scope = BTreeMap::new();
        for p in pending {
            let z = &node_slots[p.first_component..p.first_component + p.count];
            let value = match p.transform {
                Transform::Identity => Value { shape: p.shape, slots: z.to_vec() },
                Transform::Scalar { mean, std } => {
                    let scaled = self.scalar_binary(BinaryFn::Mul, std, z[0]);
                    Value { shape: Shape::Scalar, slots: vec![self.scalar_binary(BinaryFn::Add, mean, scaled)] }
                }
                Transform::Vector { mean, cholesky } => {
                    let n = p.count;
                    let factor = Value { shape: Shape::Matrix(n, n), slots: cholesky };
                    let standard = Value { shape: Shape::Vector(n), slots: z.to_vec() };
                    let correlated = self.matmul(&factor, &standard, span);
                    let slots = correlated.slots.iter().zip(&mean).map(|(&c, &m)| self.scalar_binary(BinaryFn::Add, m, c)).collect();
                    Value { shape: Shape::Vector(n), slots }
                }
            };
            scope.insert(p.name, value);
        }
        self.scopes.push(scope);
        let weight = expectation.weight.as_ref().map(|w| {
            let value = self.lower(w);
            if value.shape != Shape::Scalar {
                self.errors.push(TypeError::new(w.span, format!("a weight must be a scalar, found a {}", value.shape)));
            }
            value.slots[0]
        });
        let result = self.lower(&expectation.body);
        self.scopes.pop();
        self.enclosing_nodes = saved_nodes;
        let body = self.blocks.pop().expect("pushed above");
        // Node-independent work (square roots of order parameters, constants) runs once.
        let (hoisted, body) = hoist_invariant(body, &node_slots);
        self.blocks.last_mut().expect("a block is open").extend(hoisted);
        let dst = self.fresh_value(result.shape);
        let id = self.expect_count;
        self.expect_count += 1;
        self.emit(Instr::Expect(Box::new(ExpectBlock {
            components,
            rule,
            node_slots,
            body,
            weight,
            result: result.slots,
            dst: dst.slots.clone(),
            id,
        })));
        dst
    }

    // ------------------------------------------------------------ minimisation

    fn lower_minimization(&mut self, minimization: &Minimization, span: Span) -> Value {
        if self.inside_minimization {
            return self.error(TypeError::new(span, "minimisations cannot be nested"));
        }
        let shape = match self.variable_shape(minimization.dimension.as_ref()) {
            Ok(shape) => shape,
            Err(e) => return self.error(e),
        };
        let mut starts = Vec::new();
        for start in &minimization.starts {
            let v = self.lower(start);
            if v.shape != shape {
                self.errors.push(TypeError::new(start.span, format!("a starting point must be a {shape}, found a {}", v.shape)));
            } else {
                starts.push(v.slots);
            }
        }
        let compacted = match self.lower_bound_body(&minimization.var, shape, &minimization.body, BoundBody::Minimisation) {
            Ok(compacted) => compacted,
            Err(e) => return self.error(e),
        };
        let id = self.minimize_count;
        self.minimize_count += 1;
        self.minimize_cache_sizes.push((shape.len(), self.enclosing_nodes));
        let (dst_value, dst_argument, result) = if minimization.returns_argument {
            let arg = self.fresh_value(shape);
            (None, Some(arg.slots.clone()), arg)
        } else {
            let value = self.fresh();
            (Some(value), None, Value { shape: Shape::Scalar, slots: vec![value] })
        };
        self.emit(Instr::Minimize(Box::new(MinimizeBlock {
            local: compacted,
            starts,
            dst_value,
            dst_argument,
            id,
            cache_len: self.enclosing_nodes,
        })));
        result
    }

    // ------------------------------------------------------------ hessian

    fn lower_hessian(&mut self, hessian: &HessianExpr, span: Span) -> Value {
        if !self.values_only {
            return self.error(
                TypeError::new(span, "`hessian` is allowed only in observables")
                    .with_help("its value is computed without derivatives, so nothing that is differentiated may use it"),
            );
        }
        if self.inside_minimization || self.inside_hessian {
            let context = if self.inside_hessian { "another `hessian`" } else { "a minimisation" };
            return self.error(TypeError::new(span, format!("a `hessian` cannot appear inside {context}")));
        }
        let shape = match self.variable_shape(hessian.dimension.as_ref()) {
            Ok(shape) => shape,
            Err(e) => return self.error(e),
        };
        let point = self.lower(&hessian.point);
        if point.shape != shape {
            return self.error(TypeError::new(hessian.point.span, format!("the point must be a {shape}, found a {}", point.shape)));
        }
        let compacted = match self.lower_bound_body(&hessian.var, shape, &hessian.body, BoundBody::Hessian) {
            Ok(compacted) => compacted,
            Err(e) => return self.error(e),
        };
        let k = shape.len();
        let result = self.fresh_value(if k == 1 { Shape::Scalar } else { Shape::Matrix(k, k) });
        self.emit(Instr::Hessian(Box::new(HessianBlock {
            local: compacted,
            point: point.slots,
            dst: result.slots.clone(),
        })));
        result
    }

    /// The shape of a bound variable `in R` or `in R[k]`.
    fn variable_shape(&self, dimension: Option<&Expr>) -> Result<Shape, TypeError> {
        match dimension {
            None => Ok(Shape::Scalar),
            Some(d) => constant_size(d, self.params).map(|n| if n == 1 { Shape::Scalar } else { Shape::Vector(n) }),
        }
    }

    /// The scalar body of a minimisation or `hessian` over its bound variable, as a block of
    /// its own: what does not depend on the variable is hoisted out (computed once), the rest
    /// renumbered onto local slots.
    fn lower_bound_body(&mut self, var: &Ident, shape: Shape, body: &Expr, kind: BoundBody) -> Result<LocalBody, TypeError> {
        let variable = self.fresh_value(shape);
        self.blocks.push(Vec::new());
        let flag = match kind {
            BoundBody::Minimisation => &mut self.inside_minimization,
            BoundBody::Hessian => &mut self.inside_hessian,
        };
        *flag = true;
        self.scopes.push(BTreeMap::from([(var.name.clone(), variable.clone())]));
        let value = self.lower(body);
        self.scopes.pop();
        match kind {
            BoundBody::Minimisation => self.inside_minimization = false,
            BoundBody::Hessian => self.inside_hessian = false,
        }
        let instrs = self.blocks.pop().expect("pushed above");
        if value.shape != Shape::Scalar {
            let what = match kind {
                BoundBody::Minimisation => "a minimisation needs a scalar objective",
                BoundBody::Hessian => "a `hessian` needs a scalar body",
            };
            return Err(TypeError::new(body.span, format!("{what}, found a {}", value.shape)));
        }
        let (hoisted, instrs) = hoist_invariant(instrs, &variable.slots);
        self.blocks.last_mut().expect("a block is open").extend(hoisted);
        Ok(compact(&instrs, &variable.slots, value.slots[0]))
    }
}

/// Which construct binds a variable over a scalar body.
#[derive(Clone, Copy)]
enum BoundBody {
    Minimisation,
    Hessian,
}

fn transpose(v: &Value) -> Value {
    let (rows, cols) = v.shape.dims();
    let mut slots = Vec::with_capacity(v.slots.len());
    for j in 0..cols {
        for i in 0..rows {
            slots.push(v.slots[i * cols + j]);
        }
    }
    let shape = match v.shape {
        Shape::Scalar => Shape::Scalar,
        Shape::Vector(n) => Shape::Matrix(1, n),
        Shape::Matrix(_, _) => Shape::from_dims(cols, rows),
    };
    Value { shape, slots }
}

fn is_zero(e: &Expr) -> bool {
    matches!(e.kind, ExprKind::Number(v) if v == 0.0)
}

fn is_standard(e: &Expr) -> bool {
    matches!(e.kind, ExprKind::Number(v) if v == 1.0)
}

fn default_rule(components: &[Component]) -> IntegrationRule {
    let continuous = components.iter().filter(|c| !matches!(c, Component::Rademacher)).count();
    let nodes_per_dimension = match continuous {
        0 | 1 => 64,
        2 => 40,
        3 => 20,
        4 => 12,
        5 => 8,
        _ => return IntegrationRule::Sobol { points: 1 << 14, scrambles: 1 },
    };
    IntegrationRule::Hermite { nodes_per_dimension }
}

/// Number of nodes a rule produces for these components.
pub fn rule_size(components: &[Component], rule: IntegrationRule) -> usize {
    match rule {
        IntegrationRule::Hermite { nodes_per_dimension } => components
            .iter()
            .map(|c| match c {
                Component::Normal => nodes_per_dimension,
                Component::Rademacher => 2,
                Component::GaussBernoulli { .. } => nodes_per_dimension + 1,
            })
            .fold(1usize, |a, b| a.saturating_mul(b)),
        IntegrationRule::Sobol { points, scrambles } => points.saturating_mul(scrambles),
    }
}

const BUILTIN_NAMES: &[&str] = &[
    "exp", "log", "log1p", "sqrt", "abs", "erf", "erfc", "H", "logH", "phi", "Phi", "sigmoid", "logsigmoid",
    "softplus", "tanh", "logcosh", "sin", "cos", "step", "sign", "max", "min", "pow", "I", "zeros", "sum", "tr", "norm2",
    "logsumexp", "softmax", "transpose", "diag", "inv", "chol", "sqrtm", "logdet", "det", "eigvals", "dot", "outer",
];

fn unary_builtin(name: &str) -> Option<UnaryFn> {
    Some(match name {
        "exp" => UnaryFn::Exp,
        "log" => UnaryFn::Ln,
        "log1p" => UnaryFn::Ln1p,
        "sqrt" => UnaryFn::Sqrt,
        "abs" => UnaryFn::Abs,
        "erf" => UnaryFn::Erf,
        "erfc" => UnaryFn::Erfc,
        "H" => UnaryFn::GaussianTail,
        "logH" => UnaryFn::LogGaussianTail,
        "phi" => UnaryFn::GaussianPdf,
        "Phi" => UnaryFn::GaussianCdf,
        "sigmoid" => UnaryFn::Sigmoid,
        "logsigmoid" => UnaryFn::LogSigmoid,
        "softplus" => UnaryFn::Softplus,
        "tanh" => UnaryFn::Tanh,
        "logcosh" => UnaryFn::LogCosh,
        "sin" => UnaryFn::Sin,
        "cos" => UnaryFn::Cos,
        "step" => UnaryFn::Step,
        "sign" => UnaryFn::Sign,
        _ => return None,
    })
}

pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = (previous + usize::from(ca != cb)).min(row[j] + 1).min(row[j + 1] + 1);
            previous = current;
        }
    }
    row[b.len()]
}

// ---------------------------------------------------------------- the model

fn resolve_shape(shape: &ShapeExpr, params: &BTreeMap<String, f64>) -> Result<(Shape, bool), TypeError> {
    Ok(match shape {
        ShapeExpr::Scalar => (Shape::Scalar, false),
        ShapeExpr::Vector(n) => (Shape::from_dims(constant_size(n, params)?, 1), false),
        ShapeExpr::Matrix(r, c) => (Shape::from_dims(constant_size(r, params)?, constant_size(c, params)?), false),
        ShapeExpr::Symmetric(n) => {
            let n = constant_size(n, params)?;
            (Shape::from_dims(n, n), true)
        }
    })
}

pub(super) fn lower_model(
    file: &ModelFile,
    decls: &Declarations,
    overrides: &BTreeMap<String, f64>,
    imports: &BTreeMap<String, Exports>,
) -> Result<CheckedModel, Vec<TypeError>> {
    let _ = file;
    let mut errors = Vec::new();
    let mut params = BTreeMap::new();
    let mut param_values = Vec::new();
    for p in &decls.params {
        let value = overrides.get(&p.name.name).copied().unwrap_or(p.default);
        if let Err(message) = check_domain(value, p.domain) {
            errors.push(TypeError::new(p.span, format!("param `{}` = {value}: {message}", p.name.name)));
        }
        params.insert(p.name.name.clone(), value);
        param_values.push(ParamValue { name: p.name.name.clone(), value, domain: p.domain, doc: p.doc.clone() });
    }

    // Unknowns: order parameters first, then conjugates, in declaration order.
    let mut unknowns = Vec::new();
    let mut labels = Vec::new();
    let mut roles = Vec::new();
    let mut domains = Vec::new();
    let mut next_slot = 0;
    let order_shapes: BTreeMap<&str, &OrderDecl> = decls.orders.iter().map(|o| (o.name.name.as_str(), *o)).collect();
    struct Declared<'a> {
        name: String,
        role: Role,
        shape: &'a ShapeExpr,
        domain: Domain,
        doc: Option<String>,
    }
    let mut declared: Vec<Declared> = Vec::new();
    for o in &decls.orders {
        declared.push(Declared { name: o.name.name.clone(), role: Role::Order, shape: &o.shape, domain: o.domain, doc: o.doc.clone() });
    }
    for c in &decls.conjugates {
        if let Some(order) = order_shapes.get(c.of.name.as_str()) {
            // A conjugate has its order parameter's shape and its own domain.
            declared.push(Declared { name: c.name.name.clone(), role: Role::Conjugate, shape: &order.shape, domain: c.domain, doc: c.doc.clone() });
        }
    }
    for Declared { name, role, shape: shape_expr, domain, doc } in declared {
        let (shape, symmetric) = match resolve_shape(shape_expr, &params) {
            Ok(s) => s,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let (rows, cols) = shape.dims();
        let slots: Vec<Slot> = (next_slot..next_slot + shape.len()).collect();
        next_slot += shape.len();
        let mut index = vec![0; shape.len()];
        for i in 0..rows {
            for j in 0..cols {
                if symmetric && j < i {
                    index[i * cols + j] = index[j * cols + i];
                    continue;
                }
                index[i * cols + j] = labels.len();
                labels.push(match shape {
                    Shape::Scalar => name.clone(),
                    Shape::Vector(_) => format!("{name}[{}]", i + 1),
                    Shape::Matrix(..) => format!("{name}[{},{}]", i + 1, j + 1),
                });
                roles.push(role);
                // Positivity of a matrix is a statement about its diagonal entries here;
                // every entry of a vector carries the domain.
                domains.push(if !matches!(shape, Shape::Matrix(..)) || i == j { domain } else { Domain::Real });
            }
        }
        unknowns.push(Unknown { name, role, shape, domain, slots, index, doc });
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    let register = |lowerer: &mut Lowerer| {
        for u in &unknowns {
            lowerer.globals.insert(u.name.clone(), Value { shape: u.shape, slots: u.slots.clone() });
        }
    };

    // The free energy.
    let mut energy = Lowerer::new(decls, &params, imports, next_slot);
    register(&mut energy);
    let mut terms = Vec::new();
    for term in &decls.terms {
        let value = energy.lower(&term.value);
        if value.shape != Shape::Scalar {
            energy.errors.push(TypeError::new(term.value.span, format!("a term must be a scalar, found a {}", value.shape)));
        }
        terms.push(NamedOutput { name: term.name.name.clone(), shape: value.shape, slots: value.slots, doc: term.doc.clone() });
    }
    errors.append(&mut energy.errors);
    let instrs = energy.blocks.pop().unwrap_or_default();
    let energy_program = energy.into_program(instrs);

    // Observables may use earlier observables by name, and the free energy.
    let mut observe = Lowerer::new(decls, &params, imports, next_slot);
    observe.values_only = true;
    observe.free_energy = Some(observe.fresh());
    register(&mut observe);
    let mut observables = Vec::new();
    for o in &decls.observables {
        let value = observe.lower(&o.value);
        observe.globals.insert(o.name.name.clone(), value.clone());
        observables.push(NamedOutput { name: o.name.name.clone(), shape: value.shape, slots: value.slots, doc: o.doc.clone() });
    }
    errors.append(&mut observe.errors);
    let free_energy_slot = observe.free_energy.filter(|_| observe.reads_free_energy);
    let instrs = observe.blocks.pop().unwrap_or_default();
    let observe_program = observe.into_program(instrs);

    // Start points: constants (numbers and params) for some unknown entries.
    let mut starts = Vec::new();
    for start in &decls.starts {
        let mut values = vec![None; labels.len()];
        for (name, expr) in &start.values {
            let Some(unknown) = unknowns.iter().find(|u| u.name == name.name) else { continue };
            match start_values(expr, unknown.shape, &params) {
                Ok(entries) => {
                    for (k, v) in entries.into_iter().enumerate() {
                        values[unknown.index[k]] = Some(v);
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        starts.push((start.name.name.clone(), values));
    }

    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(CheckedModel {
        title: decls.title.clone(),
        objective: decls.objective(),
        params: param_values,
        unknowns,
        unknown_labels: labels,
        unknown_roles: roles,
        unknown_domains: domains,
        energy: energy_program,
        terms,
        observe: observe_program,
        observables,
        free_energy_slot,
        starts,
    })
}

/// A start value: a constant scalar (filling the diagonal of a matrix, or a whole vector),
/// a constant list, or a list of lists.
fn start_values(expr: &Expr, shape: Shape, params: &BTreeMap<String, f64>) -> Result<Vec<f64>, TypeError> {
    let (rows, cols) = shape.dims();
    if let ExprKind::List(items) = &expr.kind {
        let mut entries = Vec::new();
        for item in items {
            match &item.kind {
                ExprKind::List(row) => {
                    for e in row {
                        entries.push(constant(e, params)?);
                    }
                }
                _ => entries.push(constant(item, params)?),
            }
        }
        if entries.len() != shape.len() {
            return Err(TypeError::new(expr.span, format!("a start value for a {shape} needs {} entries, found {}", shape.len(), entries.len())));
        }
        return Ok(entries);
    }
    let value = constant(expr, params)?;
    Ok((0..rows * cols)
        .map(|k| if matches!(shape, Shape::Matrix(..)) && k % (cols + 1) != 0 { 0.0 } else { value })
        .collect())
}

fn check_domain(value: f64, domain: Domain) -> Result<(), String> {
    let ok = match domain {
        Domain::Real | Domain::Psd => value.is_finite(),
        Domain::Positive => value > 0.0,
        Domain::Nonnegative => value >= 0.0,
        Domain::Integer => value.fract() == 0.0,
        Domain::Unit => (0.0..=1.0).contains(&value),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("must be {}", domain.keyword()))
    }
}

/// A plain program (no expectations or minimisations) computing `outputs` from named inputs
/// of given shapes: per-sample losses and simulation reports.
pub struct PlainProgram {
    pub program: Program,
    pub inputs: Vec<Vec<Slot>>,
    pub outputs: Vec<(Shape, Vec<Slot>)>,
}

pub(super) fn lower_plain(
    decls: &Declarations,
    params: &BTreeMap<String, f64>,
    imports: &BTreeMap<String, Exports>,
    inputs: &[(&str, Shape)],
    outputs: &[&Expr],
) -> Result<PlainProgram, Vec<TypeError>> {
    let mut lowerer = Lowerer::new(decls, params, imports, 0);
    let mut scope = BTreeMap::new();
    let mut input_slots = Vec::new();
    for (name, shape) in inputs {
        let value = lowerer.fresh_value(*shape);
        input_slots.push(value.slots.clone());
        scope.insert(name.to_string(), value);
    }
    lowerer.scopes.push(scope);
    let mut values = Vec::new();
    for expr in outputs {
        let value = lowerer.lower(expr);
        if lowerer.blocks.last().is_some_and(|b| b.iter().any(|i| matches!(i, Instr::Expect(_) | Instr::Minimize(_)))) {
            lowerer.errors.push(TypeError::new(expr.span, "a per-sample expression cannot contain expectations or minimisations"));
        }
        values.push((value.shape, value.slots));
    }
    if !lowerer.errors.is_empty() {
        return Err(lowerer.errors);
    }
    let instrs = lowerer.blocks.pop().unwrap_or_default();
    Ok(PlainProgram { program: lowerer.into_program(instrs), inputs: input_slots, outputs: values })
}
