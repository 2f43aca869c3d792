//! Timers on the WASI monotonic clock.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use wasip2::clocks::monotonic_clock;

use crate::reactor::Waiter;

/// Milliseconds on the monotonic clock (since an arbitrary start).
#[must_use]
pub fn now_ms() -> u64 {
    monotonic_clock::now() / 1_000_000
}

/// Milliseconds since the Unix epoch on the wall clock
/// (`wasi:clocks/wall-clock`): for timestamps a person or another program
/// reads, such as when a page was fetched. It can jump; measure durations
/// and deadlines with [`now_ms`].
#[must_use]
pub fn unix_time_ms() -> u64 {
    let now = wasip2::clocks::wall_clock::now();
    now.seconds
        .saturating_mul(1000)
        .saturating_add(u64::from(now.nanoseconds / 1_000_000))
}

/// Waits for `duration`.
pub fn sleep(duration: Duration) -> Sleep {
    let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
    Sleep {
        deadline_ns: monotonic_clock::now().saturating_add(nanos),
        waiter: Waiter::default(),
    }
}

/// The future returned by [`sleep`].
#[derive(Debug)]
pub struct Sleep {
    deadline_ns: u64,
    waiter: Waiter,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if monotonic_clock::now() >= self.deadline_ns {
            return Poll::Ready(());
        }
        let deadline_ns = self.deadline_ns;
        self.waiter
            .park(cx, || monotonic_clock::subscribe_instant(deadline_ns));
        Poll::Pending
    }
}

/// The error of [`timeout`]: the deadline passed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed {
    /// The timeout that passed.
    pub timeout_ms: u64,
}

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "timed out after {} ms", self.timeout_ms)
    }
}

impl std::error::Error for Elapsed {}

/// Runs `future` for at most `duration`.
///
/// # Errors
///
/// [`Elapsed`] if `duration` passes before `future` completes; `future` is
/// dropped then.
pub async fn timeout<F: Future>(duration: Duration, future: F) -> Result<F::Output, Elapsed> {
    use futures::future::{select, Either};
    let timeout_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    match select(std::pin::pin!(future), sleep(duration)).await {
        Either::Left((output, _)) => Ok(output),
        Either::Right(((), _)) => Err(Elapsed { timeout_ms }),
    }
}
