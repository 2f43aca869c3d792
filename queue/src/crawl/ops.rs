//! What crawl commands do to a [`Crawl`], and their argument checks.

use std::collections::BTreeSet;

use super::canon::{canonicalize, host_in_domain, url_key, CanonicalUrl};
use super::{
    Completed, Crawl, CrawlConfig, CrawlControl, CrawlState, DeadUrl, DeadUrlReason, Entry,
    FetchOutcome, Link, Offered, RetryableFailure, UrlLease, UrlState,
};
use crate::limits::{
    CRAWL_ATTEMPTS_MAX_LIMIT, CRAWL_BACKOFF_MS_MAX, CRAWL_CONCURRENCY_PER_ORIGIN_MAX,
    CRAWL_DELAY_MS_MAX, CRAWL_DEPTH_MAX_LIMIT, CRAWL_DETAIL_BYTES_MAX, CRAWL_DOMAINS_MAX,
    CRAWL_DOMAIN_BYTES_MAX, CRAWL_PAGES_MAX_LIMIT, LEASE_MS_MAX, LEASE_MS_MIN,
    TOPIC_NAME_BYTES_MAX,
};
use crate::types::Receipt;
use crate::QueueError;

/// What an offer will do with one link, decided before anything changes so
/// that a refused batch (store full) changes nothing.
pub(crate) enum Plan {
    Enqueue(CanonicalUrl, u32, Option<u64>),
    Refuse(Offered),
}

impl Crawl {
    /// Decides each link's fate; returns the plans and the URL bytes the
    /// enqueues would add.
    pub(crate) fn plan_offer(&self, links: &[Link]) -> (Vec<Plan>, u64) {
        let mut batch_keys = BTreeSet::new();
        let mut batch_origins = BTreeSet::new();
        let mut bytes = 0;
        let plans = links
            .iter()
            .map(|link| {
                let canonical = match canonicalize(&link.url) {
                    Ok(canonical) => canonical,
                    Err(reason) => return Plan::Refuse(Offered::Invalid { reason }),
                };
                let domains = &self.config.allowed_domains;
                if !domains.is_empty()
                    && !domains.iter().any(|d| host_in_domain(&canonical.host, d))
                {
                    return Plan::Refuse(Offered::OutOfScope);
                }
                if canonical.private && !self.config.allow_private {
                    return Plan::Refuse(Offered::Private);
                }
                if link.depth > self.config.max_depth {
                    return Plan::Refuse(Offered::TooDeep);
                }
                let key = url_key(&canonical.url);
                if self.seen.contains(&key) || batch_keys.contains(&key) {
                    return Plan::Refuse(Offered::Seen);
                }
                if self.seen.len() as u64 + batch_keys.len() as u64 >= self.config.max_pages {
                    return Plan::Refuse(Offered::OverBudget);
                }
                let new_origin = !self.origins.contains_key(&canonical.origin)
                    && !batch_origins.contains(&canonical.origin);
                if new_origin && !self.origin_room(batch_origins.len() + 1) {
                    return Plan::Refuse(Offered::TooManyOrigins);
                }
                if new_origin {
                    batch_origins.insert(canonical.origin.clone());
                }
                batch_keys.insert(key);
                bytes += canonical.url.len() as u64;
                Plan::Enqueue(canonical, link.depth, link.parent)
            })
            .collect();
        (plans, bytes)
    }

    /// Carries out [`Crawl::plan_offer`]'s plans.
    pub(crate) fn offer(&mut self, plans: Vec<Plan>) -> Vec<Offered> {
        let mut results = Vec::with_capacity(plans.len());
        for plan in plans {
            self.counters.offered += 1;
            let offered = match plan {
                Plan::Enqueue(canonical, depth, parent) => {
                    let id = self.next_id;
                    self.next_id += 1;
                    self.seen.insert(url_key(&canonical.url));
                    self.counters.seen += 1;
                    self.origins.entry(canonical.origin.clone()).or_default();
                    self.insert(
                        id,
                        Entry {
                            url: canonical.url.clone(),
                            origin: canonical.origin,
                            depth,
                            parent,
                            failed: 0,
                            state: UrlState::Ready,
                        },
                    );
                    Offered::Enqueued {
                        id,
                        url: canonical.url,
                    }
                }
                Plan::Refuse(offered) => {
                    let counter = match offered {
                        Offered::Seen => &mut self.counters.duplicate,
                        Offered::Invalid { .. } => &mut self.counters.refused_invalid,
                        Offered::OutOfScope => &mut self.counters.refused_out_of_scope,
                        Offered::Private => &mut self.counters.refused_private,
                        Offered::TooDeep => &mut self.counters.refused_too_deep,
                        Offered::OverBudget | Offered::Enqueued { .. } => {
                            &mut self.counters.refused_over_budget
                        }
                        Offered::TooManyOrigins => &mut self.counters.refused_too_many_origins,
                    };
                    *counter += 1;
                    offered
                }
            };
            results.push(offered);
        }
        results
    }

