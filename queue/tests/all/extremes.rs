//! Apply is total on well-formed commands too: arbitrary numbers (zero,
//! huge, `u64::MAX`), arbitrary log indexes and times, never a panic or an
//! arithmetic overflow (tests run with overflow checks on).

use proptest::prelude::*;
use queue::{
    decode_response, encode_command, Command, Nack, NewMessage, QueueMachine, Receipt, TopicConfig,
};
use raft_core::{ApplyContext, StateMachine};

fn number() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(u64::MAX),
        Just(u64::MAX - 1),
        0..100u64,
        any::<u64>()
    ]
}

fn topic() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("t".to_owned()),
        Just("t.dlq".to_owned()),
        Just("".to_owned()),
        Just("bad name".to_owned())
    ]
}

fn config() -> impl Strategy<Value = TopicConfig> {
    (
        any::<u32>(),
        number(),
        number(),
        any::<u32>(),
        number(),
        any::<bool>(),
    )
        .prop_map(
            |(
                max_deliveries,
                length_max,
                default_lease_ms,
                in_flight_max,
                dedupe_window_ms,
                paused,
            )| TopicConfig {
                max_deliveries: max_deliveries % 8,
                length_max: length_max % 16,
                default_lease_ms,
                in_flight_max: in_flight_max % 8,
                dedupe_window_ms,
                paused,
            },
        )
}

fn command() -> impl Strategy<Value = Command> {
    let receipts = || {
        proptest::collection::vec(
            (0..6u64, number()).prop_map(|(id, token)| Receipt { id, token }),
            0..3,
        )
    };
    let nack = prop_oneof![
        number().prop_map(|delay_ms| Nack::Retry { delay_ms }),
        Just(Nack::Release),
        Just(Nack::Reject)
    ];
    let message = (number(), proptest::option::of(number())).prop_map(|(delay, seq)| {
        let m = NewMessage::new(vec![1]).delay_ms(delay);
        match seq {
            Some(seq) => m.dedupe("p", seq),
            None => m,
        }
    });
    prop_oneof![
        (topic(), config()).prop_map(|(topic, config)| Command::CreateTopic { topic, config }),
        (topic(), config()).prop_map(|(topic, config)| Command::ConfigureTopic { topic, config }),
        topic().prop_map(|topic| Command::DeleteTopic { topic }),
        (topic(), proptest::collection::vec(message, 0..3))
            .prop_map(|(topic, messages)| Command::Enqueue { topic, messages }),
        (topic(), any::<u32>(), proptest::option::of(number())).prop_map(
            |(topic, max, lease_ms)| Command::Lease {
                topic,
                consumer: "c".into(),
                max_messages: max % 5,
                lease_ms,
            }
        ),
        (topic(), receipts()).prop_map(|(topic, receipts)| Command::Ack { topic, receipts }),
        (topic(), receipts(), nack).prop_map(|(topic, receipts, nack)| Command::Nack {
            topic,
            receipts,
            nack
        }),
        (topic(), receipts(), proptest::option::of(number())).prop_map(
            |(topic, receipts, lease_ms)| Command::Extend {
                topic,
                receipts,
                lease_ms
            }
        ),
        topic().prop_map(|topic| Command::Purge { topic }),
        (number(), proptest::option::of(Just(vec![2u8]))).prop_map(|(expected_version, value)| {
            Command::Cas {
                key: b"k".to_vec(),
                expected_version,
                value,
            }
        }),
        Just(Command::Tick),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn extreme_values_never_panic(steps in proptest::collection::vec((command(), number(), number()), 1..40)) {
        let mut machine = QueueMachine::new();
        for (command, index, time_ms) in steps {
            let ctx = ApplyContext { index, term: 1, time_ms };
            let reply = machine.apply(&ctx, &encode_command(&command));
            prop_assert!(decode_response(&reply).is_ok());
            let mut copy = QueueMachine::new();
            prop_assert!(copy.restore(&machine.snapshot()).is_ok());
        }
    }
}
