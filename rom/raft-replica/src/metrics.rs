//! Reports the replica's state to its host as metrics (`Host.metrics`),
//! which the host exports at `/metrics` labelled with this process's id
//! and anchor. The host does not know Raft: these are plain gauges and
//! counters to it.

use queue::TopicStats;
use raft_client::proto::ReplicaStatus;
use ww_guest::metrics::Sample;
use ww_guest::ww_api::host;

/// How often the replica reports: often enough for a live page, rare
/// enough to cost nothing next to Raft's own traffic.
const REPORT_EVERY_MS: u64 = 2_000;
/// Members reported (one `raft_member` series each); the host's per
/// process series limit is 64.
const MEMBERS_REPORTED_MAX: usize = 16;
/// Topics reported, first by name (four `queue_*` series each): with the
/// 20 plain series and 16 members, 60 of the host's 64.
pub const TOPICS_REPORTED_MAX: usize = 6;

/// The reporter: every [`REPORT_EVERY_MS`], one report in flight at most.
pub struct Reporter {
    reporter: ww_guest::metrics::Reporter,
    last_ms: Option<u64>,
}

impl Reporter {
    /// A reporter through `host`'s `metrics` (pipelined: no round trip).
    pub fn new(host: &host::Client) -> Self {
        Self {
            reporter: ww_guest::metrics::Reporter::new(host),
            last_ms: None,
        }
    }

    /// Whether a report is due at `now_ms`.
    pub fn due(&self, now_ms: u64) -> bool {
        !self.reporter.busy()
            && self
                .last_ms
                .is_none_or(|last| now_ms >= last + REPORT_EVERY_MS)
    }

    /// Sends `status` as samples, without waiting for the reply.
    pub fn report(&mut self, status: &ReplicaStatus, topics: &[TopicStats], now_ms: u64) {
        self.last_ms = Some(now_ms);
        let leader = u64::from(status.role == "leader");
        let activity = &status.activity;
        let mut samples = vec![
            Sample::gauge("raft_term", status.term as f64),
            Sample::gauge("raft_commit", status.commit as f64),
            Sample::gauge("raft_applied", status.applied as f64),
            Sample::gauge(
                "raft_apply_lag",
                status.commit.saturating_sub(status.applied) as f64,
            ),
            Sample::gauge("raft_last_index", status.last_index as f64),
            Sample::gauge("raft_id", status.raft_id as f64),
            Sample::gauge("raft_leader_id", status.leader_id as f64),
            Sample::gauge("raft_is_leader", leader as f64),
            Sample::gauge("raft_members", status.members.len() as f64),
            Sample::counter("raft_fsyncs", status.fsyncs as f64),
            Sample::counter("raft_entries_persisted", status.entries_persisted as f64),
            Sample::counter("raft_log_bytes_written", status.log_bytes_written as f64),
            Sample::counter("raft_loop_rounds", activity.rounds as f64),
            // Time in `process` (apply, persist, fsync): with the rounds,
            // the mean round time; with the fsyncs, entries per fsync.
            Sample::counter("raft_process_seconds", activity.process_us as f64 / 1e6),
            Sample::counter("raft_slow_rounds_10ms", activity.slow_rounds_10ms as f64),
            Sample::counter("raft_slow_rounds_100ms", activity.slow_rounds_100ms as f64),
            Sample::counter("raft_commands_applied", activity.commands_applied as f64),
            Sample::counter("raft_snapshots_taken", activity.snapshots_taken as f64),
            Sample::counter("raft_dropped_messages", status.dropped_messages as f64),
            Sample::counter("raft_outbound_dropped", status.outbound_dropped as f64),
        ];
        // One series per member: the page finds the leader's host here.
        for member in status.members.iter().take(MEMBERS_REPORTED_MAX) {
            samples.push(
                Sample::gauge("raft_member", if member.voter { 1.0 } else { 0.0 })
                    .label("raft_id", member.id.to_string())
                    .label("peer", member.peer_id.clone()),
            );
        }
        // Per topic: what the status page and alerts need.
        for stats in topics.iter().take(TOPICS_REPORTED_MAX) {
            for (name, value) in [
                ("queue_ready", stats.ready),
                ("queue_leased", stats.leased),
                ("queue_delayed", stats.delayed),
                ("queue_dead", stats.dead),
            ] {
                samples.push(Sample::gauge(name, value as f64).label("topic", stats.topic.clone()));
            }
        }
        self.reporter.send("raft-replica", &samples);
    }
}
