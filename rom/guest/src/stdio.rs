//! Async stdin/stdout over WASI streams, for capnp-rpc.
//!
//! Both are non-blocking: when a stream cannot make progress, the future
//! registers the stream's pollable with the reactor and returns `Pending`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::io::{AsyncRead, AsyncWrite};
use wasip2::io::streams::{InputStream, OutputStream, StreamError};

use crate::reactor::Waiter;

/// The guest's stdin as an `AsyncRead`. EOF when the host closes it.
pub(crate) struct Stdin {
    // Declared first so it drops first: its pollable is a child of `stream`.
    waiter: Waiter,
    stream: InputStream,
}

impl Stdin {
    pub(crate) fn new() -> Self {
        Self {
            waiter: Waiter::default(),
            stream: wasip2::cli::stdin::get_stdin(),
        }
    }
}

impl AsyncRead for Stdin {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        match self.stream.read(buf.len() as u64) {
            Ok(bytes) if bytes.is_empty() => {
                let this = &mut *self;
                this.waiter.park(cx, || this.stream.subscribe());
                Poll::Pending
            }
            Ok(bytes) => {
                assert!(
                    bytes.len() <= buf.len(),
                    "WASI read returned more than asked"
                );
                buf[..bytes.len()].copy_from_slice(&bytes);
                Poll::Ready(Ok(bytes.len()))
            }
            Err(StreamError::Closed) => Poll::Ready(Ok(0)),
            Err(StreamError::LastOperationFailed(err)) => Poll::Ready(Err(io::Error::other(
                format!("stdin failed: {}", err.to_debug_string()),
            ))),
        }
    }
}

/// The guest's stdout as an `AsyncWrite`.
pub(crate) struct Stdout {
    // Declared first so it drops first: its pollable is a child of `stream`.
    waiter: Waiter,
    stream: OutputStream,
}

impl Stdout {
    pub(crate) fn new() -> Self {
        Self {
            waiter: Waiter::default(),
            stream: wasip2::cli::stdout::get_stdout(),
        }
    }
}

fn closed(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, format!("stdout {what}"))
}

impl AsyncWrite for Stdout {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.stream.check_write() {
            Ok(0) => {
                let this = &mut *self;
                this.waiter.park(cx, || this.stream.subscribe());
                Poll::Pending
            }
            Ok(permit) => {
                let len = buf.len().min(usize::try_from(permit).unwrap_or(usize::MAX));
                match self.stream.write(&buf[..len]) {
                    Ok(()) => Poll::Ready(Ok(len)),
                    Err(_) => Poll::Ready(Err(closed("closed during write"))),
                }
            }
            Err(_) => Poll::Ready(Err(closed("closed"))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Nothing to do: `write` already handed the bytes to the host's
        // stdout stream, whose writer task sends them as soon as it runs. A
        // WASI `flush` would only make `check_write` answer 0 until that
        // task has run, so the next capnp message (capnp-futures flushes
        // after each one) would wait a whole poll round: pipelined calls
        // from a guest ran at a third of the speed (docs/benchmarks.md).
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Start a real flush on close, so what is buffered goes out before
        // the guest exits.
        match self.stream.flush() {
            Ok(()) => Poll::Ready(Ok(())),
            Err(_) => Poll::Ready(Err(closed("closed during flush"))),
        }
    }
}