    /// Leases up to `max` URLs to `worker`. Origins take turns from the
    /// cursor; an origin gives a URL only when its next allowed time has come
    /// and it has fewer than `concurrency_per_origin` URLs leased, and each
    /// lease moves its next allowed time `delay` ahead. Scans at most every
    /// origin with ready URLs once ([`CRAWL_ORIGINS_MAX`](crate::limits::CRAWL_ORIGINS_MAX)).
    pub(crate) fn lease(
        &mut self,
        worker: &str,
        max: usize,
        lease_ms: u64,
        now_ms: u64,
        token_base: u64,
    ) -> Vec<UrlLease> {
        if self.state != CrawlState::Running {
            return Vec::new();
        }
        let mut picks: Vec<u64> = Vec::new();
        let mut next_allowed: Vec<(String, u64)> = Vec::new();
        let after = self
            .index
            .ready
            .range::<str, _>((
                std::ops::Bound::Excluded(self.cursor.as_str()),
                std::ops::Bound::Unbounded,
            ))
            .chain(self.index.ready.range::<str, _>((
                std::ops::Bound::Unbounded,
                std::ops::Bound::Included(self.cursor.as_str()),
            )));
        for (origin, ids) in after {
            if picks.len() >= max {
                break;
            }
            let state = self.origins.get(origin).cloned().unwrap_or_default();
            let delay_ms = self.delay_ms(origin);
            let mut allowed_ms = state.next_allowed_ms;
            let leased = self.index.leased.get(origin).copied().unwrap_or(0) as usize;
            let room = (self.config.concurrency_per_origin as usize).saturating_sub(leased);
            let before = picks.len();
            for &id in ids.iter().take(room) {
                if picks.len() >= max || allowed_ms > now_ms {
                    break;
                }
                picks.push(id);
                allowed_ms = now_ms.saturating_add(delay_ms);
            }
            if picks.len() > before {
                next_allowed.push((origin.clone(), allowed_ms));
            }
        }
        if let Some((origin, _)) = next_allowed.last() {
            self.cursor = origin.clone();
        }
        for (origin, allowed_ms) in next_allowed {
            self.origins.entry(origin).or_default().next_allowed_ms = allowed_ms;
        }
        let deadline_ms = now_ms.saturating_add(lease_ms);
        let mut leases = Vec::with_capacity(picks.len());
        for (slot, id) in picks.into_iter().enumerate() {
            let token = token_base.saturating_add(slot as u64);
            self.set_state(
                id,
                UrlState::Leased {
                    worker: worker.to_owned(),
                    token,
                    leased_at_ms: now_ms,
                    deadline_ms,
                },
            );
            let Some(entry) = self.urls.get(&id) else {
                continue;
            };
            self.counters.leased += 1;
            leases.push(UrlLease {
                id,
                token,
                url: entry.url.clone(),
                origin: entry.origin.clone(),
                depth: entry.depth,
                parent: entry.parent,
                failed: entry.failed,
                leased_at_ms: now_ms,
                deadline_ms,
            });
        }
        if !leases.is_empty() {
            self.workers.of(worker).leased += leases.len() as u64;
        }
        leases
    }

