//! A simulated network: per-packet drop, duplication, delay (and so
//! reordering), and partitions, all drawn from the simulation's seed.

use std::collections::{BTreeMap, BTreeSet};

use crate::rng::Rng;
use crate::transport::{SendError, Transport};

/// How the network misbehaves right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetworkFaults {
    /// Packets dropped, per thousand.
    pub drop_per_mille: u64,
    /// Packets delivered twice, per thousand.
    pub duplicate_per_mille: u64,
    /// Shortest delivery delay.
    pub delay_min_ms: u64,
    /// Longest delivery delay (packets with different delays reorder).
    pub delay_max_ms: u64,
    /// Sends refused outright (the transport's queue is "full"), per
    /// thousand: exercises `report_unreachable`.
    pub refuse_per_mille: u64,
}

impl NetworkFaults {
    /// A healthy network: no loss, small delays.
    pub fn healthy() -> Self {
        Self {
            drop_per_mille: 0,
            duplicate_per_mille: 0,
            delay_min_ms: 1,
            delay_max_ms: 3,
            refuse_per_mille: 0,
        }
    }

    /// Random faults for a safety phase.
    pub fn random(rng: &mut Rng) -> Self {
        let delay_min_ms = rng.range(1, 5);
        Self {
            drop_per_mille: *rng.pick(&[0, 10, 50, 100, 200]),
            duplicate_per_mille: *rng.pick(&[0, 10, 50]),
            delay_min_ms,
            delay_max_ms: delay_min_ms + *rng.pick(&[1, 10, 50, 150]),
            refuse_per_mille: *rng.pick(&[0, 5]),
        }
    }
}

/// A packet on its way.
#[derive(Clone, Debug)]
pub struct Packet {
    /// Sender.
    pub from: usize,
    /// Receiver.
    pub to: usize,
    /// The encoded envelope (or garbage, for injected packets).
    pub bytes: Vec<u8>,
}

/// Packets in flight between simulated nodes, indexed `0..node_count`.
#[derive(Debug)]
pub struct Network {
    /// Delivery time and a sequence number (a total, deterministic order).
    in_flight: BTreeMap<(u64, u64), Packet>,
    next_seq: u64,
    /// Directed links that are cut: `(from, to)`.
    cut: BTreeSet<(usize, usize)>,
    faults: NetworkFaults,
    rng: Rng,
    /// Packets in flight at most; beyond, sends are dropped (a bounded
    /// queue, as every real transport has).
    in_flight_max_count: usize,
    /// Packets sent, dropped and delivered so far.
    pub sent_count: u64,
    /// Packets dropped by faults or partitions.
    pub dropped_count: u64,
}

impl Network {
    /// A healthy network.
    pub fn new(rng: Rng) -> Self {
        Self {
            in_flight: BTreeMap::new(),
            next_seq: 0,
            cut: BTreeSet::new(),
            faults: NetworkFaults::healthy(),
            rng,
            in_flight_max_count: 100_000,
            sent_count: 0,
            dropped_count: 0,
        }
    }

    /// Changes the fault profile.
    pub fn set_faults(&mut self, faults: NetworkFaults) {
        self.faults = faults;
    }

    /// Cuts every link between `side` and the other nodes, both ways.
    pub fn isolate(&mut self, side: &[usize], node_count: usize) {
        for a in side {
            for b in 0..node_count {
                if !side.contains(&b) {
                    self.cut.insert((*a, b));
                    self.cut.insert((b, *a));
                }
            }
        }
    }

    /// Cuts the link between `a` and `b`, both ways.
    pub fn cut_link(&mut self, a: usize, b: usize) {
        self.cut.insert((a, b));
        self.cut.insert((b, a));
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Whether the link `from -> to` is cut.
    pub fn is_cut(&self, from: usize, to: usize) -> bool {
        self.cut.contains(&(from, to))
    }

    /// Puts a packet on the wire, subject to the current faults.
    pub fn send(&mut self, now_ms: u64, packet: Packet) {
        self.sent_count += 1;
        if self.is_cut(packet.from, packet.to)
            || self.rng.chance(self.faults.drop_per_mille, 1000)
            || self.in_flight.len() >= self.in_flight_max_count
        {
            self.dropped_count += 1;
            return;
        }
        let copies = if self.rng.chance(self.faults.duplicate_per_mille, 1000) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay_ms = self
                .rng
                .range(self.faults.delay_min_ms, self.faults.delay_max_ms + 1);
            self.in_flight
                .insert((now_ms + delay_ms, self.next_seq), packet.clone());
            self.next_seq += 1;
        }
    }

    /// Takes the packets due by `now_ms`, in delivery order. A packet whose
    /// link was cut while it travelled is lost.
    pub fn take_due(&mut self, now_ms: u64) -> Vec<Packet> {
        let mut due = Vec::new();
        while let Some(entry) = self.in_flight.first_entry() {
            if entry.key().0 > now_ms {
                break;
            }
            let packet = entry.remove();
            if self.is_cut(packet.from, packet.to) {
                self.dropped_count += 1;
                continue;
            }
            due.push(packet);
        }
        due
    }

    /// Packets in flight.
    pub fn in_flight_count(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether the next send should be refused (drawn from the seed).
    fn refuse(&mut self) -> bool {
        self.rng.chance(self.faults.refuse_per_mille, 1000)
    }
}

/// A [`Transport`] for one node over the simulated network. Raft ids map
/// to node indexes through `index_of`.
pub struct SimTransport<'a> {
    /// The sending node's index.
    pub from: usize,
    /// The current virtual time.
    pub now_ms: u64,
    /// The network.
    pub network: &'a mut Network,
    /// Raft id to node index.
    pub index_of: &'a BTreeMap<u64, usize>,
}

impl Transport for SimTransport<'_> {
    fn send(&mut self, to: u64, envelope: Vec<u8>) -> Result<(), SendError> {
        let Some(&index) = self.index_of.get(&to) else {
            return Err(SendError {
                to,
                reason: "unknown raft id".into(),
            });
        };
        if self.network.refuse() {
            return Err(SendError {
                to,
                reason: "queue full (injected)".into(),
            });
        }
        self.network.send(
            self.now_ms,
            Packet {
                from: self.from,
                to: index,
                bytes: envelope,
            },
        );
        Ok(())
    }
}
