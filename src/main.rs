//! The `toolkit` binary: parse the command line, run the library, render errors, exit code.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use toolkit::{cli, diagnostic};

// The inner minimisations allocate many small vectors per integration node; mimalloc's
// thread-local free lists make that markedly cheaper than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
