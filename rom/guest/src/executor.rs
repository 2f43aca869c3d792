//! The single-threaded executor and the ROM entry point.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;

use capnp_rpc::rpc_twoparty_capnp::Side;
use futures::channel::oneshot;
use futures::executor::{LocalPool, LocalSpawner};
use futures::task::LocalSpawnExt;
use wasip2::clocks::monotonic_clock;
use wasip2::io::poll::Pollable;
use ww_api::host;

use crate::reactor;
use crate::stream;

/// The longest the poll loop blocks without looking around, even with
/// nothing due. Every wakeup is driven by a pollable, so this only bounds
/// the damage of a missed wakeup (wetware/ww needed such a guard against
/// wasmtime stream quirks). One timer serves many loop rounds, so idle
/// costs one wakeup per bound, not a timer per round.
const IDLE_BOUND_NS: u64 = 1_000_000_000;

thread_local! {
    static SPAWNER: RefCell<Option<LocalSpawner>> = const { RefCell::new(None) };
}

/// Runs `future` in the background on the ROM's executor.
///
/// # Panics
///
/// Outside [`run`]: there is no executor to run it.
// A documented panic on a programming error of the ROM's author, inside the
// ROM; nothing a host or peer sends reaches it.
#[allow(clippy::expect_used)]
pub fn spawn(future: impl Future<Output = ()> + 'static) {
    SPAWNER.with(|spawner| {
        let spawner = spawner.borrow();
        let spawner = spawner
            .as_ref()
            .expect("ww_guest::spawn called outside ww_guest::run");
        spawner
            .spawn_local(future)
            .expect("the ROM's executor has shut down");
    });
}

/// Lets every other task that is ready run once, then resumes: for work
/// that must leave before the caller blocks in a host call (a capnp message
/// queued on the host connection is written only when the connection's
/// task runs). Costs one executor round, no host call.
pub fn yield_now() -> YieldNow {
    YieldNow { yielded: false }
}

/// The future returned by [`yield_now`].
pub struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.yielded {
            return std::task::Poll::Ready(());
        }
        self.yielded = true;
        // Woken at once, so it is queued behind the tasks already woken
        // (the executor polls in wake order).
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

/// What [`run`] gives a ROM.
pub struct Env {
    /// The host this process runs on (for `ww run`, the host it dialed).
    pub host: host::Client,
    /// The ROM's arguments, without argv\[0\].
    pub args: Vec<String>,
    export: RefCell<Option<oneshot::Sender<capnp::capability::Client>>>,
}

impl Env {
    /// Offers `cap` to this process's parent as the process's bootstrap
    /// capability (`Process.bootstrap`). Only the first call counts.
    pub fn export(&self, cap: impl capnp::capability::FromClientHook) {
        if let Some(sender) = self.export.borrow_mut().take() {
            let _ = sender.send(capnp::capability::Client::new(cap.into_client_hook()));
        }
    }
}

