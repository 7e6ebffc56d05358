//! Declarations and roles: collects what a file declares, rejects duplicates, checks that
//! every order parameter has a conjugate, that params are never extremised, and that every
//! unknown enters the free energy.

use std::collections::{BTreeMap, BTreeSet};

use super::TypeError;
use crate::syntax::*;

/// Everything a file declares, by name, in declaration order where order matters.
#[derive(Debug, Default)]
pub struct Declarations<'a> {
    pub title: Option<String>,
    pub imports: Vec<&'a ImportDecl>,
    pub params: Vec<&'a ParamDecl>,
    pub orders: Vec<&'a OrderDecl>,
    pub conjugates: Vec<&'a ConjugateDecl>,
    pub lets: BTreeMap<String, &'a LetDecl>,
    pub functions: BTreeMap<String, &'a FunctionDecl>,
    pub terms: Vec<&'a NamedExpr>,
    pub observables: Vec<&'a NamedExpr>,
    pub objective: Option<&'a ExtremizeDecl>,
    pub solve: Vec<&'a Setting>,
    pub starts: Vec<&'a StartDecl>,
    pub sweeps: Vec<&'a SweepDecl>,
    pub simulate: Option<&'a SimulateDecl>,
}

impl<'a> Declarations<'a> {
    pub fn objective(&self) -> Objective {
        self.objective.map(|o| o.objective).unwrap_or(Objective::Energy)
    }
    pub fn is_param(&self, name: &str) -> bool {
        self.params.iter().any(|p| p.name.name == name)
    }
    pub fn is_unknown(&self, name: &str) -> bool {
        self.orders.iter().any(|o| o.name.name == name)
            || self.conjugates.iter().any(|c| c.name.name == name)
    }
}

pub fn collect_declarations(file: &ModelFile) -> Result<Declarations<'_>, Vec<TypeError>> {
    let mut decls = Declarations::default();
    let mut errors = Vec::new();
    let mut seen: BTreeMap<String, Span> = BTreeMap::new();
    let mut declare = |ident: &Ident, errors: &mut Vec<TypeError>| {
        if let Some(previous) = seen.get(&ident.name) {
            errors.push(
                TypeError::new(ident.span, format!("`{}` is declared twice", ident.name))
                    .with_help(format!("the first declaration is at byte {}", previous.start)),
            );
        } else {
            seen.insert(ident.name.clone(), ident.span);
        }
    };
    for item in &file.items {
        match item {
            Item::Model(m) => decls.title = Some(m.title.clone()),
            Item::Import(i) => {
                declare(&i.alias, &mut errors);
                decls.imports.push(i)
            }
            Item::Param(p) => {
                declare(&p.name, &mut errors);
                decls.params.push(p)
            }
            Item::Order(o) => {
                declare(&o.name, &mut errors);
                decls.orders.push(o)
            }
            Item::Conjugate(c) => {
                declare(&c.name, &mut errors);
                decls.conjugates.push(c)
            }
            Item::Let(l) => {
                declare(&l.name, &mut errors);
                decls.lets.insert(l.name.name.clone(), l);
            }
            Item::Function(f) => {
                declare(&f.name, &mut errors);
                decls.functions.insert(f.name.name.clone(), f);
            }
            Item::Term(t) => {
                declare(&t.name, &mut errors);
                decls.terms.push(t)
            }
            Item::Observe(o) => {
                // `observe m = m` re-exports an order parameter under its own name.
                let reexport = matches!(&o.value.kind, ExprKind::Var(v) if v.name == o.name.name);
                if !reexport {
                    declare(&o.name, &mut errors);
                }
                decls.observables.push(o)
            }
            Item::Extremize(e) => {
                if decls.objective.is_some() {
                    errors.push(TypeError::new(e.span, "`extremize` is given twice"));
                }
                decls.objective = Some(e)
            }
            Item::Solve(s) => decls.solve.extend(s.settings.iter()),
            Item::Start(s) => decls.starts.push(s),
            Item::Sweep(s) => decls.sweeps.push(s),
            Item::Simulate(s) => {
                if decls.simulate.is_some() {
                    errors.push(TypeError::new(s.span, "`simulate` is given twice"));
                }
                decls.simulate = Some(s)
            }
        }
    }

    check_roles(&decls, &mut errors);
    if decls.terms.is_empty() {
        errors.push(
            TypeError::new(Span::new(0, 0), "the model has no `term`: there is no free energy to extremise")
                .with_help("add e.g. `term channel = ...`"),
        );
    }
    check_unknowns_enter_free_energy(&decls, &mut errors);
    if errors.is_empty() {
        Ok(decls)
    } else {
        Err(errors)
    }
}

