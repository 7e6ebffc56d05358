//! Types: name resolution, roles and shapes. A parsed file plus parameter values becomes a
//! `CheckedModel`: the unknowns (order parameters and conjugates) with their shapes and
//! domains, and two lowered programs (the free-energy terms, the observables). Every
//! problem is reported with its span, all of them in one pass.

mod declarations;
mod lower;
mod shape;
pub mod simulation;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::ir::{Program, Slot};
use crate::syntax::{Domain, ModelFile, Objective, Span};

pub use declarations::{collect_declarations, Declarations};
pub use lower::PlainProgram;
pub use shape::Shape;

/// A problem found while checking a model file.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeError {
    pub span: Span,
    pub message: String,
    pub help: Option<String>,
}

impl TypeError {
    pub fn new(span: Span, message: impl Into<String>) -> Self {
        TypeError { span, message: message.into(), help: None }
    }
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Role {
    Order,
    Conjugate,
}

/// One declared unknown: where its entries live in the register file and in the unknown vector.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unknown {
    pub name: String,
    pub role: Role,
    pub shape: Shape,
    pub domain: Domain,
    /// Entry slots, row-major.
    pub slots: Vec<Slot>,
    /// For each entry, its index in the unknown vector (symmetric matrices share entries).
    pub index: Vec<usize>,
    pub doc: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParamValue {
    pub name: String,
    pub value: f64,
    pub domain: Domain,
    pub doc: Option<String>,
}

/// A value a model exports to its importers: solved order parameters and observables.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportedValue {
    pub shape: Shape,
    pub values: Vec<f64>,
}

pub type Exports = BTreeMap<String, ExportedValue>;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NamedOutput {
    pub name: String,
    pub shape: Shape,
    pub slots: Vec<Slot>,
    pub doc: Option<String>,
}

/// The result of checking: everything the solver needs, nothing it must look up by name.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckedModel {
    pub title: Option<String>,
    pub objective: Objective,
    pub params: Vec<ParamValue>,
    pub unknowns: Vec<Unknown>,
    /// Human-readable label of each entry of the unknown vector (`q`, `Q[1,2]`).
    pub unknown_labels: Vec<String>,
    pub unknown_roles: Vec<Role>,
    pub unknown_domains: Vec<Domain>,
    pub energy: Program,
    pub terms: Vec<NamedOutput>,
    pub observe: Program,
    pub observables: Vec<NamedOutput>,
    /// The slot of the observables' program that must hold the free energy (the sum of the
    /// terms) at the fixed point; `None` when no observable reads `free_energy`.
    pub free_energy_slot: Option<Slot>,
    /// Starting points by name; each gives some unknown entries (the rest use defaults).
    pub starts: Vec<(String, Vec<Option<f64>>)>,
}

impl CheckedModel {
    pub fn unknown_count(&self) -> usize {
        self.unknown_labels.len()
    }
}

/// Check a parsed file with the given parameter values and imported solutions.
pub fn check_model(
    file: &ModelFile,
    params: &BTreeMap<String, f64>,
    imports: &BTreeMap<String, Exports>,
) -> Result<CheckedModel, Vec<TypeError>> {
    let declarations = collect_declarations(file)?;
    lower::lower_model(file, &declarations, params, imports)
}

/// Parameter values of a file: defaults, overridden where given.
pub fn param_values(decls: &Declarations, overrides: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    decls.params.iter().map(|p| (p.name.name.clone(), overrides.get(&p.name.name).copied().unwrap_or(p.default))).collect()
}
