//! Link and text extraction with a streaming HTML parser (lol_html).
//!
//! Links are collected from `<a href>` and `<area href>`; a link whose
//! `rel` contains `nofollow` is skipped, and so is every link of a page with
//! `<meta name="robots" content="nofollow">`. Relative links resolve against
//! the first `<base href>` (itself resolved against the page URL), else the
//! page URL, as browsers do. Only http and https links are kept; fragments
//! are dropped (the frontier canonicalizes the rest).

use std::cell::RefCell;
use std::collections::BTreeSet;

use lol_html::{element, text, HtmlRewriter, Settings};
use url::Url;

/// Feeds `html` through a rewriter built by `settings`; malformed HTML is
/// parsed as browsers would, and a parser error (e.g. a memory limit) ends
/// the parse early with what was found so far.
fn parse(html: &[u8], settings: Settings<'_, '_>) {
    let mut rewriter = HtmlRewriter::new(settings, |_: &[u8]| {});
    if rewriter.write(html).is_ok() {
        let _ = rewriter.end();
    }
}

/// The followable links of an HTML page fetched from `page_url`, absolute,
/// without fragments, deduplicated, in document order.
#[must_use]
pub fn links(page_url: &str, html: &[u8]) -> Vec<String> {
    let base: RefCell<Option<String>> = RefCell::new(None);
    let hrefs: RefCell<Vec<String>> = RefCell::new(Vec::new());
    let nofollow_page = RefCell::new(false);
    parse(
        html,
        Settings {
            element_content_handlers: vec![
                element!("base[href]", |el| {
                    let mut base = base.borrow_mut();
                    if base.is_none() {
                        *base = el.get_attribute("href");
                    }
                    Ok(())
                }),
                element!("meta[name][content]", |el| {
                    let name = el.get_attribute("name").unwrap_or_default();
                    let content = el.get_attribute("content").unwrap_or_default();
                    if name.eq_ignore_ascii_case("robots") && has_token(&content, "nofollow") {
                        *nofollow_page.borrow_mut() = true;
                    }
                    Ok(())
                }),
                element!("a[href], area[href]", |el| {
                    let rel = el.get_attribute("rel").unwrap_or_default();
                    if !has_token(&rel, "nofollow") {
                        if let Some(href) = el.get_attribute("href") {
                            hrefs.borrow_mut().push(href);
                        }
                    }
                    Ok(())
                }),
            ],
            ..Settings::new()
        },
    );
    if nofollow_page.into_inner() {
        return Vec::new();
    }
    let Ok(page) = Url::parse(page_url) else {
        return Vec::new();
    };
    let base = base
        .into_inner()
        .and_then(|href| page.join(href.trim()).ok())
        .unwrap_or(page);
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for href in hrefs.into_inner() {
        let Ok(mut url) = base.join(href.trim()) else {
            continue;
        };
        if !matches!(url.scheme(), "http" | "https") {
            continue;
        }
        url.set_fragment(None);
        let url = String::from(url);
        if seen.insert(url.clone()) {
            out.push(url);
        }
    }
    out
}

/// The text of the first element matching `selector` (e.g. `"title"`),
/// whitespace collapsed; `None` if none matches or the selector is invalid.
#[must_use]
pub fn first_text(html: &[u8], selector: &str) -> Option<String> {
    let text_of: RefCell<Option<String>> = RefCell::new(None);
    let done = RefCell::new(false);
    // lol_html's macros unwrap the parsed selector: check it first so a
    // bad selector is `None`, not a panic.
    if selector.parse::<lol_html::Selector>().is_err() {
        return None;
    }
    parse(
        html,
        Settings {
            element_content_handlers: vec![text!(selector, |chunk| {
                if !*done.borrow() {
                    text_of
                        .borrow_mut()
                        .get_or_insert_with(String::new)
                        .push_str(chunk.as_str());
                    if chunk.last_in_text_node() {
                        *done.borrow_mut() = true;
                    }
                }
                Ok(())
            })],
            ..Settings::new()
        },
    );
    text_of
        .into_inner()
        .map(|text| text.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// The value of attribute `attr` on the first element matching `selector`
/// (e.g. `"meta[name=description]"`, `"content"`).
#[must_use]
pub fn first_attr(html: &[u8], selector: &str, attr: &str) -> Option<String> {
    if selector.parse::<lol_html::Selector>().is_err() {
        return None;
    }
    let found: RefCell<Option<String>> = RefCell::new(None);
    parse(
        html,
        Settings {
            element_content_handlers: vec![element!(selector, |el| {
                let mut found = found.borrow_mut();
                if found.is_none() {
                    *found = el.get_attribute(attr);
                }
                Ok(())
            })],
            ..Settings::new()
        },
    );
    found.into_inner()
}

fn has_token(list: &str, token: &str) -> bool {
    list.split(|c: char| c.is_ascii_whitespace() || c == ',')
        .any(|item| item.eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_href_nofollow_and_fragments() {
        let html = br#"<html><head><base href="/dir/"></head><body>
            <a href="a">a</a> <a href="/b#x">b</a> <a href="a#again">a again</a>
            <a rel="nofollow" href="/secret">no</a> <a href="mailto:x@y">mail</a>
            <area href="HTTP://Example.org/c"></body></html>"#;
        assert_eq!(
            links("http://example.org/page/1", html),
            vec![
                "http://example.org/dir/a",
                "http://example.org/b",
                "http://example.org/c"
            ]
        );
    }

    #[test]
    fn meta_robots_nofollow_drops_every_link() {
        let html = br#"<meta name="robots" content="noindex, nofollow"><a href="/x">x</a>"#;
        assert!(links("http://example.org/", html).is_empty());
    }

    #[test]
    fn title_and_meta_description() {
        let html = br#"<head><title> Hello
            world </title><meta name="description" content="About it"></head>"#;
        assert_eq!(first_text(html, "title").as_deref(), Some("Hello world"));
        assert_eq!(
            first_attr(html, "meta[name=description]", "content").as_deref(),
            Some("About it")
        );
        assert_eq!(first_text(html, "h1"), None);
        assert_eq!(first_text(html, "[[bad"), None);
    }
}
