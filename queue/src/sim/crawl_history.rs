//! The crawl workload's checker: what workers saw, and the frontier's
//! oracles over it.
//!
//! - **scope**: each offered link gets the answer its spelling calls for
//!   (in scope and depth: enqueued or seen; else out of scope, too deep or
//!   invalid), and an enqueued URL is the canonical form of its link.
//! - **once**: no canonical URL is enqueued under two ids.
//! - **exclusive**: a URL is never leased while an earlier lease of it holds.
//! - **politeness**: per origin, lease starts are at least the origin's delay
//!   apart, and no more than its concurrency are held at once, in log time.
//! - **nothing lost**: every link accepted (and every seed) ends fetched,
//!   permanently failed or dead, and the final status has an empty frontier
//!   with `fetched + failed + dead == seen`. Pages that always fail end
//!   recorded dead; pages that always load die only of expired leases.
//!
//! Where a reply was lost, the checker assumes the least it can (a lease
//! whose end is unknown is left out of the concurrency count), so a
//! violation it reports is real.

use std::collections::{BTreeMap, BTreeSet};

use super::crawl_graph::{
    parse, seeds, Graph, Kind, CONCURRENCY, DELAY_MS, MAX_DEPTH, ORIGINS, SLOW_DELAY_MS,
    SLOW_ORIGIN,
};
use crate::crawl::{Completed, CrawlStatus, DeadUrl, DeadUrlReason, Link, Offered, UrlLease};
use crate::QueueError;

#[derive(Clone, Debug)]
struct LeaseRecord {
    lease: UrlLease,
    /// The latest deadline an extend reported.
    deadline_ms: u64,
    /// The log time a completion applied at, when its reply came back.
    completed_ms: Option<u64>,
    /// A completion was sent and its effect is unknown.
    completion_unknown: bool,
}

impl LeaseRecord {
    /// When the lease stopped holding its URL, if known.
    fn end_ms(&self) -> Option<u64> {
        match (self.completed_ms, self.completion_unknown) {
            (Some(at), _) => Some(at.min(self.deadline_ms)),
            (None, true) => None,
            (None, false) => Some(self.deadline_ms),
        }
    }
}

/// Everything the workers saw.
#[derive(Debug, Default)]
pub struct CrawlHistory {
    enqueued: BTreeMap<String, BTreeSet<u64>>,
    accepted: BTreeSet<String>,
    leases: BTreeMap<(u64, u64), LeaseRecord>,
    settled: BTreeSet<String>,
    maybe_settled: BTreeSet<String>,
    dead: Option<Vec<DeadUrl>>,
    status: Option<CrawlStatus>,
    violations: Vec<String>,
}

/// The graph's own spelling rules: what a link should canonicalize to.
fn expected(link: &str) -> Option<String> {
    let lower = link.to_ascii_lowercase();
    let url = lower.split('#').next()?.replace(".test:80/", ".test/");
    parse(&url).map(|_| url)
}

impl CrawlHistory {
    /// An offer's reply.
    pub fn offered(&mut self, links: &[Link], results: &[Offered]) {
        if links.len() != results.len() {
            self.violations.push(format!(
                "{} links got {} results",
                links.len(),
                results.len()
            ));
            return;
        }
        for (link, result) in links.iter().zip(results) {
            let want = expected(&link.url);
            let ok = match (&want, result) {
                (Some(url), Offered::Enqueued { id, url: got }) if link.depth <= MAX_DEPTH => {
                    if got != url {
                        self.violations
                            .push(format!("{} canonicalized to {got}", link.url));
                    }
                    let ids = self.enqueued.entry(url.clone()).or_default();
                    ids.insert(*id);
                    if ids.len() > 1 {
                        self.violations
                            .push(format!("{url} enqueued twice: ids {ids:?}"));
                    }
                    self.accepted.insert(url.clone());
                    true
                }
                (Some(url), Offered::Seen) if link.depth <= MAX_DEPTH => {
                    self.accepted.insert(url.clone());
                    true
                }
                (Some(_), Offered::TooDeep) => link.depth > MAX_DEPTH,
                (None, Offered::OutOfScope) => link.url.contains("elsewhere"),
                (None, Offered::Invalid { .. }) => link.url.starts_with("mailto:"),
                _ => false,
            };
            if !ok {
                self.violations.push(format!(
                    "link {} (depth {}) got {result:?}",
                    link.url, link.depth
                ));
            }
        }
    }

    /// A lease's reply.
    pub fn leased(&mut self, leases: &[UrlLease]) {
        for lease in leases {
            let known = self.enqueued.get(&lease.url);
            if known.is_some_and(|ids| !ids.contains(&lease.id)) {
                self.violations
                    .push(format!("{} leased under id {}", lease.url, lease.id));
            }
            self.leases.insert(
                (lease.id, lease.token),
                LeaseRecord {
                    lease: lease.clone(),
                    deadline_ms: lease.deadline_ms,
                    completed_ms: None,
                    completion_unknown: false,
                },
            );
        }
    }