    /// Settles one lease.
    ///
    /// # Errors
    ///
    /// [`QueueError::StaleUrlLease`] when the token no longer holds the URL.
    pub(crate) fn complete(
        &mut self,
        receipt: Receipt,
        outcome: FetchOutcome,
        now_ms: u64,
    ) -> Result<Completed, QueueError> {
        self.holds(receipt)?;
        if let Some(worker) = holder(&self.urls, receipt.id) {
            let counts = self.workers.of(worker);
            match &outcome {
                FetchOutcome::Fetched => counts.fetched += 1,
                FetchOutcome::Permanent(_) => counts.failed += 1,
                FetchOutcome::Released => counts.released += 1,
                FetchOutcome::Retryable(_) => counts.retried += 1,
            }
        }
        if !matches!(outcome, FetchOutcome::Released) {
            // The request is over by now: the origin's next lease waits
            // `delay` from here too, not only from this URL's lease. With
            // one URL per origin in flight, requests to an origin are then
            // at least `delay` apart, however long each fetch took.
            if let Some(origin) = self.urls.get(&receipt.id).map(|entry| entry.origin.clone()) {
                let after_ms = now_ms.saturating_add(self.delay_ms(&origin));
                let state = self.origins.entry(origin).or_default();
                state.next_allowed_ms = state.next_allowed_ms.max(after_ms);
            }
        }
        match outcome {
            FetchOutcome::Fetched => {
                self.remove(receipt.id);
                self.counters.fetched += 1;
                Ok(Completed::Done)
            }
            FetchOutcome::Permanent(reason) => {
                self.counters.failed += 1;
                self.kill(receipt.id, DeadUrlReason::Permanent(reason), now_ms);
                Ok(Completed::Done)
            }
            FetchOutcome::Released => {
                self.counters.released += 1;
                self.requeue(receipt.id, UrlState::Ready);
                Ok(Completed::Ready)
            }
            FetchOutcome::Retryable(reason) => {
                self.counters.retried += 1;
                Ok(self.fail(receipt.id, reason, now_ms))
            }
        }
    }

    /// Counts a retryable failure: backs off, or kills at `max_attempts`.
    fn fail(&mut self, id: u64, reason: RetryableFailure, now_ms: u64) -> Completed {
        let Some(entry) = self.urls.get_mut(&id) else {
            return Completed::Done;
        };
        entry.failed = entry.failed.saturating_add(1);
        let failed = entry.failed;
        let origin = entry.origin.clone();
        if failed >= self.config.max_attempts {
            self.counters.dead += 1;
            self.kill(id, DeadUrlReason::Attempts(reason), now_ms);
            return Completed::Dead;
        }
        let shift = (failed - 1).min(32);
        let mut delay_ms = self
            .config
            .backoff_ms
            .saturating_mul(1u64 << shift)
            .min(self.config.backoff_max_ms);
        if let RetryableFailure::TooManyRequests { retry_after_ms } = reason {
            // 429 is about the origin, not the URL: hold the whole origin.
            delay_ms = delay_ms.max(retry_after_ms.unwrap_or(0).min(CRAWL_BACKOFF_MS_MAX));
            let state = self.origins.entry(origin).or_default();
            state.next_allowed_ms = state.next_allowed_ms.max(now_ms.saturating_add(delay_ms));
        }
        let until_ms = now_ms.saturating_add(delay_ms);
        self.requeue(id, UrlState::Delayed { until_ms });
        Completed::RetryAt { until_ms }
    }

    /// Returns a leased URL to the frontier, or drops it if the crawl was
    /// stopped meanwhile (a stopped crawl leases nothing, so it would wait
    /// forever).
    fn requeue(&mut self, id: u64, state: UrlState) {
        if self.state == CrawlState::Stopped {
            self.remove(id);
            self.counters.dropped_by_stop += 1;
        } else {
            self.set_state(id, state);
        }
    }

    fn kill(&mut self, id: u64, reason: DeadUrlReason, now_ms: u64) {
        if let Some(entry) = self.remove(id) {
            self.record(DeadUrl {
                id,
                url: entry.url,
                depth: entry.depth,
                reason,
                failed: entry.failed,
                dead_at_ms: now_ms,
            });
        }
    }

