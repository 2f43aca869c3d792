//! The runtime of a ROM: `ww-guest`'s executor and WASI clocks.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::Runtime;

/// Timers and tasks inside a ROM.
#[derive(Clone, Copy, Debug, Default)]
pub struct GuestRuntime;

impl Runtime for GuestRuntime {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()>>> {
        Box::pin(ww_guest::sleep(duration))
    }

    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()>>>) {
        ww_guest::spawn(future);
    }

    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| {
                u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
            })
    }
}
