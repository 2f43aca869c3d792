//! The `ww` command line (README.md and docs/architecture.md).

mod completions;
mod connect;
mod ls;
mod ps;
mod pubsub;
mod run;
mod start;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{ColorChoice, CommandFactory, FromArgMatches, Parser, Subcommand};

/// Exit code for errors of `ww` itself (bad flags, unreachable cluster,
/// invalid ROM). A ROM's own exit code is passed through unchanged.
pub const EXIT_ERROR: u8 = 1;

/// Exit code when a ROM trapped or was killed by a limit.
pub const EXIT_TRAPPED: u8 = 70;

#[derive(Parser, Debug)]
#[command(
    name = "ww",
    version,
    about = "A Wetware-style cluster runtime: hosts run WebAssembly ROMs with Cap'n Proto capabilities."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start a host.
    Start(start::Args),
    /// Run a ROM locally, with a Host capability from the cluster.
    Run(run::Args),
    /// Publish one message to a topic.
    Pub(pubsub::PubArgs),
    /// Print the messages published to a topic, one per line.
    Sub(pubsub::SubArgs),
    /// List an anchor's children; `/` lists the hosts.
    Ls(ls::Args),
    /// Print the value stored at an anchor.
    Get(ls::GetArgs),
    /// Store bytes at an anchor.
    Set(ls::SetArgs),
    /// List every process of the cluster.
    Ps(ps::PsArgs),
    /// Kill a process (`<peer id>/<pid>`, as `ww ps` prints it).
    Kill(ps::KillArgs),
    /// Print a new pre-shared cluster key (for `--key`).
    Keygen,
    /// Print a shell completion script (`source <(ww completions bash)`).
    Completions(completions::Args),
}

/// Parses the command line, runs the command, and returns the exit code.
pub fn main() -> ExitCode {
    let cli = parse();
    let default_level = match cli.command {
        Command::Start(_) => "info",
        _ => "warn",
    };
    init_tracing(default_level);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("ww: cannot start the async runtime: {err}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let local = tokio::task::LocalSet::new();
    let result = local.block_on(&runtime, async move {
        match cli.command {
            Command::Start(args) => start::run(args).await,
            Command::Run(args) => run::run(args).await,
            Command::Pub(args) => pubsub::publish(args).await,
            Command::Sub(args) => pubsub::subscribe(args).await,
            Command::Ls(args) => ls::run(args).await,
            Command::Get(args) => ls::get(args).await,
            Command::Set(args) => ls::set(args).await,
            Command::Ps(args) => ps::ps(args).await,
            Command::Kill(args) => ps::kill(args).await,
            Command::Completions(args) => Ok(completions::run(&args)),
            Command::Keygen => {
                print!("{}", crate::net::identity::new_psk());
                Ok(ExitCode::SUCCESS)
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("ww: {err:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Whether `NO_COLOR` asks for no colour (<https://no-color.org>: set and
/// not empty).
pub fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty())
}

/// Parses the command line, with clap's styled help and errors off under
/// `NO_COLOR` (clap already leaves them plain when the stream is not a
/// terminal).
fn parse() -> Cli {
    let color = if no_color() {
        ColorChoice::Never
    } else {
        ColorChoice::Auto
    };
    let matches = Cli::command().color(color).get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|err| err.exit())
}

fn init_tracing(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Log files and pipes get no escape codes; nor does NO_COLOR.
        .with_ansi(!no_color() && std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}