    /// Renews one lease to end `lease_ms` after `now_ms`.
    ///
    /// # Errors
    ///
    /// As [`Crawl::complete`].
    pub(crate) fn extend(
        &mut self,
        receipt: Receipt,
        lease_ms: u64,
        now_ms: u64,
    ) -> Result<u64, QueueError> {
        self.holds(receipt)?;
        let Some(Entry {
            state:
                UrlState::Leased {
                    worker,
                    leased_at_ms,
                    ..
                },
            ..
        }) = self.urls.get(&receipt.id)
        else {
            return Err(self.stale(receipt.id));
        };
        let deadline_ms = now_ms.saturating_add(lease_ms);
        let state = UrlState::Leased {
            worker: worker.clone(),
            token: receipt.token,
            leased_at_ms: *leased_at_ms,
            deadline_ms,
        };
        self.set_state(receipt.id, state);
        Ok(deadline_ms)
    }

    /// Applies backoff ends and lease expiries due by `now_ms`. An expired
    /// lease counts as a failed attempt (a URL that crashes its workers must
    /// not crash them forever) and makes the URL ready at once.
    pub(crate) fn expire(&mut self, now_ms: u64) {
        while let Some(&(until_ms, id)) = self.index.delayed.first() {
            if until_ms > now_ms {
                break;
            }
            self.set_state(id, UrlState::Ready);
        }
        while let Some(&(deadline_ms, id)) = self.index.leases.first() {
            if deadline_ms > now_ms {
                break;
            }
            self.counters.expired += 1;
            if let Some(worker) = holder(&self.urls, id) {
                self.workers.of(worker).expired += 1;
            }
            let Some(entry) = self.urls.get_mut(&id) else {
                self.index.leases.remove(&(deadline_ms, id));
                continue;
            };
            entry.failed = entry.failed.saturating_add(1);
            if entry.failed >= self.config.max_attempts {
                self.counters.dead += 1;
                self.kill(id, DeadUrlReason::LeaseExpired, now_ms);
            } else {
                self.requeue(id, UrlState::Ready);
            }
        }
    }

    /// Sets (or with `None` clears) `origin`'s crawl-delay. The origin is
    /// tracked from now on even if none of its URLs is known yet (robots.txt
    /// is usually fetched first).
    ///
    /// # Errors
    ///
    /// [`QueueError::Invalid`] for a bad origin or delay, or too many origins.
    pub(crate) fn set_origin_delay(
        &mut self,
        origin: &str,
        delay_ms: Option<u64>,
    ) -> Result<String, QueueError> {
        if let Some(delay_ms) = delay_ms {
            check_delay(delay_ms)?;
        }
        let canonical =
            canonicalize(origin).map_err(|reason| QueueError::invalid("origin", reason))?;
        let key = canonical.origin;
        if !self.origins.contains_key(&key) && !self.origin_room(1) {
            return Err(QueueError::invalid(
                "origin",
                format!(
                    "crawl {:?} tracks {} origins, the most it may",
                    self.name,
                    self.origins.len()
                ),
            ));
        }
        self.origins.entry(key.clone()).or_default().delay_ms = delay_ms;
        Ok(key)
    }

    /// Pauses, resumes or stops.
    ///
    /// # Errors
    ///
    /// [`QueueError::CrawlStopped`] to resume or pause a stopped crawl.
    pub(crate) fn control(&mut self, control: CrawlControl) -> Result<CrawlState, QueueError> {
        match (control, self.state) {
            (CrawlControl::Stop, _) => {
                let waiting: Vec<u64> = self
                    .urls
                    .iter()
                    .filter(|(_, e)| !matches!(e.state, UrlState::Leased { .. }))
                    .map(|(id, _)| *id)
                    .collect();
                self.counters.dropped_by_stop += waiting.len() as u64;
                for id in waiting {
                    self.remove(id);
                }
                self.state = CrawlState::Stopped;
            }
            (_, CrawlState::Stopped) => return Err(self.stopped()),
            (CrawlControl::Pause, _) => self.state = CrawlState::Paused,
            (CrawlControl::Resume, _) => self.state = CrawlState::Running,
        }
        Ok(self.state)
    }

    pub(crate) fn stopped(&self) -> QueueError {
        QueueError::CrawlStopped {
            crawl: self.name.clone(),
        }
    }

    fn holds(&self, receipt: Receipt) -> Result<(), QueueError> {
        match self.urls.get(&receipt.id) {
            Some(Entry {
                state: UrlState::Leased { token, .. },
                ..
            }) if *token == receipt.token => Ok(()),
            _ => Err(self.stale(receipt.id)),
        }
    }

