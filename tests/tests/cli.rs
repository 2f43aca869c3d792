//! Command-line habits: shell completions, and `NO_COLOR` (no escape codes
//! on a terminal when it is set, nor on a pipe ever).
//!
//! The colour checks run `ww` under a pseudo-terminal with util-linux's
//! `script`, since colour only appears when stderr is a terminal.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use ww_tests::{rom, ww, ww_bin};

const SUBCOMMANDS: [&str; 5] = ["start", "run", "ps", "keygen", "completions"];

/// What bash offers after `line` (ending in a space: a new word), with
/// `ww completions bash` sourced.
fn bash_completes(line: &str) -> Vec<String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let script = format!(
        r#"source <("$WW" completions bash) || exit 1
COMP_WORDS=({words} '')
COMP_CWORD={cword}
COMP_LINE='{line}'
COMP_POINT=${{#COMP_LINE}}
_ww ww '' '{previous}'
printf '%s\n' "${{COMPREPLY[@]}}""#,
        words = words.join(" "),
        cword = words.len(),
        previous = words.last().unwrap(),
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .env("WW", ww_bin())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn bash_completion_offers_subcommands_and_shells() {
    let script = ww(&["completions", "bash"]);
    script.assert_ok();
    let syntax = Command::new("bash")
        .arg("-n")
        .arg("-c")
        .arg(&script.stdout)
        .output()
        .unwrap();
    assert!(syntax.status.success(), "bash -n: {syntax:?}");

    let registered = Command::new("bash")
        .arg("-c")
        .arg(r#"source <("$WW" completions bash) && complete -p ww"#)
        .env("WW", ww_bin())
        .output()
        .unwrap();
    assert!(registered.status.success(), "{registered:?}");
    assert!(
        String::from_utf8_lossy(&registered.stdout).contains("-F _ww ww"),
        "{registered:?}"
    );

    let offered = bash_completes("ww ");
    for subcommand in SUBCOMMANDS {
        assert!(offered.iter().any(|word| word == subcommand), "{offered:?}");
    }
    let shells = bash_completes("ww completions ");
    for shell in ["bash", "zsh", "fish"] {
        assert!(shells.iter().any(|word| word == shell), "{shells:?}");
    }
}

#[test]
fn zsh_and_fish_completions_name_the_subcommands() {
    for shell in ["zsh", "fish"] {
        let script = ww(&["completions", shell]);
        script.assert_ok();
        for subcommand in SUBCOMMANDS {
            assert!(
                script.stdout.contains(subcommand),
                "{shell} script lacks {subcommand}"
            );
        }
    }
    let refused = ww(&["completions", "tcsh"]);
    assert_eq!(refused.code, Some(2), "{refused:?}");
}

/// A clap error, clap's help, and debug logs (a fresh cache: the compiler
/// logs); the ROM itself fails, not connected, which is fine.
const SCRIPT: &str = r#""$WW" --no-such-flag; "$WW" run --help; WW_LOG=debug "$WW" run --dial=false --cache-dir "$CACHE" "$HELLO""#;

/// Runs `script` (sh) with `ww`, a ROM and a fresh cache directory.
fn command(program: &str, cache: &tempfile::TempDir) -> Command {
    let mut command = Command::new(program);
    command
        .env("WW", ww_bin())
        .env("HELLO", rom("hello"))
        .env("CACHE", cache.path())
        .env_remove("NO_COLOR");
    command
}

/// Runs [`SCRIPT`] under a pseudo-terminal; returns everything it wrote.
fn on_terminal(no_color: Option<&str>) -> Vec<u8> {
    let cache = tempfile::tempdir().unwrap();
    let mut command = command("script", &cache);
    command.args(["--quiet", "--return", "--command", SCRIPT, "/dev/null"]);
    if let Some(value) = no_color {
        command.env("NO_COLOR", value);
    }
    let out = command.output().expect("util-linux `script`");
    out.stdout
}

#[test]
fn no_color_leaves_help_errors_and_logs_plain() {
    let escape = |bytes: &[u8]| bytes.contains(&0x1b);

    let coloured = on_terminal(None);
    assert!(
        coloured.windows(5).any(|w| w == b"DEBUG"),
        "the script logs: {}",
        String::from_utf8_lossy(&coloured)
    );
    assert!(escape(&coloured), "a terminal gets colour by default");

    let plain = on_terminal(Some("1"));
    assert!(plain.windows(5).any(|w| w == b"DEBUG"));
    assert!(
        !escape(&plain),
        "NO_COLOR=1: {}",
        String::from_utf8_lossy(&plain)
    );

    // An empty NO_COLOR does not count (no-color.org).
    assert!(escape(&on_terminal(Some(""))));

    // A pipe never gets colour.
    let cache = tempfile::tempdir().unwrap();
    let piped = command("sh", &cache)
        .arg("-c")
        .arg(format!("{{ {SCRIPT}; }} 2>&1"))
        .output()
        .unwrap();
    assert!(piped.stdout.windows(5).any(|w| w == b"DEBUG"));
    assert!(!escape(&piped.stdout), "{piped:?}");
}
