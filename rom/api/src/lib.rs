//! The ROM API.
