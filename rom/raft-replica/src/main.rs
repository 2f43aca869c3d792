//! The inner Raft ROM: one replica of a replicated queue group.
//!
//! `raft.wasm deploy` spawns it (supervised, with a volume granted as
//! `/data`) on several hosts as `raft-replica VERSION`. It then:
//!
//! 0. reads the group key it was granted (`raft-group-key`): it checks
//!    every client's access token and seals and opens every Raft message
//!    with it;
//! 1. creates two channels on its own host, `request` (clients) and `inbox`
//!    (Raft messages from its peers), and joins the pubsub topic
//!    `ww/raft/VERSION` (`response`: status events);
//! 2. anchors them at `/<its peer id>/raft/VERSION/{request,inbox,response}`
//!    with the group's admin token at `.../admin` (data; the host clears
//!    them all when this process ends) and exports the request
//!    sender, which its host anchors at `/<peer id>/raft/VERSION`;
//! 3. opens its Raft log in `/data/raft`, or waits for an `Init` or `Join`
//!    request if there is none yet;
//! 4. runs raft-core's loop: ticks, Raft messages, client requests, then one
//!    `process` (one fsync for everything that arrived together).
//!
//! Peers reach each other's inboxes by path through their *own* host, so
//! Raft traffic goes host to host, never through a client.

mod access;
mod metrics;
mod outbox;
mod replica;
mod replies;

fn main() {
    ww_guest::run(|env| async move { replica::run(env).await })
}
