//! `circuit_breaker`: counts upstream results in a rolling window of time
//! buckets; trips when enough requests failed, answers 503 while open, and
//! lets one probe through after `tripped_duration`. State is per edge
//! node and survives config changes that leave the module unchanged.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use gangway_config::resources::{breaker, CircuitBreakerModule};

use crate::chain::{Cx, Flow, Outcome, RequestInfo, RouteModule, Stage};
use crate::decisions::BreakerDecision;
use crate::refusal::Refusal;
use crate::ConfigError;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    pub tripped_duration: Duration,
    pub rolling_window: Duration,
    pub num_buckets: u32,
    pub volume_threshold: u32,
    /// 0.0–1.0.
    pub error_threshold: f64,
}

impl Default for BreakerConfig {
    /// ngrok's defaults.
    fn default() -> Self {
        BreakerConfig {
            tripped_duration: Duration::from_secs(u64::from(breaker::TRIPPED_DURATION_SECS)),
            rolling_window: Duration::from_secs(u64::from(breaker::ROLLING_WINDOW_SECS)),
            num_buckets: breaker::NUM_BUCKETS,
            volume_threshold: breaker::VOLUME_THRESHOLD,
            error_threshold: breaker::ERROR_THRESHOLD,
        }
    }
}

impl From<&CircuitBreakerModule> for BreakerConfig {
    /// The API's module.
    fn from(m: &CircuitBreakerModule) -> Self {
        BreakerConfig {
            tripped_duration: Duration::from_secs(u64::from(m.tripped_duration)),
            rolling_window: Duration::from_secs(u64::from(m.rolling_window)),
            num_buckets: m.num_buckets,
            volume_threshold: m.volume_threshold,
            error_threshold: m.error_threshold_percentage,
        }
    }
}

impl BreakerConfig {
    /// `path` prefixes error paths (`circuit_breaker`).
    pub fn compile(&self, path: &str) -> Result<CircuitBreaker, ConfigError> {
        CircuitBreaker::new(path, *self)
    }

