//! Progress on stderr for long ROM operations: one live line on a terminal,
//! plain lines otherwise.
//!
//! Under `ww run` a ROM's stderr is the user's, and the host answers WASI's
//! `wasi:cli/terminal-stderr` truthfully: it is a terminal exactly when
//! `ww`'s own stderr is one. On a terminal, [`Progress`] redraws one line in
//! place with `\r` (a spinner, the message and the time taken); anywhere
//! else (a pipe, a file, a host's log) it prints a line each time the
//! message changes, so logs and scripts see each step once and no control
//! characters. Neither way uses escape sequences or colour, so `NO_COLOR`
//! (which `ww run` passes on) is honoured as it stands.

use std::fmt::Write as _;
use std::io::Write;

const SPINNER: [char; 4] = ['|', '/', '-', '\\'];

/// How often [`Progress::spin_until`] redraws a live line.
const TICK: std::time::Duration = std::time::Duration::from_millis(200);

/// Width of a [`count`] bar, in characters between the brackets.
const BAR_WIDTH: usize = 20;

/// Whether this process's stderr is a terminal (`wasi:cli/terminal-stderr`).
pub fn stderr_is_terminal() -> bool {
    wasip2::cli::terminal_stderr::get_terminal_stderr().is_some()
}

/// A progress line for one operation. Drop or [`Progress::finish`] it to
/// end the live line.
pub struct Progress<W: Write = std::io::Stderr> {
    out: W,
    live: bool,
    started_ms: u64,
    ticks: usize,
    /// The last message shown (plain lines: to print each once).
    last: Option<String>,
    /// Characters of the live line as last drawn, to blank a shorter one.
    drawn: usize,
}

impl Progress {
    /// Progress on stderr, live when stderr is a terminal.
    pub fn stderr() -> Self {
        Self::new(std::io::stderr(), stderr_is_terminal(), crate::now_ms())
    }
}

impl<W: Write> Progress<W> {
    /// Progress on `out`: a live line when `live`, plain lines otherwise.
    pub fn new(out: W, live: bool, now_ms: u64) -> Self {
        Self {
            out,
            live,
            started_ms: now_ms,
            ticks: 0,
            last: None,
            drawn: 0,
        }
    }

    /// Whether this draws a live line (stderr is a terminal).
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// Shows `message` as the current state. Call it on every round of a
    /// wait loop: a live line redraws (its spinner and clock move), plain
    /// output prints only a changed message.
    pub fn update(&mut self, message: &str) {
        self.update_at(message, crate::now_ms());
    }

    /// [`Progress::update`] with the clock given.
    pub fn update_at(&mut self, message: &str, now_ms: u64) {
        if self.live {
            let spinner = SPINNER[self.ticks % SPINNER.len()];
            self.ticks += 1;
            let elapsed = now_ms.saturating_sub(self.started_ms) as f64 / 1000.0;
            let line = format!("{spinner} {message} ({elapsed:.1}s)");
            self.draw(&line);
        } else if self.last.as_deref() != Some(message) {
            let _ = writeln!(self.out, "{message}");
        }
        self.last = Some(message.to_owned());
    }

    /// Shows `message` on a live line only: for waits whose plain output
    /// already says what is happening.
    pub fn spin(&mut self, message: &str) {
        if self.live {
            self.update(message);
        }
    }

    /// Awaits `future`, showing `message` on a live line (as [`Self::spin`])
    /// redrawn every [`TICK`], so the spinner and clock move during one
    /// long call too.
    pub async fn spin_until<F: std::future::Future>(
        &mut self,
        message: &str,
        future: F,
    ) -> F::Output {
        let mut future = std::pin::pin!(future);
        loop {
            self.spin(message);
            if !self.live {
                return future.await;
            }
            if let Ok(output) = crate::timeout(TICK, future.as_mut()).await {
                return output;
            }
        }
    }

    /// Ends the operation with `message` as its last line: the live line
    /// gives way to it; plain output prints it unless it was just printed.
    pub fn finish_with(mut self, message: &str) {
        if self.live || self.last.as_deref() != Some(message) {
            self.println(message);
        }
    }

    /// Prints `message` as a line of its own; a live line comes back at
    /// the next [`Progress::update`].
    pub fn println(&mut self, message: &str) {
        self.clear();
        let _ = writeln!(self.out, "{message}");
    }

    /// Ends the live line, leaving nothing of it on the terminal.
    pub fn finish(mut self) {
        self.clear();
    }

    /// Blanks the live line before printing elsewhere on the same terminal
    /// (stdout); the next [`Progress::update`] draws it again.
    pub fn hide(&mut self) {
        self.clear();
    }

    fn draw(&mut self, line: &str) {
        let width = line.chars().count();
        // Blank what a longer previous line left, without escape codes.
        let pad = self.drawn.saturating_sub(width);
        let _ = write!(self.out, "\r{line}{:pad$}", "");
        let _ = self.out.flush();
        self.drawn = width;
    }

    fn clear(&mut self) {
        if self.live && self.drawn > 0 {
            let _ = write!(self.out, "\r{:width$}\r", "", width = self.drawn);
            let _ = self.out.flush();
            self.drawn = 0;
        }
    }
}

impl<W: Write> Drop for Progress<W> {
    fn drop(&mut self) {
        self.clear();
    }
}

/// `what done/total`, with a bar when `live` (`[=====>    ]`).
pub fn count(what: &str, done: u64, total: u64, live: bool) -> String {
    let mut text = format!("{what} {done}/{total}");
    if live && total > 0 {
        let filled = (done.min(total) as usize * BAR_WIDTH) / total as usize;
        let mut bar = String::with_capacity(BAR_WIDTH + 2);
        bar.push('[');
        bar.extend(std::iter::repeat_n('=', filled));
        if filled < BAR_WIDTH {
            bar.push('>');
            bar.extend(std::iter::repeat_n(' ', BAR_WIDTH - filled - 1));
        }
        bar.push(']');
        let _ = write!(text, " {bar}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(live: bool, steps: &[&str]) -> String {
        let mut buffer = Vec::new();
        {
            let mut progress = Progress::new(&mut buffer, live, 0);
            for (index, step) in steps.iter().enumerate() {
                progress.update_at(step, 100 * index as u64);
            }
            progress.finish_with("done");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }

    #[test]
    fn plain_output_prints_each_message_once_without_control_characters() {
        let text = output(false, &["a 0/3", "a 0/3", "a 1/3", "a 3/3"]);
        assert_eq!(text, "a 0/3\na 1/3\na 3/3\ndone\n");
        let text = output(false, &["a 0/3", "done"]);
        assert_eq!(text, "a 0/3\ndone\n", "the last line is not repeated");
    }

    #[test]
    fn live_output_redraws_one_line_and_clears_it() {
        let text = output(true, &["long message", "short"]);
        assert!(text.starts_with("\r| long message (0.0s)"), "{text:?}");
        assert!(text.contains("\r/ short (0.1s)       "), "{text:?}");
        assert!(text.ends_with("done\n"), "{text:?}");
        assert!(!text.contains('\x1b'), "no escape codes: {text:?}");
    }

    #[test]
    fn count_draws_a_bar_only_when_live() {
        assert_eq!(count("leased", 5, 10, false), "leased 5/10");
        assert_eq!(
            count("leased", 5, 10, true),
            "leased 5/10 [==========>         ]"
        );
        assert_eq!(
            count("leased", 10, 10, true),
            "leased 10/10 [====================]"
        );
    }
}
