//! Unit tests of each topic operation, driven through the typed client.

use queue::{
    AckOutcome, ClientError, DeadReason, Failure, MessageState, Nack, NewMessage, QueueError,
    TopicConfig,
};

use crate::harness::{client, ready};

fn queue_error(result: Result<impl std::fmt::Debug, ClientError>) -> QueueError {
    match result {
        Err(ClientError::Queue(error)) => error,
        other => panic!("expected a queue error, got {other:?}"),
    }
}

#[test]
fn enqueue_creates_topic_and_lease_returns_oldest_first() {
    let client = client();
    let a = ready(client.enqueue("urls", "a")).unwrap();
    let b = ready(client.enqueue("urls", "b")).unwrap();
    assert_eq!((a.id, b.id), (1, 2));
    assert!(!a.duplicate);
    let leased = ready(client.lease("urls", "w1", 10, Some(1000))).unwrap();
    assert_eq!(leased.len(), 2);
    assert_eq!(leased[0].body, b"a");
    assert_eq!(leased[0].acquired, 1);
    assert_eq!(leased[0].failed, 0);
    assert_eq!(leased[0].deadline_ms, leased[0].leased_at_ms + 1000);
    assert_ne!(leased[0].token, leased[1].token);
    let topics = ready(client.topics()).unwrap();
    let names: Vec<_> = topics.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["urls", "urls.dlq"]);
}

#[test]
fn lease_from_missing_topic_is_an_error() {
    let client = client();
    let error = queue_error(ready(client.lease("nope", "w", 1, None)));
    assert!(matches!(error, QueueError::NoSuchTopic { .. }));
    assert!(error
        .to_string()
        .contains("enqueue to it or create it first"));
}

#[test]
fn ack_removes_and_is_idempotent_and_stale_tokens_are_rejected() {
    let client = client();
    ready(client.enqueue("t", "x")).unwrap();
    let first = ready(client.lease("t", "w1", 1, Some(100)))
        .unwrap()
        .remove(0);
    client.transport().advance(100); // the lease expires at its deadline
    let second = ready(client.lease("t", "w2", 1, Some(100)))
        .unwrap()
        .remove(0);
    assert_eq!(second.id, first.id);
    assert_eq!(second.acquired, 2);
    assert_eq!(second.failed, 1);
    // The first consumer's token is stale now.
    let error = queue_error(ready(client.ack("t", first.receipt())));
    assert!(matches!(error, QueueError::StaleLease { id: 1, .. }));
    assert_eq!(
        ready(client.ack("t", second.receipt())).unwrap(),
        AckOutcome::Acked
    );
    assert_eq!(
        ready(client.ack("t", second.receipt())).unwrap(),
        AckOutcome::AlreadyAcked
    );
    let error = queue_error(ready(client.ack("t", first.receipt())));
    assert!(matches!(error, QueueError::StaleLease { .. }));
    let stats = ready(client.stats("t")).unwrap();
    assert_eq!((stats.ready, stats.leased, stats.delayed), (0, 0, 0));
    assert_eq!(stats.counters.acked, 1);
    assert_eq!(stats.counters.expired, 1);
    assert_eq!(stats.counters.redelivered, 1);
}

#[test]
fn lease_is_valid_until_just_before_its_deadline() {
    let client = client();
    ready(client.enqueue("t", "x")).unwrap();
    let lease = ready(client.lease("t", "w", 1, Some(50)))
        .unwrap()
        .remove(0);
    client.transport().advance(49);
    assert!(ready(client.lease("t", "other", 1, None))
        .unwrap()
        .is_empty());
    assert_eq!(
        ready(client.ack("t", lease.receipt())).unwrap(),
        AckOutcome::Acked
    );
}

#[test]
fn unknown_message_ack_says_so() {
    let client = client();
    ready(client.enqueue("t", "x")).unwrap();
    let error = queue_error(ready(client.ack("t", queue::Receipt { id: 99, token: 1 })));
    assert!(matches!(error, QueueError::NoSuchMessage { id: 99, .. }));
    let error = queue_error(ready(client.ack("t", queue::Receipt { id: 1, token: 1 })));
    assert!(matches!(error, QueueError::StaleLease { id: 1, .. }));
}

