//! [`CrawlSim`]: the crawl workload of `make sim WORKLOAD=crawl`.
//!
//! Client 0 is the admin: it creates the crawl, sets the slow origin's
//! crawl-delay (as a worker would after reading robots.txt), offers the
//! seeds, and at the end reads the status and the dead URLs. The others are
//! workers: lease URLs, "fetch" them from the generated [`Graph`], offer
//! the outlinks of a page that loaded, then complete with its outcome; they
//! sometimes extend or release, and until [`CHAOS_MS`] they crash holding
//! leases. Raft faults (crashes, partitions, lost messages) come from the
//! simulator. [`CrawlHistory`] checks the oracles.

use std::collections::VecDeque;

use raft_core::rng::Rng;
use raft_core::sim::workload::{Request, Workload};

use super::crawl_graph::{
    seeds, Graph, Kind, CONCURRENCY, DELAY_MS, MAX_DEPTH, ORIGINS, SLOW_DELAY_MS, SLOW_ORIGIN,
};
use super::crawl_history::CrawlHistory;
use super::CHAOS_MS;
use crate::command::{decode_response, encode_command, encode_query, Command, Query, Reply};
use crate::crawl::{
    Completion, CrawlConfig, FetchOutcome, Link, PermanentFailure, RetryableFailure, UrlLease,
};
use crate::limits::BATCH_MESSAGES_MAX;
use crate::QueueMachine;

/// The crawl every client uses.
pub const CRAWL: &str = "web";

/// How long a worker's lease lasts, in ms.
const LEASE_MS: u64 = 800;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AdminStep {
    Create,
    SlowOrigin,
    Seeds,
    Watch,
    Dead,
    Done,
}

#[derive(Debug)]
struct Held {
    lease: UrlLease,
    outcome: FetchOutcome,
    offered: bool,
}

#[derive(Debug)]
enum Waiting {
    Admin(AdminStep),
    Lease(u64),
    Offer(Held, Vec<Link>),
    Complete(Held),
    Extend(Held),
}

#[derive(Debug, Default)]
struct Worker {
    generation: u64,
    holding: VecDeque<Held>,
}

/// The `crawl` workload.
#[derive(Debug)]
pub struct CrawlSim {
    rng: Rng,
    graph: Graph,
    admin: AdminStep,
    workers: Vec<Worker>,
    waiting: Vec<Option<Waiting>>,
    history: CrawlHistory,
    first_ms: Option<u64>,
    pending_status: Option<crate::crawl::CrawlStatus>,
}

fn config() -> CrawlConfig {
    CrawlConfig {
        allowed_domains: (0..ORIGINS).map(|o| format!("o{o}.test")).collect(),
        max_depth: MAX_DEPTH,
        max_pages: 1_000,
        default_delay_ms: DELAY_MS,
        concurrency_per_origin: CONCURRENCY,
        max_attempts: 4,
        backoff_ms: 50,
        backoff_max_ms: 400,
        default_lease_ms: LEASE_MS,
        allow_private: false,
    }
}

impl CrawlSim {
    fn chaos(&self, now_ms: u64) -> bool {
        self.first_ms
            .is_some_and(|first| now_ms.saturating_sub(first) < CHAOS_MS)
    }

    fn admin_request(&mut self) -> Option<(Waiting, Request)> {
        let step = self.admin;
        let request = match step {
            AdminStep::Create => Request::Write(encode_command(&Command::CreateCrawl {
                crawl: CRAWL.into(),
                config: config(),
            })),
            AdminStep::SlowOrigin => Request::Write(encode_command(&Command::SetOriginDelay {
                crawl: CRAWL.into(),
                origin: super::crawl_graph::page_url(SLOW_ORIGIN, 0),
                delay_ms: Some(SLOW_DELAY_MS),
            })),
            AdminStep::Seeds => Request::Write(encode_command(&Command::Offer {
                crawl: CRAWL.into(),
                links: seeds().into_iter().map(Link::seed).collect(),
            })),
            AdminStep::Watch => Request::Read(encode_query(&Query::CrawlStatus {
                crawl: CRAWL.into(),
            })),
            AdminStep::Dead => Request::Read(encode_query(&Query::DeadUrls {
                crawl: CRAWL.into(),
                after: None,
                max_urls: BATCH_MESSAGES_MAX as u32,
            })),
            AdminStep::Done => return None,
        };
        Some((Waiting::Admin(step), request))
    }

