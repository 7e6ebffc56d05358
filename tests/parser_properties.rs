//! Property tests of the parser and the pretty printer:
//! (a) `parse_model` returns (never panics) on arbitrary text, on text assembled from the
//!     grammar's own tokens (which gets deep into the rules), and on damaged valid files;
//! (b) for random syntax trees, printing and re-parsing gives the same tree back (spans
//!     aside, compared through serde, which skips spans), and printing is a fixed point.

use proptest::prelude::*;
use proptest::test_runner::Config;
use toolkit::syntax::pretty::{pretty, pretty_expr};
use toolkit::syntax::*;

/// Words the parser reserves everywhere, plus the words that act as keywords inside rules
/// (domains, shapes, distributions, integration rules, objectives). Names are drawn outside
/// both sets so a generated tree never depends on context-sensitive keyword handling.
const AVOIDED_WORDS: &[&str] = &[
    "model",
    "import",
    "param",
    "order",
    "conjugate",
    "let",
    "fn",
    "term",
    "observe",
    "extremize",
    "solve",
    "start",
    "sweep",
    "in",
    "of",
    "from",
    "as",
    "E",
    "min",
    "argmin",
    "N",
    "rademacher",
    "gauss_bernoulli",
    "hermite",
    "sobol",
    "weight",
    "R",
    "scalar",
    "vector",
    "matrix",
    "sym",
    "real",
    "positive",
    "nonnegative",
    "integer",
    "unit",
    "psd",
    "energy",
    "free_entropy",
];

fn expr(kind: ExprKind) -> Expr {
    Expr { kind, span: Span::default() }
}

fn name_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z]",
        2 => "[a-zA-Z_][a-zA-Z0-9_]{1,5}",
    ]
    .prop_filter("a reserved or keyword word", |name| !AVOIDED_WORDS.contains(&name.as_str()))
}

fn ident() -> impl Strategy<Value = Ident> {
    name_text().prop_map(|name| Ident { name, span: Span::default() })
}

/// A literal as the parser produces it: never negative, never NaN.
fn unsigned_number() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => (0u32..100).prop_map(f64::from),
        2 => 0.0f64..10.0,
        2 => any::<f64>().prop_filter("finite", |x| x.is_finite()).prop_map(f64::abs),
        1 => Just(f64::INFINITY),
    ]
}

/// A literal where `-` is allowed in front (param defaults, settings, sweeps).
fn signed_number() -> impl Strategy<Value = f64> {
    (unsigned_number(), any::<bool>()).prop_map(|(x, negative)| if negative { -x } else { x })
}

/// A quoted string's contents: anything but a quote or a line break.
fn string_text() -> impl Strategy<Value = String> {
    "[^\"\n]{0,12}"
}

fn leaf() -> impl Strategy<Value = Expr> {
    prop_oneof![
        2 => unsigned_number().prop_map(|x| expr(ExprKind::Number(x))),
        3 => ident().prop_map(|n| expr(ExprKind::Var(n))),
        1 => (ident(), ident()).prop_map(|(a, b)| expr(ExprKind::Qualified(a, b))),
    ]
}

fn binary_op() -> impl Strategy<Value = BinaryOp> {
    prop_oneof![Just(BinaryOp::Add), Just(BinaryOp::Sub), Just(BinaryOp::Mul), Just(BinaryOp::Div), Just(BinaryOp::Pow),]
}

/// Call names: ordinary names, and `min`/`max`/`argmin`, which are calls when `(` follows.
fn call_name() -> impl Strategy<Value = Ident> {
    prop_oneof![
        4 => ident(),
        1 => prop_oneof![Just("min"), Just("max"), Just("argmin")]
            .prop_map(|n| Ident { name: n.to_string(), span: Span::default() }),
    ]
}

fn distribution(inner: BoxedStrategy<Expr>) -> impl Strategy<Value = Distribution> {
    prop_oneof![
        3 => (inner.clone(), inner.clone())
            .prop_map(|(mean, covariance)| Distribution::Normal { mean, covariance }),
        1 => proptest::option::of(inner.clone()).prop_map(Distribution::Rademacher),
        1 => inner.prop_map(Distribution::GaussBernoulli),
    ]
}

