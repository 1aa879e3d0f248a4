//! Per-tunnel metrics in the shape the ngrok agent API reports: a count,
//! 1/5/15-minute rates (exponentially weighted, per second, ticked every
//! 5 s like go-metrics' meters) and duration percentiles over a window of
//! recent samples. Connections also carry a gauge of the open ones.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Rates move in 5-second ticks.
const TICK: Duration = Duration::from_secs(5);
/// Durations kept for percentiles (the most recent ones).
const WINDOW: usize = 1028;

/// An exponentially weighted moving rate over `minutes`.
#[derive(Debug, Clone, Copy)]
struct Ewma {
    alpha: f64,
    /// Events per second; `None` until the first tick.
    rate: Option<f64>,
}

impl Ewma {
    fn minutes(m: f64) -> Self {
        Ewma {
            alpha: 1.0 - (-TICK.as_secs_f64() / 60.0 / m).exp(),
            rate: None,
        }
    }

    fn tick(&mut self, events: u64) {
        let instant = events as f64 / TICK.as_secs_f64();
        self.rate = Some(match self.rate {
            Some(r) => r + self.alpha * (instant - r),
            None => instant,
        });
    }
}

/// Counts, rates and recent durations of one kind of event.
#[derive(Debug)]
struct Series {
    count: u64,
    uncounted: u64,
    last_tick: Instant,
    rates: [Ewma; 3],
    /// Nanoseconds, newest last.
    recent: VecDeque<u64>,
}

impl Series {
    fn new(now: Instant) -> Self {
        Series {
            count: 0,
            uncounted: 0,
            last_tick: now,
            rates: [Ewma::minutes(1.0), Ewma::minutes(5.0), Ewma::minutes(15.0)],
            recent: VecDeque::with_capacity(64),
        }
    }

    /// Applies the ticks that are due; ticks with no events decay rates.
    fn catch_up(&mut self, now: Instant) {
        while now.duration_since(self.last_tick) >= TICK {
            let events = std::mem::take(&mut self.uncounted);
            for r in &mut self.rates {
                r.tick(events);
            }
            self.last_tick += TICK;
            // After a long idle spell the rates are ~0: skip ahead.
            if now.duration_since(self.last_tick) > TICK * 1000 {
                self.last_tick = now;
            }
        }
    }

    fn mark(&mut self, now: Instant) {
        self.catch_up(now);
        self.count += 1;
        self.uncounted += 1;
    }

    fn sample(&mut self, d: Duration) {
        if self.recent.len() == WINDOW {
            self.recent.pop_front();
        }
        self.recent
            .push_back(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    fn stats(&mut self, now: Instant) -> Stats {
        self.catch_up(now);
        let mut sorted: Vec<u64> = self.recent.iter().copied().collect();
        sorted.sort_unstable();
        let pct = |p: f64| -> u64 {
            if sorted.is_empty() {
                return 0;
            }
            let idx = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
            sorted[idx]
        };
        let rate = |i: usize| self.rates[i].rate.unwrap_or(0.0);
        Stats {
            count: self.count,
            rate1: rate(0),
            rate5: rate(1),
            rate15: rate(2),
            p50: pct(0.50),
            p90: pct(0.90),
            p95: pct(0.95),
            p99: pct(0.99),
        }
    }
}

/// One series at a moment: rates per second, durations in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stats {
    pub count: u64,
    pub rate1: f64,
    pub rate5: f64,
    pub rate15: f64,
    pub p50: u64,
    pub p90: u64,
    pub p95: u64,
    pub p99: u64,
}

impl Stats {
    fn to_json(self) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        m.insert("count".into(), json!(self.count));
        m.insert("rate1".into(), json!(self.rate1));
        m.insert("rate5".into(), json!(self.rate5));
        m.insert("rate15".into(), json!(self.rate15));
        m.insert("p50".into(), json!(self.p50));
        m.insert("p90".into(), json!(self.p90));
        m.insert("p95".into(), json!(self.p95));
        m.insert("p99".into(), json!(self.p99));
        m
    }
}

