//! A linearizability checker: Wing & Gong's search with Lowe's memoization
//! ("Testing for linearizability", 2017), the algorithm behind Porcupine
//! and Knossos.
//!
//! A history is a set of operations, each with the time its client invoked
//! it and, if it completed, the time the result came back and the result.
//! The history is linearizable if some total order of the operations
//! respects real time (an operation that returned before another was
//! invoked comes first), is a legal run of the sequential [`Model`], and
//! gives every completed operation the result it really returned.
//! Operations that never completed (the client gave up, the node crashed)
//! may take effect at any point after their invocation, or not at all.
//!
//! Histories are checked per key (P-compositionality): linearizability of
//! a map is linearizability of each key's register, and the search is
//! exponential only in the concurrency of one key.

use std::collections::HashSet;
use std::hash::Hash;

/// A sequential specification.
pub trait Model {
    /// The state; hashed to memoize the search.
    type State: Clone + Eq + Hash;
    /// An operation's input.
    type Input;
    /// An operation's output.
    type Output: PartialEq;

    /// The initial state.
    fn init(&self) -> Self::State;

    /// Applies `input` to `state`, returning the new state and the output.
    fn step(&self, state: &Self::State, input: &Self::Input) -> (Self::State, Self::Output);
}

/// One operation of a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation<I, O> {
    /// When the client invoked it.
    pub call_ms: u64,
    /// When its result came back and what it was; `None` if it never did.
    pub completion: Option<(u64, O)>,
    /// What it did.
    pub input: I,
}

/// Bounds the search: a history needing more steps is reported as
/// undecided rather than hanging the simulator.
pub const SEARCH_STEPS_MAX_COUNT: u64 = 20_000_000;

/// The verdict on a history.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A valid order exists.
    Linearizable,
    /// No valid order exists.
    NotLinearizable,
    /// The search exceeded [`SEARCH_STEPS_MAX_COUNT`].
    Undecided,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Call,
    Return,
}

/// A node of the doubly linked event list; index 0 is the head sentinel.
#[derive(Clone, Copy, Debug)]
struct Event {
    kind: Kind,
    op: usize,
    prev: usize,
    next: usize,
    /// For a call: the index of its return event (0 if none).
    matching: usize,
}

const NIL: usize = usize::MAX;

