//! Arbitrary bytes as a ProxyHeader (i64 LE length + JSON): never panics,
//! never allocates past the limit.
#![no_main]

use gangway_proto::codec::{decode_proxy_header, MAX_PROXY_HEADER_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_proxy_header(data, MAX_PROXY_HEADER_BYTES);
});
