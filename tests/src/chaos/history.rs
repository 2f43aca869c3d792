//! What the chaos clients saw, and the checks on it.
//!
//! Every operation is recorded with its invocation time (before the client
//! process is spawned or the native call starts), its completion time and
//! its outcome:
//!
//! - **ok**: it applied (or the read returned), with its result;
//! - **failed**: it certainly did not apply (the group refused it, or the
//!   client never reached a host);
//! - **unknown**: it may or may not have applied (a timeout, a crash, any
//!   error we cannot classify).
//!
//! The KV history is checked for linearizability per key with raft-core's
//! Wing-Gong-Lowe search ([`raft_core::sim::checker`]): an unknown write
//! may take effect at any time after its invocation or never; a failed
//! one never does; a read with no answer constrains nothing and is left
//! out. The queue history goes to the queue's total-queue checker
//! ([`queue::sim::History`]): lost and unexpected values, duplicate
//! deliveries, and leases that overlap or follow an ack.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::path::Path;

use queue::sim::{History as QueueHistory, Report as QueueReport};
use queue::{AckOutcome, Delivery, Receipt};
use raft_core::sim::checker::{self, Model, Operation, Verdict};
use serde_json::json;

/// How an operation ended, as far as its client can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// It applied, with the recorded result.
    Ok,
    /// It certainly did not apply.
    Failed,
    /// It may have applied.
    Unknown,
}

impl Outcome {
    fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Unknown => "unknown",
        }
    }
}

/// A KV operation on one key. Every written value is unique in a run, so a
/// read names the write it saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvInput {
    /// `put K V`.
    Put(String),
    /// `get K`.
    Get,
    /// `cas K OLD NEW`: writes NEW only if the value is OLD.
    Cas {
        /// The value it expects.
        old: String,
        /// The value it writes.
        new: String,
    },
}

/// A KV operation's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvOutput {
    /// A put or cas wrote its value.
    Written,
    /// A get saw this value (`None`: the key is absent).
    Value(Option<String>),
    /// A cas found another value and wrote nothing.
    Refused,
}

/// One register per key: its value, or absent.
pub struct KvModel;

impl Model for KvModel {
    type State = Option<String>;
    type Input = KvInput;
    type Output = KvOutput;

    fn init(&self) -> Option<String> {
        None
    }

    fn step(&self, state: &Option<String>, input: &KvInput) -> (Option<String>, KvOutput) {
        match input {
            KvInput::Put(value) => (Some(value.clone()), KvOutput::Written),
            KvInput::Get => (state.clone(), KvOutput::Value(state.clone())),
            KvInput::Cas { old, new } => {
                if state.as_deref() == Some(old.as_str()) {
                    (Some(new.clone()), KvOutput::Written)
                } else {
                    (state.clone(), KvOutput::Refused)
                }
            }
        }
    }
}

/// A fault the nemesis injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// kill -9 of a host, restarted later with the same data dir and port.
    Kill,
    /// SIGSTOP of a host, SIGCONT later.
    Pause,
}

#[derive(Clone, Debug)]
struct Entry {
    client: String,
    kind: &'static str,
    what: String,
    call_ms: u64,
    return_ms: u64,
    outcome: Outcome,
    detail: String,
}

#[derive(Clone, Debug)]
struct FaultRecord {
    kind: FaultKind,
    leader: bool,
    host: usize,
    at_ms: u64,
    healed_ms: u64,
}

/// Everything a run's clients and nemesis did, in harness time (ms since
/// the recorder was made).
#[derive(Default)]
pub struct Recorder {
    entries: Vec<Entry>,
    kv: BTreeMap<String, Vec<Operation<KvInput, KvOutput>>>,
    queue: QueueHistory,
    /// Each acknowledged enqueue's topic and id, by value.
    enqueued: BTreeMap<Vec<u8>, (String, u64)>,
    /// Values whose ack applied, or may have.
    settled: BTreeSet<Vec<u8>>,
    faults: Vec<FaultRecord>,
    /// `(at_ms, term)` each time a replica reported leading in a newer
    /// term (the group's status events, as clients see them).
    leaders: Vec<(u64, u64)>,
    notes: Vec<(u64, String)>,
}

