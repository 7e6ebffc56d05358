//! The one place that renders errors for people: file:line:column, the offending source
//! span underlined (miette), a help line when there is one. Everything else returns data.

use std::fmt::Write as _;
use std::path::Path;

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteDiagnostic, NamedSource, Report};

use crate::pipeline::ToolkitError;

/// 1-based line and column (in characters) of a byte offset.
pub fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let boundary = (0..=offset).rev().find(|&i| source.is_char_boundary(i)).unwrap_or(0);
    let before = &source[..boundary];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, column)
}

fn render_one(path: &Path, source: &str, start: usize, end: usize, message: &str, help: Option<&str>, color: bool) -> String {
    let (line, column) = line_column(source, start);
    let heading = format!("{}:{line}:{column}: {message}", path.display());
    let length = end.saturating_sub(start).max(usize::from(start < source.len()));
    let mut diagnostic = MietteDiagnostic::new(heading).with_label(LabeledSpan::at(start.min(source.len())..(start + length).min(source.len()), "here"));
    if let Some(help) = help {
        diagnostic = diagnostic.with_help(help.to_string());
    }
    let report = Report::new(diagnostic).with_source_code(NamedSource::new(path.display().to_string(), source.to_string()));
    let theme = if color { GraphicalTheme::unicode() } else { GraphicalTheme::unicode_nocolor() };
    let mut out = String::new();
    if GraphicalReportHandler::new_themed(theme).with_width(100).render_report(&mut out, report.as_ref()).is_err() {
        out = format!("error: {message}\n");
    }
    out
}

/// Render an error; `color` is for terminals.
pub fn render(error: &ToolkitError, color: bool) -> String {
    match error {
        ToolkitError::Syntax { path, text: source, errors } => {
            let mut out = String::new();
            for e in errors {
                out.push_str(&render_one(path, source, e.offset, e.offset + 1, &format!("syntax error: {}", e.message), None, color));
            }
            let _ = writeln!(out, "{} syntax error{} in {}", errors.len(), if errors.len() == 1 { "" } else { "s" }, path.display());
            out
        }
        ToolkitError::Type { path, text: source, errors } => {
            let mut out = String::new();
            for e in errors {
                out.push_str(&render_one(path, source, e.span.start, e.span.end, &e.message, e.help.as_deref(), color));
            }
            let _ = writeln!(out, "{} error{} in {}", errors.len(), if errors.len() == 1 { "" } else { "s" }, path.display());
            out
        }
        other => format!("error: {other}\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns_are_one_based() {
        let text = "ab\ncde\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 4), (2, 2));
    }
}
