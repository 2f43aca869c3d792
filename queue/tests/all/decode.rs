//! Decoding is total: any bytes give a command or an error, never a panic.

use proptest::prelude::*;
use queue::{
    decode_command, decode_query, decode_response, encode_command, Command, NewMessage, QueueError,
    QueueMachine,
};
use raft_core::{ApplyContext, StateMachine};

fn ctx(index: u64) -> ApplyContext {
    ApplyContext {
        index,
        term: 1,
        time_ms: 1000 + index,
    }
}

#[test]
fn malformed_and_unknown_commands_are_error_results() {
    let mut machine = QueueMachine::new();
    let cases: [&[u8]; 5] = [&[], &[1], &[1, 200], &[2, 0], &[1, 12, 0, 0, 0, 9, 9]];
    for (i, bytes) in cases.iter().enumerate() {
        let reply = machine.apply(&ctx(i as u64 + 1), bytes);
        let response = decode_response(&reply).expect("a reply always decodes");
        assert!(response.is_err(), "{bytes:?} gave {response:?}");
    }
    let reply = machine.apply(&ctx(9), &[2, 0]);
    assert_eq!(
        decode_response(&reply).unwrap(),
        Err(QueueError::UnsupportedVersion {
            got: 2,
            supported: 1
        })
    );
    let reply = machine.query(&[1, 99]);
    assert!(decode_response(&reply).unwrap().is_err());
}

#[test]
fn trailing_bytes_are_refused() {
    let mut bytes = encode_command(&Command::Tick);
    assert_eq!(decode_command(&bytes).unwrap(), Command::Tick);
    bytes.push(0);
    assert!(matches!(
        decode_command(&bytes),
        Err(QueueError::Malformed { .. })
    ));
}

#[test]
fn oversized_requests_are_refused_before_decoding() {
    let bytes = vec![1; queue::limits::COMMAND_BYTES_MAX + 1];
    assert!(matches!(
        decode_command(&bytes),
        Err(QueueError::Malformed { .. })
    ));
}

#[test]
fn round_trip() {
    let command = Command::Enqueue {
        topic: "urls".into(),
        messages: vec![NewMessage::new("x").dedupe("p", 3).delay_ms(5)],
    };
    assert_eq!(decode_command(&encode_command(&command)).unwrap(), command);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut machine = QueueMachine::new();
        let _ = decode_command(&bytes);
        let _ = decode_query(&bytes);
        let _ = decode_response(&bytes);
        let reply = machine.apply(&ctx(1), &bytes);
        prop_assert!(decode_response(&reply).is_ok());
        let _ = machine.query(&bytes);
        let _ = machine.restore(&bytes);
    }

    #[test]
    fn version_one_prefixed_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut framed = vec![1];
        framed.extend(bytes);
        let mut machine = QueueMachine::new();
        let reply = machine.apply(&ctx(1), &framed);
        prop_assert!(decode_response(&reply).is_ok());
        let _ = machine.query(&framed);
        let _ = machine.restore(&framed);
    }
}
