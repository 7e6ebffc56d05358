//! Syntax: the text of a `.lra` file becomes an abstract syntax tree with byte spans.
//! `parser` holds the grammar (nom), `ast` the tree, `pretty` prints a tree back as source.

pub mod ast;
pub mod parser;
pub mod pretty;

pub use ast::*;
pub use parser::{parse_model, SyntaxError};
