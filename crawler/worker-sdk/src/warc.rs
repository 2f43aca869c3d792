//! WARC/1.1 (ISO 28500:2017) records for exported results: one `warcinfo`
//! record per file, then a `request` and a `response` record per fetched
//! URL, so standard web-archive tools can read a crawl.
//!
//! A record is `WARC/1.1`, its named fields, an empty line, the block of
//! `Content-Length` bytes, and two line ends. Record ids are derived from
//! the URL's frontier id and attempt (a blake3 hash shaped as a UUID), so
//! exporting the same results twice gives the same records.
//!
//! The response block is the HTTP response as the worker saw it: a status
//! line, the headers (without `Transfer-Encoding`, since the body is
//! stored de-chunked), and the body the record kept. A record keeps at
//! most the worker's cap of a textual body and no body of other types;
//! when what is written is not everything the worker read, the record says
//! `WARC-Truncated: length`. `WARC-Payload-Digest` is always the blake3 of
//! the payload written, so a reader can check it.

use std::fmt::Write as _;

use crate::record::{digest, ResultRecord};

/// The `warcinfo` record that opens a file: what wrote it, for which crawl.
#[must_use]
pub fn warcinfo(crawl: &str, now_ms: u64) -> Vec<u8> {
    let fields = format!(
        "software: ww crawler.wasm\r\nformat: WARC File Format 1.1\r\nconformsTo: https://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/\r\ncrawl: {crawl}\r\n"
    );
    record(
        &[
            ("WARC-Type", "warcinfo".to_owned()),
            (
                "WARC-Record-ID",
                record_id(&["warcinfo", crawl, &now_ms.to_string()]),
            ),
            ("WARC-Date", date(now_ms)),
            ("Content-Type", "application/warc-fields".to_owned()),
        ],
        fields.as_bytes(),
    )
}

/// The `request` and `response` records of one result.
#[must_use]
pub fn exchange(result: &ResultRecord) -> Vec<u8> {
    let key = [result.id.to_string(), result.attempt.to_string()];
    let request_id = record_id(&["request", &key[0], &key[1]]);
    let response_id = record_id(&["response", &key[0], &key[1]]);
    let when = date(result.fetched_at);

    let (host, target) = request_target(&result.url);
    let request_block = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n");

    let mut head = format!("HTTP/1.1 {} {}\r\n", result.status, reason(result.status));
    for (name, value) in &result.headers {
        if name.eq_ignore_ascii_case("transfer-encoding") {
            continue;
        }
        let clean =
            |text: &str| -> String { text.chars().filter(|c| *c != '\r' && *c != '\n').collect() };
        let _ = write!(head, "{}: {}\r\n", clean(name), clean(value));
    }
    head.push_str("\r\n");
    let payload = result.body.as_bytes();
    let mut response_block = head.into_bytes();
    response_block.extend_from_slice(payload);

    let payload_digest = digest(payload);
    let mut response_fields = vec![
        ("WARC-Type", "response".to_owned()),
        ("WARC-Record-ID", response_id.clone()),
        ("WARC-Date", when.clone()),
        ("WARC-Target-URI", result.url.clone()),
        ("WARC-Concurrent-To", request_id.clone()),
        ("WARC-Payload-Digest", payload_digest.clone()),
        (
            "Content-Type",
            "application/http;msgtype=response".to_owned(),
        ),
    ];
    if payload_digest != result.digest {
        response_fields.push(("WARC-Truncated", "length".to_owned()));
    }
    let mut out = record(
        &[
            ("WARC-Type", "request".to_owned()),
            ("WARC-Record-ID", request_id),
            ("WARC-Date", when),
            ("WARC-Target-URI", result.url.clone()),
            ("WARC-Concurrent-To", response_id),
            (
                "Content-Type",
                "application/http;msgtype=request".to_owned(),
            ),
        ],
        request_block.as_bytes(),
    );
    out.extend(record(&response_fields, &response_block));
    out
}

fn record(fields: &[(&str, String)], block: &[u8]) -> Vec<u8> {
    let mut head = String::from("WARC/1.1\r\n");
    for (name, value) in fields {
        // Field values come from URLs and response headers: a line end in
        // one would forge a field, so it is cut out.
        let value: String = value.chars().filter(|c| *c != '\r' && *c != '\n').collect();
        let _ = write!(head, "{name}: {value}\r\n");
    }
    let _ = write!(head, "Content-Length: {}\r\n\r\n", block.len());
    let mut out = head.into_bytes();
    out.extend_from_slice(block);
    out.extend_from_slice(b"\r\n\r\n");
    out
}

