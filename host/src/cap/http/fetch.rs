//! One fetch: scope, robots and crawl-delay checks on every hop, manual
//! redirects, the three timeouts, and the body cap.
//!
//! Redirects are followed here rather than by the client so that every hop
//! goes through the same checks as the first URL: a redirect can never lead
//! out of scope, past robots.txt or around the crawl-delay.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderValue, LOCATION};
use reqwest::{Method, StatusCode};
use tokio::time::Instant;
use url::Url;

use super::headers::{media_type, rate_limited, request_headers, response_headers};
use super::limits::{
    POOL_IDLE_PER_HOST_MAX, POOL_IDLE_TIMEOUT_MS, ROBOTS_BYTES_MAX, ROBOTS_REDIRECTS_MAX,
    URL_BYTES_MAX,
};
use super::resolve::{DnsFailed, PrivateAddress, Resolver};
use super::robots::{Origins, Rules, Slot};
use super::scope::HttpScope;
use super::{ErrorKind, FetchError};

/// A request, decoded from capnp.
pub struct Request {
    pub url: String,
    pub head: bool,
    pub headers: Vec<(String, String)>,
}

/// A fetched response.
pub struct Fetched {
    pub status: u16,
    pub final_url: String,
    pub headers: Vec<(String, String)>,
    pub content_type: String,
    pub body: Vec<u8>,
    pub truncated: bool,
    pub redirects: u32,
    pub waited_ms: u32,
    pub first_byte_ms: u32,
    pub total_ms: u32,
}

/// The fetching half of a grant: its client and its per-origin state.
pub struct Fetcher {
    client: reqwest::Client,
    scope: HttpScope,
    origins: Origins,
}

fn millis(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}