fn check_roles(decls: &Declarations, errors: &mut Vec<TypeError>) {
    for conjugate in &decls.conjugates {
        let target = &conjugate.of;
        if decls.is_param(&target.name) {
            errors.push(
                TypeError::new(target.span, format!("param `{}` cannot be extremised", target.name))
                    .with_help("params are fixed inputs; declare it with `order` to extremise over it"),
            );
        } else if !decls.orders.iter().any(|o| o.name.name == target.name) {
            errors.push(TypeError::new(
                target.span,
                format!("`{}` is not an order parameter, so it cannot have a conjugate", target.name),
            ));
        }
    }
    for order in &decls.orders {
        let count = decls.conjugates.iter().filter(|c| c.of.name == order.name.name).count();
        if count == 0 {
            errors.push(
                TypeError::new(order.name.span, format!("order parameter `{}` has no conjugate", order.name.name))
                    .with_help(format!("declare one, e.g. `conjugate {0}h of {0}`", order.name.name)),
            );
        } else if count > 1 {
            errors.push(TypeError::new(
                order.name.span,
                format!("order parameter `{}` has {count} conjugates; it needs exactly one", order.name.name),
            ));
        }
    }
    for start in &decls.starts {
        for (name, _) in &start.values {
            if decls.is_param(&name.name) {
                errors.push(
                    TypeError::new(name.span, format!("param `{}` cannot be extremised", name.name))
                        .with_help("a start point gives values to order parameters and conjugates only; use `--set` for params"),
                );
            } else if !decls.is_unknown(&name.name) {
                errors.push(TypeError::new(
                    name.span,
                    format!("`{}` is not an order parameter or conjugate", name.name),
                ));
            }
        }
    }
    for sweep in &decls.sweeps {
        if decls.is_unknown(&sweep.param.name) {
            errors.push(TypeError::new(
                sweep.param.span,
                format!("`{}` is extremised over; only params can be swept", sweep.param.name),
            ));
        } else if !decls.is_param(&sweep.param.name) {
            errors.push(TypeError::new(sweep.param.span, format!("unknown param `{}`", sweep.param.name)));
        }
        if sweep.count == 0 {
            errors.push(TypeError::new(sweep.span, "a sweep needs at least one point"));
        }
    }
}

/// The names an expression reads, through `let`s and user functions.
fn free_names(expr: &Expr, decls: &Declarations, out: &mut BTreeSet<String>, visiting: &mut BTreeSet<String>) {
    let mut visit = |e: &Expr, out: &mut BTreeSet<String>| free_names(e, decls, out, visiting);
    match &expr.kind {
        ExprKind::Number(_) | ExprKind::Qualified(_, _) => {}
        ExprKind::Var(ident) => {
            out.insert(ident.name.clone());
            // Through lets, guarding against cycles (reported by the lowering).
            if let Some(decl) = decls.lets.get(&ident.name) {
                if visiting.insert(ident.name.clone()) {
                    free_names(&decl.value, decls, out, visiting);
                }
            }
        }
        ExprKind::Neg(e) | ExprKind::Transpose(e) => visit(e, out),
        ExprKind::Binary(_, a, b) => {
            visit(a, out);
            visit(b, out);
        }
        ExprKind::Call(name, args) => {
            for a in args {
                visit(a, out);
            }
            if let Some(decl) = decls.functions.get(&name.name) {
                if visiting.insert(format!("fn {}", name.name)) {
                    free_names(&decl.body, decls, out, visiting);
                }
            }
        }
        ExprKind::Index(e, idx) => {
            visit(e, out);
            for i in idx {
                visit(i, out);
            }
        }
        ExprKind::List(items) => {
            for i in items {
                visit(i, out);
            }
        }
        ExprKind::Expect(expectation) => {
            for b in &expectation.bindings {
                match &b.distribution {
                    Distribution::Normal { mean, covariance } => {
                        visit(mean, out);
                        visit(covariance, out);
                    }
                    Distribution::Rademacher(Some(n)) | Distribution::GaussBernoulli(n) => visit(n, out),
                    Distribution::Rademacher(None) => {}
                }
            }
            if let Some(w) = &expectation.weight {
                visit(w, out);
            }
            visit(&expectation.body, out);
        }
        ExprKind::Minimize(minimization) => {
            if let Some(d) = &minimization.dimension {
                visit(d, out);
            }
            for s in &minimization.starts {
                visit(s, out);
            }
            visit(&minimization.body, out);
        }
        ExprKind::Hessian(hessian) => {
            if let Some(d) = &hessian.dimension {
                visit(d, out);
            }
            visit(&hessian.point, out);
            visit(&hessian.body, out);
        }
    }
}

fn check_unknowns_enter_free_energy(decls: &Declarations, errors: &mut Vec<TypeError>) {
    let mut used = BTreeSet::new();
    for term in &decls.terms {
        free_names(&term.value, decls, &mut used, &mut BTreeSet::new());
    }
    for order in &decls.orders {
        if !used.contains(&order.name.name) {
            errors.push(TypeError::new(
                order.name.span,
                format!("order parameter `{}` does not enter the free energy", order.name.name),
            ).with_help("every order parameter must appear in some `term`"));
        }
    }
    for conjugate in &decls.conjugates {
        if !used.contains(&conjugate.name.name) {
            errors.push(TypeError::new(
                conjugate.name.span,
                format!("conjugate `{}` of `{}` does not enter the free energy", conjugate.name.name, conjugate.of.name),
            ).with_help("every conjugate must appear in some `term`"));
        }
    }
}
