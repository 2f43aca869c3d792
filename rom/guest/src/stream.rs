//! The host connection's two WASI streams (`ww:rpc/transport`, see
//! `wit/rpc.wit`) as `AsyncRead`/`AsyncWrite`, for capnp-rpc.
//!
//! Both are non-blocking: when a stream cannot make progress, the future
//! registers the stream's pollable with the reactor and returns `Pending`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::io::{AsyncRead, AsyncWrite};
use wasip2::io::streams::{InputStream, OutputStream, StreamError};

use crate::reactor::Waiter;

#[allow(unsafe_code, clippy::all, clippy::pedantic, missing_docs)]
mod bindings {
    // Only the macro's glue is unsafe; the streams are wasip2's own types,
    // so the reactor polls them like any other WASI pollable.
    wit_bindgen::generate!({
        path: "../../wit",
        world: "ww:rpc/rom",
        with: {
            "wasi:io/error@0.2.12": wasip2::io::error,
            "wasi:io/poll@0.2.12": wasip2::io::poll,
            "wasi:io/streams@0.2.12": wasip2::io::streams,
        },
    });
}

/// Takes the process's connection to its host. Called once, by [`crate::run`].
pub(crate) fn connect() -> (Input, Output) {
    let (input, output) = bindings::ww::rpc::transport::connect();
    (Input::new(input), Output::new(output))
}

/// Bytes from the host as an `AsyncRead`. EOF when the host closes it.
pub(crate) struct Input {
    // Declared first so it drops first: its pollable is a child of `stream`.
    waiter: Waiter,
    stream: InputStream,
}

impl Input {
    fn new(stream: InputStream) -> Self {
        Self {
            waiter: Waiter::default(),
            stream,
        }
    }
}

impl AsyncRead for Input {
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
                format!("the host connection failed: {}", err.to_debug_string()),
            ))),
        }
    }
}

/// Bytes to the host as an `AsyncWrite`.
pub(crate) struct Output {
    // Declared first so it drops first: its pollable is a child of `stream`.
    waiter: Waiter,
    stream: OutputStream,
}

impl Output {
    fn new(stream: OutputStream) -> Self {
        Self {
            waiter: Waiter::default(),
            stream,
        }
    }
}

fn closed(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        format!("the host connection {what}"),
    )
}

impl AsyncWrite for Output {
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
        // stream, whose writer task sends them as soon as it runs. A
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
