//! Resource ids and secret tokens.
//!
//! Ids are `<prefix>_<27 base62 chars>`, KSUID-shaped: a big-endian
//! seconds timestamp then 16 random bytes, so ids sort by creation time and
//! lists can page newest first by key order alone.

use std::time::{SystemTime, UNIX_EPOCH};

use rand::RngCore;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// KSUID's epoch (2014-05-13), which keeps the 32-bit clock good to 2150.
const EPOCH: u64 = 1_400_000_000;
const ENCODED_LEN: usize = 27;

/// A new id with `prefix` (e.g. `cr` → `cr_2Q…`).
pub fn new_id(prefix: &str) -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        .saturating_sub(EPOCH);
    let mut raw = [0u8; 20];
    raw[..4].copy_from_slice(&(secs.min(u64::from(u32::MAX)) as u32).to_be_bytes());
    rand::thread_rng().fill_bytes(&mut raw[4..]);
    format!("{prefix}_{}", base62(&raw, ENCODED_LEN))
}

/// A secret token: `<id body>_<secret>`, 32 random base62 characters of
/// secret. Only its hash is stored.
pub fn new_token(id: &str) -> String {
    let mut raw = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut raw);
    let body = id.split_once('_').map_or(id, |(_, b)| b);
    format!("{body}_{}", base62(&raw, 32))
}

/// Big-endian base62 of `bytes`, left-padded with '0' to `width`.
fn base62(bytes: &[u8], width: usize) -> String {
    let mut digits: Vec<u8> = Vec::with_capacity(width);
    let mut num: Vec<u32> = bytes.iter().map(|&b| u32::from(b)).collect();
    while num.iter().any(|&d| d != 0) {
        let mut rem = 0u32;
        for d in num.iter_mut() {
            let acc = rem * 256 + *d;
            *d = acc / 62;
            rem = acc % 62;
        }
        digits.push(BASE62[rem as usize]);
    }
    while digits.len() < width {
        digits.push(b'0');
    }
    digits.reverse();
    String::from_utf8_lossy(&digits).into_owned()
}

/// Whether `id` looks like one of ours with `prefix`.
pub fn has_prefix(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('_'))
        .is_some_and(|body| !body.is_empty() && body.bytes().all(|b| b.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_fixed_width_and_time_ordered() {
        let a = new_id("cr");
        assert!(has_prefix(&a, "cr"), "{a}");
        assert_eq!(a.len(), 3 + ENCODED_LEN);
        assert!(!has_prefix(&a, "c"));
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let b = new_id("cr");
        assert!(b > a, "{b} sorts after {a}");
    }

    #[test]
    fn base62_pads_and_encodes() {
        assert_eq!(base62(&[0, 0], 3), "000");
        assert_eq!(base62(&[0, 61], 1), "z");
        assert_eq!(base62(&[0, 62], 2), "10");
        assert_eq!(base62(&[255; 20], 27).len(), 27);
    }
}