    /// What fetching `lease` gives, drawn now (a flaky page fails sometimes).
    fn fetch(&mut self, lease: &UrlLease) -> FetchOutcome {
        match self.graph.kind(&lease.url) {
            Kind::Ok => FetchOutcome::Fetched,
            Kind::Gone => FetchOutcome::Permanent(PermanentFailure::Status(404)),
            Kind::Broken => FetchOutcome::Retryable(RetryableFailure::Status(503)),
            Kind::Flaky => match self.rng.below(10) {
                0 => FetchOutcome::Retryable(RetryableFailure::Timeout),
                1 => FetchOutcome::Retryable(RetryableFailure::TooManyRequests {
                    retry_after_ms: Some(150),
                }),
                2 => FetchOutcome::Retryable(RetryableFailure::Status(500)),
                _ => FetchOutcome::Fetched,
            },
        }
    }

    fn worker_request(&mut self, client: usize, now_ms: u64) -> Option<(Waiting, Request)> {
        let chaos = self.chaos(now_ms);
        let crash = chaos && self.rng.chance(1, 15);
        let worker = &mut self.workers[client];
        if crash && !worker.holding.is_empty() {
            worker.holding.clear();
            worker.generation += 1;
        }
        let name = format!("w{client}.{}", worker.generation);
        let Some(held) = worker.holding.pop_front() else {
            let command = Command::LeaseUrls {
                crawl: CRAWL.into(),
                worker: name,
                max_urls: self.rng.range(1, 4) as u32,
                lease_ms: Some(LEASE_MS),
            };
            let generation = worker.generation;
            return Some((
                Waiting::Lease(generation),
                Request::Write(encode_command(&command)),
            ));
        };
        let roll = self.rng.below(30);
        if chaos && roll == 0 {
            let command = Command::ExtendUrls {
                crawl: CRAWL.into(),
                receipts: vec![held.lease.receipt()],
                lease_ms: Some(LEASE_MS),
            };
            return Some((
                Waiting::Extend(held),
                Request::Write(encode_command(&command)),
            ));
        }
        if held.outcome == FetchOutcome::Fetched && !held.offered {
            let links: Vec<Link> = self
                .graph
                .links(&held.lease.url)
                .iter()
                .map(|url| Link {
                    url: url.clone(),
                    depth: held.lease.depth + 1,
                    parent: Some(held.lease.id),
                })
                .collect();
            if !links.is_empty() {
                let command = Command::Offer {
                    crawl: CRAWL.into(),
                    links: links.clone(),
                };
                return Some((
                    Waiting::Offer(held, links),
                    Request::Write(encode_command(&command)),
                ));
            }
        }
        let outcome = if chaos && roll == 1 {
            FetchOutcome::Released
        } else {
            held.outcome.clone()
        };
        let command = Command::CompleteUrls {
            crawl: CRAWL.into(),
            completions: vec![Completion {
                receipt: held.lease.receipt(),
                outcome,
            }],
        };
        Some((
            Waiting::Complete(held),
            Request::Write(encode_command(&command)),
        ))
    }

    /// Is every worker idle apart from leasing?
    fn workers_idle(&self) -> bool {
        self.workers.iter().all(|w| w.holding.is_empty())
            && self
                .waiting
                .iter()
                .all(|w| matches!(w, None | Some(Waiting::Lease(_)) | Some(Waiting::Admin(_))))
    }