/// Checks `history` against `model`.
pub fn check<M: Model>(model: &M, history: &[Operation<M::Input, M::Output>]) -> Verdict {
    // Events sorted by time; at equal times calls come first, so operations
    // that touch the same millisecond count as concurrent (never a false
    // alarm from clock granularity).
    let mut order: Vec<(u64, u8, usize)> = Vec::new();
    for (op, operation) in history.iter().enumerate() {
        order.push((operation.call_ms, 0, op));
        if let Some((return_ms, _)) = &operation.completion {
            order.push(((*return_ms).max(operation.call_ms), 1, op));
        }
    }
    order.sort_unstable();
    let mut events = vec![Event {
        kind: Kind::Call,
        op: NIL,
        prev: NIL,
        next: NIL,
        matching: 0,
    }];
    let mut call_event = vec![0usize; history.len()];
    for (_, kind, op) in &order {
        let index = events.len();
        let prev = index - 1;
        events[prev].next = index;
        let kind = if *kind == 0 { Kind::Call } else { Kind::Return };
        events.push(Event {
            kind,
            op: *op,
            prev,
            next: NIL,
            matching: 0,
        });
        match kind {
            Kind::Call => call_event[*op] = index,
            Kind::Return => {
                let call = call_event[*op];
                events[call].matching = index;
            }
        }
    }

    let words = history.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, M::State)> = HashSet::new();
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut state = model.init();
    let mut entry = events[0].next;
    let mut steps = 0u64;

    let lift = |events: &mut Vec<Event>, call: usize| {
        let (prev, next) = (events[call].prev, events[call].next);
        events[prev].next = next;
        if next != NIL {
            events[next].prev = prev;
        }
        let ret = events[call].matching;
        if ret != 0 {
            let (prev, next) = (events[ret].prev, events[ret].next);
            events[prev].next = next;
            if next != NIL {
                events[next].prev = prev;
            }
        }
    };
    let unlift = |events: &mut Vec<Event>, call: usize| {
        let ret = events[call].matching;
        if ret != 0 {
            let (prev, next) = (events[ret].prev, events[ret].next);
            events[prev].next = ret;
            if next != NIL {
                events[next].prev = ret;
            }
        }
        let (prev, next) = (events[call].prev, events[call].next);
        events[prev].next = call;
        if next != NIL {
            events[next].prev = call;
        }
    };

    while events[0].next != NIL {
        steps += 1;
        if steps > SEARCH_STEPS_MAX_COUNT {
            return Verdict::Undecided;
        }
        if entry == NIL {
            // Only calls of operations that never returned are left, and
            // none can be linearized here: backtrack.
            let Some((call, previous)) = stack.pop() else {
                return Verdict::NotLinearizable;
            };
            let op = events[call].op;
            linearized[op / 64] &= !(1 << (op % 64));
            state = previous;
            unlift(&mut events, call);
            entry = events[call].next;
            continue;
        }
        let event = events[entry];
        match event.kind {
            Kind::Call => {
                let operation = &history[event.op];
                let (next_state, output) = model.step(&state, &operation.input);
                let matches = match &operation.completion {
                    Some((_, expected)) => *expected == output,
                    None => true,
                };
                let mut tried = linearized.clone();
                tried[event.op / 64] |= 1 << (event.op % 64);
                if matches && cache.insert((tried.clone(), next_state.clone())) {
                    stack.push((entry, state));
                    state = next_state;
                    linearized = tried;
                    lift(&mut events, entry);
                    entry = events[0].next;
                } else {
                    entry = event.next;
                }
            }
            Kind::Return => {
                // This operation returned before any order of the pending
                // ones could include it: undo the last choice.
                let Some((call, previous)) = stack.pop() else {
                    return Verdict::NotLinearizable;
                };
                let op = events[call].op;
                linearized[op / 64] &= !(1 << (op % 64));
                state = previous;
                unlift(&mut events, call);
                entry = events[call].next;
            }
        }
    }
    Verdict::Linearizable
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A register holding an integer.
    struct Register;

    #[derive(Debug, Clone, PartialEq)]
    enum Op {
        Write(u64),
        Read,
    }

    impl Model for Register {
        type State = u64;
        type Input = Op;
        type Output = Option<u64>;
        fn init(&self) -> u64 {
            0
        }
        fn step(&self, state: &u64, input: &Op) -> (u64, Option<u64>) {
            match input {
                Op::Write(v) => (*v, None),
                Op::Read => (*state, Some(*state)),
            }
        }
    }

    fn op(
        call_ms: u64,
        return_ms: Option<u64>,
        input: Op,
        output: Option<u64>,
    ) -> Operation<Op, Option<u64>> {
        Operation {
            call_ms,
            completion: return_ms.map(|r| (r, output)),
            input,
        }
    }

    #[test]
    fn sequential_history() {
        let history = vec![
            op(0, Some(1), Op::Write(1), None),
            op(2, Some(3), Op::Read, Some(1)),
        ];
        assert_eq!(check(&Register, &history), Verdict::Linearizable);
    }

    #[test]
    fn stale_read_is_caught() {
        // Write 1 completes, then a read that starts later sees 0.
        let history = vec![
            op(0, Some(1), Op::Write(1), None),
            op(2, Some(3), Op::Read, Some(0)),
        ];
        assert_eq!(check(&Register, &history), Verdict::NotLinearizable);
    }

    #[test]
    fn concurrent_operations_may_order_either_way() {
        let history = vec![
            op(0, Some(10), Op::Write(1), None),
            op(1, Some(2), Op::Read, Some(1)),
            op(3, Some(4), Op::Read, Some(1)),
        ];
        assert_eq!(check(&Register, &history), Verdict::Linearizable);
        // But once a read saw the new value, a later read cannot see the
        // old one.
        let history = vec![
            op(0, Some(10), Op::Write(1), None),
            op(1, Some(2), Op::Read, Some(1)),
            op(3, Some(4), Op::Read, Some(0)),
        ];
        assert_eq!(check(&Register, &history), Verdict::NotLinearizable);
    }

    #[test]
    fn pending_write_may_apply_or_not() {
        let applied = vec![
            op(0, None, Op::Write(7), None),
            op(5, Some(6), Op::Read, Some(7)),
        ];
        assert_eq!(check(&Register, &applied), Verdict::Linearizable);
        let not_applied = vec![
            op(0, None, Op::Write(7), None),
            op(5, Some(6), Op::Read, Some(0)),
        ];
        assert_eq!(check(&Register, &not_applied), Verdict::Linearizable);
        // But it cannot apply before it was invoked.
        let too_early = vec![
            op(5, None, Op::Write(7), None),
            op(0, Some(1), Op::Read, Some(7)),
        ];
        assert_eq!(check(&Register, &too_early), Verdict::NotLinearizable);
    }

    #[test]
    fn lost_write_is_caught() {
        // An acknowledged write that a later read does not see.
        let history = vec![
            op(0, Some(1), Op::Write(1), None),
            op(2, Some(3), Op::Write(2), None),
            op(4, Some(5), Op::Read, Some(1)),
        ];
        assert_eq!(check(&Register, &history), Verdict::NotLinearizable);
    }
}
