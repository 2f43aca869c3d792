//! [`Client`]'s crawl frontier operations (see [`crate::crawl`]).

use super::{single, unexpected, Client, Transport};
use crate::command::{Command, Query, Reply};
use crate::crawl::{
    workers::WorkerStatus, Completed, Completion, CrawlConfig, CrawlControl, CrawlState,
    CrawlStatus, DeadUrl, FetchOutcome, Link, Offered, UrlLease,
};
use crate::types::Receipt;
use crate::{ClientError, QueueError};

impl<T: Transport> Client<T> {
    /// Creates crawl `crawl`; returns false when it already existed with the
    /// same config.
    ///
    /// # Errors
    ///
    /// [`QueueError::CrawlExists`], [`QueueError::CrawlLimit`],
    /// [`QueueError::Invalid`].
    pub async fn create_crawl(
        &self,
        crawl: &str,
        config: CrawlConfig,
    ) -> Result<bool, ClientError> {
        let command = Command::CreateCrawl {
            crawl: crawl.to_owned(),
            config,
        };
        match self.submit(&command).await? {
            Reply::CrawlCreated { created } => Ok(created),
            other => Err(unexpected("create_crawl", &other)),
        }
    }

    /// Replaces a crawl's settings.
    ///
    /// # Errors
    ///
    /// [`QueueError::NoSuchCrawl`], [`QueueError::CrawlLimit`], [`QueueError::Invalid`].
    pub async fn configure_crawl(
        &self,
        crawl: &str,
        config: CrawlConfig,
    ) -> Result<(), ClientError> {
        let command = Command::ConfigureCrawl {
            crawl: crawl.to_owned(),
            config,
        };
        match self.submit(&command).await? {
            Reply::CrawlConfigured => Ok(()),
            other => Err(unexpected("configure_crawl", &other)),
        }
    }

    /// Pauses, resumes or stops a crawl; returns its state now.
    ///
    /// # Errors
    ///
    /// [`QueueError::NoSuchCrawl`], [`QueueError::CrawlStopped`] (resume or
    /// pause after a stop).
    pub async fn control_crawl(
        &self,
        crawl: &str,
        control: CrawlControl,
    ) -> Result<CrawlState, ClientError> {
        let command = Command::ControlCrawl {
            crawl: crawl.to_owned(),
            control,
        };
        match self.submit(&command).await? {
            Reply::CrawlControlled(state) => Ok(state),
            other => Err(unexpected("control_crawl", &other)),
        }
    }

    /// Deletes a crawl; returns how many URLs its frontier held.
    ///
    /// # Errors
    ///
    /// [`QueueError::NoSuchCrawl`].
    pub async fn delete_crawl(&self, crawl: &str) -> Result<u64, ClientError> {
        let command = Command::DeleteCrawl {
            crawl: crawl.to_owned(),
        };
        match self.submit(&command).await? {
            Reply::CrawlDeleted { urls } => Ok(urls),
            other => Err(unexpected("delete_crawl", &other)),
        }
    }

    /// Offers links; one [`Offered`] per link. Safe to resend after an
    /// unknown outcome: a link already enqueued comes back [`Offered::Seen`].
    ///
    /// # Errors
    ///
    /// [`QueueError::NoSuchCrawl`], [`QueueError::CrawlStopped`],
    /// [`QueueError::StoreFull`], [`QueueError::Invalid`].
    pub async fn offer(&self, crawl: &str, links: &[Link]) -> Result<Vec<Offered>, ClientError> {
        let command = Command::Offer {
            crawl: crawl.to_owned(),
            links: links.to_vec(),
        };
        match self.submit(&command).await? {
            Reply::Offered(results) => Ok(results),
            other => Err(unexpected("offer", &other)),
        }
    }

    /// Leases up to `max_urls` URLs that may be fetched now.
    ///
    /// # Errors
    ///
    /// [`QueueError::NoSuchCrawl`], [`QueueError::Invalid`].
    pub async fn lease_urls(
        &self,
        crawl: &str,
        worker: &str,
        max_urls: u32,
        lease_ms: Option<u64>,
    ) -> Result<Vec<UrlLease>, ClientError> {
        let command = Command::LeaseUrls {
            crawl: crawl.to_owned(),
            worker: worker.to_owned(),
            max_urls,
            lease_ms,
        };
        match self.submit(&command).await? {
            Reply::UrlsLeased(leases) => Ok(leases),
            other => Err(unexpected("lease_urls", &other)),
        }
    }