/// The checks' verdicts.
#[derive(Debug)]
pub struct Verdicts {
    /// Per key: its verdict and how many operations it had.
    pub kv: Vec<(String, Verdict, usize)>,
    /// The total-queue checker's report.
    pub queue: QueueReport,
    /// Up to [`SHOWN_MAX_COUNT`] lost values, with their topic and id.
    pub lost: Vec<String>,
    /// Message ids acknowledged to two different enqueues of one topic
    /// (at most one of them can hold: the other was acknowledged but not
    /// applied).
    pub id_conflicts: Vec<String>,
}

/// How many lost values and id conflicts a report lists.
pub const SHOWN_MAX_COUNT: usize = 10;

impl Verdicts {
    /// True when every key is linearizable and the queue lost nothing,
    /// delivered nothing unexpected and broke no lease rule.
    pub fn passed(&self) -> bool {
        self.kv
            .iter()
            .all(|(_, verdict, _)| *verdict == Verdict::Linearizable)
            && self.queue.passed()
            && self.id_conflicts.is_empty()
    }
}

impl fmt::Display for Verdicts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (key, verdict, count) in &self.kv {
            writeln!(f, "kv {key}: {verdict:?} ({count} ops)")?;
        }
        write!(f, "queue: {}", self.queue)?;
        for lost in &self.lost {
            write!(f, "\n  lost: {lost}")?;
        }
        for conflict in &self.id_conflicts {
            write!(f, "\n  id conflict: {conflict}")?;
        }
        Ok(())
    }
}

/// Counts and timings of a run.
#[derive(Debug, Default)]
pub struct Summary {
    /// Per operation kind: (ok, failed, unknown).
    pub counts: BTreeMap<&'static str, [usize; 3]>,
    /// Operations that completed ok per second of workload.
    pub ok_per_s: f64,
    /// Per fault kind and target: faults injected and the longest time
    /// with no ok completion from the fault until the next fault (or the
    /// end), in ms.
    pub gaps_ms: BTreeMap<String, (usize, u64)>,
    /// Per fault on a leader: (faults, the longest time until a new
    /// leader was announced, the longest time with no ok completion from
    /// that announcement until the next fault), in ms. Faults after which
    /// no new leader was announced are not counted here.
    pub after_new_leader_ms: BTreeMap<String, (usize, u64, u64)>,
    /// The longest time with no ok completion anywhere in the run.
    pub longest_gap_ms: u64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut total = [0usize; 3];
        for (kind, [ok, failed, unknown]) in &self.counts {
            writeln!(
                f,
                "  {kind:<8} ok={ok:<6} failed={failed:<5} unknown={unknown}"
            )?;
            total[0] += ok;
            total[1] += failed;
            total[2] += unknown;
        }
        writeln!(
            f,
            "  total    ok={} failed={} unknown={}  ({:.1} ok ops/s)",
            total[0], total[1], total[2], self.ok_per_s
        )?;
        for (fault, (count, gap_ms)) in &self.gaps_ms {
            writeln!(
                f,
                "  after {fault:<15} x{count}: longest time with no ok op {gap_ms} ms"
            )?;
        }
        for (fault, (count, elected_ms, gap_ms)) in &self.after_new_leader_ms {
            writeln!(
                f,
                "  after {fault:<15} x{count}: new leader announced within {elected_ms} ms, \
                 then longest time with no ok op {gap_ms} ms"
            )?;
        }
        write!(
            f,
            "  longest time with no ok op: {} ms",
            self.longest_gap_ms
        )
    }
}

