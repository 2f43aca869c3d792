//! Request and response headers: what a caller may set, what is returned,
//! and what a response's headers mean for the grant.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;

use super::limits::{
    REQUEST_HEADERS_MAX, REQUEST_HEADER_BYTES_MAX, RESPONSE_HEADERS_MAX, RESPONSE_HEADER_BYTES_MAX,
    RETRY_AFTER_DEFAULT_MS, RETRY_AFTER_MS_MAX,
};
use super::{ErrorKind, FetchError};

/// Headers a caller may not set: the grant controls them, or they are
/// hop-by-hop.
const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "user-agent",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "proxy-authorization",
    "proxy-connection",
];

pub fn request_headers(headers: &[(String, String)]) -> Result<HeaderMap, FetchError> {
    let bad = |message: String| Err(FetchError::new(ErrorKind::BadRequest, message));
    if headers.len() > REQUEST_HEADERS_MAX {
        return bad(format!("at most {REQUEST_HEADERS_MAX} request headers"));
    }
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        if name.len() + value.len() > REQUEST_HEADER_BYTES_MAX {
            return bad(format!(
                "header {name:?} is over {REQUEST_HEADER_BYTES_MAX} bytes"
            ));
        }
        let Ok(header) = HeaderName::from_bytes(name.as_bytes()) else {
            return bad(format!("{name:?} is not a header name"));
        };
        if FORBIDDEN_HEADERS.contains(&header.as_str()) || header.as_str().starts_with("proxy-") {
            return bad(format!("header {name:?} is set by the grant"));
        }
        let Ok(value) = HeaderValue::from_str(value) else {
            return bad(format!("header {name:?} has an invalid value"));
        };
        map.append(header, value);
    }
    Ok(map)
}

/// A 429, or a 503 with Retry-After: how long the server asks us to wait.
pub fn rate_limited(status: StatusCode, headers: &HeaderMap) -> Option<Duration> {
    let retry_after = headers
        .get(RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u32>().ok())
        .map(|seconds| seconds.saturating_mul(1000).min(RETRY_AFTER_MS_MAX));
    let ms = match status {
        StatusCode::TOO_MANY_REQUESTS => retry_after.unwrap_or(RETRY_AFTER_DEFAULT_MS),
        StatusCode::SERVICE_UNAVAILABLE => retry_after?,
        _ => return None,
    };
    Some(Duration::from_millis(u64::from(ms)))
}

pub fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(|media| media.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

pub fn response_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(_, value)| value.len() <= RESPONSE_HEADER_BYTES_MAX)
        .take(RESPONSE_HEADERS_MAX)
        .map(|(name, value)| {
            (
                name.to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}
