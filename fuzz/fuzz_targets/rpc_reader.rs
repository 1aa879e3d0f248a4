//! Arbitrary bytes as an RPC request body, fed to the incremental JSON
//! reader exactly as the edge does: in pieces, without a terminator.
#![no_main]

use gangway_proto::codec::{read_json, try_parse_json, MAX_RPC_BYTES};
use gangway_proto::msg::{Auth, Bind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = try_parse_json::<Auth>(data);
    let _ = try_parse_json::<Bind>(data);
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() else {
        return;
    };
    rt.block_on(async {
        let mut reader = data;
        let _ = read_json::<Bind, _>(&mut reader, MAX_RPC_BYTES).await;
    });
});
