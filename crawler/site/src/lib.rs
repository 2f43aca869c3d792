//! A deterministic local web site for testing the HTTP grant and the
//! crawler. It listens on 127.0.0.1 only and logs every request it gets,
//! with its time, so tests can check politeness (crawl-delay spacing) and
//! that disallowed URLs were never requested.
//!
//! ```text
//! /robots.txt           Disallow: /private/ and a Crawl-delay (config)
//! /page/{i}             i < pages: HTML, links per graph::links
//! /nofollow/{i}         linked only with rel=nofollow
//! /private/{..}         disallowed by robots.txt (served if asked)
//! /redirect/{n}         302 to /redirect/{n-1}; /redirect/0 to /page/0
//! /loop/a, /loop/b      302 to each other
//! /slow-head/{ms}       headers after ms
//! /slow-body/{ms}       headers at once, first half of the body, the rest after ms
//! /hang                 reads the request, never answers
//! /large/{bytes}        an HTML body of that size (<= LARGE_BYTES_MAX)
//! /status/{code}        that status; 429 and 503 with Retry-After: 2
//! /doc.txt, /data.bin   text/plain, application/octet-stream
//! ```

pub mod graph;
mod server;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use server::LARGE_BYTES_MAX;

/// How the site is built.
#[derive(Clone, Debug)]
pub struct Config {
    /// 0: any free port.
    pub port: u16,
    /// Pages of the link graph.
    pub pages: u32,
    /// Seed of the link graph.
    pub seed: u64,
    /// robots.txt `Crawl-delay` for every agent, in ms (written in seconds
    /// with a fraction). 0: none.
    pub crawl_delay_ms: u32,
    /// Also append every request to this file, one `ms method path` line.
    pub log_path: Option<PathBuf>,
    /// Whether page 0 links the special paths (`graph::SPECIAL_LINKS`:
    /// the hanging, slow, rate-limited and failing ones). Tests want them;
    /// a throughput benchmark does not, since a 429's `Retry-After` holds
    /// back the whole origin (the site is one) for 2 s by design.
    pub special_links: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            port: 0,
            pages: 100,
            seed: 1,
            crawl_delay_ms: 0,
            log_path: None,
            special_links: true,
        }
    }
}

/// One request the site received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// When its head was read.
    pub at: Instant,
    /// Milliseconds since the site started.
    pub ms: u64,
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
    pub user_agent: String,
}

/// The request log, shared with the server thread.
#[derive(Clone, Default)]
pub(crate) struct Log {
    records: Arc<Mutex<Vec<Record>>>,
}

impl Log {
    pub(crate) fn push(&self, record: Record) {
        if let Ok(mut records) = self.records.lock() {
            records.push(record);
        }
    }

    fn all(&self) -> Vec<Record> {
        self.records.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// A running site. Dropping it stops the site.
pub struct Site {
    addr: SocketAddr,
    log: Log,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Site {
    /// Starts the site on its own thread and runtime, so it keeps serving
    /// whatever the caller's runtime does.
    ///
    /// # Errors
    ///
    /// If 127.0.0.1:`port` cannot be bound, or the thread not started.
    pub fn start(config: Config) -> std::io::Result<(SocketAddr, Site)> {
        let listener = TcpListener::bind(("127.0.0.1", config.port))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let log = Log::default();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let state = server::State::new(config, addr.port(), log.clone())?;
        let thread = std::thread::Builder::new()
            .name("crawl-site".into())
            .spawn(move || server::run(listener, state, stopped))?;
        Ok((
            addr,
            Site {
                addr,
                log,
                stop: Some(stop),
                thread: Some(thread),
            },
        ))
    }

    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:{port}{path}`.
    #[must_use]
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request so far, in arrival order.
    #[must_use]
    pub fn requests(&self) -> Vec<Record> {
        self.log.all()
    }

    /// The requests whose path (without query) is `path`.
    #[must_use]
    pub fn requests_to(&self, path: &str) -> Vec<Record> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.split('?').next() == Some(path))
            .collect()
    }

    /// Stops the site and waits for its thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A 127.0.0.1 listener whose accept queue is full, so connecting to it
/// hangs (the kernel drops the SYN): the way to test connect timeouts
/// without leaving loopback. Keep it alive while it is needed.
pub struct Unaccepting {
    pub addr: SocketAddr,
    _listener: socket2::Socket,
    _queued: Vec<TcpStream>,
}

/// Connections tried while filling the accept queue.
const UNACCEPTING_FILL_MAX: usize = 16;
/// A connect that takes longer than this means the queue is full.
const UNACCEPTING_PROBE_MS: u64 = 300;

impl Unaccepting {
    /// Binds with a backlog of 0 and connects until a connect hangs.
    ///
    /// # Errors
    ///
    /// If binding fails, or the queue never filled (a kernel that accepts
    /// SYNs on a full queue: the test cannot be done here).
    pub fn start() -> std::io::Result<Self> {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
        socket.listen(0)?;
        let addr = socket
            .local_addr()?
            .as_socket()
            .ok_or_else(|| std::io::Error::other("no socket address"))?;
        let mut queued = Vec::new();
        for _ in 0..UNACCEPTING_FILL_MAX {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(UNACCEPTING_PROBE_MS)) {
                Ok(stream) => queued.push(stream),
                Err(_) => {
                    return Ok(Self {
                        addr,
                        _listener: socket,
                        _queued: queued,
                    })
                }
            }
        }
        Err(std::io::Error::other(
            "the accept queue never filled: connects to a full backlog do not hang here",
        ))
    }
}
