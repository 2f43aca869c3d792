//! The crawl commands and queries of [`QueueMachine`]: argument checks,
//! crawl lookup, the store and budget limits, then the [`Crawl`] operation.

use std::collections::BTreeMap;

use super::{check_count, check_count_or_zero, check_lease_ms, QueueMachine};
use crate::command::{Command, Query, Reply, Response};
use crate::crawl::{
    check_config, check_crawl_name, check_detail, Crawl, CrawlConfig, CrawlState, FetchOutcome,
    PermanentFailure,
};
use crate::limits::{CLIENT_ID_BYTES_MAX, CRAWLS_MAX, CRAWL_PAGES_TOTAL_MAX, URL_BYTES_MAX};
use crate::QueueError;

impl QueueMachine {
    pub(super) fn crawl_command(&mut self, index: u64, command: Command) -> Response {
        let now_ms = self.state.now_ms;
        match command {
            Command::CreateCrawl { crawl, config } => self.create_crawl(crawl, config),
            Command::ConfigureCrawl { crawl, config } => {
                check_config(&config)?;
                let old_pages = self.crawl(&crawl)?.config.max_pages;
                self.check_pages(config.max_pages, old_pages)?;
                self.crawl_mut(&crawl)?.config = config;
                Ok(Reply::CrawlConfigured)
            }
            Command::ControlCrawl { crawl, control } => Ok(Reply::CrawlControlled(
                self.crawl_mut(&crawl)?.control(control)?,
            )),
            Command::DeleteCrawl { crawl } => {
                let urls = self.crawl(&crawl)?.len();
                self.state.crawls.remove(&crawl);
                Ok(Reply::CrawlDeleted { urls })
            }
            Command::Offer { crawl, links } => {
                check_count("links", links.len())?;
                if let Some(link) = links.iter().find(|l| l.url.len() > URL_BYTES_MAX * 3) {
                    return Err(QueueError::invalid(
                        "links",
                        format!(
                            "a {}-byte URL; a URL is at most {URL_BYTES_MAX}",
                            link.url.len()
                        ),
                    ));
                }
                let entry = self.crawl(&crawl)?;
                if entry.state == CrawlState::Stopped {
                    return Err(entry.stopped());
                }
                let (plans, bytes) = entry.plan_offer(&links);
                self.check_store(bytes)?;
                Ok(Reply::Offered(self.crawl_mut(&crawl)?.offer(plans)))
            }
            Command::LeaseUrls {
                crawl,
                worker,
                max_urls,
                lease_ms,
            } => {
                if worker.is_empty() || worker.len() > CLIENT_ID_BYTES_MAX {
                    return Err(QueueError::invalid(
                        "worker",
                        format!("{} bytes; must be 1 to {CLIENT_ID_BYTES_MAX}", worker.len()),
                    ));
                }
                check_count("max_urls", max_urls as usize)?;
                let token_base = self.next_token_base(index);
                let entry = self.crawl_mut(&crawl)?;
                let lease_ms = check_lease_ms(lease_ms.unwrap_or(entry.config.default_lease_ms))?;
                let leases = entry.lease(&worker, max_urls as usize, lease_ms, now_ms, token_base);
                if let Some(last) = leases.last() {
                    self.state.last_token = last.token;
                }
                self.note_crawl_due(&crawl);
                Ok(Reply::UrlsLeased(leases))
            }
            Command::CompleteUrls { crawl, completions } => {
                check_count_or_zero("completions", completions.len())?;
                for completion in &completions {
                    if let FetchOutcome::Permanent(PermanentFailure::Other(detail)) =
                        &completion.outcome
                    {
                        check_detail(detail)?;
                    }
                }
                let entry = self.crawl_mut(&crawl)?;
                let results = completions
                    .into_iter()
                    .map(|c| entry.complete(c.receipt, c.outcome, now_ms))
                    .collect();
                self.note_crawl_due(&crawl);
                Ok(Reply::UrlsCompleted { now_ms, results })
            }
            Command::ExtendUrls {
                crawl,
                receipts,
                lease_ms,
            } => {
                check_count_or_zero("receipts", receipts.len())?;
                let entry = self.crawl_mut(&crawl)?;
                let lease_ms = check_lease_ms(lease_ms.unwrap_or(entry.config.default_lease_ms))?;
                let results = receipts
                    .into_iter()
                    .map(|r| entry.extend(r, lease_ms, now_ms))
                    .collect();
                self.note_crawl_due(&crawl);
                Ok(Reply::Extended(results))
            }
            Command::SetOriginDelay {
                crawl,
                origin,
                delay_ms,
            } => {
                if origin.len() > URL_BYTES_MAX {
                    return Err(QueueError::invalid(
                        "origin",
                        format!("{} bytes; at most {URL_BYTES_MAX}", origin.len()),
                    ));
                }
                let origin = self
                    .crawl_mut(&crawl)?
                    .set_origin_delay(&origin, delay_ms)?;
                Ok(Reply::OriginDelaySet { origin })
            }
            other => Err(QueueError::invalid(
                "command",
                format!("{other:?} is not a crawl command"),
            )),
        }
    }

