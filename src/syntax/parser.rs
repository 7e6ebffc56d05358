//! The nom parser for `.lra` files: one function per grammar rule, the rule in its doc
//! comment. After a keyword the parser commits (`cut`), so an error points at the text that
//! broke the rule, not at the keyword. A broken item is reported and skipped: the parser
//! resynchronises at the next line that starts with an item keyword, so one run reports
//! every syntax error of a file.

use nom::{
    branch::alt,
    bytes::complete::{tag, take_till, take_while},
    character::complete::{char, digit1, satisfy},
    combinator::{cut, map, opt, recognize, verify},
    error::{ErrorKind, ParseError},
    multi::{separated_list0, separated_list1},
    number::complete::recognize_float,
    sequence::{delimited, pair, preceded},
    IResult, Parser,
};
use nom_locate::LocatedSpan;

use super::ast::*;

pub type Input<'a> = LocatedSpan<&'a str>;

/// A syntax error: where and what was expected.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub offset: usize,
    pub message: String,
}

/// The nom error type: the furthest failure and a description of what was expected there.
#[derive(Debug, Clone, PartialEq)]
pub struct ParserError {
    pub offset: usize,
    pub expected: String,
}

impl<'a> ParseError<Input<'a>> for ParserError {
    fn from_error_kind(input: Input<'a>, kind: ErrorKind) -> Self {
        ParserError { offset: input.location_offset(), expected: format!("{kind:?}").to_lowercase() }
    }
    fn append(_: Input<'a>, _: ErrorKind, other: Self) -> Self {
        other
    }
    fn or(self, other: Self) -> Self {
        // Report the alternative that got furthest: it is the one the author meant.
        if other.offset >= self.offset {
            other
        } else {
            self
        }
    }
}

type PResult<'a, O> = IResult<Input<'a>, O, ParserError>;

const ITEM_KEYWORDS: &[&str] = &[
    "model", "import", "param", "order", "conjugate", "let", "fn", "term", "observe", "extremize",
    "solve", "start", "sweep", "simulate",
];
const RESERVED: &[&str] = &[
    "model", "import", "param", "order", "conjugate", "let", "fn", "term", "observe", "extremize",
    "solve", "start", "sweep", "simulate", "report", "in", "of", "from", "as", "E", "min", "argmin",
    "hessian",
];

/// Parse a whole file, collecting every syntax error.
pub fn parse_model(source: &str) -> Result<ModelFile, Vec<SyntaxError>> {
    let mut input = Input::new(source);
    let mut items = Vec::new();
    let mut errors = Vec::new();
    loop {
        let (rest, _) = blank(input).expect("blank never fails");
        input = rest;
        if input.fragment().is_empty() {
            break;
        }
        match item(input) {
            Ok((rest, parsed)) => {
                items.push(parsed);
                input = rest;
            }
            Err(nom::Err::Error(e)) | Err(nom::Err::Failure(e)) => {
                let message = if e.offset == input.location_offset() && !starts_with_keyword(&input)
                {
                    format!(
                        "expected a declaration ({}), found `{}`",
                        ITEM_KEYWORDS.join(", "),
                        first_word(input.fragment())
                    )
                } else {
                    format!("expected {}", e.expected)
                };
                errors.push(SyntaxError { offset: e.offset.min(source.len()), message });
                input = skip_to_next_item(input, e.offset);
            }
            Err(nom::Err::Incomplete(_)) => unreachable!("complete parsers only"),
        }
    }
    if errors.is_empty() {
        Ok(ModelFile { items })
    } else {
        Err(errors)
    }
}

fn first_word(text: &str) -> String {
    let word: String = text.chars().take_while(|c| !c.is_whitespace()).take(20).collect();
    if word.is_empty() {
        text.chars().take(1).collect()
    } else {
        word
    }
}

fn starts_with_keyword(input: &Input) -> bool {
    let word: String =
        input.fragment().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    ITEM_KEYWORDS.contains(&word.as_str())
}

/// Skip past the error to the next line that begins with an item keyword.
fn skip_to_next_item<'a>(input: Input<'a>, error_offset: usize) -> Input<'a> {
    let text = *input.fragment();
    let base = input.location_offset();
    let mut position = error_offset.saturating_sub(base).max(1).min(text.len());
    while !text.is_char_boundary(position) {
        position += 1;
    }
    loop {
        match text[position..].find('\n') {
            None => return advance(input, text.len()),
            Some(newline) => {
                position += newline + 1;
                let line = text[position..].trim_start_matches([' ', '\t']);
                let word: String =
                    line.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if ITEM_KEYWORDS.contains(&word.as_str()) {
                    return advance(input, position);
                }
            }
        }
    }
}

