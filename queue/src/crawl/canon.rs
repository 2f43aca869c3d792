//! URL canonicalization: one spelling per resource, so that the seen set
//! dedupes `HTTP://Example.ORG:80/a#top` and `http://example.org/a` as one URL.
//!
//! The rules, applied in order:
//!
//! 1. Parse as a WHATWG URL (the `url` crate), relative links already
//!    resolved by the worker. Parsing lower-cases the scheme and the host,
//!    converts an international host to its ASCII (punycode) form, drops
//!    the scheme's default port (80, 443), resolves `.` and `..` path
//!    segments, and makes an empty path `/`.
//! 2. Only `http` and `https` are accepted; anything else is refused.
//! 3. The fragment is dropped (it never reaches the server), and so is any
//!    `user:password@` (a crawler never sends credentials found in links).
//! 4. Percent-encoding in the path and the query is normalized: an escape
//!    of an unreserved character (`A-Z a-z 0-9 - . _ ~`) is decoded, every
//!    other escape gets upper-case hex digits (`%2f` becomes `%2F`), and a
//!    `%` that starts no escape is escaped itself (`%25`).
//! 5. The query keeps its parameter order (servers may depend on it); an
//!    empty query (`/a?`) is dropped.
//! 6. The result is at most [`URL_BYTES_MAX`] bytes.

use url::{Host, Url};

use crate::limits::URL_BYTES_MAX;

/// A canonical http(s) URL and the parts the frontier keys on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanonicalUrl {
    /// The canonical URL.
    pub url: String,
    /// Its origin, `scheme://host[:port]` (default port omitted): the unit
    /// of politeness.
    pub origin: String,
    /// Its host, lower-case ASCII (an IPv6 host in brackets).
    pub host: String,
    /// True when the host is a loopback, private, link-local or unspecified
    /// address, or `localhost`.
    pub private: bool,
}

/// Canonicalizes `input` (see the module documentation for the rules).
///
/// # Errors
///
/// A readable reason when `input` is not an absolute http(s) URL or is too long.
pub fn canonicalize(input: &str) -> Result<CanonicalUrl, String> {
    if input.len() > URL_BYTES_MAX * 3 {
        return Err(format!(
            "{} bytes; a URL is at most {URL_BYTES_MAX}",
            input.len()
        ));
    }
    let mut url = Url::parse(input).map_err(|error| format!("not a URL: {error}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("scheme {:?}: only http and https", url.scheme()));
    }
    let (host, private) = match url.host() {
        Some(Host::Domain(domain)) => {
            let domain = domain.trim_end_matches('.').to_owned();
            let private = domain == "localhost" || domain.ends_with(".localhost");
            (domain, private)
        }
        Some(Host::Ipv4(ip)) => (
            ip.to_string(),
            ip.is_private()
                || ip.is_loopback()
                || ip.is_link_local()
                || ip.is_unspecified()
                || ip.is_broadcast()
                // 100.64.0.0/10, carrier-grade NAT.
                || (ip.octets()[0] == 100 && ip.octets()[1] & 0xc0 == 64),
        ),
        Some(Host::Ipv6(ip)) => {
            let first = ip.segments()[0];
            let private = ip.is_loopback()
                || ip.is_unspecified()
                || first & 0xfe00 == 0xfc00
                || first & 0xffc0 == 0xfe80
                || ip
                    .to_ipv4_mapped()
                    .is_some_and(|v4| v4.is_private() || v4.is_loopback() || v4.is_link_local());
            (format!("[{ip}]"), private)
        }
        None => return Err("no host".to_owned()),
    };
    if host.is_empty() {
        return Err("empty host".to_owned());
    }
    url.set_fragment(None);
    // Both fail only for URLs without a host, refused above.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let path = normalize_escapes(url.path());
    url.set_path(&path);
    match url.query().map(normalize_escapes) {
        Some(query) if query.is_empty() => url.set_query(None),
        Some(query) => url.set_query(Some(&query)),
        None => {}
    }
    let origin = url.origin().ascii_serialization();
    let url = String::from(url);
    if url.len() > URL_BYTES_MAX {
        return Err(format!(
            "{} bytes canonical; a URL is at most {URL_BYTES_MAX}",
            url.len()
        ));
    }
    Ok(CanonicalUrl {
        url,
        origin,
        host,
        private,
    })
}

/// Decodes escapes of unreserved characters and upper-cases the others.
fn normalize_escapes(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                let byte = high << 4 | low;
                if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
                    out.push(char::from(byte));
                } else {
                    out.push('%');
                    out.push(char::from(bytes[i + 1].to_ascii_uppercase()));
                    out.push(char::from(bytes[i + 2].to_ascii_uppercase()));
                }
                i += 3;
                continue;
            }
        }
        if bytes[i] == b'%' {
            // Not an escape: written as one, so that decoding what follows
            // cannot make it one (`%0%61` would become `%0a`, which the
            // next pass would read as an escape, and no longer be stable).
            out.push_str("%25");
            i += 1;
            continue;
        }
        // `text` is ASCII after URL serialization, but copy any other
        // character whole rather than assume it.
        let Some(c) = text[i..].chars().next() else {
            break;
        };
        out.push(c);
        i += c.len_utf8();
    }
    out
}

fn hex(digit: u8) -> Option<u8> {
    char::from(digit).to_digit(16).map(|d| d as u8)
}

/// Whether `host` is `domain` or a subdomain of it (both lower-case ASCII).
pub(crate) fn host_in_domain(host: &str, domain: &str) -> bool {
    host == domain
        || (host.len() > domain.len()
            && host.ends_with(domain)
            && host.as_bytes()[host.len() - domain.len() - 1] == b'.')
}

/// The seen-set key of a canonical URL: 128-bit FNV-1a. Not cryptographic:
/// a collision (crafted or not) only makes the frontier treat a new URL as
/// seen, and the function is fixed, so every replica and every release
/// agrees on it (std's hasher promises neither).
pub(crate) fn url_key(url: &str) -> [u8; 16] {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let mut hash = OFFSET;
    for &byte in url.as_bytes() {
        hash ^= u128::from(byte);
        hash = hash.wrapping_mul(PRIME);
    }
    hash.to_be_bytes()
}