/// `<urn:uuid:...>` from a blake3 hash of `parts`, with the UUID version
/// (8: custom) and variant bits set.
fn record_id(parts: &[&str]) -> String {
    let mut hasher = blake3::Hasher::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update(&[0]);
    }
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "<urn:uuid:{}-{}-{}-{}-{}>",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The host (with a non-default port) and the path with query of `url`.
fn request_target(url: &str) -> (String, String) {
    match url::Url::parse(url) {
        Ok(parsed) => {
            let host = match (parsed.host_str(), parsed.port()) {
                (Some(host), Some(port)) => format!("{host}:{port}"),
                (Some(host), None) => host.to_owned(),
                (None, _) => String::new(),
            };
            let mut target = parsed.path().to_owned();
            if let Some(query) = parsed.query() {
                target.push('?');
                target.push_str(query);
            }
            (host, target)
        }
        Err(_) => (String::new(), url.to_owned()),
    }
}

/// `YYYY-MM-DDThh:mm:ssZ` (UTC) of `ms` since the Unix epoch.
fn date(ms: u64) -> String {
    let seconds = ms / 1000;
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's
/// days-to-civil algorithm, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        410 => "Gone",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        // The reason phrase is optional (RFC 9112); the space is not.
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_iso_8601() {
        assert_eq!(date(0), "1970-01-01T00:00:00Z");
        assert_eq!(date(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(date(1_796_256_000_999), "2026-12-03T00:00:00Z");
        assert_eq!(date(4_107_542_399_000), "2100-02-28T23:59:59Z");
    }

    fn result(body: &str, digest_of_read: String) -> ResultRecord {
        ResultRecord {
            url: "http://127.0.0.1:8080/page/1?x=y".into(),
            final_url: "http://127.0.0.1:8080/page/1?x=y".into(),
            status: 200,
            headers: vec![
                ("content-type".into(), "text/html".into()),
                ("transfer-encoding".into(), "chunked".into()),
                ("x-evil".into(), "a\r\nWARC-Type: forged".into()),
            ],
            content_type: "text/html".into(),
            length: body.len() as u64,
            truncated: false,
            digest: digest_of_read,
            fetched_at: 1_796_256_000_000,
            depth: 1,
            id: 7,
            parent: None,
            worker: "w".into(),
            attempt: 1,
            elapsed_ms: 3,
            outlinks: 0,
            fields: serde_json::Map::new(),
            body: body.into(),
        }
    }

    #[test]
    fn an_exchange_is_a_request_and_a_response_with_exact_lengths() {
        let body = "<html>hi</html>";
        let out = exchange(&result(body, digest(body.as_bytes())));
        let text = String::from_utf8(out).unwrap();
        let records: Vec<&str> = text.split("WARC/1.1\r\n").skip(1).collect();
        assert_eq!(records.len(), 2, "{text}");
        for record in &records {
            let (head, rest) = record.split_once("\r\n\r\n").unwrap();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("Content-Length: "))
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(rest.len(), length + 4, "{record}");
            assert!(rest.ends_with("\r\n\r\n"));
        }
        assert!(records[0].contains("WARC-Type: request\r\n"));
        assert!(records[0].contains("GET /page/1?x=y HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"));
        assert!(records[1].contains("WARC-Type: response\r\n"));
        assert!(records[1].contains("WARC-Date: 2026-12-03T00:00:00Z\r\n"));
        assert!(records[1].contains(&format!(
            "WARC-Payload-Digest: {}\r\n",
            digest(body.as_bytes())
        )));
        assert!(records[1].contains("HTTP/1.1 200 OK\r\ncontent-type: text/html\r\n"));
        assert!(!records[1].contains("chunked"), "{}", records[1]);
        assert!(!records[1].contains("WARC-Truncated"));
        // A header value cannot start a field of its own.
        assert!(!text.contains("\nWARC-Type: forged"), "{text}");
        // Same result, same record ids.
        assert_eq!(
            exchange(&result(body, digest(body.as_bytes()))),
            text.as_bytes()
        );
    }

    #[test]
    fn a_body_kept_in_part_is_marked_truncated() {
        let out = exchange(&result("<html>hi", digest(b"<html>hi</html> and more")));
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("WARC-Truncated: length\r\n"), "{text}");
        assert!(text.contains(&format!("WARC-Payload-Digest: {}\r\n", digest(b"<html>hi"))));
    }
}