fn advance(input: Input, count: usize) -> Input {
    use nom::Input as _;
    input.take_from(count)
}

/// Replace the error of `parser` by "expected `what`" at the position it failed.
fn expect<'a, O>(
    what: &'static str,
    mut parser: impl Parser<Input<'a>, Output = O, Error = ParserError>,
) -> impl Parser<Input<'a>, Output = O, Error = ParserError> {
    move |input: Input<'a>| {
        let start = input.location_offset();
        parser.parse(input).map_err(|err| {
            err.map(|e| {
                // A deeper committed error already says more than our label.
                if e.offset > start {
                    e
                } else {
                    ParserError { offset: start, expected: what.to_string() }
                }
            })
        })
    }
}

/// blank := (whitespace | "#" comment)*
fn blank(input: Input) -> PResult<()> {
    let mut input = input;
    loop {
        let (rest, _) = take_while(|c: char| c.is_whitespace())(input)?;
        input = rest;
        if input.fragment().starts_with('#') {
            let (rest, _) = take_till(|c| c == '\n')(input)?;
            input = rest;
        } else {
            return Ok((input, ()));
        }
    }
}

/// A token followed by blanks.
fn lexeme<'a, O>(
    parser: impl Parser<Input<'a>, Output = O, Error = ParserError>,
) -> impl Parser<Input<'a>, Output = O, Error = ParserError> {
    map((parser, blank), |(out, _)| out)
}

fn symbol<'a>(text: &'static str) -> impl Parser<Input<'a>, Output = Input<'a>, Error = ParserError> {
    lexeme(tag(text))
}

/// keyword := word not followed by an identifier character
fn keyword<'a>(word: &'static str) -> impl Parser<Input<'a>, Output = Span, Error = ParserError> {
    lexeme(map(
        verify(raw_identifier, move |text: &Input| *text.fragment() == word),
        |text: Input| span_of(&text),
    ))
}

fn span_of(text: &Input) -> Span {
    Span::new(text.location_offset(), text.location_offset() + text.fragment().len())
}

fn raw_identifier(input: Input) -> PResult<Input> {
    recognize(pair(
        satisfy(|c: char| c.is_ascii_alphabetic() || c == '_'),
        take_while(|c: char| c.is_ascii_alphanumeric() || c == '_'),
    ))
    .parse(input)
}

/// ident := [A-Za-z_][A-Za-z0-9_]*  (not a reserved word)
fn identifier(input: Input) -> PResult<Ident> {
    expect(
        "a name",
        lexeme(map(
            verify(raw_identifier, |text: &Input| !RESERVED.contains(text.fragment())),
            |text: Input| Ident { name: text.fragment().to_string(), span: span_of(&text) },
        )),
    )
    .parse(input)
}

/// number := float literal (`2`, `0.5`, `1e-3`)
fn number(input: Input) -> PResult<f64> {
    expect(
        "a number",
        lexeme(map(
            verify(recognize_float, |text: &Input| {
                text.fragment().starts_with(|c: char| c.is_ascii_digit() || c == '.')
            }),
            |text: Input| text.fragment().parse::<f64>().unwrap_or(f64::NAN),
        )),
    )
    .parse(input)
}

fn signed_number(input: Input) -> PResult<f64> {
    map(pair(opt(symbol("-")), number), |(sign, value)| if sign.is_some() { -value } else { value })
        .parse(input)
}

fn integer(input: Input) -> PResult<usize> {
    expect("a whole number", lexeme(map(digit1, |d: Input| d.fragment().parse().unwrap_or(usize::MAX))))
        .parse(input)
}

/// string := '"' [^"\n]* '"'
fn string(input: Input) -> PResult<String> {
    expect(
        "a quoted string",
        lexeme(map(
            delimited(char('"'), take_while(|c| c != '"' && c != '\n'), cut(char('"'))),
            |text: Input| text.fragment().to_string(),
        )),
    )
    .parse(input)
}

fn position(input: Input) -> PResult<usize> {
    Ok((input, input.location_offset()))
}

fn end_position(input: Input) -> usize {
    input.location_offset()
}

