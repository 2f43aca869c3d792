//! CPU metering and shares: how long each process ran on the event loop,
//! and the wait that keeps computing guests from starving everything else.
//!
//! A guest runs only while the host polls its task, so the time spent in
//! each poll is its CPU: its own code and the host calls it made without
//! waiting (clock reads, buffered stream writes, ...). Capability calls it
//! sends run on its connection's task and are not counted here.
//!
//! Policy. A process whose last [`PREEMPTED_SLICES_MIN`] slices the epoch
//! tick all cut short (it was still computing, see [`super::EPOCH_TICK_MS`])
//! is *computing* until [`CPU_WINDOW_MS`] after the last of them.
//! Computing processes together get a part of the loop (`ww start
//! --guests-cpu-percent`, by default
//! [`crate::limits::GUESTS_CPU_PERCENT_DEFAULT`]), in
//! equal parts: each has a bucket of CPU time that refills at its part and
//! holds at most [`CPU_BURST_MS`], every slice is charged to it, and a
//! process in debt waits, off the run queue, until its part has paid the
//! debt back, and while computing its slices end once they ran
//! [`HELD_SLICE_US_MIN`]: at the guest's first host call after that (the
//! call moves its epoch deadline to now), or else at the next tick (others
//! run to the first tick after half a tick). What waits behind a held
//! slice of a guest that calls its host (a clock read, a stream write)
//! waits about [`HELD_SLICE_US_MIN`], behind one that never calls at most a
//! tick. It is never killed
//! for this (the busy limit still kills a
//! guest that never calls its host). A slice that ends because the guest
//! waits (for a message, a timer) ends the streak: the process is neither
//! charged nor delayed, so a Raft replica that computes a long batch and
//! then waits answers at once however many guests spin beside it. One
//! preempted slice is not enough: with a streak of one, such a replica
//! waited hundreds of ms behind 32 spinners.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::EPOCH_TICK_MS;
use crate::limits::{CPU_BURST_MS, CPU_WINDOW_MS, HELD_SLICE_US_MIN, PREEMPTED_SLICES_MIN};

/// A process's use of the host's thread, summed over its incarnations
/// (the executor keeps one per process, for `/metrics`).
#[derive(Debug, Default)]
pub struct CpuUse {
    /// Time its guest was polled, host calls included, in ns.
    ns: Cell<u64>,
    /// Polls that ran its guest: its slices. The time over the slices is
    /// the mean slice, which says how long what shares the loop waits
    /// behind it (about [`HELD_SLICE_US_MIN`] while it is held).
    slices: Cell<u64>,
}

impl CpuUse {
    /// Time its guest was polled, in ns.
    pub fn ns(&self) -> u64 {
        self.ns.get()
    }

    /// Polls that ran its guest.
    pub fn slices(&self) -> u64 {
        self.slices.get()
    }

    fn add(&self, ran_ns: u64) {
        self.ns.set(self.ns.get().saturating_add(ran_ns));
        self.slices.set(self.slices.get().saturating_add(1));
    }
}

/// One process's account.
struct Account {
    /// Time it waited for its CPU share, in ns (its run time goes to the
    /// executor's `cpu_ns`).
    wait_ns: Cell<u64>,
    /// CPU time it may still use before it waits, in ns; negative: debt.
    tokens_ns: Cell<i64>,
    refilled: Cell<Instant>,
    /// When the tick last cut one of its slices short.
    preempted: Cell<Option<Instant>>,
    /// Its last slices the tick cut short, one after the other; a slice
    /// that ended because it waited resets it.
    streak: Cell<u32>,
}

impl Account {
    /// Computing: its last [`PREEMPTED_SLICES_MIN`] slices or more were all
    /// cut short, the last within the window. A Raft replica that computes
    /// a long batch now and then, then waits for its next message, is not:
    /// its slice that ends by waiting resets the streak.
    fn computing(&self, now: Instant) -> bool {
        self.streak.get() >= PREEMPTED_SLICES_MIN
            && self
                .preempted
                .get()
                .is_some_and(|at| now.duration_since(at) < Duration::from_millis(CPU_WINDOW_MS))
    }
}

