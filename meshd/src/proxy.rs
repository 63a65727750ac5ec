//! Carrying traffic once a connection is allowed: `tcp` copies bytes.

pub mod tcp;
