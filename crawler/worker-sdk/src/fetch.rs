//! One fetch through the `Http` grant, and what it means for the frontier.

use queue::crawl::{FetchOutcome, PermanentFailure, RetryableFailure};
use ww_guest::ww_api::ww_capnp::{http, http_response, HttpErrorKind, HttpMethod};

/// A response the grant got.
#[derive(Clone, Debug)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// The URL after redirects.
    pub final_url: String,
    /// Response headers, in order.
    pub headers: Vec<(String, String)>,
    /// The media type, lower case, without parameters.
    pub content_type: String,
    /// The body, cut at the grant's `bodyBytesMax`.
    pub body: Vec<u8>,
    /// Whether the body was cut.
    pub truncated: bool,
    /// The spacing the grant keeps for the final URL's origin.
    pub crawl_delay_ms: u32,
}

/// A fetch that got no response (or was refused by the grant).
#[derive(Clone, Debug)]
pub struct Failure {
    /// The grant's error kind, as its schema name (`timeoutTotal`).
    pub kind: &'static str,
    /// For people.
    pub message: String,
    /// What the frontier should do with the URL.
    pub outcome: FetchOutcome,
    /// The origin's crawl-delay, when known (0 otherwise).
    pub crawl_delay_ms: u32,
}

/// Fetches `url` with GET.
///
/// # Errors
///
/// A capnp error: the grant is gone or the call was malformed. Failures of
/// the fetch itself are `Ok(Err(_))`.
pub async fn fetch(http: &http::Client, url: &str) -> capnp::Result<Result<Response, Failure>> {
    let mut request = http.fetch_request();
    {
        let mut fields = request.get().init_request();
        fields.set_url(url);
        fields.set_method(HttpMethod::Get);
    }
    let reply = request.send().promise.await?;
    let response = reply.get()?.get_response()?;
    let text = |reader: capnp::Result<capnp::text::Reader<'_>>| -> capnp::Result<String> {
        Ok(String::from_utf8_lossy(reader?.as_bytes()).into_owned())
    };
    Ok(match response.which()? {
        http_response::Ok(ok) => {
            let mut headers = Vec::new();
            for header in ok.get_headers()?.iter() {
                headers.push((text(header.get_name())?, text(header.get_value())?));
            }
            Ok(Response {
                status: ok.get_status(),
                final_url: text(ok.get_final_url())?,
                headers,
                content_type: text(ok.get_content_type())?,
                body: ok.get_body()?.to_vec(),
                truncated: ok.get_truncated(),
                crawl_delay_ms: ok.get_crawl_delay_ms(),
            })
        }
        http_response::Error(error) => {
            // An unknown kind (a newer host) is treated as `other`.
            let kind = error.get_kind().unwrap_or(HttpErrorKind::Other);
            Err(Failure {
                kind: kind_name(kind),
                message: text(error.get_message())?,
                outcome: outcome_of_error(kind, error.get_retry_after_ms()),
                crawl_delay_ms: error.get_crawl_delay_ms(),
            })
        }
    })
}

/// What a response's status means for the frontier: 5xx are retried, other
/// 4xx are permanent, everything else was fetched. (A 429 never gets here:
/// the grant answers it as `rateLimited`.)
#[must_use]
pub fn outcome_of_status(status: u16) -> FetchOutcome {
    match status {
        500..=599 => FetchOutcome::Retryable(RetryableFailure::Status(status)),
        429 => FetchOutcome::Retryable(RetryableFailure::TooManyRequests {
            retry_after_ms: None,
        }),
        400..=499 => FetchOutcome::Permanent(PermanentFailure::Status(status)),
        _ => FetchOutcome::Fetched,
    }
}

/// What a grant error means for the frontier.
#[must_use]
pub fn outcome_of_error(kind: HttpErrorKind, retry_after_ms: u32) -> FetchOutcome {
    use HttpErrorKind as K;
    match kind {
        K::TimeoutConnect | K::TimeoutFirstByte | K::TimeoutTotal => {
            FetchOutcome::Retryable(RetryableFailure::Timeout)
        }
        K::Dns | K::Refused | K::Tls | K::Other => {
            FetchOutcome::Retryable(RetryableFailure::Network)
        }
        K::RateLimited => FetchOutcome::Retryable(RetryableFailure::TooManyRequests {
            retry_after_ms: (retry_after_ms > 0).then_some(u64::from(retry_after_ms)),
        }),
        K::DisallowedByRobots => FetchOutcome::Permanent(PermanentFailure::Robots),
        K::OutOfScope | K::PrivateAddress => FetchOutcome::Permanent(PermanentFailure::OutOfScope),
        K::TooLarge
        | K::TooManyRedirects
        | K::RedirectLoop
        | K::BadRequest
        | K::ContentTypeRefused => {
            FetchOutcome::Permanent(PermanentFailure::Other(kind_name(kind).to_owned()))
        }
    }
}

/// The schema name of an error kind, for records and logs.
#[must_use]
pub fn kind_name(kind: HttpErrorKind) -> &'static str {
    use HttpErrorKind as K;
    match kind {
        K::Other => "other",
        K::TimeoutConnect => "timeoutConnect",
        K::TimeoutFirstByte => "timeoutFirstByte",
        K::TimeoutTotal => "timeoutTotal",
        K::Dns => "dns",
        K::Refused => "refused",
        K::Tls => "tls",
        K::TooLarge => "tooLarge",
        K::TooManyRedirects => "tooManyRedirects",
        K::OutOfScope => "outOfScope",
        K::PrivateAddress => "privateAddress",
        K::DisallowedByRobots => "disallowedByRobots",
        K::RateLimited => "rateLimited",
        K::BadRequest => "badRequest",
        K::ContentTypeRefused => "contentTypeRefused",
        K::RedirectLoop => "redirectLoop",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_frontier_outcomes() {
        assert_eq!(outcome_of_status(200), FetchOutcome::Fetched);
        assert_eq!(outcome_of_status(304), FetchOutcome::Fetched);
        assert_eq!(
            outcome_of_status(404),
            FetchOutcome::Permanent(PermanentFailure::Status(404))
        );
        assert_eq!(
            outcome_of_status(503),
            FetchOutcome::Retryable(RetryableFailure::Status(503))
        );
    }

    #[test]
    fn grant_errors_map_to_frontier_outcomes() {
        assert_eq!(
            outcome_of_error(HttpErrorKind::DisallowedByRobots, 0),
            FetchOutcome::Permanent(PermanentFailure::Robots)
        );
        assert_eq!(
            outcome_of_error(HttpErrorKind::TimeoutTotal, 0),
            FetchOutcome::Retryable(RetryableFailure::Timeout)
        );
        assert_eq!(
            outcome_of_error(HttpErrorKind::RateLimited, 2_000),
            FetchOutcome::Retryable(RetryableFailure::TooManyRequests {
                retry_after_ms: Some(2_000)
            })
        );
        assert_eq!(
            outcome_of_error(HttpErrorKind::RedirectLoop, 0),
            FetchOutcome::Permanent(PermanentFailure::Other("redirectLoop".into()))
        );
    }
}
