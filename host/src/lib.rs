//! The ww host library.
