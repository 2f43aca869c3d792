//! Responses waiting to go back to clients, one reply batch per request
//! message (each message carries its own reply capability).

use std::collections::HashMap;
use std::rc::Rc;

use raft_client::proto::{self, Response, ResponseBatch};
use ww_guest::ww_api::sender;

/// Most request messages waiting for answers at once. Past it, new request
/// messages are answered at once with a retryable "overloaded" error.
pub const BATCHES_MAX: usize = 4096;

/// Most request messages of one origin waiting for answers at once: a
/// quarter of [`BATCHES_MAX`], so a client that pipelines without bound
/// leaves three quarters to everybody else. The origin is the libp2p peer
/// id the request channel stamps on each message, which no sender can
/// forge: a native client's own, or the host through which a process
/// reached the replica (that host's processes share its part). A client
/// that keeps a batch or a few in flight, as `raft-client` does, is far
/// below it.
pub const BATCHES_PER_ORIGIN_MAX: usize = BATCHES_MAX / 4;

/// Where a request's answer goes: its batch, and its id in the batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Slot {
    batch: u64,
    request: u64,
}

struct Batch {
    reply: sender::Client,
    origin: Rc<str>,
    remaining: usize,
    ready: Vec<(u64, Response)>,
}

/// Open batches per origin; an origin with none has no entry, so this holds
/// at most as many entries as there are open batches.
#[derive(Default)]
struct Origins(HashMap<Rc<str>, usize>);

impl Origins {
    fn held(&self, origin: &str) -> usize {
        self.0.get(origin).copied().unwrap_or(0)
    }

    /// Counts a batch of `origin`; returns the key to give it back with.
    fn take(&mut self, origin: &str) -> Rc<str> {
        // The origin's name is copied once, when its first batch opens.
        let key = match self.0.get_key_value(origin) {
            Some((key, _)) => key.clone(),
            None => Rc::from(origin),
        };
        *self.0.entry(key.clone()).or_insert(0) += 1;
        key
    }

    /// Paired with [`Origins::take`].
    fn give_back(&mut self, origin: &str) {
        let held = self.0.get_mut(origin);
        assert!(held.as_ref().is_some_and(|held| **held > 0));
        if let Some(held) = held {
            *held -= 1;
            if *held == 0 {
                self.0.remove(origin);
            }
        }
    }
}

/// The open reply batches.
#[derive(Default)]
pub struct Replies {
    batches: HashMap<u64, Batch>,
    origins: Origins,
    next: u64,
    sent: u64,
}

impl Replies {
    /// Reply messages sent so far.
    pub fn sent_count(&self) -> u64 {
        self.sent
    }

    /// Whether another batch from `origin` fits.
    ///
    /// # Errors
    ///
    /// A retryable refusal naming the bound that is full.
    pub fn admit(&self, origin: &str) -> Result<(), String> {
        admit(self.batches.len(), self.origins.held(origin))
    }

    /// Opens a batch of `count` requests from `origin` answered on
    /// `reply`; returns its id. Callers answer a batch that
    /// [`Replies::admit`] refused at once, so it is open for one flush.
    pub fn open(&mut self, reply: sender::Client, count: usize, origin: &str) -> u64 {
        self.next += 1;
        let origin = self.origins.take(origin);
        self.batches.insert(
            self.next,
            Batch {
                reply,
                origin,
                remaining: count,
                ready: Vec::new(),
            },
        );
        self.next
    }

    /// The slot of request `request` of batch `batch`.
    pub fn slot(batch: u64, request: u64) -> Slot {
        Slot { batch, request }
    }

    /// Records the answer for `slot`.
    pub fn answer(&mut self, slot: Slot, response: Response) {
        if let Some(batch) = self.batches.get_mut(&slot.batch) {
            batch.ready.push((slot.request, response));
        }
    }

    /// The recorded `Members` answers not sent yet, to fill in with the
    /// membership as applied.
    pub fn pending_members(&mut self) -> impl Iterator<Item = &mut Response> {
        self.batches
            .values_mut()
            .flat_map(|batch| batch.ready.iter_mut())
            .map(|(_, response)| response)
            .filter(|response| matches!(response, Response::Members(_)))
    }

    /// Sends every recorded answer, one message per reply capability, and
    /// closes the batches that are complete. Sends are not awaited: a slow
    /// or dead client cannot stall the replica.
    pub fn flush(&mut self) {
        let mut done = Vec::new();
        for (id, batch) in &mut self.batches {
            if batch.ready.is_empty() {
                continue;
            }
            let responses = std::mem::take(&mut batch.ready);
            batch.remaining = batch.remaining.saturating_sub(responses.len());
            let bytes = proto::encode(&ResponseBatch { responses });
            let mut request = batch.reply.send_request();
            request.get().init_message().set_data(&bytes);
            let promise = request.send().promise;
            self.sent += 1;
            ww_guest::spawn(async move {
                if let Err(err) = promise.await {
                    eprintln!("raft-replica: a client's reply channel failed: {err}");
                }
            });
            if batch.remaining == 0 {
                done.push(*id);
            }
        }
        for id in done {
            if let Some(batch) = self.batches.remove(&id) {
                self.origins.give_back(&batch.origin);
            }
        }
    }
}

/// Whether a batch fits beside `open` batches, `of_origin` of them from its
/// origin.
fn admit(open: usize, of_origin: usize) -> Result<(), String> {
    if open >= BATCHES_MAX {
        return Err(format!(
            "replica overloaded: {open} request messages wait for answers (BATCHES_MAX)"
        ));
    }
    if of_origin >= BATCHES_PER_ORIGIN_MAX {
        return Err(format!(
            "replica overloaded: {of_origin} request messages from this client's origin wait for answers (BATCHES_PER_ORIGIN_MAX)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_origin_holds_at_most_its_part_and_others_keep_the_rest() {
        let mut origins = Origins::default();
        let mut open = 0;
        // One origin pipelining without bound stops at its part.
        while admit(open, origins.held("flooder")).is_ok() {
            origins.take("flooder");
            open += 1;
        }
        assert_eq!(open, BATCHES_PER_ORIGIN_MAX);
        let refusal = admit(open, origins.held("flooder")).unwrap_err();
        assert!(refusal.contains("BATCHES_PER_ORIGIN_MAX"), "{refusal}");
        // Everybody else still gets in, up to the total.
        let mut others = 0;
        while admit(open, origins.held(&format!("client-{}", others % 8))).is_ok() {
            origins.take(&format!("client-{}", others % 8));
            open += 1;
            others += 1;
        }
        assert_eq!(open, BATCHES_MAX);
        assert_eq!(others, BATCHES_MAX - BATCHES_PER_ORIGIN_MAX);
        let refusal = admit(open, origins.held("newcomer")).unwrap_err();
        assert!(refusal.contains("(BATCHES_MAX)"), "{refusal}");
        // Answered batches give their origin's part back, and an origin
        // with none open leaves no entry.
        for _ in 0..BATCHES_PER_ORIGIN_MAX {
            origins.give_back("flooder");
        }
        assert_eq!(origins.held("flooder"), 0);
        assert_eq!(origins.0.len(), 8);
        assert!(admit(open - BATCHES_PER_ORIGIN_MAX, 0).is_ok());
    }
}