/// item := model | import | param | order | conjugate | let | fn | term | observe
///       | extremize | solve | start | sweep
fn item(input: Input) -> PResult<Item> {
    alt((
        map(model_decl, Item::Model),
        map(import_decl, Item::Import),
        map(param_decl, Item::Param),
        map(order_decl, Item::Order),
        map(conjugate_decl, Item::Conjugate),
        map(let_decl, Item::Let),
        map(function_decl, Item::Function),
        map(|i| named_expr("term", i), Item::Term),
        map(|i| named_expr("observe", i), Item::Observe),
        map(extremize_decl, Item::Extremize),
        map(solve_decl, Item::Solve),
        map(start_decl, Item::Start),
        map(sweep_decl, Item::Sweep),
        map(simulate_decl, Item::Simulate),
    ))
    .parse(input)
}

/// simulate := "simulate" "{" (("report" ident "=" expr string?) | (ident "=" expr)) ","? ... "}"
fn simulate_decl(input: Input) -> PResult<SimulateDecl> {
    let (input, start) = position(input)?;
    let (mut input, _) = keyword("simulate").parse(input)?;
    (input, _) = cut(expect("`{`", symbol("{"))).parse(input)?;
    let mut settings = Vec::new();
    let mut reports = Vec::new();
    loop {
        if let Ok((rest, _)) = symbol("}").parse(input) {
            return Ok((rest, SimulateDecl { settings, reports, span: Span::new(start, end_position(rest)) }));
        }
        if let Ok((rest, report)) = (|i| named_expr("report", i)).parse(input) {
            reports.push(report);
            input = rest;
        } else {
            let (rest, (name, _, value)) = cut((
                expect("a setting `name = value`, `report name = value` or `}`", identifier),
                expect("`=`", symbol("=")),
                expression,
            ))
            .parse(input)?;
            settings.push((name, value));
            input = rest;
        }
        if let Ok((rest, _)) = symbol(",").parse(input) {
            input = rest;
        }
    }
}

/// model := "model" string
fn model_decl(input: Input) -> PResult<ModelDecl> {
    let (input, start) = position(input)?;
    let (input, _) = keyword("model").parse(input)?;
    let (rest, title) = cut(string).parse(input)?;
    Ok((rest, ModelDecl { title, span: Span::new(start, end_position(rest)) }))
}

/// import := "import" string "as" ident
fn import_decl(input: Input) -> PResult<ImportDecl> {
    let (input, start) = position(input)?;
    let (input, _) = keyword("import").parse(input)?;
    let (rest, (path, _, alias)) =
        cut((string, expect("`as`", keyword("as")), identifier)).parse(input)?;
    Ok((rest, ImportDecl { path, alias, span: Span::new(start, end_position(rest)) }))
}

/// domain := "in" ("real" | "positive" | "nonnegative" | "integer" | "unit" | "psd")
fn domain(input: Input) -> PResult<Domain> {
    preceded(
        keyword("in"),
        cut(expect(
            "a domain (real, positive, nonnegative, integer, unit, psd)",
            alt((
                map(keyword("real"), |_| Domain::Real),
                map(keyword("positive"), |_| Domain::Positive),
                map(keyword("nonnegative"), |_| Domain::Nonnegative),
                map(keyword("integer"), |_| Domain::Integer),
                map(keyword("unit"), |_| Domain::Unit),
                map(keyword("psd"), |_| Domain::Psd),
            )),
        )),
    )
    .parse(input)
}

/// param := "param" ident "=" signed_number domain? string?
fn param_decl(input: Input) -> PResult<ParamDecl> {
    let (input, start) = position(input)?;
    let (input, _) = keyword("param").parse(input)?;
    let (rest, (name, _, default, domain, doc)) = cut((
        identifier,
        expect("`=`", symbol("=")),
        signed_number,
        opt(domain),
        opt(string),
    ))
    .parse(input)?;
    let domain = domain.unwrap_or(Domain::Real);
    Ok((rest, ParamDecl { name, default, domain, doc, span: Span::new(start, end_position(rest)) }))
}

/// shape := "scalar" | "vector" "[" expr "]" | "matrix" "[" expr "," expr "]" | "sym" "[" expr "]"
fn shape(input: Input) -> PResult<ShapeExpr> {
    expect(
        "a shape (scalar, vector[n], matrix[n, m], sym[n])",
        alt((
            map(keyword("scalar"), |_| ShapeExpr::Scalar),
            map(
                preceded(keyword("vector"), cut(delimited(symbol("["), expression, symbol("]")))),
                |n| ShapeExpr::Vector(Box::new(n)),
            ),
            map(
                preceded(
                    keyword("matrix"),
                    cut(delimited(
                        symbol("["),
                        (expression, symbol(","), expression),
                        symbol("]"),
                    )),
                ),
                |(rows, _, cols)| ShapeExpr::Matrix(Box::new(rows), Box::new(cols)),
            ),
            map(
                preceded(keyword("sym"), cut(delimited(symbol("["), expression, symbol("]")))),
                |n| ShapeExpr::Symmetric(Box::new(n)),
            ),
        )),
    )
    .parse(input)
}