impl Recorder {
    /// Records a KV operation on `key` invoked at `call_ms` that ended at
    /// `return_ms`; `output` is its result when `outcome` is ok.
    #[allow(clippy::too_many_arguments)]
    pub fn kv(
        &mut self,
        client: &str,
        key: &str,
        input: KvInput,
        call_ms: u64,
        return_ms: u64,
        outcome: Outcome,
        output: Option<KvOutput>,
        detail: &str,
    ) {
        let (kind, what) = match &input {
            KvInput::Put(value) => ("put", format!("put {key} {value}")),
            KvInput::Get => ("get", format!("get {key}")),
            KvInput::Cas { old, new } => ("cas", format!("cas {key} {old} {new}")),
        };
        let shown = match (&output, outcome) {
            (Some(KvOutput::Value(Some(value))), Outcome::Ok) => format!("read {value}"),
            (Some(KvOutput::Value(None)), Outcome::Ok) => "read absent".to_owned(),
            (Some(KvOutput::Refused), Outcome::Ok) => "refused".to_owned(),
            _ => String::new(),
        };
        self.entries.push(Entry {
            client: client.to_owned(),
            kind,
            what,
            call_ms,
            return_ms,
            outcome,
            detail: if shown.is_empty() {
                detail.to_owned()
            } else {
                shown
            },
        });
        let completion = match (outcome, output) {
            (Outcome::Ok, Some(output)) => Some((return_ms, output)),
            // Certainly not applied: as if never invoked.
            (Outcome::Failed, _) => return,
            // A read without an answer constrains nothing.
            _ if input == KvInput::Get => return,
            _ => None,
        };
        self.kv.entry(key.to_owned()).or_default().push(Operation {
            call_ms,
            completion,
            input,
        });
    }

    /// A producer is about to try to enqueue `value`.
    pub fn enqueue_attempted(&mut self, value: &[u8]) {
        self.queue.enqueue_attempted(value);
    }

    /// The group acknowledged the enqueue of `value` on `topic` as `id`.
    pub fn enqueue_acknowledged(&mut self, topic: &str, value: &[u8], id: u64) {
        self.queue.enqueue_acknowledged(value, id);
        self.enqueued.insert(value.to_vec(), (topic.to_owned(), id));
    }

    /// `consumer` leased `deliveries` from `topic`.
    pub fn leased(&mut self, topic: &str, consumer: &str, deliveries: &[Delivery]) {
        self.queue.leased(topic, consumer, deliveries);
    }

    /// An ack of `receipt` (a lease of `value`) applied with `outcome`.
    pub fn acked(&mut self, topic: &str, receipt: Receipt, value: &[u8], outcome: AckOutcome) {
        self.queue.acked(topic, receipt, value, outcome);
        self.settled.insert(value.to_vec());
    }

    /// An ack of `value` may have applied.
    pub fn ack_unknown(&mut self, value: &[u8]) {
        self.queue.ack_unknown(value);
        self.settled.insert(value.to_vec());
    }

    /// Records a queue operation for the log and the counts; its effects
    /// are recorded with the methods above.
    #[allow(clippy::too_many_arguments)]
    pub fn queue_op(
        &mut self,
        client: &str,
        kind: &'static str,
        what: String,
        call_ms: u64,
        return_ms: u64,
        outcome: Outcome,
        detail: &str,
    ) {
        self.entries.push(Entry {
            client: client.to_owned(),
            kind,
            what,
            call_ms,
            return_ms,
            outcome,
            detail: detail.to_owned(),
        });
    }

    /// Records a fault on `host` (the leader's host or not) from `at_ms`
    /// until it healed at `healed_ms`.
    pub fn fault(
        &mut self,
        kind: FaultKind,
        leader: bool,
        host: usize,
        at_ms: u64,
        healed_ms: u64,
    ) {
        self.faults.push(FaultRecord {
            kind,
            leader,
            host,
            at_ms,
            healed_ms,
        });
    }

    /// Records that a replica announced leading in `term`, newer than any
    /// announced before.
    pub fn leader_elected(&mut self, at_ms: u64, term: u64) {
        self.leaders.push((at_ms, term));
    }

    /// How many faults of `kind` were injected.
    pub fn faults_of(&self, kind: FaultKind) -> usize {
        self.faults
            .iter()
            .filter(|fault| fault.kind == kind)
            .count()
    }

    /// A line for the log (nemesis actions, phases).
    pub fn note(&mut self, at_ms: u64, text: String) {
        self.notes.push((at_ms, text));
    }

