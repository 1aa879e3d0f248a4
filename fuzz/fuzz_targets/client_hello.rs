//! Arbitrary bytes as the start of a TLS connection: the SNI parser never
//! panics and never asks for more than its limit.
#![no_main]

use gangway_proto::client_hello::{parse, Hello, MAX_HELLO_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Hello::NeedBytes(n) = parse(data) {
        assert!(n > data.len() && n <= MAX_HELLO_BYTES + 5);
    }
});
