//! The site's HTTP server: hyper 1 on a current-thread runtime of its own.

use std::convert::Infallible;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::{graph, Config, Log, Record};

/// The largest `/large/{bytes}` body served.
pub const LARGE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// The longest `/slow-*` delay served.
const SLOW_MS_MAX: u64 = 600_000;
/// `/redirect/{n}` chains are at most this long.
const REDIRECT_CHAIN_MAX: u32 = 1000;
/// Retry-After sent with 429 and 503, in seconds.
const RETRY_AFTER_S: u32 = 2;

type Body = BoxBody<Bytes, Infallible>;

pub(crate) struct State {
    config: Config,
    port: u16,
    log: Log,
    file: Option<Mutex<File>>,
    started: Instant,
}

impl State {
    pub(crate) fn new(config: Config, port: u16, log: Log) -> std::io::Result<Arc<Self>> {
        let file = match &config.log_path {
            Some(path) => Some(Mutex::new(
                OpenOptions::new().create(true).append(true).open(path)?,
            )),
            None => None,
        };
        Ok(Arc::new(Self {
            config,
            port,
            log,
            file,
            started: Instant::now(),
        }))
    }

    fn record(&self, request: &Request<Incoming>) {
        let at = Instant::now();
        let path = request
            .uri()
            .path_and_query()
            .map_or_else(|| "/".to_string(), |p| p.as_str().to_string());
        let user_agent = request
            .headers()
            .get(hyper::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let record = Record {
            at,
            ms: at.duration_since(self.started).as_millis() as u64,
            method: request.method().to_string(),
            path,
            user_agent,
        };
        if let Some(file) = &self.file {
            if let Ok(mut file) = file.lock() {
                let _ = writeln!(file, "{} {} {}", record.ms, record.method, record.path);
            }
        }
        self.log.push(record);
    }
}

pub(crate) fn run(
    listener: std::net::TcpListener,
    state: Arc<State>,
    stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    runtime.block_on(async move {
        let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
            return;
        };
        let accept = async {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(handle(&state, request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        };
        tokio::select! {
            () = accept => {}
            _ = stopped => {}
        }
    });
    // Dropping the runtime cancels every connection, `/hang` included.
}

fn full(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()).boxed());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn redirect(to: String) -> Response<Body> {
    let mut response = full(StatusCode::FOUND, "text/html", "redirect");
    if let Ok(value) = HeaderValue::from_str(&to) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

fn not_found() -> Response<Body> {
    full(
        StatusCode::NOT_FOUND,
        "text/html",
        "<html><body>not found</body></html>",
    )
}

async fn handle(state: &State, request: Request<Incoming>) -> Response<Body> {
    state.record(&request);
    let path = request.uri().path().to_string();
    let parts: Vec<&str> = path.trim_start_matches('/').splitn(2, '/').collect();
    let number = |text: Option<&&str>| text.and_then(|t| t.parse::<u64>().ok());
    match (parts[0], parts.get(1)) {
        ("robots.txt", None) => full(StatusCode::OK, "text/plain", robots(&state.config)),
        ("page", Some(_)) | ("nofollow", Some(_)) => match number(parts.get(1)) {
            Some(page) if page < u64::from(state.config.pages) => full(
                StatusCode::OK,
                "text/html; charset=utf-8",
                graph::page_html(
                    state.config.seed,
                    state.config.pages,
                    page as u32,
                    state.port,
                    state.config.special_links,
                ),
            ),
            _ => not_found(),
        },
        ("private", Some(_)) => full(StatusCode::OK, "text/html", "<html>private</html>"),
        ("redirect", Some(_)) => match number(parts.get(1)) {
            Some(0) => redirect("/page/0".into()),
            Some(n) if n <= u64::from(REDIRECT_CHAIN_MAX) => {
                redirect(format!("/redirect/{}", n - 1))
            }
            _ => not_found(),
        },
        ("loop", Some(&"a")) => redirect("/loop/b".into()),
        ("loop", Some(&"b")) => redirect("/loop/a".into()),
        ("slow-head", Some(_)) => match number(parts.get(1)) {
            Some(ms) => {
                tokio::time::sleep(Duration::from_millis(ms.min(SLOW_MS_MAX))).await;
                full(StatusCode::OK, "text/html", "<html>slow head</html>")
            }
            None => not_found(),
        },
        ("slow-body", Some(_)) => match number(parts.get(1)) {
            Some(ms) => slow_body(Duration::from_millis(ms.min(SLOW_MS_MAX))),
            None => not_found(),
        },
        ("hang", None) => futures::future::pending().await,
        ("large", Some(_)) => match number(parts.get(1)) {
            Some(bytes) if bytes as usize <= LARGE_BYTES_MAX => {
                let mut body = b"<html><body>".to_vec();
                body.resize(bytes as usize, b'x');
                full(StatusCode::OK, "text/html", body)
            }
            _ => not_found(),
        },
        ("status", Some(_)) => {
            match number(parts.get(1)).and_then(|c| StatusCode::from_u16(c as u16).ok()) {
                Some(status) => {
                    let mut response = full(status, "text/html", format!("<html>{status}</html>"));
                    if status == StatusCode::TOO_MANY_REQUESTS
                        || status == StatusCode::SERVICE_UNAVAILABLE
                    {
                        response
                            .headers_mut()
                            .insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S));
                    }
                    response
                }
                None => not_found(),
            }
        }
        ("doc.txt", None) => full(StatusCode::OK, "text/plain", "plain text\n"),
        ("data.bin", None) => full(StatusCode::OK, "application/octet-stream", vec![0u8; 1024]),
        _ => not_found(),
    }
}

fn robots(config: &Config) -> String {
    let mut text = String::from("User-agent: *\nDisallow: /private/\n");
    if config.crawl_delay_ms > 0 {
        text.push_str(&format!(
            "Crawl-delay: {}.{:03}\n",
            config.crawl_delay_ms / 1000,
            config.crawl_delay_ms % 1000
        ));
    }
    text
}

/// Half the body now, the other half after `delay`.
fn slow_body(delay: Duration) -> Response<Body> {
    let first = Bytes::from_static(b"<html><body>first half ");
    let second = Bytes::from_static(b"second half</body></html>");
    let stream = futures::stream::unfold(0u8, move |step| {
        let (first, second) = (first.clone(), second.clone());
        async move {
            match step {
                0 => Some((Ok::<_, Infallible>(Frame::data(first)), 1)),
                1 => {
                    tokio::time::sleep(delay).await;
                    Some((Ok(Frame::data(second)), 2))
                }
                _ => None,
            }
        }
    });
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
    response
}