#[test]
fn nack_counts_a_failure_and_delays_redelivery() {
    let client = client();
    ready(client.enqueue("t", "x")).unwrap();
    let lease = ready(client.lease("t", "w", 1, None)).unwrap().remove(0);
    ready(client.nack("t", lease.receipt(), 500)).unwrap();
    let stats = ready(client.stats("t")).unwrap();
    assert_eq!((stats.ready, stats.leased, stats.delayed), (0, 0, 1));
    assert!(ready(client.lease("t", "w", 1, None)).unwrap().is_empty());
    client.transport().advance(500);
    let again = ready(client.lease("t", "w", 1, None)).unwrap().remove(0);
    assert_eq!((again.acquired, again.failed), (2, 1));
    // The nacked token cannot settle the new lease.
    let error = queue_error(ready(client.ack("t", lease.receipt())));
    assert!(matches!(error, QueueError::StaleLease { .. }));
}

#[test]
fn release_does_not_count_a_failure() {
    let client = client();
    let config = TopicConfig {
        max_deliveries: 1,
        ..TopicConfig::default()
    };
    ready(client.create_topic("t", config)).unwrap();
    ready(client.enqueue("t", "x")).unwrap();
    for _ in 0..5 {
        let lease = ready(client.lease("t", "w", 1, None)).unwrap().remove(0);
        assert_eq!(lease.failed, 0);
        ready(client.release("t", lease.receipt())).unwrap();
    }
    let stats = ready(client.stats("t")).unwrap();
    assert_eq!((stats.ready, stats.dead), (1, 0));
    assert_eq!(stats.counters.released, 5);
}

#[test]
fn delivery_limit_moves_to_dlq_with_reason() {
    let client = client();
    let config = TopicConfig {
        max_deliveries: 2,
        ..TopicConfig::default()
    };
    assert!(ready(client.create_topic("t", config.clone())).unwrap());
    assert!(!ready(client.create_topic("t", config)).unwrap());
    ready(client.enqueue("t", "poison")).unwrap();
    let lease = ready(client.lease("t", "w", 1, Some(10)))
        .unwrap()
        .remove(0);
    ready(client.nack("t", lease.receipt(), 0)).unwrap();
    ready(client.lease("t", "w", 1, Some(10))).unwrap();
    client.transport().advance(10);
    ready(client.tick()).unwrap();
    let stats = ready(client.stats("t")).unwrap();
    assert_eq!((stats.ready, stats.leased, stats.dead), (0, 0, 1));
    assert_eq!(stats.counters.dead_lettered, 1);
    let dead = ready(client.lease("t.dlq", "janitor", 1, None))
        .unwrap()
        .remove(0);
    assert_eq!(dead.body, b"poison");
    let letter = dead.dead_letter.expect("dead-letter metadata");
    assert_eq!(letter.topic, "t");
    assert_eq!(letter.id, 1);
    assert_eq!(
        letter.reason,
        DeadReason::DeliveryLimit(Failure::LeaseExpired)
    );
    assert_eq!((letter.acquired, letter.failed), (2, 2));
}

#[test]
fn reject_dead_letters_at_once() {
    let client = client();
    ready(client.enqueue("t", "bad")).unwrap();
    let lease = ready(client.lease("t", "w", 1, None)).unwrap().remove(0);
    ready(client.reject("t", lease.receipt())).unwrap();
    let peeked = ready(client.peek("t.dlq", None, 10)).unwrap();
    assert_eq!(peeked.len(), 1);
    assert_eq!(
        peeked[0].dead_letter.as_ref().map(|d| d.reason),
        Some(DeadReason::Rejected)
    );
    // A dead-letter topic has no dead-letter topic of its own.
    let dead = ready(client.lease("t.dlq", "w", 1, None))
        .unwrap()
        .remove(0);
    let error = queue_error(ready(client.reject("t.dlq", dead.receipt())));
    assert!(matches!(error, QueueError::Invalid { .. }));
}

#[test]
fn extend_renews_and_stale_extend_fails() {
    let client = client();
    ready(client.enqueue("t", "x")).unwrap();
    let lease = ready(client.lease("t", "w", 1, Some(100)))
        .unwrap()
        .remove(0);
    client.transport().advance(90);
    let deadline = ready(client.extend("t", lease.receipt(), Some(100))).unwrap();
    assert_eq!(deadline, lease.leased_at_ms + 190);
    client.transport().advance(50); // past the original deadline
    assert!(ready(client.lease("t", "w2", 1, None)).unwrap().is_empty());
    assert_eq!(
        ready(client.ack("t", lease.receipt())).unwrap(),
        AckOutcome::Acked
    );
    let error = queue_error(ready(client.extend("t", lease.receipt(), None)));
    assert!(matches!(error, QueueError::StaleLease { .. }));
}

