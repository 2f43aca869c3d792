//! The scope of an HTTP grant: which URLs it may fetch, and its limits.
//!
//! The granter sets the scope; the grant never widens it. [`HttpScope`] is
//! plain data (serde and a capnp round trip) so a host can persist a grant
//! and hand the same scope out again.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use url::{Host, Url};
use ww_api::ww_capnp::http_scope;

use super::limits::{
    BODY_BYTES_MAX, CONTENT_TYPES_MAX, CRAWL_DELAY_MS_MAX, REDIRECTS_MAX, SCOPE_ENTRIES_MAX,
    SCOPE_ENTRY_BYTES_MAX, TIMEOUT_MS_MAX, USER_AGENT_BYTES_MAX,
};
use super::resolve::is_public;
use super::{ErrorKind, FetchError};

/// What an HTTP grant may fetch. Times in milliseconds, sizes in bytes.
///
/// Every field is documented on `HttpScope` in `rom/api/schema/ww.capnp`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpScope {
    pub schemes: Vec<String>,
    pub domains: Vec<String>,
    pub prefixes: Vec<String>,
    pub allow_private: bool,
    pub connect_timeout_ms: u32,
    pub first_byte_timeout_ms: u32,
    pub total_timeout_ms: u32,
    pub body_bytes_max: u32,
    pub redirects_max: u32,
    pub content_types: Vec<String>,
    pub user_agent: String,
    pub obey_robots: bool,
    pub crawl_delay_ms: u32,
    pub rate_wait_max_ms: u32,
}

impl Default for HttpScope {
    /// Nothing in scope (no schemes, no domains), public addresses only,
    /// robots obeyed, and the default limits of [`super::limits`].
    fn default() -> Self {
        use super::limits::defaults;
        Self {
            schemes: Vec::new(),
            domains: Vec::new(),
            prefixes: Vec::new(),
            allow_private: false,
            connect_timeout_ms: defaults::CONNECT_TIMEOUT_MS,
            first_byte_timeout_ms: defaults::FIRST_BYTE_TIMEOUT_MS,
            total_timeout_ms: defaults::TOTAL_TIMEOUT_MS,
            body_bytes_max: defaults::BODY_BYTES,
            redirects_max: defaults::REDIRECTS,
            content_types: Vec::new(),
            user_agent: defaults::USER_AGENT.to_string(),
            obey_robots: true,
            crawl_delay_ms: 0,
            rate_wait_max_ms: defaults::RATE_WAIT_MAX_MS,
        }
    }
}

impl HttpScope {
    /// Checks the scope against the host's limits and normalises it (lower
    /// case schemes, domains and media types; prefixes parsed as URLs).
    ///
    /// # Errors
    ///
    /// A message naming the first field that is out of bounds.
    pub fn validated(mut self) -> Result<Self, String> {
        let lists = [
            ("schemes", &self.schemes),
            ("domains", &self.domains),
            ("prefixes", &self.prefixes),
            ("contentTypes", &self.content_types),
        ];
        for (what, list) in lists {
            if list.len() > SCOPE_ENTRIES_MAX {
                return Err(format!("{what}: at most {SCOPE_ENTRIES_MAX} entries"));
            }
            if list
                .iter()
                .any(|entry| entry.is_empty() || entry.len() > SCOPE_ENTRY_BYTES_MAX)
            {
                return Err(format!(
                    "{what}: entries are 1 to {SCOPE_ENTRY_BYTES_MAX} bytes"
                ));
            }
        }
        if self.content_types.len() > CONTENT_TYPES_MAX {
            return Err(format!("contentTypes: at most {CONTENT_TYPES_MAX} entries"));
        }
        for scheme in &mut self.schemes {
            *scheme = scheme.to_ascii_lowercase();
            if scheme != "http" && scheme != "https" {
                return Err(format!("schemes: only http and https, not {scheme:?}"));
            }
        }
        for domain in &mut self.domains {
            *domain = domain.trim_end_matches('.').to_ascii_lowercase();
        }
        for prefix in &mut self.prefixes {
            let url = Url::parse(prefix).map_err(|err| format!("prefix {prefix:?}: {err}"))?;
            *prefix = url.as_str().to_string();
        }
        for media in &mut self.content_types {
            *media = media.to_ascii_lowercase();
        }
        let timeouts = [
            ("connectTimeoutMs", self.connect_timeout_ms),
            ("firstByteTimeoutMs", self.first_byte_timeout_ms),
            ("totalTimeoutMs", self.total_timeout_ms),
        ];
        for (what, value) in timeouts {
            if value == 0 || value > TIMEOUT_MS_MAX {
                return Err(format!("{what}: 1 to {TIMEOUT_MS_MAX} ms"));
            }
        }
        if self.body_bytes_max > BODY_BYTES_MAX {
            return Err(format!("bodyBytesMax: at most {BODY_BYTES_MAX}"));
        }
        if self.redirects_max > REDIRECTS_MAX {
            return Err(format!("redirectsMax: at most {REDIRECTS_MAX}"));
        }
        if self.crawl_delay_ms > CRAWL_DELAY_MS_MAX || self.rate_wait_max_ms > TIMEOUT_MS_MAX {
            return Err(format!(
                "crawlDelayMs and rateWaitMaxMs: at most {CRAWL_DELAY_MS_MAX} and {TIMEOUT_MS_MAX}"
            ));
        }
        if self.user_agent.is_empty()
            || self.user_agent.len() > USER_AGENT_BYTES_MAX
            || !self
                .user_agent
                .bytes()
                .all(|b| b.is_ascii_graphic() || b == b' ')
        {
            return Err(format!(
                "userAgent: 1 to {USER_AGENT_BYTES_MAX} printable ASCII bytes"
            ));
        }
        Ok(self)
    }