    fn stale(&self, id: u64) -> QueueError {
        QueueError::StaleUrlLease {
            crawl: self.name.clone(),
            id,
        }
    }
}

/// A crawl name: as a topic name.
pub(crate) fn check_crawl_name(name: &str) -> Result<(), QueueError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty()
        || name.len() > TOPIC_NAME_BYTES_MAX
        || !name.chars().all(allowed)
        || name.starts_with('.')
    {
        return Err(QueueError::invalid(
            "crawl",
            format!("{name:?}: 1 to {TOPIC_NAME_BYTES_MAX} ASCII letters, digits, '.', '_' and '-', not starting with '.'"),
        ));
    }
    Ok(())
}

fn check_delay(delay_ms: u64) -> Result<(), QueueError> {
    if delay_ms > CRAWL_DELAY_MS_MAX {
        return Err(QueueError::invalid(
            "delay_ms",
            format!("{delay_ms}; at most {CRAWL_DELAY_MS_MAX}"),
        ));
    }
    Ok(())
}

/// A worker's free-text failure detail.
pub(crate) fn check_detail(detail: &str) -> Result<(), QueueError> {
    if detail.len() > CRAWL_DETAIL_BYTES_MAX {
        return Err(QueueError::invalid(
            "detail",
            format!("{} bytes; at most {CRAWL_DETAIL_BYTES_MAX}", detail.len()),
        ));
    }
    Ok(())
}

/// A crawl's settings.
pub(crate) fn check_config(config: &CrawlConfig) -> Result<(), QueueError> {
    let range = |field: &str, value: u64, min: u64, max: u64| {
        if value < min || value > max {
            return Err(QueueError::invalid(
                field,
                format!("{value}; must be {min} to {max}"),
            ));
        }
        Ok(())
    };
    if config.allowed_domains.len() > CRAWL_DOMAINS_MAX {
        return Err(QueueError::invalid(
            "allowed_domains",
            format!(
                "{} domains; at most {CRAWL_DOMAINS_MAX}",
                config.allowed_domains.len()
            ),
        ));
    }
    for domain in &config.allowed_domains {
        let allowed =
            |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
        if domain.is_empty()
            || domain.len() > CRAWL_DOMAIN_BYTES_MAX
            || !domain.chars().all(allowed)
            || domain.starts_with('.')
            || domain.ends_with('.')
        {
            return Err(QueueError::invalid(
                "allowed_domains",
                format!("{domain:?}: lower-case ASCII host names (punycode), no leading or trailing '.'"),
            ));
        }
    }
    range(
        "max_depth",
        config.max_depth.into(),
        0,
        CRAWL_DEPTH_MAX_LIMIT.into(),
    )?;
    range("max_pages", config.max_pages, 1, CRAWL_PAGES_MAX_LIMIT)?;
    check_delay(config.default_delay_ms)?;
    range(
        "concurrency_per_origin",
        config.concurrency_per_origin.into(),
        1,
        CRAWL_CONCURRENCY_PER_ORIGIN_MAX.into(),
    )?;
    range(
        "max_attempts",
        config.max_attempts.into(),
        1,
        CRAWL_ATTEMPTS_MAX_LIMIT.into(),
    )?;
    range("backoff_ms", config.backoff_ms, 0, CRAWL_BACKOFF_MS_MAX)?;
    range(
        "backoff_max_ms",
        config.backoff_max_ms,
        config.backoff_ms,
        CRAWL_BACKOFF_MS_MAX,
    )?;
    range(
        "default_lease_ms",
        config.default_lease_ms,
        LEASE_MS_MIN,
        LEASE_MS_MAX,
    )?;
    Ok(())
}

/// The worker holding URL `id`'s lease in `urls`, if it is leased. A free
/// function, so the caller may update `workers` while it holds the name.
fn holder(urls: &std::collections::BTreeMap<u64, Entry>, id: u64) -> Option<&str> {
    match urls.get(&id) {
        Some(Entry {
            state: UrlState::Leased { worker, .. },
            ..
        }) => Some(worker.as_str()),
        _ => None,
    }
}