#[test]
fn in_flight_cap_limits_each_consumer() {
    let client = client();
    let config = TopicConfig {
        in_flight_max: 2,
        ..TopicConfig::default()
    };
    ready(client.create_topic("t", config)).unwrap();
    for i in 0..5 {
        ready(client.enqueue("t", vec![i])).unwrap();
    }
    assert_eq!(ready(client.lease("t", "a", 10, None)).unwrap().len(), 2);
    let error = queue_error(ready(client.lease("t", "a", 1, None)));
    assert!(matches!(
        error,
        QueueError::InFlightLimit {
            in_flight: 2,
            max: 2,
            ..
        }
    ));
    assert_eq!(ready(client.lease("t", "b", 10, None)).unwrap().len(), 2);
    assert_eq!(ready(client.stats("t")).unwrap().consumers, 2);
}

#[test]
fn length_cap_rejects_new_batches_whole() {
    let client = client();
    let config = TopicConfig {
        length_max: 3,
        ..TopicConfig::default()
    };
    ready(client.create_topic("t", config)).unwrap();
    ready(client.enqueue_batch("t", vec![NewMessage::new("a"), NewMessage::new("b")])).unwrap();
    let batch = vec![NewMessage::new("c"), NewMessage::new("d")];
    let error = queue_error(ready(client.enqueue_batch("t", batch)));
    assert!(matches!(
        error,
        QueueError::TopicFull {
            length: 2,
            adding: 2,
            max: 3,
            ..
        }
    ));
    assert!(error.to_string().contains("retry after consumers ack"));
    assert_eq!(ready(client.stats("t")).unwrap().ready, 2);
    ready(client.enqueue("t", "c")).unwrap();
}

#[test]
fn dedupe_returns_first_id_within_window_only() {
    let client = client();
    let config = TopicConfig {
        dedupe_window_ms: 1000,
        ..TopicConfig::default()
    };
    ready(client.create_topic("t", config)).unwrap();
    let first = ready(client.enqueue_message("t", NewMessage::new("a").dedupe("p", 7))).unwrap();
    let again = ready(client.enqueue_message("t", NewMessage::new("a").dedupe("p", 7))).unwrap();
    assert_eq!(again.id, first.id);
    assert!(again.duplicate);
    // Within one batch, the second copy is a duplicate of the first.
    let batch = vec![
        NewMessage::new("b").dedupe("p", 8),
        NewMessage::new("b").dedupe("p", 8),
    ];
    let results = ready(client.enqueue_batch("t", batch)).unwrap();
    assert_eq!(results[0].id, results[1].id);
    assert!(results[1].duplicate);
    client.transport().advance(1000);
    let later = ready(client.enqueue_message("t", NewMessage::new("a").dedupe("p", 7))).unwrap();
    assert!(!later.duplicate);
    let stats = ready(client.stats("t")).unwrap();
    assert_eq!(stats.ready, 3);
    assert_eq!(stats.counters.deduplicated, 2);
}

#[test]
fn delayed_enqueue_waits() {
    let client = client();
    ready(client.enqueue_message("t", NewMessage::new("later").delay_ms(1000))).unwrap();
    ready(client.enqueue("t", "now")).unwrap();
    let leased = ready(client.lease("t", "w", 10, None)).unwrap();
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].body, b"now");
    client.transport().advance(1000);
    let leased = ready(client.lease("t", "w", 10, None)).unwrap();
    assert_eq!(leased[0].body, b"later");
}

#[test]
fn purge_keeps_leased_messages() {
    let client = client();
    for body in ["a", "b", "c"] {
        ready(client.enqueue("t", body)).unwrap();
    }
    ready(client.enqueue_message("t", NewMessage::new("d").delay_ms(10))).unwrap();
    let lease = ready(client.lease("t", "w", 1, None)).unwrap().remove(0);
    assert_eq!(ready(client.purge("t")).unwrap(), 3);
    assert_eq!(
        ready(client.ack("t", lease.receipt())).unwrap(),
        AckOutcome::Acked
    );
    assert_eq!(ready(client.stats("t")).unwrap().counters.purged, 3);
}