    /// Reports how one fetch ended.
    ///
    /// # Errors
    ///
    /// [`QueueError::StaleUrlLease`] when the lease expired or was settled,
    /// and the errors of [`Client::complete_urls`].
    pub async fn complete_url(
        &self,
        crawl: &str,
        receipt: Receipt,
        outcome: FetchOutcome,
    ) -> Result<Completed, ClientError> {
        let (_, results) = self
            .complete_urls(crawl, &[Completion { receipt, outcome }])
            .await?;
        single(results, "complete_url")?.map_err(ClientError::Queue)
    }

    /// Reports how fetches ended; returns the log time they applied at and
    /// one result per completion.
    ///
    /// # Errors
    ///
    /// Errors of the whole request only: [`QueueError::NoSuchCrawl`],
    /// [`QueueError::Invalid`].
    pub async fn complete_urls(
        &self,
        crawl: &str,
        completions: &[Completion],
    ) -> Result<(u64, Vec<Result<Completed, QueueError>>), ClientError> {
        let command = Command::CompleteUrls {
            crawl: crawl.to_owned(),
            completions: completions.to_vec(),
        };
        match self.submit(&command).await? {
            Reply::UrlsCompleted { now_ms, results } => Ok((now_ms, results)),
            other => Err(unexpected("complete_urls", &other)),
        }
    }

    /// Renews URL leases; one new deadline per receipt.
    ///
    /// # Errors
    ///
    /// Errors of the whole request only.
    pub async fn extend_urls(
        &self,
        crawl: &str,
        receipts: &[Receipt],
        lease_ms: Option<u64>,
    ) -> Result<Vec<Result<u64, QueueError>>, ClientError> {
        let command = Command::ExtendUrls {
            crawl: crawl.to_owned(),
            receipts: receipts.to_vec(),
            lease_ms,
        };
        match self.submit(&command).await? {
            Reply::Extended(results) => Ok(results),
            other => Err(unexpected("extend_urls", &other)),
        }
    }

    /// Sets (or with `None` clears) an origin's crawl-delay, e.g. from its
    /// robots.txt; returns the origin as the crawl keys it.
    ///
    /// # Errors
    ///
    /// [`QueueError::NoSuchCrawl`], [`QueueError::Invalid`].
    pub async fn set_origin_delay(
        &self,
        crawl: &str,
        origin: &str,
        delay_ms: Option<u64>,
    ) -> Result<String, ClientError> {
        let command = Command::SetOriginDelay {
            crawl: crawl.to_owned(),
            origin: origin.to_owned(),
            delay_ms,
        };
        match self.submit(&command).await? {
            Reply::OriginDelaySet { origin } => Ok(origin),
            other => Err(unexpected("set_origin_delay", &other)),
        }
    }

    /// What each worker of a crawl did (leases and how they ended) and how
    /// many URLs it holds now, by worker name.
    ///
    /// # Errors
    ///
    /// [`QueueError::NoSuchCrawl`].
    pub async fn crawl_workers(&self, crawl: &str) -> Result<Vec<WorkerStatus>, ClientError> {
        let query = Query::CrawlWorkers {
            crawl: crawl.to_owned(),
        };
        match self.query(&query).await? {
            Reply::CrawlWorkers(workers) => Ok(workers),
            other => Err(unexpected("crawl_workers", &other)),
        }
    }

    /// A crawl's counts, counters and settings.
    ///
    /// # Errors
    ///
    /// [`QueueError::NoSuchCrawl`].
    pub async fn crawl_status(&self, crawl: &str) -> Result<CrawlStatus, ClientError> {
        let query = Query::CrawlStatus {
            crawl: crawl.to_owned(),
        };
        match self.query(&query).await? {
            Reply::CrawlStatus(status) => Ok(status),
            other => Err(unexpected("crawl_status", &other)),
        }
    }

    /// Up to `max_urls` dead and permanently failed URLs after URL id `after`.
    ///
    /// # Errors
    ///
    /// [`QueueError::NoSuchCrawl`], [`QueueError::Invalid`].
    pub async fn dead_urls(
        &self,
        crawl: &str,
        after: Option<u64>,
        max_urls: u32,
    ) -> Result<Vec<DeadUrl>, ClientError> {
        let query = Query::DeadUrls {
            crawl: crawl.to_owned(),
            after,
            max_urls,
        };
        match self.query(&query).await? {
            Reply::DeadUrls(records) => Ok(records),
            other => Err(unexpected("dead_urls", &other)),
        }
    }
}
