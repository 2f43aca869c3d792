//! `Http`: the fetch grant. Trusted host code that fetches URLs for a
//! process inside a scope its granter set.
//!
//! - [`scope`]: what may be fetched, checked on every redirect hop.
//! - [`resolve`]: names resolving to non-public addresses are refused at
//!   resolution, so the checked address is the one connected to.
//! - [`robots`]: robots.txt per origin (cached) and crawl-delay slots.
//! - [`fetch`]: one fetch, its timeouts and its body cap.
//! - [`headers`]: request and response headers, Retry-After.
//! - [`limits`]: every bound, with units (`crate::limits::http`).
//!
//! Failures are typed results (`HttpResponse.error`), so a crawler can act
//! on them; only malformed calls are capnp errors. The grant runs on the
//! host's single-threaded runtime: everything is async (resolution runs on
//! tokio's blocking pool), and every wait is bounded by a timeout.

pub mod fetch;
pub mod headers;
pub use crate::limits::http as limits;
pub mod resolve;
pub mod robots;
pub mod scope;

use std::fmt;
use std::rc::Rc;

use capnp::capability::Rc as CapRc;
use url::Url;
use ww_api::http;
use ww_api::ww_capnp::{HttpErrorKind, HttpMethod};

pub use fetch::{Fetched, Fetcher, Request};
pub use scope::HttpScope;

use super::{invalid, text};
use limits::{REQUEST_HEADERS_MAX, URL_BYTES_MAX};

/// Why a fetch failed; mirrors `HttpErrorKind` in the schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    Other,
    TimeoutConnect,
    TimeoutFirstByte,
    TimeoutTotal,
    Dns,
    Refused,
    Tls,
    TooLarge,
    TooManyRedirects,
    OutOfScope,
    PrivateAddress,
    DisallowedByRobots,
    RateLimited,
    BadRequest,
    ContentTypeRefused,
    RedirectLoop,
}

impl ErrorKind {
    fn to_capnp(self) -> HttpErrorKind {
        use HttpErrorKind as K;
        match self {
            Self::Other => K::Other,
            Self::TimeoutConnect => K::TimeoutConnect,
            Self::TimeoutFirstByte => K::TimeoutFirstByte,
            Self::TimeoutTotal => K::TimeoutTotal,
            Self::Dns => K::Dns,
            Self::Refused => K::Refused,
            Self::Tls => K::Tls,
            Self::TooLarge => K::TooLarge,
            Self::TooManyRedirects => K::TooManyRedirects,
            Self::OutOfScope => K::OutOfScope,
            Self::PrivateAddress => K::PrivateAddress,
            Self::DisallowedByRobots => K::DisallowedByRobots,
            Self::RateLimited => K::RateLimited,
            Self::BadRequest => K::BadRequest,
            Self::ContentTypeRefused => K::ContentTypeRefused,
            Self::RedirectLoop => K::RedirectLoop,
        }
    }
}

/// A typed fetch failure.
#[derive(Clone, Debug)]
pub struct FetchError {
    pub kind: ErrorKind,
    pub message: String,
    /// The hop that failed.
    pub url: String,
    /// For `RateLimited`: when to ask again.
    pub retry_after_ms: u32,
}

impl FetchError {
    fn new(kind: ErrorKind, message: String) -> Self {
        Self {
            kind,
            message,
            url: String::new(),
            retry_after_ms: 0,
        }
    }

    fn at(mut self, url: &Url) -> Self {
        self.url = url.to_string();
        self
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} at {}: {}", self.kind, self.url, self.message)
    }
}

/// An `Http` capability enforcing `scope`.
///
/// # Errors
///
/// If the scope is out of the host's bounds ([`HttpScope::validated`]) or
/// the HTTP client cannot be built.
pub fn client(scope: HttpScope) -> Result<http::Client, String> {
    let fetcher = Fetcher::new(scope.validated()?)?;
    Ok(capnp_rpc::new_client(HttpServer {
        fetcher: Rc::new(fetcher),
    }))
}

/// `Http`.
pub struct HttpServer {
    fetcher: Rc<Fetcher>,
}

impl http::Server for HttpServer {
    async fn fetch(
        self: CapRc<Self>,
        params: http::FetchParams,
        mut results: http::FetchResults,
    ) -> Result<(), capnp::Error> {
        let request = params.get()?.get_request()?;
        let url = text(request.get_url(), "url")?;
        if url.len() > URL_BYTES_MAX {
            return Err(invalid(format!("URLs are at most {URL_BYTES_MAX} bytes")));
        }
        let head = match request.get_method() {
            Ok(HttpMethod::Get) => false,
            Ok(HttpMethod::Head) => true,
            Err(_) => return Err(invalid("unknown HTTP method")),
        };
        let list = request.get_headers()?;
        if list.len() as usize > REQUEST_HEADERS_MAX {
            return Err(invalid(format!(
                "at most {REQUEST_HEADERS_MAX} request headers"
            )));
        }
        let mut headers = Vec::with_capacity(list.len() as usize);
        for header in list.iter() {
            headers.push((
                text(header.get_name(), "header name")?,
                text(header.get_value(), "header value")?,
            ));
        }
        let fetcher = self.fetcher.clone();
        let outcome = fetcher.fetch(Request { url, head, headers }).await;
        let response = results.get().init_response();
        match outcome {
            Ok(fetched) => {
                let crawl_delay_ms = fetcher.crawl_delay_ms(&fetched.final_url);
                write_ok(response.init_ok(), &fetched, crawl_delay_ms);
            }
            Err(error) => {
                let crawl_delay_ms = fetcher.crawl_delay_ms(&error.url);
                let mut out = response.init_error();
                out.set_kind(error.kind.to_capnp());
                out.set_message(&error.message);
                out.set_retry_after_ms(error.retry_after_ms);
                out.set_url(&error.url);
                out.set_crawl_delay_ms(crawl_delay_ms);
            }
        }
        Ok(())
    }

    async fn scope(
        self: CapRc<Self>,
        _: http::ScopeParams,
        mut results: http::ScopeResults,
    ) -> Result<(), capnp::Error> {
        self.fetcher.scope().write(results.get().init_scope());
        Ok(())
    }
}

fn write_ok(
    mut out: ww_api::ww_capnp::http_response::ok::Builder<'_>,
    fetched: &Fetched,
    crawl_delay_ms: u32,
) {
    out.set_status(fetched.status);
    out.set_final_url(&fetched.final_url);
    out.set_content_type(&fetched.content_type);
    out.set_body(&fetched.body);
    out.set_truncated(fetched.truncated);
    out.set_redirects(fetched.redirects);
    out.set_crawl_delay_ms(crawl_delay_ms);
    {
        let mut timing = out.reborrow().init_timing();
        timing.set_waited_ms(fetched.waited_ms);
        timing.set_first_byte_ms(fetched.first_byte_ms);
        timing.set_total_ms(fetched.total_ms);
    }
    let mut headers = out.init_headers(fetched.headers.len() as u32);
    for (i, (name, value)) in fetched.headers.iter().enumerate() {
        let mut header = headers.reborrow().get(i as u32);
        header.set_name(name);
        header.set_value(value);
    }
}