fn rule() -> impl Strategy<Value = Option<RuleSpec>> {
    proptest::option::of(prop_oneof![
        (0usize..100).prop_map(RuleSpec::Hermite),
        (0usize..5000, 0usize..10).prop_map(|(points, scrambles)| RuleSpec::Sobol { points, scrambles }),
    ])
}

fn expression() -> impl Strategy<Value = Expr> {
    leaf().prop_recursive(4, 40, 3, |inner| {
        let binding = (ident(), distribution(inner.clone())).prop_map(|(var, distribution)| Binding {
            var,
            distribution,
            span: Span::default(),
        });
        prop_oneof![
            2 => inner.clone().prop_map(|e| expr(ExprKind::Neg(Box::new(e)))),
            6 => (binary_op(), inner.clone(), inner.clone())
                .prop_map(|(op, a, b)| expr(ExprKind::Binary(op, Box::new(a), Box::new(b)))),
            2 => (call_name(), prop::collection::vec(inner.clone(), 0..3))
                .prop_map(|(name, args)| expr(ExprKind::Call(name, args))),
            1 => (inner.clone(), prop::collection::vec(inner.clone(), 1..3))
                .prop_map(|(base, indices)| expr(ExprKind::Index(Box::new(base), indices))),
            1 => inner.clone().prop_map(|e| expr(ExprKind::Transpose(Box::new(e)))),
            1 => prop::collection::vec(inner.clone(), 0..3).prop_map(|items| expr(ExprKind::List(items))),
            1 => (
                prop::collection::vec(binding, 1..3),
                rule(),
                proptest::option::of(inner.clone()),
                inner.clone(),
            )
                .prop_map(|(bindings, rule, weight, body)| {
                    expr(ExprKind::Expect(Box::new(Expectation { bindings, rule, weight, body })))
                }),
            1 => (
                any::<bool>(),
                ident(),
                proptest::option::of(inner.clone()),
                prop::collection::vec(inner.clone(), 0..3),
                inner,
            )
                .prop_map(|(returns_argument, var, dimension, starts, body)| {
                    expr(ExprKind::Minimize(Box::new(Minimization { returns_argument, var, dimension, starts, body })))
                }),
        ]
    })
}

fn domain() -> impl Strategy<Value = Domain> {
    prop_oneof![
        Just(Domain::Real),
        Just(Domain::Positive),
        Just(Domain::Nonnegative),
        Just(Domain::Integer),
        Just(Domain::Unit),
        Just(Domain::Psd),
    ]
}

fn shape() -> impl Strategy<Value = ShapeExpr> {
    let size = || expression().prop_map(Box::new);
    prop_oneof![
        2 => Just(ShapeExpr::Scalar),
        1 => size().prop_map(ShapeExpr::Vector),
        1 => (size(), size()).prop_map(|(r, c)| ShapeExpr::Matrix(r, c)),
        1 => size().prop_map(ShapeExpr::Symmetric),
    ]
}

fn named_expr() -> impl Strategy<Value = NamedExpr> {
    (ident(), expression(), proptest::option::of(string_text())).prop_map(|(name, value, doc)| NamedExpr {
        name,
        value,
        doc,
        span: Span::default(),
    })
}

fn setting() -> impl Strategy<Value = Setting> {
    let value = prop_oneof![
        signed_number().prop_map(SettingValue::Number),
        // Any word is a valid value, reserved or not.
        "[a-zA-Z_][a-zA-Z0-9_]{0,8}".prop_map(SettingValue::Word),
    ];
    (ident(), value).prop_map(|(key, value)| Setting { key, value, span: Span::default() })
}

