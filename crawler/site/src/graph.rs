//! The site's deterministic link graph and the HTML of its pages.

/// splitmix64: a tiny, well-mixed PRNG; the same seed gives the same site.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Links per page, at most (before variants).
pub const OUT_DEGREE_MAX: u64 = 6;

/// The pages `page` links to (followable links only, deduplicated, in
/// order). Page `i` always links to `i + 1` so every page is reachable from
/// page 0.
#[must_use]
pub fn links(seed: u64, pages: u32, page: u32) -> Vec<u32> {
    if pages == 0 {
        return Vec::new();
    }
    let mut out = vec![(page + 1) % pages];
    let mut state = mix(seed ^ u64::from(page).wrapping_mul(0x1000_0000_01b3));
    let degree = 1 + state % OUT_DEGREE_MAX;
    for _ in 0..degree {
        state = mix(state);
        let target = (state % u64::from(pages)) as u32;
        if !out.contains(&target) {
            out.push(target);
        }
    }
    out
}

/// The HTML of `/page/{page}`. Each followable link appears in several
/// spellings that normalise to the same URL (fragment, scheme and host
/// case, relative to `<base href>`), plus one `rel=nofollow` link and, on
/// page 0, links to every special path of the site.
#[must_use]
/// `specials`: whether page 0 links [`SPECIAL_LINKS`].
pub fn page_html(seed: u64, pages: u32, page: u32, port: u16, specials: bool) -> String {
    let mut html = format!(
        "<!doctype html>\n<html><head><title>Page {page}</title>\
         <base href=\"http://127.0.0.1:{port}/page/\"></head><body>\n<h1>Page {page}</h1>\n"
    );
    for (n, target) in links(seed, pages, page).into_iter().enumerate() {
        let href = match n % 4 {
            0 => format!("{target}"),
            1 => format!("/page/{target}#section-{n}"),
            2 => format!("HTTP://127.0.0.1:{port}/page/{target}"),
            _ => format!("./{target}?#"),
        };
        html.push_str(&format!("<p><a href=\"{href}\">to {target}</a></p>\n"));
        // The same target again, spelled differently.
        html.push_str(&format!(
            "<p><a href=\"http://127.0.0.1:{port}/page/{target}#again\">again {target}</a></p>\n"
        ));
    }
    html.push_str(&format!(
        "<p><a rel=\"nofollow\" href=\"/nofollow/{page}\">do not follow</a></p>\n"
    ));
    if page == 0 && specials {
        for special in SPECIAL_LINKS {
            html.push_str(&format!("<p><a href=\"{special}\">{special}</a></p>\n"));
        }
    }
    html.push_str("</body></html>\n");
    html
}

/// Special paths linked from page 0 (absolute paths, served by the site).
pub const SPECIAL_LINKS: &[&str] = &[
    "/private/secret",
    "/redirect/2",
    "/loop/a",
    "/slow-head/500",
    "/slow-body/500",
    "/large/4194304",
    "/status/404",
    "/status/500",
    "/status/429",
    "/doc.txt",
    "/data.bin",
    "/hang",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_graph_is_deterministic_and_connected() {
        assert_eq!(links(7, 100, 3), links(7, 100, 3));
        assert_ne!(
            (0..100).map(|p| links(7, 100, p)).collect::<Vec<_>>(),
            (0..100).map(|p| links(8, 100, p)).collect::<Vec<_>>(),
            "the seed matters"
        );
        let mut seen = [false; 100];
        let mut stack = vec![0];
        while let Some(page) = stack.pop() {
            if !std::mem::replace(&mut seen[page as usize], true) {
                stack.extend(links(7, 100, page));
            }
        }
        assert!(
            seen.iter().all(|&s| s),
            "every page is reachable from page 0"
        );
        assert!(links(7, 100, 5).iter().all(|&t| t < 100));
    }

    #[test]
    fn pages_spell_links_several_ways() {
        let html = page_html(7, 100, 0, 8080, true);
        let first = links(7, 100, 0)[0];
        assert!(html.contains("<base href=\"http://127.0.0.1:8080/page/\">"));
        assert!(html.contains(&format!("href=\"{first}\"")));
        assert!(html.contains(&format!("http://127.0.0.1:8080/page/{first}#again")));
        assert!(html.contains("rel=\"nofollow\" href=\"/nofollow/0\""));
        assert!(html.contains("href=\"/private/secret\""));
        assert!(!page_html(7, 100, 1, 8080, true).contains("/private/secret"));
        assert!(!page_html(7, 100, 0, 8080, false).contains("/private/secret"));
    }
}
