//! Per-origin state of a grant: robots.txt rules and crawl-delay slots.
//!
//! robots.txt is fetched once per origin (scheme, host, port) and cached
//! for [`ROBOTS_TTL_MS`]. Following RFC 9309: a 4xx robots.txt allows
//! everything; a 5xx, an unreachable one or one that never answers
//! disallows everything for [`ROBOTS_UNREACHABLE_TTL_MS`].
//!
//! Requests to one origin are spaced by its crawl-delay: the larger of the
//! robots.txt `Crawl-delay` for the grant's user agent (capped at
//! [`CRAWL_DELAY_MS_MAX`]) and the scope's floor. Each request reserves the
//! next slot, so concurrent fetches queue up instead of bursting.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use texting_robots::Robot;
use tokio::time::Instant;

use super::limits::{CRAWL_DELAY_MS_MAX, ORIGINS_MAX, ROBOTS_TTL_MS, ROBOTS_UNREACHABLE_TTL_MS};

/// The rules of one origin.
pub enum Rules {
    AllowAll,
    DisallowAll,
    Parsed(Box<Robot>),
}

impl Rules {
    /// Rules from a robots.txt body; an unparsable file allows everything
    /// (as if it were empty).
    pub fn parse(agent: &str, body: &[u8]) -> Self {
        match Robot::new(agent, body) {
            Ok(robot) => Self::Parsed(Box::new(robot)),
            Err(_) => Self::AllowAll,
        }
    }

    pub fn allowed(&self, url: &str) -> bool {
        match self {
            Self::AllowAll => true,
            Self::DisallowAll => false,
            Self::Parsed(robot) => robot.allowed(url),
        }
    }

    fn delay_ms(&self) -> u32 {
        match self {
            Self::Parsed(robot) => robot.delay.map_or(0, |seconds| {
                let ms = f64::from(seconds.max(0.0)) * 1000.0;
                ms.min(f64::from(CRAWL_DELAY_MS_MAX)) as u32
            }),
            _ => 0,
        }
    }

    fn ttl(&self) -> Duration {
        match self {
            Self::DisallowAll => Duration::from_millis(ROBOTS_UNREACHABLE_TTL_MS),
            _ => Duration::from_millis(ROBOTS_TTL_MS),
        }
    }
}

struct Origin {
    rules: Option<(Rc<Rules>, Instant)>,
    next_slot: Instant,
    /// Serialises robots.txt loading, so concurrent fetches to a new origin
    /// fetch it once.
    loading: Rc<tokio::sync::Mutex<()>>,
}

/// The per-origin state of one grant.
#[derive(Default)]
pub struct Origins {
    map: RefCell<HashMap<String, Origin>>,
}

/// A reserved request slot.
pub enum Slot {
    /// Go after waiting this long.
    After(Duration),
    /// Too far off: ask again after this long.
    RetryAfter(Duration),
}

impl Origins {
    fn with<T>(&self, origin: &str, f: impl FnOnce(&mut Origin) -> T) -> T {
        let mut map = self.map.borrow_mut();
        if !map.contains_key(origin) && map.len() >= ORIGINS_MAX {
            let now = Instant::now();
            map.retain(|_, o| o.next_slot > now || o.rules.as_ref().is_some_and(|r| r.1 > now));
            if map.len() >= ORIGINS_MAX {
                if let Some(key) = map.keys().next().cloned() {
                    map.remove(&key);
                }
            }
        }
        let entry = map.entry(origin.to_string()).or_insert_with(|| Origin {
            rules: None,
            next_slot: Instant::now(),
            loading: Rc::default(),
        });
        f(entry)
    }

    /// The cached, unexpired rules of `origin`.
    pub fn rules(&self, origin: &str) -> Option<Rc<Rules>> {
        let now = Instant::now();
        self.with(origin, |o| {
            o.rules
                .as_ref()
                .filter(|(_, expires)| *expires > now)
                .map(|(rules, _)| rules.clone())
        })
    }

    /// The lock to hold while loading `origin`'s robots.txt.
    pub fn loading(&self, origin: &str) -> Rc<tokio::sync::Mutex<()>> {
        self.with(origin, |o| o.loading.clone())
    }

    pub fn set_rules(&self, origin: &str, rules: Rules) -> Rc<Rules> {
        let rules = Rc::new(rules);
        let expires = Instant::now() + rules.ttl();
        self.with(origin, |o| o.rules = Some((rules.clone(), expires)));
        rules
    }

    /// The spacing kept for `origin`: robots Crawl-delay (when obeyed and
    /// known) or the scope's floor, whichever is larger.
    pub fn delay_ms(&self, origin: &str, floor_ms: u32, obey_robots: bool) -> u32 {
        let robots = if obey_robots {
            self.rules(origin).map_or(0, |rules| rules.delay_ms())
        } else {
            0
        };
        robots.max(floor_ms)
    }

    /// Reserves the next request slot of `origin`, if it comes within
    /// `wait_max`.
    pub fn reserve(&self, origin: &str, delay: Duration, wait_max: Duration) -> Slot {
        let now = Instant::now();
        self.with(origin, |o| {
            let slot = o.next_slot.max(now);
            let wait = slot - now;
            if wait > wait_max {
                return Slot::RetryAfter(wait);
            }
            o.next_slot = slot + delay;
            Slot::After(wait)
        })
    }

    /// Holds `origin` until `until` (a server's Retry-After).
    pub fn hold(&self, origin: &str, until: Instant) {
        self.with(origin, |o| o.next_slot = o.next_slot.max(until));
    }
}