fn item() -> impl Strategy<Value = Item> {
    let span = Span::default();
    prop_oneof![
        string_text().prop_map(move |title| Item::Model(ModelDecl { title, span })),
        (string_text(), ident()).prop_map(move |(path, alias)| Item::Import(ImportDecl { path, alias, span })),
        (ident(), signed_number(), domain(), proptest::option::of(string_text()))
            .prop_map(move |(name, default, domain, doc)| Item::Param(ParamDecl { name, default, domain, doc, span })),
        (ident(), shape(), domain(), proptest::option::of(string_text()))
            .prop_map(move |(name, shape, domain, doc)| Item::Order(OrderDecl { name, shape, domain, doc, span })),
        (ident(), ident(), domain(), proptest::option::of(string_text()))
            .prop_map(move |(name, of, domain, doc)| Item::Conjugate(ConjugateDecl { name, of, domain, doc, span })),
        (ident(), expression()).prop_map(move |(name, value)| Item::Let(LetDecl { name, value, span })),
        (ident(), prop::collection::vec(ident(), 0..3), expression())
            .prop_map(move |(name, params, body)| Item::Function(FunctionDecl { name, params, body, span })),
        named_expr().prop_map(Item::Term),
        named_expr().prop_map(Item::Observe),
        prop_oneof![Just(Objective::Energy), Just(Objective::FreeEntropy)]
            .prop_map(move |objective| Item::Extremize(ExtremizeDecl { objective, span })),
        prop::collection::vec(setting(), 0..4).prop_map(move |settings| Item::Solve(SolveDecl { settings, span })),
        (ident(), prop::collection::vec((ident(), expression()), 0..3))
            .prop_map(move |(name, values)| Item::Start(StartDecl { name, values, span })),
        (ident(), signed_number(), signed_number(), any::<usize>()).prop_map(move |(param, start, stop, count)| {
            Item::Sweep(SweepDecl { param, start, stop, count, span })
        }),
    ]
}

fn model_file() -> impl Strategy<Value = ModelFile> {
    prop::collection::vec(item(), 0..8).prop_map(|items| ModelFile { items })
}

/// The tree without spans (serde skips them), for structural comparison.
fn structure<T: serde::Serialize>(tree: &T) -> serde_json::Value {
    serde_json::to_value(tree).expect("syntax trees serialise")
}

/// Tokens and fragments of the grammar; random sequences of them reach deep into the rules.
const FRAGMENTS: &[&str] = &[
    "model",
    "import",
    "param",
    "order",
    "conjugate",
    "let",
    "fn",
    "term",
    "observe",
    "extremize",
    "solve",
    "start",
    "sweep",
    "in",
    "of",
    "from",
    "as",
    "E[",
    "E",
    "min",
    "argmin",
    "N(",
    "rademacher",
    "rademacher[",
    "gauss_bernoulli(",
    "hermite(",
    "sobol(",
    "weight",
    "R",
    "R[",
    "scalar",
    "vector[",
    "matrix[",
    "sym[",
    "real",
    "positive",
    "psd",
    "energy",
    "free_entropy",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    ";",
    ":",
    "~",
    "=",
    "+",
    "-",
    "*",
    "/",
    "^",
    "'",
    ".",
    "\"",
    "\"doc\"",
    "#",
    "# comment\n",
    " ",
    " ",
    "\n",
    "\t",
    "x",
    "y",
    "a.b",
    "f(",
    "0",
    "1",
    "2.5",
    ".5",
    "1e",
    "1e-3",
    "1E+9",
    "7.",
    "é",
    "∑",
    "\u{0}",
    "\r\n",
];

/// Beginnings of items and expressions, so that the fragments after them land inside rules.
const LINE_STARTS: &[&str] = &[
    "",
    "let a = ",
    "term t = ",
    "observe o = ",
    "param p = ",
    "order q : ",
    "fn f(x, y) = ",
    "start s { m = ",
    "solve { ",
    "sweep a = ",
    "let a = E[x ~ ",
    "let a = min h in R",
    "let a = E[x ~ N(0, 1); ",
    "conjugate qh of ",
    "import \"f.lra\" as ",
];

/// Lines of random grammar fragments, each behind a random item or expression start.
fn fragment_text() -> impl Strategy<Value = String> {
    let line = (prop::sample::select(LINE_STARTS), prop::collection::vec(prop::sample::select(FRAGMENTS), 0..24))
        .prop_map(|(start, parts)| format!("{start}{}\n", parts.concat()));
    prop::collection::vec(line, 0..6).prop_map(|lines| lines.concat())
}

