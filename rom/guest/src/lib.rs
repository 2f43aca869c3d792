//! The guest runtime.