    pub(super) fn crawl_query(&self, query: &Query) -> Response {
        match query {
            Query::CrawlStatus { crawl } => Ok(Reply::CrawlStatus(
                self.crawl(crawl)?.status(self.state.now_ms),
            )),
            Query::DeadUrls {
                crawl,
                after,
                max_urls,
            } => {
                check_count("max_urls", *max_urls as usize)?;
                Ok(Reply::DeadUrls(
                    self.crawl(crawl)?.dead_urls(*after, *max_urls as usize),
                ))
            }
            Query::CrawlWorkers { crawl } => {
                Ok(Reply::CrawlWorkers(self.crawl(crawl)?.worker_status()))
            }
            other => Err(QueueError::invalid(
                "query",
                format!("{other:?} is not a crawl query"),
            )),
        }
    }

    fn create_crawl(&mut self, crawl: String, config: CrawlConfig) -> Response {
        check_crawl_name(&crawl)?;
        check_config(&config)?;
        if let Some(existing) = self.state.crawls.get(&crawl) {
            if existing.config == config {
                return Ok(Reply::CrawlCreated { created: false });
            }
            return Err(QueueError::CrawlExists { crawl });
        }
        if self.state.crawls.len() >= CRAWLS_MAX {
            return Err(QueueError::CrawlLimit {
                detail: format!("{CRAWLS_MAX} crawls"),
            });
        }
        self.check_pages(config.max_pages, 0)?;
        self.state
            .crawls
            .insert(crawl.clone(), Crawl::new(crawl, config));
        Ok(Reply::CrawlCreated { created: true })
    }

    /// All crawls' page budgets together stay within
    /// [`CRAWL_PAGES_TOTAL_MAX`], which bounds the seen sets.
    fn check_pages(&self, pages: u64, replacing: u64) -> Result<(), QueueError> {
        let budgeted: u64 = self
            .state
            .crawls
            .values()
            .map(|c| c.config.max_pages)
            .sum::<u64>()
            - replacing;
        if budgeted + pages > CRAWL_PAGES_TOTAL_MAX {
            return Err(QueueError::CrawlLimit {
                detail: format!(
                    "{budgeted} pages budgeted by other crawls + {pages} > {CRAWL_PAGES_TOTAL_MAX}"
                ),
            });
        }
        Ok(())
    }

    fn crawl(&self, name: &str) -> Result<&Crawl, QueueError> {
        check_crawl_name(name)?;
        self.state
            .crawls
            .get(name)
            .ok_or_else(|| QueueError::NoSuchCrawl {
                crawl: name.to_owned(),
            })
    }

    fn crawl_mut(&mut self, name: &str) -> Result<&mut Crawl, QueueError> {
        check_crawl_name(name)?;
        self.state
            .crawls
            .get_mut(name)
            .ok_or_else(|| QueueError::NoSuchCrawl {
                crawl: name.to_owned(),
            })
    }

    fn note_crawl_due(&mut self, crawl: &str) {
        let due = self.state.crawls.get(crawl).and_then(Crawl::next_due_ms);
        self.next_due_ms = match (self.next_due_ms, due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

/// Checks restored crawls and rebuilds their indexes.
///
/// # Errors
///
/// A readable message naming the first inconsistency.
pub(super) fn check_crawls(crawls: &mut BTreeMap<String, Crawl>) -> Result<(), String> {
    if crawls.len() > CRAWLS_MAX {
        return Err(format!("queue snapshot has {} crawls", crawls.len()));
    }
    let pages: u64 = crawls.values().map(|c| c.config.max_pages).sum();
    if pages > CRAWL_PAGES_TOTAL_MAX {
        return Err(format!("queue snapshot budgets {pages} crawl pages"));
    }
    for (name, crawl) in crawls.iter_mut() {
        crawl.rebuild(name)?;
    }
    Ok(())
}