impl Fetcher {
    /// A fetcher for a validated scope.
    ///
    /// # Errors
    ///
    /// If the HTTP client cannot be built (e.g. no TLS roots).
    pub fn new(scope: HttpScope) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .referer(false)
            .user_agent(scope.user_agent.clone())
            .connect_timeout(Duration::from_millis(u64::from(scope.connect_timeout_ms)))
            .dns_resolver(Arc::new(Resolver {
                allow_private: scope.allow_private,
            }))
            .pool_max_idle_per_host(POOL_IDLE_PER_HOST_MAX)
            .pool_idle_timeout(Duration::from_millis(POOL_IDLE_TIMEOUT_MS))
            .build()
            .map_err(|err| format!("building the HTTP client: {err}"))?;
        Ok(Self {
            client,
            scope,
            origins: Origins::default(),
        })
    }

    pub fn scope(&self) -> &HttpScope {
        &self.scope
    }

    /// The spacing this grant keeps for `url`'s origin (0 if unparsable).
    pub fn crawl_delay_ms(&self, url: &str) -> u32 {
        let Ok(url) = Url::parse(url) else { return 0 };
        self.origins.delay_ms(
            &url.origin().ascii_serialization(),
            self.scope.crawl_delay_ms,
            self.scope.obey_robots,
        )
    }

    /// Fetches `request` within the scope.
    ///
    /// # Errors
    ///
    /// A typed [`FetchError`] for every failure, see `HttpErrorKind`.
    pub async fn fetch(&self, request: Request) -> Result<Fetched, FetchError> {
        let start = Instant::now();
        let deadline = start + Duration::from_millis(u64::from(self.scope.total_timeout_ms));
        let mut url = parse_url(&request.url)?;
        let headers = request_headers(&request.headers)?;
        let method = if request.head {
            Method::HEAD
        } else {
            Method::GET
        };
        let mut visited = HashSet::from([url.to_string()]);
        let mut redirects = 0;
        let mut waited = Duration::ZERO;
        loop {
            self.scope.check(&url)?;
            let origin = url.origin().ascii_serialization();
            if self.scope.obey_robots {
                let started = Instant::now();
                let rules = self.rules(&url, &origin, deadline).await?;
                waited += started.elapsed();
                if !rules.allowed(url.as_str()) {
                    return Err(FetchError::new(
                        ErrorKind::DisallowedByRobots,
                        "robots.txt disallows it".into(),
                    )
                    .at(&url));
                }
            }
            waited += self.take_slot(&url, &origin, deadline).await?;
            let request = self
                .client
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            let response = self.send(request, &url, deadline).await?;
            let status = response.status();
            if status.is_redirection() {
                if let Some(location) = response.headers().get(LOCATION) {
                    let next = redirect_target(&url, location)?;
                    if redirects >= self.scope.redirects_max {
                        return Err(FetchError::new(
                            ErrorKind::TooManyRedirects,
                            format!("more than {} redirects", self.scope.redirects_max),
                        )
                        .at(&url));
                    }
                    if !visited.insert(next.to_string()) {
                        return Err(FetchError::new(
                            ErrorKind::RedirectLoop,
                            format!("redirects back to {next}"),
                        )
                        .at(&url));
                    }
                    redirects += 1;
                    url = next;
                    continue;
                }
            }
            if let Some(retry_after) = rate_limited(status, response.headers()) {
                self.origins.hold(&origin, Instant::now() + retry_after);
                let mut error = FetchError::new(
                    ErrorKind::RateLimited,
                    format!("the server answered {status}"),
                )
                .at(&url);
                error.retry_after_ms = millis(retry_after);
                return Err(error);
            }
            let first_byte_ms = millis(start.elapsed());
            let content_type = media_type(response.headers());
            if status.is_success() && !self.scope.accepts(&content_type) {
                return Err(FetchError::new(
                    ErrorKind::ContentTypeRefused,
                    format!("content type {content_type:?} is not accepted"),
                )
                .at(&url));
            }
            let headers = response_headers(response.headers());
            let cap = self.scope.body_bytes_max as usize;
            let (body, truncated) = if request_is_head(&method) {
                (Vec::new(), false)
            } else {
                read_body(response, cap, deadline, &url).await?
            };
            return Ok(Fetched {
                status: status.as_u16(),
                final_url: url.to_string(),
                headers,
                content_type,
                body,
                truncated,
                redirects,
                waited_ms: millis(waited),
                first_byte_ms,
                total_ms: millis(start.elapsed()),
            });
        }
    }

    /// Waits for `origin`'s next slot, or says when to come back.
    async fn take_slot(
        &self,
        url: &Url,
        origin: &str,
        deadline: Instant,
    ) -> Result<Duration, FetchError> {
        let delay =
            self.origins
                .delay_ms(origin, self.scope.crawl_delay_ms, self.scope.obey_robots);
        let wait_max = Duration::from_millis(u64::from(self.scope.rate_wait_max_ms))
            .min(deadline.saturating_duration_since(Instant::now()));
        match self
            .origins
            .reserve(origin, Duration::from_millis(u64::from(delay)), wait_max)
        {
            Slot::After(wait) => {
                tokio::time::sleep(wait).await;
                Ok(wait)
            }
            Slot::RetryAfter(wait) => {
                let mut error = FetchError::new(
                    ErrorKind::RateLimited,
                    format!(
                        "crawl-delay {delay} ms: the origin's next slot is {} ms away",
                        wait.as_millis()
                    ),
                )
                .at(url);
                error.retry_after_ms = millis(wait).max(1);
                Err(error)
            }
        }
    }

    /// Sends one hop and waits for its response head.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        url: &Url,
        deadline: Instant,
    ) -> Result<reqwest::Response, FetchError> {
        let first_byte = Duration::from_millis(u64::from(self.scope.first_byte_timeout_ms));
        let remaining = deadline.saturating_duration_since(Instant::now());
        let (limit, kind) = if first_byte < remaining {
            (first_byte, ErrorKind::TimeoutFirstByte)
        } else {
            (remaining, ErrorKind::TimeoutTotal)
        };
        match tokio::time::timeout(limit, request.send()).await {
            Err(_) => Err(FetchError::new(
                kind,
                format!("no response within {} ms", limit.as_millis()),
            )
            .at(url)),
            Ok(Err(err)) => Err(classify(&err).at(url)),
            Ok(Ok(response)) => Ok(response),
        }
    }

    /// The robots.txt rules of `url`'s origin, fetched once per TTL.
    async fn rules(
        &self,
        url: &Url,
        origin: &str,
        deadline: Instant,
    ) -> Result<std::rc::Rc<Rules>, FetchError> {
        if let Some(rules) = self.origins.rules(origin) {
            return Ok(rules);
        }
        let lock = self.origins.loading(origin);
        let _loading = lock.lock().await;
        if let Some(rules) = self.origins.rules(origin) {
            return Ok(rules);
        }
        let rules = self.load_robots(url, deadline).await?;
        Ok(self.origins.set_rules(origin, rules))
    }

    /// Fetches and parses robots.txt. Unreachable (5xx, timeouts) disallows
    /// everything; unavailable (4xx, a redirect out of scope) allows
    /// everything; transport errors that would fail the page too (DNS,
    /// refused, private address) and the total deadline are returned.
    async fn load_robots(&self, page: &Url, deadline: Instant) -> Result<Rules, FetchError> {
        let mut url = page.join("/robots.txt").map_err(|err| {
            FetchError::new(ErrorKind::BadRequest, format!("robots.txt URL: {err}")).at(page)
        })?;
        for _ in 0..=ROBOTS_REDIRECTS_MAX {
            if self.scope.check(&url).is_err() {
                return Ok(Rules::AllowAll);
            }
            let request = self.client.get(url.clone());
            let response = match self.send(request, &url, deadline).await {
                Ok(response) => response,
                Err(err)
                    if matches!(
                        err.kind,
                        ErrorKind::TimeoutConnect | ErrorKind::TimeoutFirstByte
                    ) =>
                {
                    return Ok(Rules::DisallowAll)
                }
                Err(err) => return Err(err),
            };
            let status = response.status();
            if status.is_redirection() {
                match response
                    .headers()
                    .get(LOCATION)
                    .map(|location| redirect_target(&url, location))
                {
                    Some(Ok(next)) => {
                        url = next;
                        continue;
                    }
                    _ => return Ok(Rules::AllowAll),
                }
            }
            if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                return Ok(Rules::DisallowAll);
            }
            if !status.is_success() {
                return Ok(Rules::AllowAll);
            }
            let (body, _) = read_body(response, ROBOTS_BYTES_MAX, deadline, &url).await?;
            return Ok(Rules::parse(&self.scope.user_agent, &body));
        }
        Ok(Rules::AllowAll)
    }
}