struct Inner {
    conns: Series,
    open: i64,
    http: Series,
}

/// One tunnel's metrics; shared by its streams, the API and the console.
pub struct TunnelMetrics {
    inner: Mutex<Inner>,
}

impl Default for TunnelMetrics {
    fn default() -> Self {
        let now = Instant::now();
        TunnelMetrics {
            inner: Mutex::new(Inner {
                conns: Series::new(now),
                open: 0,
                http: Series::new(now),
            }),
        }
    }
}

/// Holds a connection open in the gauge; its drop records the duration.
pub struct OpenConn<'a> {
    metrics: &'a TunnelMetrics,
    since: Instant,
}

impl Drop for OpenConn<'_> {
    fn drop(&mut self) {
        let mut m = self.metrics.lock();
        m.open -= 1;
        m.conns.sample(self.since.elapsed());
    }
}

impl TunnelMetrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection arrived; it counts as open until the guard drops.
    pub fn conn_opened(&self) -> OpenConn<'_> {
        let now = Instant::now();
        let mut m = self.lock();
        m.conns.mark(now);
        m.open += 1;
        OpenConn {
            metrics: self,
            since: now,
        }
    }

    /// An HTTP request was answered after `took`.
    pub fn http_done(&self, took: Duration) {
        let mut m = self.lock();
        m.http.mark(Instant::now());
        m.http.sample(took);
    }

    /// Connections open right now.
    pub fn open(&self) -> i64 {
        self.lock().open
    }

    /// Connections so far: count, rates and durations.
    pub fn conns(&self) -> Stats {
        self.lock().conns.stats(Instant::now())
    }

    /// `{"conns": {...}, "http": {...}}` as the agent API reports it
    /// (`http` only for HTTP tunnels).
    pub fn to_json(&self, http: bool) -> Value {
        let now = Instant::now();
        let mut m = self.lock();
        let open = m.open;
        let mut conns = m.conns.stats(now).to_json();
        conns.insert("gauge".into(), json!(open));
        let mut out = serde_json::Map::new();
        out.insert("conns".into(), Value::Object(conns));
        if http {
            out.insert("http".into(), Value::Object(m.http.stats(now).to_json()));
        }
        Value::Object(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_counts_follow_the_samples() {
        let m = TunnelMetrics::default();
        for ms in 1..=100 {
            let _open = m.conn_opened();
            m.http_done(Duration::from_millis(ms));
        }
        let v = m.to_json(true);
        assert_eq!(v["conns"]["count"], 100);
        assert_eq!(v["conns"]["gauge"], 0);
        assert_eq!(v["http"]["count"], 100);
        assert_eq!(v["http"]["p50"], 50_000_000);
        assert_eq!(v["http"]["p90"], 90_000_000);
        assert_eq!(v["http"]["p99"], 99_000_000);
        let held = m.conn_opened();
        assert_eq!(m.to_json(false)["conns"]["gauge"], 1);
        drop(held);
        assert!(m.to_json(false).get("http").is_none());
    }

    #[test]
    fn rates_start_at_the_first_tick_and_decay_when_idle() {
        let mut s = Series::new(Instant::now());
        let t0 = s.last_tick;
        for _ in 0..50 {
            s.mark(t0);
        }
        s.catch_up(t0 + TICK);
        let first = s.rates[0].rate.unwrap_or_default();
        assert!((first - 10.0).abs() < 1e-9, "{first}");
        s.catch_up(t0 + TICK * 13);
        let later = s.rates[0].rate.unwrap_or_default();
        assert!(later < first / 2.0 && later > 0.0, "{later}");
        // The 15-minute rate decays slowest.
        assert!(s.rates[2].rate.unwrap_or_default() > later);
    }
}
