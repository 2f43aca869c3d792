//! A small HTTP/1.1 listener for the operator view: GET only, one request
//! per connection, bounded request heads. Enough for Prometheus and a
//! browser; no framework to build.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::debug;

use super::limits::{HTTP_CONNECTIONS_MAX, HTTP_REQUEST_BYTES_MAX, HTTP_REQUEST_TIMEOUT_MS};
use crate::cap::context::HostContext;

const PAGE: &str = include_str!("page.html");

/// Binds `addr` and serves the operator view on it in the background.
/// Returns the bound address (port 0 picks one).
///
/// # Errors
///
/// When `addr` cannot be bound.
pub async fn serve(ctx: Rc<HostContext>, addr: SocketAddr) -> Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the --http address {addr}"))?;
    let bound = listener
        .local_addr()
        .context("reading the --http address")?;
    let permits = Arc::new(Semaphore::new(HTTP_CONNECTIONS_MAX));
    tokio::task::spawn_local(async move {
        loop {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    debug!("http accept: {err}");
                    continue;
                }
            };
            let ctx = ctx.clone();
            tokio::task::spawn_local(async move {
                if let Err(err) = handle(&ctx, stream).await {
                    debug!("http: {err:#}");
                }
                drop(permit);
            });
        }
    });
    Ok(bound)
}

async fn handle(ctx: &HostContext, mut stream: TcpStream) -> Result<()> {
    let head = tokio::time::timeout(
        Duration::from_millis(HTTP_REQUEST_TIMEOUT_MS),
        read_head(&mut stream),
    )
    .await
    .context("the request head took too long")??;
    let Some(head) = head else {
        return respond(
            &mut stream,
            "431 Request Header Fields Too Large",
            "text/plain",
            b"request head too large\n",
        )
        .await;
    };
    let line = head.lines().next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "GET" {
        return respond(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            b"only GET\n",
        )
        .await;
    }
    let path = target.split('?').next().unwrap_or("");
    match path {
        "/" => {
            respond(
                &mut stream,
                "200 OK",
                "text/html; charset=utf-8",
                PAGE.as_bytes(),
            )
            .await
        }
        "/metrics" => {
            let body = super::metrics::render(ctx);
            respond(
                &mut stream,
                "200 OK",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                body.as_bytes(),
            )
            .await
        }
        "/status.json" => {
            let body = super::status::render(ctx).to_string();
            respond(&mut stream, "200 OK", "application/json", body.as_bytes()).await
        }
        _ => {
            respond(
                &mut stream,
                "404 Not Found",
                "text/plain",
                b"not found: try /, /metrics or /status.json\n",
            )
            .await
        }
    }
}

/// The request head, or `None` if it exceeds the limit.
async fn read_head(stream: &mut TcpStream) -> Result<Option<String>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let read = stream
            .read(&mut chunk)
            .await
            .context("reading the request")?;
        if read == 0 {
            anyhow::bail!("the client closed before its request head ended");
        }
        buf.extend_from_slice(&chunk[..read]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            return Ok(Some(String::from_utf8_lossy(&buf).into_owned()));
        }
        if buf.len() > HTTP_REQUEST_BYTES_MAX {
            return Ok(None);
        }
    }
}

async fn respond(stream: &mut TcpStream, status: &str, kind: &str, body: &[u8]) -> Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.shutdown().await?;
    Ok(())
}