    /// Operations recorded so far.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Runs every check.
    pub fn check(&self) -> Verdicts {
        Verdicts {
            kv: self
                .kv
                .iter()
                .map(|(key, ops)| (key.clone(), checker::check(&KvModel, ops), ops.len()))
                .collect(),
            queue: self.queue.check(),
            lost: self
                .enqueued
                .iter()
                .filter(|(value, _)| !self.settled.contains(*value))
                .take(SHOWN_MAX_COUNT)
                .map(|(value, (topic, id))| {
                    format!("{} ({topic} id {id})", String::from_utf8_lossy(value))
                })
                .collect(),
            id_conflicts: self.id_conflicts(),
        }
    }

    fn id_conflicts(&self) -> Vec<String> {
        let mut by_id: BTreeMap<(&str, u64), Vec<String>> = BTreeMap::new();
        for (value, (topic, id)) in &self.enqueued {
            by_id
                .entry((topic.as_str(), *id))
                .or_default()
                .push(String::from_utf8_lossy(value).into_owned());
        }
        by_id
            .into_iter()
            .filter(|(_, values)| values.len() > 1)
            .take(SHOWN_MAX_COUNT)
            .map(|((topic, id), values)| format!("{topic} id {id}: {}", values.join(", ")))
            .collect()
    }

    /// Counts and gaps over the workload `[start_ms, end_ms)`.
    pub fn summary(&self, start_ms: u64, end_ms: u64) -> Summary {
        let mut summary = Summary::default();
        let mut ok_returns: Vec<u64> = Vec::new();
        for entry in &self.entries {
            let counts = summary.counts.entry(entry.kind).or_default();
            counts[match entry.outcome {
                Outcome::Ok => 0,
                Outcome::Failed => 1,
                Outcome::Unknown => 2,
            }] += 1;
            if entry.outcome == Outcome::Ok
                && entry.return_ms >= start_ms
                && entry.return_ms < end_ms
            {
                ok_returns.push(entry.return_ms);
            }
        }
        ok_returns.sort_unstable();
        let seconds = (end_ms.saturating_sub(start_ms)) as f64 / 1000.0;
        if seconds > 0.0 {
            summary.ok_per_s = ok_returns.len() as f64 / seconds;
        }
        summary.longest_gap_ms = longest_gap(&ok_returns, start_ms, end_ms);
        for (index, fault) in self.faults.iter().enumerate() {
            let until_ms = self
                .faults
                .get(index + 1)
                .map_or(end_ms, |next| next.at_ms)
                .max(fault.at_ms);
            let gap_ms = longest_gap(&ok_returns, fault.at_ms, until_ms);
            let name = format!(
                "{} {}",
                match fault.kind {
                    FaultKind::Kill => "kill -9",
                    FaultKind::Pause => "SIGSTOP",
                },
                if fault.leader { "leader" } else { "follower" }
            );
            if fault.leader {
                let elected = self
                    .leaders
                    .iter()
                    .map(|(at_ms, _)| *at_ms)
                    .find(|at_ms| *at_ms > fault.at_ms && *at_ms < until_ms);
                if let Some(elected_ms) = elected {
                    let after = longest_gap(&ok_returns, elected_ms, until_ms);
                    let slot = summary.after_new_leader_ms.entry(name.clone()).or_default();
                    slot.0 += 1;
                    slot.1 = slot.1.max(elected_ms - fault.at_ms);
                    slot.2 = slot.2.max(after);
                }
            }
            let slot = summary.gaps_ms.entry(name).or_default();
            slot.0 += 1;
            slot.1 = slot.1.max(gap_ms);
        }
        summary
    }

    /// Writes the history as JSON lines: faults and notes first, then
    /// every operation in invocation order.
    ///
    /// # Errors
    ///
    /// When the file cannot be written.
    pub fn write_jsonl(&self, path: &Path) -> std::io::Result<()> {
        let mut out = String::new();
        for fault in &self.faults {
            let _ = writeln!(
                out,
                "{}",
                json!({
                    "fault": format!("{:?}", fault.kind),
                    "leader": fault.leader,
                    "host": fault.host,
                    "at_ms": fault.at_ms,
                    "healed_ms": fault.healed_ms,
                })
            );
        }
        for (at_ms, text) in &self.notes {
            let _ = writeln!(out, "{}", json!({ "note": text, "at_ms": at_ms }));
        }
        let mut entries: Vec<&Entry> = self.entries.iter().collect();
        entries.sort_by_key(|entry| (entry.call_ms, entry.return_ms));
        for entry in entries {
            let _ = writeln!(
                out,
                "{}",
                json!({
                    "client": entry.client,
                    "op": entry.what,
                    "call_ms": entry.call_ms,
                    "return_ms": entry.return_ms,
                    "outcome": entry.outcome.name(),
                    "detail": entry.detail,
                })
            );
        }
        let mut file = std::fs::File::create(path)?;
        file.write_all(out.as_bytes())
    }
}

