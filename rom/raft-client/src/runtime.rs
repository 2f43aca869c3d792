//! What the client needs from its executor.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// Timers and background tasks, from whichever executor runs the client.
pub trait Runtime: Clone + 'static {
    /// Waits for `duration`.
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()>>>;
    /// Runs `future` in the background on the current thread.
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()>>>);
    /// Milliseconds since the Unix epoch (used to stamp nothing that needs
    /// agreement: only timeouts and retry pacing).
    fn now_ms(&self) -> u64;
}