    fn finish(&mut self, client: usize, waiting: Waiting, reply: Option<Reply>) {
        match waiting {
            Waiting::Admin(step) => {
                let next = match (step, reply) {
                    (AdminStep::Create, Some(Reply::CrawlCreated { .. })) => AdminStep::SlowOrigin,
                    (AdminStep::SlowOrigin, Some(Reply::OriginDelaySet { .. })) => AdminStep::Seeds,
                    (AdminStep::Seeds, Some(Reply::Offered(results))) => {
                        let links: Vec<Link> = seeds().into_iter().map(Link::seed).collect();
                        self.history.offered(&links, &results);
                        AdminStep::Watch
                    }
                    (AdminStep::Watch, Some(Reply::CrawlStatus(status))) => {
                        if status.ready + status.leased + status.delayed == 0 && self.workers_idle()
                        {
                            self.pending_status = Some(status);
                            AdminStep::Dead
                        } else {
                            AdminStep::Watch
                        }
                    }
                    (AdminStep::Dead, Some(Reply::DeadUrls(dead))) => {
                        match self.pending_status.take() {
                            Some(status) => {
                                self.history.finished(status, dead);
                                AdminStep::Done
                            }
                            None => AdminStep::Watch,
                        }
                    }
                    (step, _) => step,
                };
                self.admin = next;
            }
            Waiting::Lease(generation) => {
                if let Some(Reply::UrlsLeased(leases)) = reply {
                    self.history.leased(&leases);
                    let worker = &mut self.workers[client];
                    if worker.generation == generation {
                        for lease in leases {
                            let outcome = self.fetch(&lease);
                            self.workers[client].holding.push_back(Held {
                                lease,
                                outcome,
                                offered: false,
                            });
                        }
                    }
                }
            }
            Waiting::Offer(mut held, links) => {
                if let Some(Reply::Offered(results)) = reply {
                    self.history.offered(&links, &results);
                    held.offered = true;
                }
                self.workers[client].holding.push_front(held);
            }
            Waiting::Complete(held) => match reply {
                Some(Reply::UrlsCompleted { now_ms, results }) => {
                    if let Some(result) = results.first() {
                        self.history.completed(&held.lease, Some((now_ms, result)));
                    }
                }
                _ => self.history.completed(&held.lease, None),
            },
            Waiting::Extend(held) => {
                if let Some(Reply::Extended(results)) = reply {
                    if let Some(Ok(deadline_ms)) = results.first() {
                        self.history.extended(&held.lease, *deadline_ms);
                        self.workers[client].holding.push_back(held);
                    }
                }
            }
        }
    }
}

impl Workload for CrawlSim {
    type Machine = QueueMachine;

    const NAME: &'static str = "crawl";

    fn new(client_count: usize, rng: &mut Rng) -> Self {
        let seed = rng.next_u64();
        Self {
            rng: Rng::new(seed),
            graph: Graph::new(seed),
            admin: AdminStep::Create,
            workers: (0..client_count).map(|_| Worker::default()).collect(),
            waiting: (0..client_count).map(|_| None).collect(),
            history: CrawlHistory::default(),
            first_ms: None,
            pending_status: None,
        }
    }

    fn state_machine(&self) -> QueueMachine {
        QueueMachine::new()
    }

    fn next_request(&mut self, client: usize, now_ms: u64, _rng: &mut Rng) -> Option<Request> {
        self.first_ms.get_or_insert(now_ms);
        let (waiting, request) = if client == 0 {
            self.admin_request()?
        } else {
            if matches!(self.admin, AdminStep::Create | AdminStep::SlowOrigin) {
                return None;
            }
            self.worker_request(client, now_ms)?
        };
        self.waiting[client] = Some(waiting);
        Some(request)
    }

    fn on_complete(
        &mut self,
        client: usize,
        _invoked_ms: u64,
        _completed_ms: u64,
        _request: &Request,
        response: &[u8],
    ) {
        let Some(waiting) = self.waiting[client].take() else {
            return;
        };
        let reply = match decode_response(response) {
            Ok(Ok(reply)) => Some(reply),
            // Refusals (a stale lease) carry no state to record.
            Ok(Err(error)) => {
                if let Waiting::Complete(held) = &waiting {
                    self.history.completed(&held.lease, Some((0, &Err(error))));
                    return;
                }
                None
            }
            Err(_) => None,
        };
        self.finish(client, waiting, reply);
    }

    fn on_abandon(&mut self, client: usize, _invoked_ms: u64, _request: &Request) {
        if let Some(waiting) = self.waiting[client].take() {
            match waiting {
                Waiting::Offer(held, _) | Waiting::Extend(held) => {
                    self.workers[client].holding.push_front(held)
                }
                other => self.finish(client, other, None),
            }
        }
    }

    fn is_done(&self) -> bool {
        self.admin == AdminStep::Done
    }

    fn check(&self) -> Result<String, String> {
        let (violations, summary) = self.history.check(&self.graph);
        if !violations.is_empty() {
            return Err(format!(
                "crawl oracles failed ({summary}):\n  {}",
                violations.join("\n  ")
            ));
        }
        if self.admin != AdminStep::Done {
            return Err(format!(
                "the crawl did not finish before the run ended: {summary}"
            ));
        }
        Ok(summary)
    }
}