/// The longest interval in `[from_ms, until_ms]` with no time in `sorted`.
fn longest_gap(sorted: &[u64], from_ms: u64, until_ms: u64) -> u64 {
    let mut longest = 0;
    let mut last = from_ms;
    for &at in sorted
        .iter()
        .filter(|at| **at >= from_ms && **at <= until_ms)
    {
        longest = longest.max(at - last);
        last = at;
    }
    longest.max(until_ms.saturating_sub(last))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn put(recorder: &mut Recorder, value: &str, call: u64, ret: u64, outcome: Outcome) {
        let output = (outcome == Outcome::Ok).then_some(KvOutput::Written);
        recorder.kv(
            "c",
            "k",
            KvInput::Put(value.to_owned()),
            call,
            ret,
            outcome,
            output,
            "",
        );
    }

    fn get(recorder: &mut Recorder, seen: Option<&str>, call: u64, ret: u64) {
        recorder.kv(
            "c",
            "k",
            KvInput::Get,
            call,
            ret,
            Outcome::Ok,
            Some(KvOutput::Value(seen.map(str::to_owned))),
            "",
        );
    }

    fn kv_passed(recorder: &Recorder) -> bool {
        recorder
            .check()
            .kv
            .iter()
            .all(|(_, verdict, _)| *verdict == Verdict::Linearizable)
    }

    #[test]
    fn a_clean_history_passes() {
        let mut recorder = Recorder::default();
        put(&mut recorder, "a", 0, 10, Outcome::Ok);
        get(&mut recorder, Some("a"), 11, 20);
        recorder.kv(
            "c",
            "k",
            KvInput::Cas {
                old: "a".into(),
                new: "b".into(),
            },
            21,
            30,
            Outcome::Ok,
            Some(KvOutput::Written),
            "",
        );
        recorder.kv(
            "c",
            "k",
            KvInput::Cas {
                old: "a".into(),
                new: "c".into(),
            },
            31,
            40,
            Outcome::Ok,
            Some(KvOutput::Refused),
            "",
        );
        get(&mut recorder, Some("b"), 41, 50);
        assert!(recorder.check().passed(), "{}", recorder.check());
    }

    #[test]
    fn a_stale_read_is_reported() {
        let mut recorder = Recorder::default();
        put(&mut recorder, "a", 0, 10, Outcome::Ok);
        put(&mut recorder, "b", 11, 20, Outcome::Ok);
        // Invoked after b's write was acknowledged, yet it sees a.
        get(&mut recorder, Some("a"), 21, 30);
        assert!(!kv_passed(&recorder));
        assert!(!recorder.check().passed());
    }

    #[test]
    fn a_lost_acknowledged_write_is_reported() {
        let mut recorder = Recorder::default();
        put(&mut recorder, "a", 0, 10, Outcome::Ok);
        // The group said ok, then the value is gone.
        get(&mut recorder, None, 20, 30);
        assert!(!kv_passed(&recorder));

        let mut recorder = Recorder::default();
        recorder.enqueue_attempted(b"m1");
        recorder.enqueue_acknowledged("t", b"m1", 1);
        let report = recorder.check().queue;
        assert_eq!(report.lost, 1, "{report}");
        assert!(!recorder.check().passed());
    }

    #[test]
    fn a_duplicate_is_reported() {
        // A KV write applied twice: a is written, then b, then a again
        // although a's put ran once and ended before b's began.
        let mut recorder = Recorder::default();
        put(&mut recorder, "a", 0, 10, Outcome::Ok);
        put(&mut recorder, "b", 11, 20, Outcome::Ok);
        get(&mut recorder, Some("b"), 21, 30);
        get(&mut recorder, Some("a"), 31, 40);
        assert!(!kv_passed(&recorder));

        // A queue message delivered twice is counted, and delivering it
        // again after it was acked is a violation.
        let mut recorder = Recorder::default();
        recorder.enqueue_attempted(b"m1");
        recorder.enqueue_acknowledged("t", b"m1", 1);
        let delivery = |token: u64, at: u64, acquired: u32| Delivery {
            id: 1,
            token,
            leased_at_ms: at,
            deadline_ms: at + 3_000,
            acquired,
            failed: 0,
            enqueued_at_ms: 0,
            body: b"m1".to_vec(),
            dead_letter: None,
        };
        recorder.leased("t", "a", &[delivery(10, 100, 1)]);
        recorder.acked("t", Receipt { id: 1, token: 10 }, b"m1", AckOutcome::Acked);
        recorder.leased("t", "b", &[delivery(20, 200, 2)]);
        let report = recorder.check().queue;
        assert_eq!(report.duplicates, 1, "{report}");
        assert_eq!(report.violations.len(), 1, "{report}");
        assert!(!recorder.check().passed());
    }

    #[test]
    fn unknown_writes_may_apply_late_and_failed_writes_never_apply() {
        let mut recorder = Recorder::default();
        put(&mut recorder, "a", 0, 10, Outcome::Ok);
        put(&mut recorder, "b", 5, 50, Outcome::Unknown);
        get(&mut recorder, Some("a"), 60, 70);
        // The unknown write takes effect after the first read.
        get(&mut recorder, Some("b"), 80, 90);
        assert!(kv_passed(&recorder), "{}", recorder.check());

        let mut recorder = Recorder::default();
        put(&mut recorder, "a", 0, 10, Outcome::Failed);
        get(&mut recorder, Some("a"), 20, 30);
        assert!(!kv_passed(&recorder));
    }

    #[test]
    fn one_id_acknowledged_to_two_enqueues_is_reported() {
        let mut recorder = Recorder::default();
        for value in [&b"m1"[..], b"m2"] {
            recorder.enqueue_attempted(value);
            recorder.enqueue_acknowledged("t", value, 7);
        }
        let verdicts = recorder.check();
        assert_eq!(verdicts.id_conflicts, vec!["t id 7: m1, m2".to_owned()]);
        assert_eq!(verdicts.lost.len(), 2);
        assert!(!verdicts.passed());
    }

    #[test]
    fn an_unexpected_delivery_is_reported() {
        let mut recorder = Recorder::default();
        recorder.leased(
            "t",
            "a",
            &[Delivery {
                id: 9,
                token: 1,
                leased_at_ms: 0,
                deadline_ms: 10,
                acquired: 1,
                failed: 0,
                enqueued_at_ms: 0,
                body: b"nobody sent this".to_vec(),
                dead_letter: None,
            }],
        );
        assert_eq!(recorder.check().queue.unexpected, 1);
    }

    #[test]
    fn gaps_are_measured_from_each_fault() {
        let mut recorder = Recorder::default();
        for at in [100, 200, 1_000, 3_500, 3_600] {
            put(&mut recorder, &format!("v{at}"), at - 50, at, Outcome::Ok);
        }
        recorder.fault(FaultKind::Kill, true, 1, 1_100, 2_000);
        let summary = recorder.summary(0, 4_000);
        assert_eq!(summary.gaps_ms["kill -9 leader"], (1, 2_400));
        assert_eq!(summary.longest_gap_ms, 2_500);
        assert_eq!(summary.counts["put"], [5, 0, 0]);
        assert!(
            summary.after_new_leader_ms.is_empty(),
            "no leader announced"
        );
        // A new leader announced at 3_000: 500 ms until the next ok op.
        recorder.leader_elected(3_000, 7);
        let summary = recorder.summary(0, 4_000);
        assert_eq!(
            summary.after_new_leader_ms["kill -9 leader"],
            (1, 1_900, 500)
        );
    }
}
