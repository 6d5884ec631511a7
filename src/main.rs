//! The `agentstore` binary: parse, run, print the error once, choose the exit code
//! (0 ok, 1 runtime failure, 2 usage or invalid value, 3 a check found problems).

mod cli;
mod rng;

use std::process::ExitCode;

use clap::Parser;

/// `line` with every word longer than 200 characters cut, saying how long it was: a
/// 10,000-character value makes a short error, not a 10 KB one.
fn clip_words(line: &str) -> String {
    line.split(' ')
        .map(agentstore::clip)
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() -> ExitCode {
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        // --help and --version are "errors" that print to stdout and succeed.
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        // A bare `agentstore` or `agentstore memory`: the help, on stderr, exit 2.
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            return ExitCode::from(2);
        }
        // Usage errors: one line on stderr, exit 2.
        Err(e) => {
            let rendered = e.render().to_string();
            let line: Vec<&str> = rendered
                .lines()
                .map(str::trim)
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .filter(|l| !l.is_empty())
                .collect();
            let line = line.join(" ");
            eprintln!(
                "agentstore: {}",
                clip_words(line.trim_start_matches("error: "))
            );
            return ExitCode::from(2);
        }
    };
    let style = cli::ErrorStyle {
        verbose: args.verbose,
        busy_timeout: args.busy_timeout,
    };
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            if cli::output::is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("agentstore: {}", cli::error_line(&e, style));
            ExitCode::from(cli::exit_code(&e))
        }
    }
}