    /// Checks a normalised URL (fragment dropped) against the scope.
    ///
    /// # Errors
    ///
    /// `outOfScope` for a scheme, host or prefix the scope does not allow;
    /// `privateAddress` for a non-public IP literal unless allowed;
    /// `badRequest` for URLs with credentials or without a host.
    pub fn check(&self, url: &Url) -> Result<(), FetchError> {
        let fail = |kind, message: String| Err(FetchError::new(kind, message).at(url));
        if !url.username().is_empty() || url.password().is_some() {
            return fail(
                ErrorKind::BadRequest,
                "URLs with credentials are refused".into(),
            );
        }
        if !self.schemes.iter().any(|scheme| scheme == url.scheme()) {
            return fail(
                ErrorKind::OutOfScope,
                format!("scheme {:?} is not in scope", url.scheme()),
            );
        }
        let Some(host) = url.host() else {
            return fail(ErrorKind::BadRequest, "URL has no host".into());
        };
        let by_prefix = self
            .prefixes
            .iter()
            .any(|prefix| url.as_str().starts_with(prefix));
        if !by_prefix
            && !self
                .domains
                .iter()
                .any(|domain| host_matches(&host, domain))
        {
            return fail(
                ErrorKind::OutOfScope,
                format!("host {host} is not in scope (domains or prefixes)"),
            );
        }
        let literal = match host {
            Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
            Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
            Host::Domain(_) => None,
        };
        if let Some(ip) = literal {
            if !self.allow_private && !is_public(ip) {
                return fail(
                    ErrorKind::PrivateAddress,
                    format!("{ip} is not a public address"),
                );
            }
        }
        Ok(())
    }

    /// Whether a response's media type (lower case, no parameters) is
    /// accepted.
    #[must_use]
    pub fn accepts(&self, media: &str) -> bool {
        self.content_types.is_empty()
            || self.content_types.iter().any(|accepted| {
                accepted == media
                    || accepted
                        .strip_suffix("/*")
                        .is_some_and(|family| media.split('/').next() == Some(family))
            })
    }

    /// The scope from its capnp form (not yet validated).
    ///
    /// # Errors
    ///
    /// A capnp error for a malformed struct or non-UTF-8 text.
    pub fn read(reader: http_scope::Reader<'_>) -> Result<Self, capnp::Error> {
        let texts =
            |list: capnp::Result<capnp::text_list::Reader<'_>>| -> capnp::Result<Vec<String>> {
                let list = list?;
                if list.len() as usize > SCOPE_ENTRIES_MAX {
                    return Err(crate::cap::invalid(format!(
                        "scope lists hold at most {SCOPE_ENTRIES_MAX} entries"
                    )));
                }
                list.iter()
                    .map(|text| crate::cap::text(text, "scope entry"))
                    .collect()
            };
        Ok(Self {
            schemes: texts(reader.get_schemes())?,
            domains: texts(reader.get_domains())?,
            prefixes: texts(reader.get_prefixes())?,
            allow_private: reader.get_allow_private(),
            connect_timeout_ms: reader.get_connect_timeout_ms(),
            first_byte_timeout_ms: reader.get_first_byte_timeout_ms(),
            total_timeout_ms: reader.get_total_timeout_ms(),
            body_bytes_max: reader.get_body_bytes_max(),
            redirects_max: reader.get_redirects_max(),
            content_types: texts(reader.get_content_types())?,
            user_agent: crate::cap::text(reader.get_user_agent(), "userAgent")?,
            obey_robots: reader.get_obey_robots(),
            crawl_delay_ms: reader.get_crawl_delay_ms(),
            rate_wait_max_ms: reader.get_rate_wait_max_ms(),
        })
    }

    /// Writes the scope into its capnp form.
    pub fn write(&self, mut builder: http_scope::Builder<'_>) {
        fn fill(mut list: capnp::text_list::Builder<'_>, values: &[String]) {
            for (i, value) in values.iter().enumerate() {
                list.set(i as u32, value);
            }
        }
        fill(
            builder.reborrow().init_schemes(self.schemes.len() as u32),
            &self.schemes,
        );
        fill(
            builder.reborrow().init_domains(self.domains.len() as u32),
            &self.domains,
        );
        fill(
            builder.reborrow().init_prefixes(self.prefixes.len() as u32),
            &self.prefixes,
        );
        fill(
            builder
                .reborrow()
                .init_content_types(self.content_types.len() as u32),
            &self.content_types,
        );
        builder.set_allow_private(self.allow_private);
        builder.set_connect_timeout_ms(self.connect_timeout_ms);
        builder.set_first_byte_timeout_ms(self.first_byte_timeout_ms);
        builder.set_total_timeout_ms(self.total_timeout_ms);
        builder.set_body_bytes_max(self.body_bytes_max);
        builder.set_redirects_max(self.redirects_max);
        builder.set_user_agent(&self.user_agent);
        builder.set_obey_robots(self.obey_robots);
        builder.set_crawl_delay_ms(self.crawl_delay_ms);
        builder.set_rate_wait_max_ms(self.rate_wait_max_ms);
    }
}