/// The accounts of a host's processes. One per [`super::Runtime`].
pub(crate) struct CpuShares {
    /// The part of the loop computing processes get together, in percent
    /// (1 to 100).
    percent: u32,
    accounts: RefCell<HashMap<u64, Rc<Account>>>,
    /// The earliest a process that waited may run again: waits end one
    /// at a time, [`spacing`] apart, so the loop serves everybody else
    /// between two of their slices instead of queueing behind a crowd.
    next_resume: Cell<Option<Instant>>,
}

impl CpuShares {
    /// Shares giving computing processes `percent` of the loop together
    /// (clamped to 1 to 100).
    pub(crate) fn new(percent: u32) -> Self {
        Self {
            percent: percent.clamp(1, 100),
            accounts: RefCell::default(),
            next_resume: Cell::default(),
        }
    }

    /// The time each live process (by pid) waited for its share, in ns.
    pub(crate) fn waits(&self) -> Vec<(u64, u64)> {
        let mut all: Vec<(u64, u64)> = self
            .accounts
            .borrow()
            .iter()
            .map(|(pid, account)| (*pid, account.wait_ns.get()))
            .collect();
        all.sort_unstable_by_key(|(pid, _)| *pid);
        all
    }

    fn open(&self, pid: u64) -> Rc<Account> {
        let account = Rc::new(Account {
            wait_ns: Cell::new(0),
            tokens_ns: Cell::new(ms_to_ns(CPU_BURST_MS)),
            refilled: Cell::new(Instant::now()),
            preempted: Cell::new(None),
            streak: Cell::new(0),
        });
        self.accounts.borrow_mut().insert(pid, account.clone());
        account
    }

    /// Each computing process's part of the loop, in parts per million.
    fn part_ppm(&self, now: Instant) -> u64 {
        let computing = self
            .accounts
            .borrow()
            .values()
            .filter(|account| account.computing(now))
            .count()
            .max(1);
        let computing = u64::try_from(computing).unwrap_or(u64::MAX);
        (u64::from(self.percent) * 10_000 / computing).max(1)
    }

    /// Charges `ran` to `account` and returns how long it must wait before
    /// it runs again, if at all.
    fn charge(
        &self,
        account: &Account,
        ran: Duration,
        preempted: bool,
        now: Instant,
    ) -> Option<Duration> {
        if preempted {
            account.preempted.set(Some(now));
            account.streak.set(account.streak.get().saturating_add(1));
        } else {
            account.streak.set(0);
        }
        let burst = ms_to_ns(CPU_BURST_MS);
        if !account.computing(now) {
            // Not computing (its last slice waited, or too few in a row
            // were cut short): whatever it owed is forgiven.
            account.tokens_ns.set(burst);
            account.refilled.set(now);
            return None;
        }
        let part_ppm = self.part_ppm(now);
        let elapsed = duration_ns(now.duration_since(account.refilled.get()));
        account.refilled.set(now);
        let refill = i64::try_from(u128::from(elapsed) * u128::from(part_ppm) / 1_000_000)
            .unwrap_or(i64::MAX);
        let tokens = account
            .tokens_ns
            .get()
            .saturating_add(refill)
            .min(burst)
            .saturating_sub(i64::try_from(duration_ns(ran)).unwrap_or(i64::MAX));
        account.tokens_ns.set(tokens);
        if tokens >= 0 {
            return None;
        }
        // The debt, paid back at this process's part of the loop. The
        // refill on the next charge counts the wait, so the debt is paid
        // once.
        let wait_ns = u128::from(tokens.unsigned_abs()) * 1_000_000 / u128::from(part_ppm);
        let paid = now + Duration::from_nanos(u64::try_from(wait_ns).unwrap_or(u64::MAX));
        let resume = self.next_resume.get().map_or(paid, |next| next.max(paid));
        self.next_resume.set(Some(resume + self.spacing(ran)));
        Some(resume.duration_since(now))
    }

    /// The time between the ends of two waits: one slice (`ran`, the last
    /// slice of the process that waits, and at least a tick) and as much
    /// again for the rest of the loop as the guests leave it. A held slice
    /// is often shorter than a tick; counting it as a tick keeps two waits
    /// from ending within one timer tick (tokio's timers have 1 ms
    /// resolution) and their slices from running back to back, at the
    /// price of computing processes getting up to their part, not always
    /// all of it.
    fn spacing(&self, ran: Duration) -> Duration {
        ran.max(Duration::from_millis(EPOCH_TICK_MS)) * 100 / self.percent
    }
}

