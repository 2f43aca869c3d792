//! `ww run`: run a ROM in this process, with a `Host` from the cluster.

use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args as ClapArgs;

use super::connect::PeerArgs;
use super::{EXIT_ERROR, EXIT_TRAPPED};
use crate::cap::disconnected::DisconnectedHost;
use crate::cap::run_host::RunHost;
use crate::runner::{self, ExitKind, Limits, Runtime, SpawnSpec, Stdio};

#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(flatten)]
    peers: PeerArgs,
    /// Dial the cluster first; with --dial=false every Host call fails
    /// with "not connected".
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    dial: bool,
    /// Memory limit of the ROM, in MiB.
    #[arg(long, default_value_t = Limits::default().memory_bytes_max / (1024 * 1024))]
    memory_limit_mb: usize,
    /// Kill the ROM if it computes this long without yielding to its host.
    #[arg(long, default_value_t = Limits::default().busy_ms_max)]
    busy_limit_ms: u64,
    /// Where compiled ROMs are cached (default: $XDG_CACHE_HOME/ww or ~/.cache/ww).
    #[arg(long, env = "WW_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// The ROM (a wasm32-wasip2 command component), then its arguments.
    /// Everything after the ROM goes to the ROM, `--help` and options that
    /// look like ww's included: ww's own options come before the ROM.
    // One list, not a ROM then a list: clap would still take a `--help`
    // right after the ROM as its own.
    #[arg(
        value_name = "ROM [ARGS]",
        required = true,
        num_args = 1..,
        trailing_var_arg = true
    )]
    command: Vec<std::ffi::OsString>,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let (rom_path, rom_args) = args.command.split_first().context("no ROM given")?;
    let rom_path = PathBuf::from(rom_path);
    let rom_args = rom_args
        .iter()
        .map(|arg| {
            arg.to_str()
                .map(str::to_owned)
                .with_context(|| format!("ROM argument {arg:?} is not UTF-8"))
        })
        .collect::<Result<Vec<String>>>()?;
    let bytes = std::fs::read(&rom_path)
        .with_context(|| format!("cannot read ROM {}", rom_path.display()))?;
    // One process: its own limit is the only one.
    let memory_bytes_max = args.memory_limit_mb.saturating_mul(1024 * 1024);
    let runtime = Runtime::new(
        args.cache_dir.clone().or_else(default_cache_dir),
        runner::Budgets {
            guest_memory_bytes_max: memory_bytes_max,
            descriptors_max: runner::default_descriptors_max(runner::raise_open_files_limit()),
            // Not held to a share: see `Stdio::Inherit`.
            guests_cpu_percent: 100,
        },
    )?;
    let rom = runtime
        .roms()
        .load(Arc::from(bytes))
        .await
        .with_context(|| format!("{} is not a valid ROM", rom_path.display()))?;

    // Keep the session (and its node) alive while the ROM runs.
    let session = if args.dial {
        Some(args.peers.connect().await?)
    } else {
        None
    };
    let host = match &session {
        Some(session) => RunHost::client(session.host.clone(), session.peer, session.node.clone()),
        None => DisconnectedHost::client(),
    };
    let spec = SpawnSpec {
        args: rom_args,
        // The ROM's stderr is the user's terminal: it should honour the
        // user's NO_COLOR too. Nothing else of ww's environment leaks in.
        env: std::env::var("NO_COLOR")
            .ok()
            .map(|value| vec![("NO_COLOR".to_owned(), value)])
            .unwrap_or_default(),
        volume: None,
        quota: None,
        limits: Limits {
            memory_bytes_max,
            busy_ms_max: args.busy_limit_ms,
        },
        stdio: Stdio::Inherit,
        cpu: Rc::default(),
    };
    let running = runner::start(&runtime, &rom, spec, host.client)?;
    let status = running.exit.await;
    drop(session);
    Ok(match status.kind {
        ExitKind::Exited => ExitCode::from(u8::try_from(status.code).unwrap_or(EXIT_ERROR)),
        ExitKind::Trapped | ExitKind::Killed => {
            eprintln!("ww: {}: {status}", rom_path.display());
            ExitCode::from(EXIT_TRAPPED)
        }
    })
}

fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("ww"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache").join("ww"))
}
