//! The reactor: WASI pollables waiting to wake futures.
//!
//! A future that cannot make progress parks a pollable here through its
//! [`Waiter`]. The executor, once it has run every ready task, blocks in one
//! `wasi:io/poll.poll` over all parked pollables, then wakes exactly the
//! futures whose pollables became ready. The others stay parked: waking
//! everything and re-parking would lose wakeups and waste a poll round.
//!
//! A future keeps one parking slot however often it is polled (its
//! [`Waiter`] only swaps the waker), so a timer polled a thousand times
//! while other events arrive still costs one pollable.

use std::cell::RefCell;
use std::task::{Context, Waker};

use wasip2::io::poll::{poll, Pollable};

/// Most pollables parked at once. A ROM has a handful of streams and
/// timers; more means a leak, so fail loudly.
const SLOTS_MAX: usize = 4096;

struct Slot {
    generation: u64,
    parked: Option<(Pollable, Waker)>,
}

#[derive(Default)]
struct Reactor {
    slots: Vec<Slot>,
    free: Vec<usize>,
    parked: usize,
}

thread_local! {
    static REACTOR: RefCell<Reactor> = RefCell::new(Reactor::default());
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Key {
    slot: usize,
    generation: u64,
}

/// One future's parking place. Drop it before the stream its pollable
/// came from: a pollable is a child of its stream.
#[derive(Debug, Default)]
pub(crate) struct Waiter {
    key: Option<Key>,
}

impl Waiter {
    /// Parks the current task until the pollable made by `subscribe` is
    /// ready. If this waiter is already parked, only the waker is updated.
    pub(crate) fn park(&mut self, cx: &Context<'_>, subscribe: impl FnOnce() -> Pollable) {
        if let Some(key) = self.key {
            let still_parked = REACTOR.with(|reactor| {
                let mut reactor = reactor.borrow_mut();
                let slot = &mut reactor.slots[key.slot];
                match &mut slot.parked {
                    Some((_, waker)) if slot.generation == key.generation => {
                        waker.clone_from(cx.waker());
                        true
                    }
                    _ => false,
                }
            });
            if still_parked {
                return;
            }
        }
        let pollable = subscribe();
        self.key = Some(REACTOR.with(|reactor| reactor.borrow_mut().park(pollable, cx.waker())));
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            // Ignore a reactor already torn down at thread exit.
            let _ = REACTOR.try_with(|reactor| reactor.borrow_mut().unpark(key));
        }
    }
}

impl Reactor {
    fn park(&mut self, pollable: Pollable, waker: &Waker) -> Key {
        assert!(
            self.parked < SLOTS_MAX,
            "more than {SLOTS_MAX} pollables parked: a future leaks waiters"
        );
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    parked: None,
                });
                self.slots.len() - 1
            }
        };
        let entry = &mut self.slots[slot];
        assert!(entry.parked.is_none(), "a free slot is still parked");
        entry.generation += 1;
        entry.parked = Some((pollable, waker.clone()));
        self.parked += 1;
        Key {
            slot,
            generation: entry.generation,
        }
    }

    fn unpark(&mut self, key: Key) {
        let entry = &mut self.slots[key.slot];
        if entry.generation == key.generation && entry.parked.take().is_some() {
            self.parked -= 1;
            self.free.push(key.slot);
        }
    }
}

/// Number of parked pollables.
pub(crate) fn parked() -> usize {
    REACTOR.with(|reactor| reactor.borrow().parked)
}

/// Blocks until at least one parked pollable, or `bound`, is ready, then
/// wakes the futures whose pollables are ready.
pub(crate) fn block_on_ready(bound: &Pollable) {
    let wakers = REACTOR.with(|reactor| {
        let mut reactor = reactor.borrow_mut();
        let mut slots = Vec::with_capacity(reactor.parked);
        let mut list: Vec<&Pollable> = Vec::with_capacity(reactor.parked + 1);
        for (index, slot) in reactor.slots.iter().enumerate() {
            if let Some((pollable, _)) = &slot.parked {
                slots.push(index);
                list.push(pollable);
            }
        }
        list.push(bound);
        let ready = poll(&list);
        drop(list);
        let mut wakers = Vec::with_capacity(ready.len());
        for index in ready {
            let Some(&slot) = slots.get(index as usize) else {
                continue; // The bound.
            };
            if let Some((pollable, waker)) = reactor.slots[slot].parked.take() {
                drop(pollable);
                reactor.parked -= 1;
                reactor.free.push(slot);
                wakers.push(waker);
            }
        }
        wakers
    });
    for waker in wakers {
        waker.wake();
    }
}

/// Drops every parked pollable. The executor calls this before it drops
/// the streams the pollables belong to.
pub(crate) fn clear() {
    REACTOR.with(|reactor| {
        let mut reactor = reactor.borrow_mut();
        let reactor = &mut *reactor;
        for (index, slot) in reactor.slots.iter_mut().enumerate() {
            if slot.parked.take().is_some() {
                reactor.free.push(index);
            }
        }
        reactor.parked = 0;
    });
}