fn duration_ns(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

fn ms_to_ns(ms: u64) -> i64 {
    i64::try_from(ms.saturating_mul(1_000_000)).unwrap_or(i64::MAX)
}

/// What the epoch callback and the metering wrapper of one process share
/// about its current slice (its task's current poll).
pub(crate) struct Slice {
    base: Instant,
    /// When the slice started, in ns after `base`.
    started_ns: AtomicU64,
    /// Set when a tick cut the slice short.
    preempted: AtomicBool,
    /// Set while the process is held to its share (computing): its slices
    /// end at the first tick once they ran [`HELD_SLICE_US_MIN`].
    held: AtomicBool,
}

impl Default for Slice {
    fn default() -> Self {
        Self {
            base: Instant::now(),
            started_ns: AtomicU64::new(0),
            preempted: AtomicBool::new(false),
            held: AtomicBool::new(false),
        }
    }
}

impl Slice {
    fn start(&self) {
        self.started_ns
            .store(duration_ns(self.base.elapsed()), Ordering::Relaxed);
        self.preempted.store(false, Ordering::Relaxed);
    }

    /// Called as the guest calls its host: whether this is a held
    /// process's slice that has run [`HELD_SLICE_US_MIN`], so that its next
    /// epoch check should end it (the caller moves the deadline to the
    /// current epoch) instead of the next tick. A held process that calls
    /// its host as it computes (a clock read, a stream write) thus yields
    /// within about that long; one that never calls still yields at the
    /// tick.
    pub(crate) fn held_slice_spent(&self) -> bool {
        self.held.load(Ordering::Relaxed) && self.ran_ns() >= HELD_SLICE_US_MIN * 1_000
    }

    /// How long the current slice has run, in ns.
    fn ran_ns(&self) -> u64 {
        duration_ns(self.base.elapsed()).saturating_sub(self.started_ns.load(Ordering::Relaxed))
    }

    /// Called by the epoch callback at a tick: whether the slice has
    /// computed long enough to yield: half a tick, or
    /// [`HELD_SLICE_US_MIN`] for a held process. A guest resuming after it
    /// waited finds its deadline long past, and a short slice may straddle
    /// a tick; neither is computing, so the slice goes on to the next tick.
    /// (Yielding there instead starved held processes: each resumed,
    /// yielded at once, owed the poll, and waited again; one CI run
    /// measured 32 spinners at 2% of the loop.)
    pub(crate) fn preempt(&self) -> bool {
        let ran_ns = self.ran_ns();
        let ran_ns_min = if self.held.load(Ordering::Relaxed) {
            HELD_SLICE_US_MIN * 1_000
        } else {
            EPOCH_TICK_MS * 1_000_000 / 2
        };
        if ran_ns < ran_ns_min {
            return false;
        }
        self.preempted.store(true, Ordering::Relaxed);
        true
    }
}

/// A process's share: who to charge.
struct Share {
    shares: Rc<CpuShares>,
    pid: u64,
    account: Rc<Account>,
}

/// A process's task, its slices marked for the epoch callback, and, for a
/// host's process, held to its CPU share.
pub(crate) struct Metered<F> {
    inner: Pin<Box<F>>,
    slice: Arc<Slice>,
    /// Kept ticking while the guest is polled.
    ticks: Arc<super::ticker::Ticks>,
    /// Where every poll is counted (the executor's sum over a process's
    /// incarnations).
    cpu: Rc<CpuUse>,
    share: Option<Share>,
    waiting: Option<(Pin<Box<tokio::time::Sleep>>, Instant)>,
}

impl<F: Future> Metered<F> {
    /// Meters `inner`, whose epoch callback reads `slice`, adding each poll
    /// to `cpu`; `share` names the host's accounts and the
    /// process's pid when it is held to a share.
    pub(crate) fn new(
        slice: Arc<Slice>,
        ticks: Arc<super::ticker::Ticks>,
        share: Option<(Rc<CpuShares>, u64)>,
        cpu: Rc<CpuUse>,
        inner: F,
    ) -> Self {
        Self {
            inner: Box::pin(inner),
            slice,
            ticks,
            cpu,
            share: share.map(|(shares, pid)| Share {
                account: shares.open(pid),
                shares,
                pid,
            }),
            waiting: None,
        }
    }
}

impl<F: Future> Future for Metered<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        if let Some((sleep, since)) = &mut this.waiting {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if let Some(share) = &this.share {
                let waited = duration_ns(since.elapsed());
                share
                    .account
                    .wait_ns
                    .set(share.account.wait_ns.get().saturating_add(waited));
            }
            this.waiting = None;
        }
        this.slice.start();
        this.ticks.enter();
        let started = Instant::now();
        let polled = this.inner.as_mut().poll(cx);
        let now = Instant::now();
        this.ticks.exit();
        let ran_ns = duration_ns(now.duration_since(started));
        this.cpu.add(ran_ns);
        let Some(share) = &this.share else {
            return polled;
        };
        let preempted = this.slice.preempted.load(Ordering::Relaxed);
        let wait = share
            .shares
            .charge(&share.account, now.duration_since(started), preempted, now);
        this.slice
            .held
            .store(share.account.computing(now), Ordering::Relaxed);
        if polled.is_ready() {
            return polled;
        }
        if let Some(wait) = wait {
            // The tick already woke the task to run again; the sleep's
            // waker replaces that wake-up, so the task leaves the run queue
            // until its share is back.
            let mut sleep = Box::pin(tokio::time::sleep(wait));
            if sleep.as_mut().poll(cx).is_ready() {
                return Poll::Pending;
            }
            this.waiting = Some((sleep, now));
        }
        Poll::Pending
    }
}