/// `example.org` matches itself and its subdomains; an IP literal matches
/// itself (however the URL spelled it).
fn host_matches(host: &Host<&str>, domain: &str) -> bool {
    match host {
        Host::Domain(name) => {
            let name = name.trim_end_matches('.');
            name == domain
                || name
                    .strip_suffix(domain)
                    .is_some_and(|rest| rest.ends_with('.'))
        }
        Host::Ipv4(ip) => domain.parse::<IpAddr>() == Ok(IpAddr::V4(*ip)),
        Host::Ipv6(ip) => {
            domain
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                == Ok(IpAddr::V6(*ip))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> HttpScope {
        HttpScope {
            schemes: vec!["HTTP".into(), "https".into()],
            domains: vec!["Example.org.".into()],
            prefixes: vec!["http://127.0.0.1:80/docs/".into()],
            ..HttpScope::default()
        }
        .validated()
        .unwrap()
    }

    fn kind(scope: &HttpScope, url: &str) -> Option<ErrorKind> {
        scope.check(&Url::parse(url).unwrap()).err().map(|e| e.kind)
    }

    #[test]
    fn matches_domains_subdomains_and_prefixes() {
        let scope = scope();
        assert_eq!(scope.prefixes, vec!["http://127.0.0.1/docs/".to_string()]);
        assert_eq!(kind(&scope, "https://example.org/a"), None);
        assert_eq!(kind(&scope, "http://www.EXAMPLE.org/a"), None);
        assert_eq!(
            kind(&scope, "http://badexample.org/"),
            Some(ErrorKind::OutOfScope)
        );
        assert_eq!(
            kind(&scope, "http://example.org.evil.com/"),
            Some(ErrorKind::OutOfScope)
        );
        assert_eq!(
            kind(&scope, "ftp://example.org/"),
            Some(ErrorKind::OutOfScope)
        );
        assert_eq!(
            kind(&scope, "http://user:pw@example.org/"),
            Some(ErrorKind::BadRequest)
        );
        // In the prefix, but loopback without allowPrivate.
        assert_eq!(
            kind(&scope, "http://127.0.0.1/docs/x"),
            Some(ErrorKind::PrivateAddress)
        );
        assert_eq!(
            kind(&scope, "http://127.0.0.1/other"),
            Some(ErrorKind::OutOfScope)
        );
    }

    #[test]
    fn matches_media_types() {
        let scope = HttpScope {
            content_types: vec!["text/*".into(), "application/xhtml+xml".into()],
            ..HttpScope::default()
        };
        assert!(scope.accepts("text/html"));
        assert!(scope.accepts("application/xhtml+xml"));
        assert!(!scope.accepts("application/octet-stream"));
        assert!(HttpScope::default().accepts("anything/at-all"));
    }

    #[test]
    fn refuses_scopes_out_of_bounds() {
        let bad = |scope: HttpScope| scope.validated().is_err();
        assert!(bad(HttpScope {
            schemes: vec!["file".into()],
            ..HttpScope::default()
        }));
        assert!(bad(HttpScope {
            total_timeout_ms: 0,
            ..HttpScope::default()
        }));
        assert!(bad(HttpScope {
            body_bytes_max: u32::MAX,
            ..HttpScope::default()
        }));
        assert!(bad(HttpScope {
            user_agent: "a\nb".into(),
            ..HttpScope::default()
        }));
        assert!(bad(HttpScope {
            prefixes: vec!["not a url".into()],
            ..HttpScope::default()
        }));
    }
}
