//! Actions that keep state or check credentials: `rate-limit` (a sliding
//! window per bucket key, shared by every request of the endpoint) and
//! `basic-auth`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::expr::{display, Expr, Scope};

/// Buckets kept before idle ones are swept, so a flood of distinct keys
/// cannot grow the table without bound.
const SWEEP_AT: usize = 65_536;

/// `rate-limit`: at most `capacity` requests per `window` per bucket.
#[derive(Debug)]
pub struct RateLimit {
    pub name: String,
    capacity: u64,
    window: Duration,
    keys: Vec<Expr>,
    pub enforce: bool,
    buckets: Mutex<HashMap<String, Window>>,
}

/// Two adjacent fixed windows; the previous one's count is weighted by
/// how much of it still overlaps the sliding window (as nginx and
/// Cloudflare approximate a sliding log).
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    previous: u64,
    current: u64,
}

/// A rate-limit decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    pub bucket: String,
    /// Seconds until a request in this bucket would pass.
    pub retry_after: u64,
}

impl RateLimit {
    pub fn new(
        name: &str,
        capacity: u64,
        window: Duration,
        keys: Vec<Expr>,
        enforce: bool,
    ) -> Self {
        RateLimit {
            name: name.to_string(),
            capacity,
            window,
            keys,
            enforce,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The request's bucket: its key expressions' values joined.
    pub fn bucket(&self, scope: &Scope) -> Result<String, String> {
        let mut parts = Vec::with_capacity(self.keys.len());
        for k in &self.keys {
            parts.push(display(&k.eval(scope)?));
        }
        Ok(parts.join("\u{1f}"))
    }

    /// Counts one request in `bucket` at `now`; `Some` if it is over the
    /// limit (and then not counted).
    pub fn check(&self, bucket: &str, now: Instant) -> Option<Limited> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= SWEEP_AT && !buckets.contains_key(bucket) {
            let idle = self.window * 2;
            buckets.retain(|_, w| now.duration_since(w.start) < idle);
        }
        let w = buckets.entry(bucket.to_string()).or_insert(Window {
            start: now,
            previous: 0,
            current: 0,
        });
        let mut elapsed = now.duration_since(w.start);
        if elapsed >= self.window {
            let windows = elapsed.as_nanos() / self.window.as_nanos().max(1);
            w.previous = if windows == 1 { w.current } else { 0 };
            w.current = 0;
            w.start += self.window * u32::try_from(windows).unwrap_or(u32::MAX);
            elapsed = now.duration_since(w.start);
        }
        let overlap = 1.0 - elapsed.as_secs_f64() / self.window.as_secs_f64();
        let estimate = w.previous as f64 * overlap + w.current as f64;
        if estimate + 1.0 > self.capacity as f64 {
            // The previous window's weight falls linearly: when will
            // `estimate` drop below capacity - 1?
            let retry = if w.current + 1 > self.capacity || w.previous == 0 {
                self.window.saturating_sub(elapsed)
            } else {
                let needed = (estimate + 1.0 - self.capacity as f64) / w.previous as f64;
                Duration::from_secs_f64(needed * self.window.as_secs_f64())
            };
            return Some(Limited {
                bucket: bucket.to_string(),
                retry_after: retry.as_secs_f64().ceil().max(1.0) as u64,
            });
        }
        w.current += 1;
        None
    }
}

/// `500ms`, `30s`, `1m`, `1h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().ok()?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    (secs > 0.0 && secs <= 86_400.0 * 365.0).then(|| Duration::from_secs_f64(secs))
}

/// `basic-auth`: `Authorization: Basic` against the configured users.
#[derive(Debug)]
pub struct BasicAuth {
    pub users: Vec<(String, String)>,
    pub realm: String,
    pub enforce: bool,
}

impl BasicAuth {
    /// The user the request authenticated as, if any.
    pub fn user(&self, authorization: Option<&str>) -> Option<String> {
        let (scheme, encoded) = authorization?.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (user, pass) = decoded.split_once(':')?;
        // Every entry is compared in full, so timing does not say which
        // part differed.
        let mut found = None;
        for (u, p) in &self.users {
            if constant_time_eq(u.as_bytes(), user.as_bytes())
                & constant_time_eq(p.as_bytes(), pass.as_bytes())
            {
                found = Some(u.clone());
            }
        }
        found
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(capacity: u64, window: Duration) -> RateLimit {
        RateLimit::new("t", capacity, window, Vec::new(), true)
    }

    #[test]
    fn sliding_window_admits_capacity_then_refuses_then_recovers() {
        let l = limit(3, Duration::from_secs(10));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.check("k", t0), None);
        }
        let refused = l.check("k", t0 + Duration::from_secs(1)).expect("limited");
        assert!((1..=9).contains(&refused.retry_after), "{refused:?}");
        // Other buckets are independent.
        assert_eq!(l.check("other", t0), None);
        // Half a window later the previous window still weighs 1.5: one
        // more passes, then the limit holds again.
        let t = t0 + Duration::from_secs(15);
        assert_eq!(l.check("k", t), None);
        assert!(l.check("k", t).is_some());
        // Two windows later everything has slid out.
        let t = t0 + Duration::from_secs(31);
        for _ in 0..3 {
            assert_eq!(l.check("k", t), None);
        }
    }

    #[test]
    fn durations_parse_like_ngroks_examples() {
        assert_eq!(parse_duration("60s"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        for bad in ["", "0s", "-1s", "1d", "abc", "1.2.3s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn basic_auth_checks_every_user() {
        let a = BasicAuth {
            users: vec![
                ("alice".into(), "pw1".into()),
                ("bob".into(), "pw:2".into()),
            ],
            realm: "ngrok".into(),
            enforce: true,
        };
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        assert_eq!(
            a.user(Some(&format!("Basic {}", b64("bob:pw:2")))),
            Some("bob".into())
        );
        assert_eq!(
            a.user(Some(&format!("basic {}", b64("alice:pw1")))),
            Some("alice".into())
        );
        assert_eq!(a.user(Some(&format!("Basic {}", b64("alice:pw2")))), None);
        assert_eq!(a.user(Some("Bearer x")), None);
        assert_eq!(a.user(Some("Basic !!!")), None);
        assert_eq!(a.user(None), None);
    }
}