/// Every error offset must point into the text at a character boundary, so that it can label
/// the source.
fn check_errors(source: &str, result: &Result<ModelFile, Vec<SyntaxError>>) -> Result<(), TestCaseError> {
    if let Err(errors) = result {
        prop_assert!(!errors.is_empty());
        for error in errors {
            prop_assert!(error.offset <= source.len(), "offset {} past the end", error.offset);
            prop_assert!(source.is_char_boundary(error.offset), "offset {} inside a character", error.offset);
        }
    }
    Ok(())
}

/// Any tree the parser accepts must print to text that parses back to the same tree.
fn check_reprint(file: &ModelFile) -> Result<(), TestCaseError> {
    let printed = pretty(file);
    let reparsed = parse_model(&printed);
    prop_assert!(reparsed.is_ok(), "printed text does not parse:\n{printed}\n{reparsed:?}");
    prop_assert_eq!(structure(&reparsed.unwrap_or_default()), structure(file), "printed:\n{}", printed);
    Ok(())
}

proptest! {
    #![proptest_config(Config { cases: 1000, failure_persistence: None, ..Config::default() })]

    #[test]
    fn parse_never_panics_on_arbitrary_text(source in any::<String>()) {
        let result = parse_model(&source);
        check_errors(&source, &result)?;
    }

    #[test]
    fn parse_never_panics_on_grammar_fragments(source in fragment_text()) {
        let result = parse_model(&source);
        check_errors(&source, &result)?;
        if let Ok(file) = &result {
            check_reprint(file)?;
        }
    }
}

proptest! {
    #![proptest_config(Config { cases: 300, failure_persistence: None, ..Config::default() })]

    #[test]
    fn printed_trees_parse_back(file in model_file()) {
        let printed = pretty(&file);
        let parsed = parse_model(&printed);
        prop_assert!(parsed.is_ok(), "does not parse:\n{printed}\n{parsed:?}");
        let parsed = parsed.unwrap_or_default();
        prop_assert_eq!(structure(&parsed), structure(&file), "printed:\n{}", printed);
        prop_assert_eq!(pretty(&parsed), printed);
    }

    #[test]
    fn printed_expressions_parse_back(value in expression()) {
        let printed = pretty_expr(&value);
        let parsed = parse_model(&format!("let x = {printed}"));
        prop_assert!(parsed.is_ok(), "does not parse: {printed}\n{parsed:?}");
        let parsed = parsed.unwrap_or_default();
        let Some(Item::Let(decl)) = parsed.items.first() else {
            return Err(TestCaseError::fail(format!("not a let: {parsed:?}")));
        };
        prop_assert_eq!(structure(&decl.value), structure(&value), "printed: {}", printed);
    }

    #[test]
    fn damaged_files_never_panic(file in model_file(), cut_at in any::<prop::sample::Index>(),
                                 insert in prop::sample::select(FRAGMENTS)) {
        // Truncate a valid file and splice a token in: errors in the middle of real rules.
        let printed = pretty(&file);
        let mut position = cut_at.index(printed.len() + 1);
        while !printed.is_char_boundary(position) {
            position -= 1;
        }
        let damaged = format!("{}{insert}{}", &printed[..position], &printed[position..]);
        check_errors(&damaged, &parse_model(&damaged))?;
        check_errors(&printed[..position], &parse_model(&printed[..position]))?;
    }
}

#[test]
fn moderately_deep_nesting_parses() {
    // Hand-written models nest a few levels; 50 is far beyond that and within the parser's
    // limit. A large stack keeps the check meaningful in unoptimised builds too.
    let depth = 50;
    let sources = [
        format!("let a = {}x{}", "(".repeat(depth), ")".repeat(depth)),
        format!("let a = {}x", "-".repeat(depth)),
        format!("let a = x{}", "^x".repeat(depth)),
        format!("let a = {}x{}", "f([".repeat(depth / 2), "])".repeat(depth / 2)),
    ];
    let parsed = std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || sources.iter().map(|s| parse_model(s).is_ok()).collect::<Vec<_>>())
        .expect("spawn a parser thread")
        .join()
        .expect("the parser thread returns");
    assert!(parsed.iter().all(|&ok| ok), "{parsed:?}");
}
