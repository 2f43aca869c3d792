//! Responses waiting to go back to clients, one reply batch per request
//! message (each message carries its own reply capability).

use std::collections::HashMap;

use raft_client::proto::{self, Response, ResponseBatch};
use ww_guest::ww_api::sender;

/// Most request messages waiting for answers at once. Past it, new request
/// messages are answered at once with a retryable "overloaded" error.
pub const BATCHES_MAX: usize = 4096;

/// Where a request's answer goes: its batch, and its id in the batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Slot {
    batch: u64,
    request: u64,
}

struct Batch {
    reply: sender::Client,
    remaining: usize,
    ready: Vec<(u64, Response)>,
}

/// The open reply batches.
#[derive(Default)]
pub struct Replies {
    batches: HashMap<u64, Batch>,
    next: u64,
    sent: u64,
}

impl Replies {
    /// Reply messages sent so far.
    pub fn sent_count(&self) -> u64 {
        self.sent
    }

    /// Whether another batch fits.
    pub fn has_room(&self) -> bool {
        self.batches.len() < BATCHES_MAX
    }

    /// Opens a batch of `count` requests answered on `reply`; returns its id.
    pub fn open(&mut self, reply: sender::Client, count: usize) -> u64 {
        self.next += 1;
        self.batches.insert(
            self.next,
            Batch {
                reply,
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
            self.batches.remove(&id);
        }
    }
}
