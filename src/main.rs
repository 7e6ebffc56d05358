//! The `toolkit` binary: parse the command line, run the library, render errors, exit code.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use toolkit::{cli, diagnostic};

fn main() -> ExitCode {
    let arguments = cli::Cli::parse();
    match cli::execute(arguments) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprint!("{}", diagnostic::render(&error, std::io::stderr().is_terminal()));
            ExitCode::FAILURE
        }
    }
}
