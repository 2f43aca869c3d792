//! `ww completions SHELL`: a completion script for the shell, on stdout.

use std::process::ExitCode;

use clap::{Args as ClapArgs, CommandFactory};
use clap_complete::Shell;

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// The shell to complete for (bash, zsh, fish, elvish or powershell).
    shell: Shell,
}

pub fn run(args: &Args) -> ExitCode {
    let mut command = super::Cli::command();
    clap_complete::generate(args.shell, &mut command, "ww", &mut std::io::stdout());
    ExitCode::SUCCESS
}
