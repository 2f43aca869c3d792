//! The crawl workload's web: a deterministic link graph over a few
//! origins, with pages that fail in each way a fetch can.

use raft_core::rng::Rng;

/// Origins inside the crawl's scope.
pub const ORIGINS: usize = 4;
/// Pages per origin.
pub const PAGES: usize = 10;
/// The crawl's `max_depth`: links deeper are refused.
pub const MAX_DEPTH: u32 = 3;
/// The crawl's default delay between fetch starts on one origin, in ms.
pub const DELAY_MS: u64 = 40;
/// Origin 1's robots.txt crawl-delay, in ms.
pub const SLOW_DELAY_MS: u64 = 120;
/// The slow origin.
pub const SLOW_ORIGIN: usize = 1;
/// Leases per origin at once.
pub const CONCURRENCY: u32 = 2;

/// How fetching a page goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// 200.
    Ok,
    /// Always 404: a permanent failure.
    Gone,
    /// Fails now and then (503, timeout or 429), else 200.
    Flaky,
    /// Always 503: dies after `max_attempts`.
    Broken,
}

/// The generated web.
#[derive(Clone, Debug)]
pub struct Graph {
    kinds: Vec<Kind>,
    links: Vec<Vec<String>>,
}

/// The canonical URL of page `page` of origin `origin`.
pub fn page_url(origin: usize, page: usize) -> String {
    format!("http://o{origin}.test/p{page}")
}

/// The seeds: page 0 of every origin.
pub fn seeds() -> Vec<String> {
    (0..ORIGINS).map(|o| page_url(o, 0)).collect()
}

/// `(origin, page)` of an in-scope canonical URL of the graph.
pub fn parse(url: &str) -> Option<(usize, usize)> {
    let rest = url.strip_prefix("http://o")?;
    let (origin, page) = rest.split_once(".test/p")?;
    Some((origin.parse().ok()?, page.parse().ok()?))
}

impl Graph {
    /// A web drawn from `seed`.
    pub fn new(seed: u64) -> Self {
        let mut rng = Rng::new(seed ^ 0x6372_6177_6c00);
        let count = ORIGINS * PAGES;
        let kinds = (0..count)
            .map(|i| match rng.below(20) {
                // Seeds always load, so every run crawls something.
                _ if i % PAGES == 0 => Kind::Ok,
                0 | 1 => Kind::Gone,
                2 => Kind::Broken,
                3..=6 => Kind::Flaky,
                _ => Kind::Ok,
            })
            .collect();
        let links = (0..count)
            .map(|_| {
                (0..rng.range(2, 5))
                    .map(|_| {
                        let target = page_url(
                            rng.below(ORIGINS as u64) as usize,
                            rng.below(PAGES as u64) as usize,
                        );
                        // Other spellings of the same URL, and other sites.
                        match rng.below(10) {
                            0 => target.replace("http://o", "HTTP://O") + "#frag",
                            1 => target.replace(".test/", ".test:80/"),
                            2 => format!("http://elsewhere.example/{}", rng.below(5)),
                            3 => "mailto:someone@o0.test".to_owned(),
                            _ => target,
                        }
                    })
                    .collect()
            })
            .collect();
        Self { kinds, links }
    }

    fn index(url: &str) -> Option<usize> {
        let (origin, page) = parse(url)?;
        (origin < ORIGINS && page < PAGES).then_some(origin * PAGES + page)
    }

    /// How fetching `url` goes (an unknown URL is gone).
    pub fn kind(&self, url: &str) -> Kind {
        Self::index(url).map_or(Kind::Gone, |i| self.kinds[i])
    }

    /// The links on `url`'s page, as written (not canonical).
    pub fn links(&self, url: &str) -> &[String] {
        Self::index(url).map_or(&[], |i| &self.links[i])
    }
}
