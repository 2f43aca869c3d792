//! The queue workload for raft-core's simulator (not written yet).