#[test]
fn peek_shows_states_without_leasing() {
    let client = client();
    for body in ["a", "b", "c"] {
        ready(client.enqueue("t", body)).unwrap();
    }
    ready(client.lease("t", "w", 1, Some(100))).unwrap();
    let peeked = ready(client.peek("t", None, 2)).unwrap();
    assert_eq!(peeked.len(), 2);
    assert!(matches!(&peeked[0].state, MessageState::Leased { consumer, .. } if consumer == "w"));
    assert_eq!(peeked[1].state, MessageState::Ready);
    let rest = ready(client.peek("t", Some(2), 10)).unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].id, 3);
    assert_eq!(ready(client.stats("t")).unwrap().ready, 2);
}

#[test]
fn stats_report_oldest_ready_age_in_log_time() {
    let client = client();
    ready(client.enqueue("t", "a")).unwrap();
    client.transport().advance(250);
    ready(client.enqueue("t", "b")).unwrap();
    let stats = ready(client.stats("t")).unwrap();
    assert_eq!(stats.oldest_ready_age_ms, Some(250));
    assert_eq!(stats.now_ms, client.transport().time_ms());
}

#[test]
fn paused_topic_leases_nothing() {
    let client = client();
    ready(client.enqueue("t", "a")).unwrap();
    let paused = TopicConfig {
        paused: true,
        ..TopicConfig::default()
    };
    ready(client.configure_topic("t", paused)).unwrap();
    assert!(ready(client.lease("t", "w", 1, None)).unwrap().is_empty());
    ready(client.configure_topic("t", TopicConfig::default())).unwrap();
    assert_eq!(ready(client.lease("t", "w", 1, None)).unwrap().len(), 1);
}

#[test]
fn delete_topic_removes_it_and_its_dlq() {
    let client = client();
    ready(client.enqueue("t", "a")).unwrap();
    assert_eq!(ready(client.delete_topic("t")).unwrap(), 1);
    assert!(ready(client.topics()).unwrap().is_empty());
    let error = queue_error(ready(client.delete_topic("t.dlq")));
    assert!(matches!(error, QueueError::Invalid { .. }));
}

#[test]
fn bad_arguments_are_refused_with_the_limit() {
    let client = client();
    let error = queue_error(ready(client.enqueue("bad name", "a")));
    assert!(matches!(error, QueueError::Invalid { .. }));
    let error = queue_error(ready(client.enqueue("x.dlq", "a")));
    assert!(matches!(error, QueueError::NoSuchTopic { .. }));
    let big = vec![0; queue::limits::MESSAGE_BYTES_MAX + 1];
    let error = queue_error(ready(client.enqueue("t", big)));
    assert!(error.to_string().contains("at most 1048576"), "{error}");
    assert!(
        ready(client.topics()).unwrap().is_empty(),
        "refused enqueue created no topic"
    );
    ready(client.enqueue("t", "a")).unwrap();
    let error = queue_error(ready(client.lease("t", "w", 0, None)));
    assert!(matches!(error, QueueError::Invalid { .. }));
    let error = queue_error(ready(client.lease("t", "w", 1, Some(0))));
    assert!(matches!(error, QueueError::Invalid { .. }));
    let error = queue_error(ready(client.lease("t", "", 1, None)));
    assert!(matches!(error, QueueError::Invalid { .. }));
    let nack = client.nack_batch("t", &[], Nack::Retry { delay_ms: u64::MAX });
    assert!(matches!(
        queue_error(ready(nack)),
        QueueError::Invalid { .. }
    ));
    let config = TopicConfig {
        length_max: 0,
        ..TopicConfig::default()
    };
    assert!(matches!(
        queue_error(ready(client.create_topic("u", config))),
        QueueError::Invalid { .. }
    ));
}

#[test]
fn full_dlq_drops_its_oldest_ready_message() {
    let client = client();
    let config = TopicConfig {
        length_max: 2,
        ..TopicConfig::default()
    };
    ready(client.create_topic("t", config)).unwrap();
    for round in 0..3u8 {
        ready(client.enqueue("t", vec![round])).unwrap();
        let lease = ready(client.lease("t", "w", 1, None)).unwrap().remove(0);
        ready(client.reject("t", lease.receipt())).unwrap();
    }
    let peeked = ready(client.peek("t.dlq", None, 10)).unwrap();
    let bodies: Vec<_> = peeked.iter().map(|m| m.body[0]).collect();
    assert_eq!(bodies, [1, 2]);
    assert_eq!(
        ready(client.stats("t.dlq")).unwrap().counters.dead_dropped,
        1
    );
}