/// order := "order" ident (":" shape)? domain? string?
fn order_decl(input: Input) -> PResult<OrderDecl> {
    let (input, start) = position(input)?;
    let (input, _) = keyword("order").parse(input)?;
    let (rest, (name, shape, domain, doc)) =
        cut((identifier, opt(preceded(symbol(":"), shape)), opt(domain), opt(string)))
            .parse(input)?;
    Ok((
        rest,
        OrderDecl {
            name,
            shape: shape.unwrap_or(ShapeExpr::Scalar),
            domain: domain.unwrap_or(Domain::Real),
            doc,
            span: Span::new(start, end_position(rest)),
        },
    ))
}

/// conjugate := "conjugate" ident "of" ident domain? string?
fn conjugate_decl(input: Input) -> PResult<ConjugateDecl> {
    let (input, start) = position(input)?;
    let (input, _) = keyword("conjugate").parse(input)?;
    let (rest, (name, _, of, domain, doc)) =
        cut((identifier, expect("`of`", keyword("of")), identifier, opt(domain), opt(string))).parse(input)?;
    let domain = domain.unwrap_or(Domain::Real);
    Ok((rest, ConjugateDecl { name, of, domain, doc, span: Span::new(start, end_position(rest)) }))
}

/// let := "let" ident "=" expr
fn let_decl(input: Input) -> PResult<LetDecl> {
    let (input, start) = position(input)?;
    let (input, _) = keyword("let").parse(input)?;
    let (rest, (name, _, value)) =
        cut((identifier, expect("`=`", symbol("=")), expression)).parse(input)?;
    Ok((rest, LetDecl { name, value, span: Span::new(start, end_position(rest)) }))
}

/// fn := "fn" ident "(" ident,* ")" "=" expr
fn function_decl(input: Input) -> PResult<FunctionDecl> {
    let (input, start) = position(input)?;
    let (input, _) = keyword("fn").parse(input)?;
    let (rest, (name, params, _, body)) = cut((
        identifier,
        delimited(
            expect("`(`", symbol("(")),
            separated_list0(symbol(","), identifier),
            expect("`)`", symbol(")")),
        ),
        expect("`=`", symbol("=")),
        expression,
    ))
    .parse(input)?;
    Ok((rest, FunctionDecl { name, params, body, span: Span::new(start, end_position(rest)) }))
}

/// term := "term" ident "=" expr string?     observe := "observe" ident "=" expr string?
fn named_expr<'a>(word: &'static str, input: Input<'a>) -> PResult<'a, NamedExpr> {
    let (input, start) = position(input)?;
    let (input, _) = keyword(word).parse(input)?;
    let (rest, (name, _, value, doc)) =
        cut((identifier, expect("`=`", symbol("=")), expression, opt(string))).parse(input)?;
    Ok((rest, NamedExpr { name, value, doc, span: Span::new(start, end_position(rest)) }))
}

/// extremize := "extremize" ("energy" | "free_entropy")
fn extremize_decl(input: Input) -> PResult<ExtremizeDecl> {
    let (input, start) = position(input)?;
    let (input, _) = keyword("extremize").parse(input)?;
    let (rest, objective) = cut(expect(
        "`energy` or `free_entropy`",
        alt((
            map(keyword("energy"), |_| Objective::Energy),
            map(keyword("free_entropy"), |_| Objective::FreeEntropy),
        )),
    ))
    .parse(input)?;
    Ok((rest, ExtremizeDecl { objective, span: Span::new(start, end_position(rest)) }))
}

/// setting := ident "=" (signed_number | word)
fn setting(input: Input) -> PResult<Setting> {
    let (input, start) = position(input)?;
    let (rest, (key, _, value)) = (
        identifier,
        cut(expect("`=`", symbol("="))),
        cut(expect(
            "a number or a word",
            alt((
                map(signed_number, SettingValue::Number),
                map(lexeme(raw_identifier), |w: Input| SettingValue::Word(w.fragment().to_string())),
            )),
        )),
    )
        .parse(input)?;
    Ok((rest, Setting { key, value, span: Span::new(start, end_position(rest)) }))
}