impl<F> Drop for Metered<F> {
    fn drop(&mut self) {
        let Some(share) = &self.share else {
            return;
        };
        let mut accounts = share.shares.accounts.borrow_mut();
        if accounts
            .get(&share.pid)
            .is_some_and(|account| Rc::ptr_eq(account, &share.account))
        {
            accounts.remove(&share.pid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::GUESTS_CPU_PERCENT_DEFAULT as GUESTS_CPU_PERCENT;

    #[test]
    fn a_process_that_waits_is_never_charged_or_delayed() {
        let shares = CpuShares::new(GUESTS_CPU_PERCENT);
        let account = shares.open(1);
        let now = Instant::now();
        for step in 0..100 {
            let at = now + Duration::from_millis(step);
            let wait = shares.charge(&account, Duration::from_millis(5), false, at);
            assert_eq!(wait, None);
        }
        assert_eq!(account.tokens_ns.get(), ms_to_ns(CPU_BURST_MS));
    }

    #[test]
    fn computing_processes_share_the_guests_part_of_the_loop() {
        let shares = CpuShares::new(GUESTS_CPU_PERCENT);
        let accounts: Vec<Rc<Account>> = (0..4).map(|pid| shares.open(pid)).collect();
        let now = Instant::now();
        // Each runs its burst and one slice more in slices the tick cuts
        // short, all at once: the last slice of each is its debt.
        let slice = Duration::from_millis(EPOCH_SLICE_MS);
        let mut resumes = Vec::new();
        let burst_slices = CPU_BURST_MS / EPOCH_SLICE_MS;
        for account in &accounts {
            let mut slices = 0;
            let wait = loop {
                slices += 1;
                if let Some(wait) = shares.charge(account, slice, true, now) {
                    break wait;
                }
                assert!(
                    slices <= u64::from(PREEMPTED_SLICES_MIN) + burst_slices,
                    "not in debt after its burst"
                );
            };
            assert!(slices > burst_slices, "waited before its burst was spent");
            resumes.push(now + wait);
        }
        // The last pays its slice back at a quarter of the guests' part...
        let part_ppm = u64::from(GUESTS_CPU_PERCENT) * 10_000 / 4;
        let paid = Duration::from_nanos(EPOCH_SLICE_MS * 1_000_000 * 1_000_000 / part_ppm);
        assert!(resumes[3] >= now + paid, "{:?}", resumes[3] - now);
        // ... and the waits end one at a time, a slice and the loop's
        // part apart.
        for pair in resumes.windows(2) {
            assert!(pair[1] >= pair[0] + shares.spacing(slice), "{resumes:?}");
        }
        // Over a long run, a computing process gets its part and no more:
        // charge slices as fast as the waits allow.
        let account = &accounts[0];
        let mut at = now;
        let mut ran = Duration::ZERO;
        let started = at;
        for _ in 0..1_000 {
            if let Some(wait) = shares.charge(account, slice, true, at) {
                at += wait;
            }
            // The others keep computing.
            for other in &accounts[1..] {
                other.preempted.set(Some(at));
                other.streak.set(PREEMPTED_SLICES_MIN);
            }
            at += slice;
            ran += slice;
        }
        let share = ran.as_secs_f64() / (at - started).as_secs_f64();
        let part = f64::from(GUESTS_CPU_PERCENT) / 100.0 / 4.0;
        assert!(
            (share - part).abs() < part * 0.1,
            "ran {share:.3} of the loop, its part is {part:.3}"
        );
    }

    #[test]
    fn a_process_that_computes_a_while_then_waits_is_never_delayed_beside_spinners() {
        let shares = CpuShares::new(GUESTS_CPU_PERCENT);
        let spinners: Vec<Rc<Account>> = (1..=32).map(|pid| shares.open(pid)).collect();
        let replica = shares.open(100);
        let slice = Duration::from_millis(EPOCH_SLICE_MS);
        let mut at = Instant::now();
        for _ in 0..1_000 {
            for spinner in &spinners {
                shares.charge(spinner, slice, true, at);
            }
            // A long batch: cut short fewer times than make it computing,
            // then it waits for its next message.
            for _ in 1..PREEMPTED_SLICES_MIN {
                assert_eq!(shares.charge(&replica, slice, true, at), None);
            }
            assert_eq!(shares.charge(&replica, slice / 2, false, at), None);
            at += slice;
        }
        assert!(spinners.iter().all(|spinner| spinner.computing(at)));
        assert!(!replica.computing(at));
    }

    #[test]
    fn a_process_stops_computing_after_the_window() {
        let shares = CpuShares::new(GUESTS_CPU_PERCENT);
        let account = shares.open(1);
        let now = Instant::now();
        for _ in 0..PREEMPTED_SLICES_MIN {
            shares.charge(&account, Duration::from_millis(1), true, now);
        }
        assert!(account.computing(now));
        assert!(!account.computing(now + Duration::from_millis(CPU_WINDOW_MS)));
    }

    #[test]
    fn a_slice_yields_after_half_a_tick_and_a_held_one_after_its_least_slice() {
        let slice = Slice::default();
        // Makes the slice look as if it started `us` ago (the sleep below
        // puts `base` further back than that).
        let started_ago = |us: u64| {
            slice.start();
            let now_ns = duration_ns(slice.base.elapsed());
            slice
                .started_ns
                .store(now_ns - us * 1_000, Ordering::Relaxed);
        };
        std::thread::sleep(Duration::from_millis(2));
        // Just started (or resumed past a stale deadline): neither yields.
        for held in [false, true] {
            slice.held.store(held, Ordering::Relaxed);
            started_ago(0);
            assert!(!slice.held_slice_spent(), "held {held}");
            assert!(!slice.preempt(), "held {held}");
            assert!(!slice.preempted.load(Ordering::Relaxed));
        }
        // Past the least held slice only the held one yields, at a tick or
        // at its next host call...
        slice.held.store(false, Ordering::Relaxed);
        started_ago(HELD_SLICE_US_MIN + 20);
        assert!(!slice.held_slice_spent());
        assert!(!slice.preempt());
        slice.held.store(true, Ordering::Relaxed);
        started_ago(HELD_SLICE_US_MIN + 20);
        assert!(slice.held_slice_spent());
        assert!(slice.preempt());
        assert!(slice.preempted.load(Ordering::Relaxed));
        // ... and past half a tick both do.
        slice.held.store(false, Ordering::Relaxed);
        started_ago(EPOCH_TICK_MS * 1_000 / 2 + 20);
        assert!(slice.preempt());
        // A new slice starts unmarked.
        slice.start();
        assert!(!slice.preempted.load(Ordering::Relaxed));
    }

    const EPOCH_SLICE_MS: u64 = super::super::EPOCH_TICK_MS;
}
