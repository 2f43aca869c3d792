//! queue: the replicated multi-topic work queue and KV state machine.