/// solve := "solve" "{" setting ("," setting)* ","? "}"
fn solve_decl(input: Input) -> PResult<SolveDecl> {
    let (input, start) = position(input)?;
    let (input, _) = keyword("solve").parse(input)?;
    let (rest, settings) = cut(delimited(
        expect("`{`", symbol("{")),
        terminated_list(setting),
        expect("`}` or `,`", symbol("}")),
    ))
    .parse(input)?;
    Ok((rest, SolveDecl { settings, span: Span::new(start, end_position(rest)) }))
}

/// A comma-separated list that tolerates a trailing comma.
fn terminated_list<'a, O>(
    element: impl Parser<Input<'a>, Output = O, Error = ParserError>,
) -> impl Parser<Input<'a>, Output = Vec<O>, Error = ParserError> {
    map(pair(separated_list0(symbol(","), element), opt(symbol(","))), |(list, _)| list)
}

/// start := "start" ident "{" (ident "=" expr),* "}"
fn start_decl(input: Input) -> PResult<StartDecl> {
    let (input, start) = position(input)?;
    let (input, _) = keyword("start").parse(input)?;
    let (rest, (name, values)) = cut((
        identifier,
        delimited(
            expect("`{`", symbol("{")),
            terminated_list(map((identifier, cut(expect("`=`", symbol("="))), cut(expression)), |(n, _, e)| (n, e))),
            expect("`}` or `,`", symbol("}")),
        ),
    ))
    .parse(input)?;
    Ok((rest, StartDecl { name, values, span: Span::new(start, end_position(rest)) }))
}

/// sweep := "sweep" ident "=" signed_number ":" signed_number ":" integer
fn sweep_decl(input: Input) -> PResult<SweepDecl> {
    let (input, start) = position(input)?;
    let (input, _) = keyword("sweep").parse(input)?;
    let (rest, (param, _, first, _, last, _, count)) = cut((
        identifier,
        expect("`=`", symbol("=")),
        signed_number,
        expect("`:`", symbol(":")),
        signed_number,
        expect("`:`", symbol(":")),
        integer,
    ))
    .parse(input)?;
    Ok((
        rest,
        SweepDecl { param, start: first, stop: last, count, span: Span::new(start, end_position(rest)) },
    ))
}

// ---------------------------------------------------------------- expressions

/// expr := term (("+" | "-") term)*
pub fn expression(input: Input) -> PResult<Expr> {
    let (mut input, mut left) = product(input)?;
    loop {
        let attempt = pair(alt((symbol("+"), symbol("-"))), cut(product)).parse(input);
        match attempt {
            Ok((rest, (op, right))) => {
                let op = if *op.fragment() == "+" { BinaryOp::Add } else { BinaryOp::Sub };
                left = binary(op, left, right);
                input = rest;
            }
            Err(nom::Err::Error(_)) => return Ok((input, left)),
            Err(other) => return Err(other),
        }
    }
}

fn binary(op: BinaryOp, left: Expr, right: Expr) -> Expr {
    let span = left.span.join(right.span);
    Expr { kind: ExprKind::Binary(op, Box::new(left), Box::new(right)), span }
}

/// product := unary (("*" | "/") unary)*
fn product(input: Input) -> PResult<Expr> {
    let (mut input, mut left) = unary(input)?;
    loop {
        let attempt = pair(alt((symbol("*"), symbol("/"))), cut(unary)).parse(input);
        match attempt {
            Ok((rest, (op, right))) => {
                let op = if *op.fragment() == "*" { BinaryOp::Mul } else { BinaryOp::Div };
                left = binary(op, left, right);
                input = rest;
            }
            Err(nom::Err::Error(_)) => return Ok((input, left)),
            Err(other) => return Err(other),
        }
    }
}

/// How deep expressions may nest. Every cycle of the grammar passes through `unary`, and each
/// level costs the recursive descent kilobytes of stack (tens of kilobytes in debug builds), so
/// deeper text is reported as an error instead of overflowing the stack and aborting.
const MAX_NESTING: usize = 64;