    /// An extend's reply.
    pub fn extended(&mut self, lease: &UrlLease, deadline_ms: u64) {
        if let Some(record) = self.leases.get_mut(&(lease.id, lease.token)) {
            record.deadline_ms = record.deadline_ms.max(deadline_ms);
        }
    }

    /// A completion's reply; `None` when its effect is unknown.
    pub fn completed(
        &mut self,
        lease: &UrlLease,
        reply: Option<(u64, &Result<Completed, QueueError>)>,
    ) {
        let Some(record) = self.leases.get_mut(&(lease.id, lease.token)) else {
            return;
        };
        match reply {
            Some((now_ms, Ok(outcome))) => {
                record.completed_ms = Some(now_ms);
                if matches!(outcome, Completed::Done | Completed::Dead) {
                    self.settled.insert(lease.url.clone());
                }
            }
            // Stale: the lease had expired; it ended at its deadline.
            Some((_, Err(_))) => {}
            None => {
                record.completion_unknown = true;
                self.maybe_settled.insert(lease.url.clone());
            }
        }
    }

    /// The final status and dead list.
    pub fn finished(&mut self, status: CrawlStatus, dead: Vec<DeadUrl>) {
        self.status = Some(status);
        self.dead = Some(dead);
    }

    /// The findings.
    pub fn check(&self, graph: &Graph) -> (Vec<String>, String) {
        let mut violations = self.violations.clone();
        let mut per_url: BTreeMap<u64, Vec<&LeaseRecord>> = BTreeMap::new();
        let mut per_origin: BTreeMap<&str, Vec<&LeaseRecord>> = BTreeMap::new();
        for record in self.leases.values() {
            per_url.entry(record.lease.id).or_default().push(record);
            per_origin
                .entry(&record.lease.origin)
                .or_default()
                .push(record);
        }
        for (id, mut leases) in per_url {
            leases.sort_by_key(|r| r.lease.leased_at_ms);
            for pair in leases.windows(2) {
                if pair[0]
                    .end_ms()
                    .is_some_and(|end| pair[1].lease.leased_at_ms < end)
                {
                    violations.push(format!(
                        "URL {id} leased at {} while the lease from {} held until {:?}",
                        pair[1].lease.leased_at_ms,
                        pair[0].lease.leased_at_ms,
                        pair[0].end_ms()
                    ));
                }
            }
        }
        for (origin, mut leases) in per_origin {
            leases.sort_by_key(|r| r.lease.leased_at_ms);
            let slow = super::crawl_graph::page_url(SLOW_ORIGIN, 0);
            let delay_ms = if slow.starts_with(origin) {
                SLOW_DELAY_MS
            } else {
                DELAY_MS
            };
            for pair in leases.windows(2) {
                let gap = pair[1].lease.leased_at_ms - pair[0].lease.leased_at_ms;
                if gap < delay_ms {
                    violations.push(format!(
                        "{origin}: leases at {} and {} are {gap} ms apart (delay {delay_ms})",
                        pair[0].lease.leased_at_ms, pair[1].lease.leased_at_ms
                    ));
                }
            }
            for record in &leases {
                let at = record.lease.leased_at_ms;
                let held = leases
                    .iter()
                    .filter(|r| {
                        r.lease.leased_at_ms <= at && r.end_ms().is_some_and(|end| end > at)
                    })
                    .count();
                if held > CONCURRENCY as usize {
                    violations.push(format!("{origin}: {held} leases held at {at}"));
                }
            }
        }
        let dead: BTreeMap<&str, &DeadUrl> = self
            .dead
            .iter()
            .flatten()
            .map(|d| (d.url.as_str(), d))
            .collect();
        let mut must_settle: BTreeSet<String> = self.accepted.clone();
        must_settle.extend(seeds());
        for url in &must_settle {
            let done = self.settled.contains(url)
                || self.maybe_settled.contains(url)
                || dead.contains_key(url.as_str());
            if !done {
                violations.push(format!("{url} was accepted but never fetched or dead"));
            }
            let kind = graph.kind(url);
            if matches!(kind, Kind::Broken | Kind::Gone) && !dead.contains_key(url.as_str()) {
                violations.push(format!("{url} always fails but is not recorded dead"));
            }
            // A page that always loads dies only of expired leases.
            if let (Kind::Ok, Some(record)) = (kind, dead.get(url.as_str())) {
                if record.reason != DeadUrlReason::LeaseExpired {
                    violations.push(format!("{url} loads but died: {:?}", record.reason));
                }
            }
        }
        match &self.status {
            None => violations.push("no final status".to_owned()),
            Some(status) => {
                let c = &status.counters;
                if status.ready + status.leased + status.delayed != 0 {
                    violations.push(format!("frontier not empty at the end: {status:?}"));
                }
                if c.fetched + c.failed + c.dead != c.seen {
                    violations.push(format!("URLs lost: {c:?}"));
                }
                if status.origins > ORIGINS as u64 {
                    violations.push(format!("{} origins tracked", status.origins));
                }
            }
        }
        let counters = self
            .status
            .as_ref()
            .map(|s| s.counters.clone())
            .unwrap_or_default();
        let summary = format!(
            "urls={} fetched={} failed={} dead={} leases={} retried={} expired={} duplicate_offers={} refused_out_of_scope={} recovered={} violations={}",
            must_settle.len(),
            counters.fetched,
            counters.failed,
            counters.dead,
            self.leases.len(),
            counters.retried,
            counters.expired,
            counters.duplicate,
            counters.refused_out_of_scope,
            self.maybe_settled.difference(&self.settled).count(),
            violations.len()
        );
        (violations, summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crawl::{CrawlConfig, CrawlCounters, CrawlState};
    use crate::sim::crawl_graph::page_url;

    fn lease(id: u64, token: u64, url: &str, at: u64) -> UrlLease {
        UrlLease {
            id,
            token,
            url: url.to_owned(),
            origin: url.split("/p").next().unwrap_or_default().to_owned(),
            depth: 0,
            parent: None,
            failed: 0,
            leased_at_ms: at,
            deadline_ms: at + 1_000,
        }
    }

    fn status(seen: u64) -> CrawlStatus {
        CrawlStatus {
            crawl: "web".into(),
            now_ms: 0,
            state: CrawlState::Running,
            ready: 0,
            leased: 0,
            delayed: 0,
            dead: 0,
            origins: 1,
            counters: CrawlCounters {
                seen,
                fetched: seen,
                ..CrawlCounters::default()
            },
            config: CrawlConfig::default(),
        }
    }

    /// The seeds offered, leased `gap_ms` apart on origin 0, and fetched.
    fn crawl(gap_ms: u64) -> CrawlHistory {
        let mut history = CrawlHistory::default();
        let links: Vec<Link> = seeds().into_iter().map(Link::seed).collect();
        let results: Vec<Offered> = seeds()
            .into_iter()
            .enumerate()
            .map(|(i, url)| Offered::Enqueued {
                id: i as u64 + 1,
                url,
            })
            .collect();
        history.offered(&links, &results);
        for (i, url) in seeds().iter().enumerate() {
            let lease = lease(i as u64 + 1, 10 + i as u64, url, 100 * i as u64);
            history.leased(std::slice::from_ref(&lease));
            history.completed(&lease, Some((lease.leased_at_ms + 5, &Ok(Completed::Done))));
        }
        // A second page of origin 0, `gap_ms` after its seed.
        let url = page_url(0, 1);
        let links = [Link {
            url: url.clone(),
            depth: 1,
            parent: Some(1),
        }];
        history.offered(
            &links,
            &[Offered::Enqueued {
                id: 9,
                url: url.clone(),
            }],
        );
        let second = lease(9, 99, &url, gap_ms);
        history.leased(std::slice::from_ref(&second));
        history.completed(&second, Some((gap_ms + 5, &Ok(Completed::Done))));
        history.finished(status(seeds().len() as u64 + 1), Vec::new());
        history
    }

    fn graph() -> Graph {
        // Seeds always load; pick a graph where page 1 of origin 0 (fetched
        // in these histories) does too.
        (0..)
            .map(Graph::new)
            .find(|g| g.kind(&page_url(0, 1)) == Kind::Ok)
            .unwrap_or_else(|| Graph::new(0))
    }

    #[test]
    fn a_clean_crawl_passes() {
        let (violations, _) = crawl(DELAY_MS).check(&graph());
        assert!(violations.is_empty(), "{violations:?}");
    }

    #[test]
    fn impolite_leases_are_caught() {
        let (violations, _) = crawl(DELAY_MS - 1).check(&graph());
        assert!(
            violations.iter().any(|v| v.contains("apart")),
            "{violations:?}"
        );
    }

    #[test]
    fn double_enqueue_overlap_and_loss_are_caught() {
        let mut history = crawl(DELAY_MS);
        let url = page_url(2, 3);
        let link = Link {
            url: url.clone(),
            depth: 1,
            parent: None,
        };
        history.offered(
            &[link.clone(), link],
            &[
                Offered::Enqueued {
                    id: 20,
                    url: url.clone(),
                },
                Offered::Enqueued {
                    id: 21,
                    url: url.clone(),
                },
            ],
        );
        history.leased(&[lease(20, 200, &url, 5_000), lease(20, 201, &url, 5_500)]);
        let (violations, _) = history.check(&graph());
        let has = |text: &str| violations.iter().any(|v| v.contains(text));
        assert!(has("enqueued twice"), "{violations:?}");
        assert!(has("while the lease"), "{violations:?}");
        assert!(has("never fetched or dead"), "{violations:?}");
    }
}
