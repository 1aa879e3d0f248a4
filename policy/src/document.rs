//! Documents: placeholder until written.