/// Runs a ROM: connects to the host over `ww:rpc/transport` (its stdin,
/// stdout and stderr stay the user's), runs `main` with its
/// [`Env`], and exits the process with 0 when `main` returns `Ok`; with N
/// when it returns an [`ExitCode`] error (`Err(ExitCode(N).into())`); or
/// with 1 after printing any other error to stderr.
pub fn run<F, Fut>(main: F) -> !
where
    F: FnOnce(Env) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + 'static,
{
    let mut pool = LocalPool::new();
    SPAWNER.with(|spawner| *spawner.borrow_mut() = Some(pool.spawner()));

    let (export_sender, export_receiver) = oneshot::channel();
    let exported = capnp_rpc::new_future_client(async move {
        export_receiver.await.map_err(|_| {
            capnp::Error::failed(
                "this ROM exports no capability (it never called Env::export)".into(),
            )
        })
    });
    let connection_ended = Rc::new(Cell::new(false));
    let ended = connection_ended.clone();
    let (input, output) = stream::connect();
    let connection = ww_api::vat::connect::<host::Client, _, _, _>(
        input,
        output,
        Side::Client,
        Some(exported),
        |driver| {
            spawn(async move {
                if let Err(err) = driver.await {
                    eprintln!("ww-guest: connection to host ended: {err}");
                }
                ended.set(true);
            });
        },
    );
    let env = Env {
        host: connection.client,
        args: std::env::args().skip(1).collect(),
        export: RefCell::new(Some(export_sender)),
    };

    let outcome: Rc<RefCell<Option<anyhow::Result<()>>>> = Rc::new(RefCell::new(None));
    let slot = outcome.clone();
    let user = main(env);
    spawn(async move {
        let result = user.await;
        *slot.borrow_mut() = Some(result);
    });

    let mut bound: Option<(u64, Pollable)> = None;
    let code = loop {
        pool.run_until_stalled();
        if let Some(result) = outcome.borrow_mut().take() {
            break match result {
                Ok(()) => 0,
                Err(err) => match err.downcast_ref::<ExitCode>() {
                    Some(ExitCode(code)) => *code,
                    None => {
                        eprintln!("error: {err:#}");
                        1
                    }
                },
            };
        }
        if reactor::parked() == 0 {
            // Nothing can wake any task: the ROM would hang forever.
            eprintln!(
                "error: the ROM is stuck: every task waits, and nothing can wake one{}",
                if connection_ended.get() {
                    " (the host connection has ended)"
                } else {
                    ""
                }
            );
            break 1;
        }
        let now = monotonic_clock::now();
        if bound.as_ref().is_none_or(|(deadline, _)| *deadline <= now) {
            let deadline = now.saturating_add(IDLE_BOUND_NS);
            bound = Some((deadline, monotonic_clock::subscribe_instant(deadline)));
        }
        if let Some((_, pollable)) = &bound {
            reactor::block_on_ready(pollable);
        }
    };
    // Pollables go before the streams they belong to; the rest of the
    // teardown is the process exit, which the host observes.
    drop(bound);
    reactor::clear();
    exit(code)
}

/// A ROM's request to end with a given exit code: return
/// `Err(ExitCode(N).into())` from the function given to [`run`]. Nothing is
/// printed; `ww run` exits with N.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitCode(pub u8);

impl std::fmt::Display for ExitCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit code {}", self.0)
    }
}

impl std::error::Error for ExitCode {}

/// The exit code of an operation its authority does not allow (sysexits'
/// EX_NOPERM), so scripts and tests can tell "not permitted" from other
/// failures.
pub const NOT_PERMITTED_EXIT_CODE: u8 = 77;

/// Prints `result`'s error and exits with [`NOT_PERMITTED_EXIT_CODE`] when
/// it is a "not permitted" refusal; otherwise returns `result` unchanged.
pub fn exit_if_not_permitted(result: anyhow::Result<()>) -> anyhow::Result<()> {
    if let Err(err) = &result {
        if err.to_string().contains("not permitted") {
            eprintln!("Error: {err:#}");
            exit(NOT_PERMITTED_EXIT_CODE);
        }
    }
    result
}

/// Ends the process at once with `code`, which the host reports as the
/// process's exit code. `std::process::exit` goes through WASI 0.2's
/// `exit`, which carries only success or failure (0 or 1); this uses
/// `exit-with-code` (WASI 0.2.12), which carries the whole byte.
pub fn exit(code: u8) -> ! {
    // `exit-with-code` skips std's exit-time flush: a result printed
    // without a trailing newline would be lost.
    let _ = std::io::Write::flush(&mut std::io::stdout());
    if code == 0 {
        std::process::exit(0);
    }
    wasip2::cli::exit::exit_with_code(code);
    // The host never returns from `exit-with-code`; if one did, still end.
    std::process::exit(1)
}