fn request_is_head(method: &Method) -> bool {
    method == Method::HEAD
}

fn parse_url(text: &str) -> Result<Url, FetchError> {
    let bad = |message: String| {
        let mut error = FetchError::new(ErrorKind::BadRequest, message);
        error.url = text.chars().take(URL_BYTES_MAX).collect();
        error
    };
    if text.len() > URL_BYTES_MAX {
        return Err(bad(format!("URLs are at most {URL_BYTES_MAX} bytes")));
    }
    let mut url = Url::parse(text).map_err(|err| bad(format!("not a URL: {err}")))?;
    url.set_fragment(None);
    Ok(url)
}

fn redirect_target(from: &Url, location: &HeaderValue) -> Result<Url, FetchError> {
    let location = location.to_str().map_err(|_| {
        FetchError::new(ErrorKind::Other, "redirect Location is not ASCII".into()).at(from)
    })?;
    let mut next = from.join(location).map_err(|err| {
        FetchError::new(
            ErrorKind::Other,
            format!("redirect Location {location:?}: {err}"),
        )
        .at(from)
    })?;
    next.set_fragment(None);
    if next.as_str().len() > URL_BYTES_MAX {
        return Err(
            FetchError::new(ErrorKind::Other, "redirect Location too long".into()).at(from),
        );
    }
    Ok(next)
}

/// Reads at most `cap` bytes of the body; more is cut (`true`).
async fn read_body(
    mut response: reqwest::Response,
    cap: usize,
    deadline: Instant,
    url: &Url,
) -> Result<(Vec<u8>, bool), FetchError> {
    let hint = response.content_length().unwrap_or(0).min(cap as u64) as usize;
    let mut body = Vec::with_capacity(hint);
    loop {
        let chunk = match tokio::time::timeout_at(deadline, response.chunk()).await {
            Err(_) => {
                return Err(FetchError::new(
                    ErrorKind::TimeoutTotal,
                    format!(
                        "body not complete by the total timeout ({} bytes read)",
                        body.len()
                    ),
                )
                .at(url))
            }
            Ok(Err(err)) => return Err(classify(&err).at(url)),
            Ok(Ok(None)) => return Ok((body, false)),
            Ok(Ok(Some(chunk))) => chunk,
        };
        let room = cap - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
}

/// The error kind of a client error, from its source chain.
fn classify(err: &reqwest::Error) -> FetchError {
    let mut chain = err.to_string();
    let mut kind = None;
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        if kind.is_none() {
            if cause.downcast_ref::<PrivateAddress>().is_some() {
                kind = Some(ErrorKind::PrivateAddress);
            } else if cause.downcast_ref::<DnsFailed>().is_some() {
                kind = Some(ErrorKind::Dns);
            } else if let Some(io) = cause.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::ConnectionRefused {
                    kind = Some(ErrorKind::Refused);
                }
            }
        }
        source = cause.source();
    }
    let lower = chain.to_ascii_lowercase();
    let kind = kind.unwrap_or(if err.is_timeout() {
        ErrorKind::TimeoutConnect
    } else if err.is_connect()
        && (lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake"))
    {
        ErrorKind::Tls
    } else {
        ErrorKind::Other
    });
    FetchError::new(kind, chain)
}