    pub fn check(&self, field: &str) -> Result<(), ConfigError> {
        if self.tripped_duration.is_zero() {
            return Err(ConfigError::new(
                format!("{field}.tripped_duration"),
                "must be more than 0 seconds",
            ));
        }
        if self.rolling_window.is_zero() {
            return Err(ConfigError::new(
                format!("{field}.rolling_window"),
                "must be more than 0 seconds",
            ));
        }
        if !(1..=128).contains(&self.num_buckets) {
            return Err(ConfigError::new(
                format!("{field}.num_buckets"),
                "must be 1 to 128",
            ));
        }
        if !(0.0..=1.0).contains(&self.error_threshold) {
            return Err(ConfigError::new(
                format!("{field}.error_threshold_percentage"),
                "must be 0.0 to 1.0",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Which bucket-width slot since `epoch` this counts.
    slot: u64,
    total: u32,
    errors: u32,
}

#[derive(Debug)]
enum State {
    Closed,
    Open { until: Instant, probing: bool },
}

#[derive(Debug)]
struct Inner {
    state: State,
    buckets: Vec<Bucket>,
}

#[derive(Debug)]
pub struct CircuitBreaker {
    cfg: BreakerConfig,
    bucket_width: Duration,
    epoch: Instant,
    inner: Mutex<Inner>,
}

/// What the breaker says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allow,
    /// Open, but this is the one probe.
    Probe,
    Block,
}

impl CircuitBreaker {
    pub fn new(field: &str, cfg: BreakerConfig) -> Result<Self, ConfigError> {
        cfg.check(field)?;
        let bucket_width = (cfg.rolling_window / cfg.num_buckets).max(Duration::from_millis(1));
        Ok(CircuitBreaker {
            cfg,
            bucket_width,
            epoch: Instant::now(),
            inner: Mutex::new(Inner {
                state: State::Closed,
                buckets: vec![Bucket::default(); cfg.num_buckets as usize],
            }),
        })
    }

    pub fn config(&self) -> &BreakerConfig {
        &self.cfg
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave counts unusable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn slot(&self, now: Instant) -> u64 {
        (now.saturating_duration_since(self.epoch).as_nanos() / self.bucket_width.as_nanos().max(1))
            as u64
    }

    pub fn admit(&self, now: Instant) -> Admission {
        let mut inner = self.lock();
        match &mut inner.state {
            State::Closed => Admission::Allow,
            State::Open { until, probing } => {
                if now < *until || *probing {
                    Admission::Block
                } else {
                    *probing = true;
                    Admission::Probe
                }
            }
        }
    }

    pub fn record(&self, now: Instant, error: bool, probe: bool) {
        let mut inner = self.lock();
        if probe {
            if error {
                inner.state = State::Open {
                    until: now + self.cfg.tripped_duration,
                    probing: false,
                };
            } else {
                inner.state = State::Closed;
                inner.buckets.fill(Bucket::default());
            }
            return;
        }
        if matches!(inner.state, State::Open { .. }) {
            // A result from before the trip: the window is already judged.
            return;
        }
        let slot = self.slot(now);
        let n = inner.buckets.len() as u64;
        let b = &mut inner.buckets[(slot % n) as usize];
        if b.slot != slot {
            *b = Bucket {
                slot,
                total: 0,
                errors: 0,
            };
        }
        b.total += 1;
        b.errors += u32::from(error);
        let oldest = slot.saturating_sub(n - 1);
        let (total, errors) = inner
            .buckets
            .iter()
            .filter(|b| b.slot >= oldest && b.slot <= slot && b.total > 0)
            .fold((0u64, 0u64), |(t, e), b| {
                (t + u64::from(b.total), e + u64::from(b.errors))
            });
        if total > 0
            && total >= u64::from(self.cfg.volume_threshold)
            && errors as f64 / total as f64 >= self.cfg.error_threshold
        {
            inner.state = State::Open {
                until: now + self.cfg.tripped_duration,
                probing: false,
            };
            inner.buckets.fill(Bucket::default());
        }
    }
}

impl RouteModule for CircuitBreaker {
    fn stage(&self) -> Stage {
        Stage::CircuitBreaker
    }

    /// Whether the request was admitted, and as the probe.
    type State = Option<Admission>;

    fn on_request(&self, _req: &RequestInfo<'_>, cx: Cx<'_, Option<Admission>>) -> Flow {
        let admission = self.admit(Instant::now());
        *cx.state = Some(admission);
        cx.facts.decisions.circuit_breaker = Some(match admission {
            Admission::Allow => BreakerDecision::Allow,
            Admission::Probe => BreakerDecision::AllowWhileOpen,
            Admission::Block => BreakerDecision::Block,
        });
        match admission {
            Admission::Block => Flow::Refuse(Refusal::CircuitOpen),
            Admission::Allow | Admission::Probe => Flow::Continue,
        }
    }

    fn on_complete(&self, outcome: &Outcome, cx: Cx<'_, Option<Admission>>) {
        match *cx.state {
            Some(Admission::Allow) => self.finish(outcome, false),
            Some(Admission::Probe) => self.finish(outcome, true),
            Some(Admission::Block) | None => {}
        }
    }
}

impl CircuitBreaker {
    /// Counts an admitted request's result (`probe`: it was the one probe).
    pub fn finish(&self, outcome: &Outcome, probe: bool) {
        if !outcome.forwarded {
            // A later module answered: the upstream was never asked. A
            // probe that never went out frees the slot for the next one.
            if probe {
                let mut inner = self.lock();
                if let State::Open { probing, .. } = &mut inner.state {
                    *probing = false;
                }
            }
            return;
        }
        self.record(Instant::now(), outcome.is_error(), probe);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(volume: u32, threshold: f64) -> CircuitBreaker {
        CircuitBreaker::new(
            "circuit_breaker",
            BreakerConfig {
                volume_threshold: volume,
                error_threshold: threshold,
                ..BreakerConfig::default()
            },
        )
        .unwrap()
    }

    #[test]
    fn trips_at_volume_and_ratio_then_one_probe_recovers() {
        let b = breaker(4, 0.5);
        let t0 = Instant::now();
        b.record(t0, true, false);
        b.record(t0, true, false);
        b.record(t0, false, false);
        assert_eq!(b.admit(t0), Admission::Allow, "volume not reached");
        b.record(t0, false, false);
        assert_eq!(b.admit(t0), Admission::Block, "2 of 4 failed: tripped");
        let later = t0 + Duration::from_secs(11);
        assert_eq!(b.admit(later), Admission::Probe);
        assert_eq!(b.admit(later), Admission::Block, "one probe at a time");
        b.record(later, true, true);
        assert_eq!(b.admit(later), Admission::Block, "failed probe re-opens");
        let again = later + Duration::from_secs(11);
        assert_eq!(b.admit(again), Admission::Probe);
        b.record(again, false, true);
        assert_eq!(b.admit(again), Admission::Allow, "good probe closes");
    }

    #[test]
    fn old_buckets_leave_the_window() {
        let b = breaker(3, 0.5);
        let t0 = Instant::now();
        b.record(t0, true, false);
        b.record(t0, true, false);
        let later = t0 + Duration::from_secs(15);
        b.record(later, true, false);
        assert_eq!(b.admit(later), Admission::Allow, "the first two aged out");
        b.record(later, false, false);
        b.record(later, true, false);
        assert_eq!(b.admit(later), Admission::Block);
    }

    #[test]
    fn out_of_range_values_name_their_field() {
        let bad = |cfg: BreakerConfig| {
            CircuitBreaker::new("circuit_breaker", cfg)
                .unwrap_err()
                .field
        };
        let d = BreakerConfig::default();
        assert_eq!(
            bad(BreakerConfig {
                num_buckets: 0,
                ..d
            }),
            "circuit_breaker.num_buckets"
        );
        assert_eq!(
            bad(BreakerConfig {
                num_buckets: 129,
                ..d
            }),
            "circuit_breaker.num_buckets"
        );
        assert_eq!(
            bad(BreakerConfig {
                error_threshold: 1.5,
                ..d
            }),
            "circuit_breaker.error_threshold_percentage"
        );
        assert_eq!(
            bad(BreakerConfig {
                tripped_duration: Duration::ZERO,
                ..d
            }),
            "circuit_breaker.tripped_duration"
        );
    }
}
