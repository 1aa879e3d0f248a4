//! Arbitrary bytes through the muxado frame decoder: never panics, and
//! every frame it accepts re-encodes to the bytes it came from.
#![no_main]

use bytes::BytesMut;
use gangway_proto::frame::{decode, Frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.clone();
        match decode(&mut buf) {
            Ok(Some(frame)) => {
                let consumed = before.len() - buf.len();
                let mut again = BytesMut::new();
                frame.encode(&mut again);
                // Decoding drops what carries no meaning: the reserved top
                // bit of stream ids and flags other than FIN/SYN on DATA.
                let mut original = before[..consumed].to_vec();
                original[4] &= 0x7F;
                match frame {
                    Frame::Data { .. } => original[3] &= 0xF3,
                    Frame::GoAway { .. } => {
                        original[3] &= 0xF0;
                        original[8] &= 0x7F;
                    }
                    _ => original[3] &= 0xF0,
                }
                assert_eq!(&again[..], &original[..]);
            }
            Ok(None) | Err(_) => break,
        }
    }
});
