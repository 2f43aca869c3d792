//! Reports the replica's state to its host as metrics (`Host.metrics`),
//! which the host exports at `/metrics` labelled with this process's id
//! and anchor. The host does not know Raft: these are plain gauges and
//! counters to it.

use std::cell::Cell;
use std::rc::Rc;

use queue::TopicStats;
use raft_client::proto::ReplicaStatus;
use ww_guest::ww_api::{host, metrics};

/// How often the replica reports: often enough for a live page, rare
/// enough to cost nothing next to Raft's own traffic.
const REPORT_EVERY_MS: u64 = 2_000;
/// Members reported (one `raft_member` series each); the host's per
/// process series limit is 64.
const MEMBERS_REPORTED_MAX: usize = 16;
/// Topics reported, first by name (four `queue_*` series each): with the
/// 20 plain series and 16 members, 60 of the host's 64.
pub const TOPICS_REPORTED_MAX: usize = 6;

/// The reporter: one `Metrics.set` in flight at most.
pub struct Reporter {
    metrics: metrics::Client,
    last_ms: Option<u64>,
    in_flight: Rc<Cell<bool>>,
}

impl Reporter {
    /// A reporter through `host`'s `metrics` (pipelined: no round trip).
    pub fn new(host: &host::Client) -> Self {
        Self {
            metrics: host.metrics_request().send().pipeline.get_metrics(),
            last_ms: None,
            in_flight: Rc::new(Cell::new(false)),
        }
    }

    /// Whether a report is due at `now_ms`.
    pub fn due(&self, now_ms: u64) -> bool {
        !self.in_flight.get()
            && self
                .last_ms
                .is_none_or(|last| now_ms >= last + REPORT_EVERY_MS)
    }

    /// Sends `status` as samples, without waiting for the reply.
    pub fn report(&mut self, status: &ReplicaStatus, topics: &[TopicStats], now_ms: u64) {
        self.last_ms = Some(now_ms);
        let leader = u64::from(status.role == "leader");
        let gauges: [(&str, u64); 9] = [
            ("raft_term", status.term),
            ("raft_commit", status.commit),
            ("raft_applied", status.applied),
            (
                "raft_apply_lag",
                status.commit.saturating_sub(status.applied),
            ),
            ("raft_last_index", status.last_index),
            ("raft_id", status.raft_id),
            ("raft_leader_id", status.leader_id),
            ("raft_is_leader", leader),
            ("raft_members", status.members.len() as u64),
        ];
        let activity = &status.activity;
        let counters: [(&str, f64); 11] = [
            ("raft_fsyncs", status.fsyncs as f64),
            ("raft_entries_persisted", status.entries_persisted as f64),
            ("raft_log_bytes_written", status.log_bytes_written as f64),
            ("raft_loop_rounds", activity.rounds as f64),
            // Time in `process` (apply, persist, fsync): with the rounds,
            // the mean round time; with the fsyncs, entries per fsync.
            ("raft_process_seconds", activity.process_us as f64 / 1e6),
            ("raft_slow_rounds_10ms", activity.slow_rounds_10ms as f64),
            ("raft_slow_rounds_100ms", activity.slow_rounds_100ms as f64),
            ("raft_commands_applied", activity.commands_applied as f64),
            ("raft_snapshots_taken", activity.snapshots_taken as f64),
            ("raft_dropped_messages", status.dropped_messages as f64),
            ("raft_outbound_dropped", status.outbound_dropped as f64),
        ];
        let members = &status.members[..status.members.len().min(MEMBERS_REPORTED_MAX)];
        let mut request = self.metrics.set_request();
        let topics = &topics[..topics.len().min(TOPICS_REPORTED_MAX)];
        let count = gauges.len() + counters.len() + members.len() + 4 * topics.len();
        let mut list = request
            .get()
            .init_samples(u32::try_from(count).unwrap_or(0));
        let mut index = 0u32;
        for (name, value, counter) in gauges
            .iter()
            .map(|(n, v)| (*n, *v as f64, false))
            .chain(counters.iter().map(|(n, v)| (*n, *v, true)))
        {
            let mut sample = list.reborrow().get(index);
            sample.set_name(name);
            sample.set_value(value);
            sample.set_counter(counter);
            index += 1;
        }
        // One series per member: the page finds the leader's host here.
        for member in members {
            let mut sample = list.reborrow().get(index);
            sample.set_name("raft_member");
            sample.set_value(if member.voter { 1.0 } else { 0.0 });
            let mut labels = sample.init_labels(2);
            labels.reborrow().get(0).set_name("raft_id");
            labels.reborrow().get(0).set_value(member.id.to_string());
            labels.reborrow().get(1).set_name("peer");
            labels.reborrow().get(1).set_value(&member.peer_id);
            index += 1;
        }
        // Per topic: what the status page and alerts need.
        for stats in topics {
            for (name, value) in [
                ("queue_ready", stats.ready),
                ("queue_leased", stats.leased),
                ("queue_delayed", stats.delayed),
                ("queue_dead", stats.dead),
            ] {
                let mut sample = list.reborrow().get(index);
                sample.set_name(name);
                sample.set_value(value as f64);
                let mut labels = sample.init_labels(1);
                labels.reborrow().get(0).set_name("topic");
                labels.reborrow().get(0).set_value(&stats.topic);
                index += 1;
            }
        }
        let promise = request.send().promise;
        let in_flight = self.in_flight.clone();
        in_flight.set(true);
        ww_guest::spawn(async move {
            if let Err(err) = promise.await {
                eprintln!("raft-replica: reporting metrics: {err}");
            }
            in_flight.set(false);
        });
    }
}
