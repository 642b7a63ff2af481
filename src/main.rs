//! The `ferrite` command-line tool.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ferrite::prelude::*;

/// Ferrite: run and inspect ExecuTorch programs on CPUs.
#[derive(Debug, Parser)]
#[command(name = "ferrite", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Verify a .pte program and summarise it: methods, inputs, outputs, operators, delegates,
    /// constants and memory plan.
    Inspect {
        /// The program.
        model: PathBuf,
        /// Print exactly one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Inspect { model, json } => {
            let program = Program::mmap(&model)?;
            let summary = ProgramSummary::of(&program);
            if json {
                let text = serde_json::to_string(&summary).map_err(|e| Error::Usage(e.to_string()))?;
                emit(&format!("{text}\n"))
            } else {
                emit(&format!("{}\n{summary}", model.display()))
            }
        }
    }
}

/// Writes to stdout; a closed pipe (`ferrite inspect x.pte | head`) is not an error.
fn emit(text: &str) -> Result<(), Error> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::Output { path: "<stdout>".into(), source: e })
        }
        _ => Ok(()),
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("FERRITE_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error[{}]: {e}", e.code());
            eprintln!("  hint: {}", e.hint());
            ExitCode::from(2)
        }
    }
}