thread_local! {
    static NESTING: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// One level of expression nesting, counted while alive (also when parsing fails).
struct NestingLevel;

impl NestingLevel {
    fn enter(input: &Input) -> Result<NestingLevel, nom::Err<ParserError>> {
        let depth = NESTING.with(|n| {
            n.set(n.get() + 1);
            n.get()
        });
        let level = NestingLevel;
        if depth > MAX_NESTING {
            return Err(nom::Err::Failure(ParserError {
                offset: input.location_offset(),
                expected: format!("at most {MAX_NESTING} levels of nested expressions"),
            }));
        }
        Ok(level)
    }
}

impl Drop for NestingLevel {
    fn drop(&mut self) {
        NESTING.with(|n| n.set(n.get().saturating_sub(1)));
    }
}

/// unary := "-" unary | power
fn unary(input: Input) -> PResult<Expr> {
    let _level = NestingLevel::enter(&input)?;
    let (input, start) = position(input)?;
    if let Ok((rest, _)) = symbol("-").parse(input) {
        let (rest, operand) = cut(unary).parse(rest)?;
        let span = Span::new(start, operand.span.end);
        return Ok((rest, Expr { kind: ExprKind::Neg(Box::new(operand)), span }));
    }
    power(input)
}

/// power := postfix ("^" unary)?     (right-associative, binds tighter than unary minus)
fn power(input: Input) -> PResult<Expr> {
    let (input, base) = postfix(input)?;
    match preceded(symbol("^"), cut(unary)).parse(input) {
        Ok((rest, exponent)) => Ok((rest, binary(BinaryOp::Pow, base, exponent))),
        Err(nom::Err::Error(_)) => Ok((input, base)),
        Err(other) => Err(other),
    }
}

/// postfix := primary ("[" expr ("," expr)* "]" | "'")*
fn postfix(input: Input) -> PResult<Expr> {
    let (mut input, mut expr) = primary(input)?;
    loop {
        if let Ok((rest, _)) = symbol("'").parse(input) {
            let span = Span::new(expr.span.start, rest.location_offset());
            expr = Expr { kind: ExprKind::Transpose(Box::new(expr)), span };
            input = rest;
            continue;
        }
        // An index bracket follows its value (blanks in between are allowed).
        if input.fragment().starts_with('[') {
            let (rest, indices) = delimited(
                symbol("["),
                cut(separated_list1(symbol(","), expression)),
                cut(expect("`]`", symbol("]"))),
            )
            .parse(input)?;
            let span = Span::new(expr.span.start, rest.location_offset());
            expr = Expr { kind: ExprKind::Index(Box::new(expr), indices), span };
            input = rest;
            continue;
        }
        return Ok((input, expr));
    }
}

/// primary := number | expectation | minimization | call | qualified | ident
///          | "(" expr ")" | "[" expr,* "]"
fn primary(input: Input) -> PResult<Expr> {
    let (input, start) = position(input)?;
    let spanned = |kind: ExprKind, rest: &Input| Expr { kind, span: Span::new(start, rest.location_offset()) };
    if let Ok((rest, value)) = number(input) {
        return Ok((rest, spanned(ExprKind::Number(value), &rest)));
    }
    if let Ok((rest, _)) = symbol("(").parse(input) {
        let (rest, inner) = cut(expression).parse(rest)?;
        let (rest, _) = cut(expect("`)`", symbol(")"))).parse(rest)?;
        return Ok((rest, Expr { kind: inner.kind, span: Span::new(start, rest.location_offset()) }));
    }
    if let Ok((rest, _)) = symbol("[").parse(input) {
        let (rest, elements) = cut(terminated_list(expression)).parse(rest)?;
        let (rest, _) = cut(expect("`]` or `,`", symbol("]"))).parse(rest)?;
        return Ok((rest, spanned(ExprKind::List(elements), &rest)));
    }
    if let Ok((rest, _)) = pair(tag("E"), lexeme(char('['))).parse(input) {
        let (rest, expectation) = cut(expectation_rest).parse(rest)?;
        return Ok((rest, spanned(ExprKind::Expect(Box::new(expectation)), &rest)));
    }
    if let Ok((rest, word)) = lexeme(alt((tag("argmin"), tag("min")))).parse(input) {
        // `min(a, b)` is a call; `min h in R[2] { ... }` a minimisation.
        let next_is_word = rest.fragment().starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
        let boundary = !word.fragment().is_empty()
            && !input.fragment()[word.fragment().len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
        if next_is_word && boundary {
            let returns_argument = *word.fragment() == "argmin";
            let (rest, minimization) = cut(|i| minimization_rest(returns_argument, i)).parse(rest)?;
            return Ok((rest, spanned(ExprKind::Minimize(Box::new(minimization)), &rest)));
        }
    }
    if let Ok((rest, _)) = keyword("hessian").parse(input) {
        let (rest, hessian) = cut(hessian_rest).parse(rest)?;
        return Ok((rest, spanned(ExprKind::Hessian(Box::new(hessian)), &rest)));
    }
    // A call or a name; `min`/`max` are ordinary functions here.
    let (rest, name) = expect(
        "an expression",
        alt((
            identifier,
            lexeme(map(alt((tag("min"), tag("argmin"))), |t: Input| Ident {
                name: t.fragment().to_string(),
                span: span_of(&t),
            })),
        )),
    )
    .parse(input)?;
    if rest.fragment().starts_with('(') {
        let (rest, arguments) = delimited(
            symbol("("),
            cut(separated_list0(symbol(","), expression)),
            cut(expect("`)` or `,`", symbol(")"))),
        )
        .parse(rest)?;
        return Ok((rest, spanned(ExprKind::Call(name, arguments), &rest)));
    }
    if rest.fragment().starts_with('.') {
        let (rest, field) = preceded(symbol("."), cut(identifier)).parse(rest)?;
        return Ok((rest, spanned(ExprKind::Qualified(name, field), &rest)));
    }
    Ok((rest, spanned(ExprKind::Var(name), &rest)))
}

/// expectation := "E" "[" binding ("," binding)* (";" rule_option ("," rule_option)*)? "]" "{" expr "}"
fn expectation_rest(input: Input) -> PResult<Expectation> {
    let (input, bindings) = separated_list1(symbol(","), binding).parse(input)?;
    let (input, options) = opt(preceded(
        symbol(";"),
        cut(separated_list1(symbol(","), rule_option)),
    ))
    .parse(input)?;
    let (input, _) = expect("`]`", symbol("]")).parse(input)?;
    let (input, body) = delimited(expect("`{`", symbol("{")), expression, expect("`}`", symbol("}")))
        .parse(input)?;
    let mut rule = None;
    let mut weight = None;
    for option in options.unwrap_or_default() {
        match option {
            RuleOption::Rule(r) => rule = Some(r),
            RuleOption::Weight(w) => weight = Some(w),
        }
    }
    Ok((input, Expectation { bindings, rule, weight, body }))
}

enum RuleOption {
    Rule(RuleSpec),
    Weight(Expr),
}

/// rule_option := "hermite" "(" int ")" | "sobol" "(" int ("," int)? ")" | "weight" "=" expr
fn rule_option(input: Input) -> PResult<RuleOption> {
    expect(
        "an integration rule (hermite(n), sobol(points, scrambles)) or `weight = ...`",
        alt((
            map(
                preceded(keyword("hermite"), cut(delimited(symbol("("), integer, symbol(")")))),
                |n| RuleOption::Rule(RuleSpec::Hermite(n)),
            ),
            map(
                preceded(
                    keyword("sobol"),
                    cut(delimited(
                        symbol("("),
                        pair(integer, opt(preceded(symbol(","), integer))),
                        symbol(")"),
                    )),
                ),
                |(points, scrambles)| {
                    RuleOption::Rule(RuleSpec::Sobol { points, scrambles: scrambles.unwrap_or(1) })
                },
            ),
            map(preceded(pair(keyword("weight"), cut(symbol("="))), cut(expression)), RuleOption::Weight),
        )),
    )
    .parse(input)
}

/// binding := ident "~" distribution
fn binding(input: Input) -> PResult<Binding> {
    let (input, start) = position(input)?;
    let (rest, (var, _, distribution)) =
        (identifier, cut(expect("`~`", symbol("~"))), cut(distribution)).parse(input)?;
    Ok((rest, Binding { var, distribution, span: Span::new(start, end_position(rest)) }))
}

/// distribution := "N" "(" expr "," expr ")" | "rademacher" ("[" expr "]")? | "gauss_bernoulli" "(" expr ")"
fn distribution(input: Input) -> PResult<Distribution> {
    expect(
        "a distribution (N(mean, covariance), rademacher, gauss_bernoulli(rho))",
        alt((
            map(
                preceded(
                    keyword("N"),
                    cut(delimited(symbol("("), (expression, symbol(","), expression), symbol(")"))),
                ),
                |(mean, _, covariance)| Distribution::Normal { mean, covariance },
            ),
            map(
                preceded(keyword("rademacher"), opt(delimited(symbol("["), cut(expression), cut(symbol("]"))))),
                Distribution::Rademacher,
            ),
            map(
                preceded(keyword("gauss_bernoulli"), cut(delimited(symbol("("), expression, symbol(")")))),
                Distribution::GaussBernoulli,
            ),
        )),
    )
    .parse(input)
}

/// minimization := ("min" | "argmin") ident "in" "R" ("[" expr "]")? ("from" "(" expr,* ")")? "{" expr "}"
fn minimization_rest(returns_argument: bool, input: Input) -> PResult<Minimization> {
    let (input, var) = identifier(input)?;
    let (input, _) = expect("`in`", keyword("in")).parse(input)?;
    let (input, _) = expect("`R`", keyword("R")).parse(input)?;
    let (input, dimension) = opt(delimited(symbol("["), expression, expect("`]`", symbol("]")))).parse(input)?;
    let (input, starts) = opt(preceded(
        keyword("from"),
        delimited(expect("`(`", symbol("(")), separated_list1(symbol(","), expression), expect("`)`", symbol(")"))),
    ))
    .parse(input)?;
    let (input, body) = delimited(expect("`{`", symbol("{")), expression, expect("`}`", symbol("}")))
        .parse(input)?;
    Ok((input, Minimization { returns_argument, var, dimension, starts: starts.unwrap_or_default(), body }))
}

/// hessian := "hessian" ident "in" "R" ("[" expr "]")? "at" expr "{" expr "}"
fn hessian_rest(input: Input) -> PResult<HessianExpr> {
    let (input, var) = identifier(input)?;
    let (input, _) = expect("`in`", keyword("in")).parse(input)?;
    let (input, _) = expect("`R`", keyword("R")).parse(input)?;
    let (input, dimension) = opt(delimited(symbol("["), expression, expect("`]`", symbol("]")))).parse(input)?;
    let (input, _) = expect("`at`", keyword("at")).parse(input)?;
    let (input, point) = expression(input)?;
    let (input, body) = delimited(expect("`{`", symbol("{")), expression, expect("`}`", symbol("}")))
        .parse(input)?;
    Ok((input, HessianExpr { var, dimension, point, body }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_of_minus_and_power() {
        let file = parse_model("let a = -x^2 + b*c/d").unwrap();
        let Item::Let(decl) = &file.items[0] else { panic!() };
        let ExprKind::Binary(BinaryOp::Add, left, right) = &decl.value.kind else { panic!("{decl:?}") };
        assert!(matches!(left.kind, ExprKind::Neg(_)));
        assert!(matches!(right.kind, ExprKind::Binary(BinaryOp::Div, _, _)));
    }

    #[test]
    fn expectation_and_minimization() {
        let text = "term channel = alpha * E[u ~ N(0, 1), z ~ N(0, 1); hermite(16)] { min h in R from (u) { (h - u)^2/2 + h^2/(2*V) } }";
        let file = parse_model(text).unwrap();
        assert_eq!(file.items.len(), 1);
    }

    #[test]
    fn hessian_binds_its_variable_at_a_point() {
        let text = "observe h = hessian y in R[2] at [u, -u] { norm2(y)^2/4 }";
        let file = parse_model(text).unwrap();
        let Item::Observe(decl) = &file.items[0] else { panic!() };
        let ExprKind::Hessian(hessian) = &decl.value.kind else { panic!("{decl:?}") };
        assert_eq!(hessian.var.name, "y");
        assert!(matches!(hessian.point.kind, ExprKind::List(_)));
        let missing_at = parse_model("observe h = hessian y in R[2] [u, u] { y[1] }").unwrap_err();
        assert!(missing_at[0].message.contains("`at`"), "{missing_at:?}");
    }

    #[test]
    fn several_errors_are_reported() {
        let text = "param a = \nparam b = 1\nlet c = (1 +\nlet d = 2\n";
        let errors = parse_model(text).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = format!("let a = {}x{}\nlet b = 1", "(".repeat(100_000), ")".repeat(100_000));
        let errors = parse_model(&deep).unwrap_err();
        assert!(errors[0].message.contains("nested"), "{errors:?}");
        let fine = format!("let a = {}x{}", "(".repeat(MAX_NESTING - 1), ")".repeat(MAX_NESTING - 1));
        assert!(parse_model(&fine).is_ok());
    }

    #[test]
    fn min_call_and_index() {
        let file = parse_model("let a = min(x, y) + v[1] + M[1, 2]'").unwrap();
        assert_eq!(file.items.len(), 1);
    }
}
