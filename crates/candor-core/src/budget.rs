//! Resource budgets: a bounded window of fd/RSS samples per run, its growth per hour (least
//! squares) and the ETA to the fd limit, and the verdicts of the `limits` policy.

use std::collections::VecDeque;
use std::time::Duration;

use crate::time::Mono;

use candor_spec::{format_bytes, LimitsSpec};

/// Samples kept per run (at the default 5 s period: the last hour).
pub const WINDOW: usize = 720;

/// One sample of a service: summed over every process of its cgroup / process group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    pub at: Mono,
    pub fds: u64,
    /// Soft RLIMIT_NOFILE of the main process.
    pub fd_limit: u64,
    pub rss: u64,
}

/// What derive needs of a window: the newest sample and the trend. Small, so evidence that
/// carries it is cheap to copy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub latest: Sample,
    pub per_hour: Option<f64>,
    pub eta: Option<Duration>,
    /// How long after `latest.at` this still describes the service (a few sampling periods);
    /// older, it is not evidence about now.
    pub valid_for: Duration,
}

impl Summary {
    /// Whether the newest sample still describes `now` (a sample from the future, which the
    /// boot clock cannot produce, counts as fresh only up to `valid_for` ahead).
    pub fn is_fresh(&self, now: Mono) -> bool {
        now.since(self.latest.at) <= self.valid_for && self.latest.at.since(now) <= self.valid_for
    }
}

/// The samples of one run, oldest first, at most `WINDOW` of them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Window {
    pub run_id: u64,
    samples: VecDeque<Sample>,
}

impl Window {
    pub fn for_run(run_id: u64) -> Self {
        Self {
            run_id,
            samples: VecDeque::new(),
        }
    }
    /// Add a sample of `run_id`; a new run starts a new window.
    pub fn push(&mut self, run_id: u64, s: Sample) {
        if run_id != self.run_id {
            self.run_id = run_id;
            self.samples.clear();
        }
        if self.samples.len() == WINDOW {
            self.samples.pop_front();
        }
        self.samples.push_back(s);
    }
    pub fn summary(&self) -> Option<Summary> {
        Some(Summary {
            latest: *self.latest()?,
            per_hour: self.fds_per_hour(),
            eta: self.fd_eta(),
            valid_for: Duration::MAX,
        })
    }
    pub fn latest(&self) -> Option<&Sample> {
        self.samples.back()
    }
    pub fn len(&self) -> usize {
        self.samples.len()
    }
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
    /// fds growth per hour by least squares over the window (None below 3 samples or 5 s).
    pub fn fds_per_hour(&self) -> Option<f64> {
        self.fit().map(|f| f.per_hour)
    }
    /// Time until the fd limit at the current growth, when it is a real trend: growing, and a
    /// line explains the samples (R² ≥ 0.5; a sawtooth does not count as a leak).
    pub fn fd_eta(&self) -> Option<Duration> {
        let last = self.latest()?;
        let f = self.fit()?;
        if f.r2 < 0.5 {
            return None;
        }
        eta(last.fds, last.fd_limit, f.per_hour)
    }
    fn fit(&self) -> Option<Fit> {
        fit(self.samples.iter().map(|s| (s.at, s.fds as f64)))
    }
}

/// A least-squares line: slope per hour and how much of the variation it explains.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fit {
    pub per_hour: f64,
    pub r2: f64,
}

/// Least-squares slope of (time, value) points, per hour.
pub fn growth_per_hour(points: impl Iterator<Item = (Mono, f64)>) -> Option<f64> {
    fit(points).map(|f| f.per_hour)
}

/// Least-squares fit of (time, value) points (None below 3 points or 5 s of span).
pub fn fit(points: impl Iterator<Item = (Mono, f64)>) -> Option<Fit> {
    let pts: Vec<(f64, f64)> = points.map(|(t, v)| (t.as_secs_f64(), v)).collect();
    if pts.len() < 3 {
        return None;
    }
    let t0 = pts[0].0;
    let span = pts[pts.len() - 1].0 - t0;
    if span < 5.0 {
        return None;
    }
    let n = pts.len() as f64;
    let (mut sx, mut sy, mut sxx, mut sxy) = (0.0, 0.0, 0.0, 0.0);
    for (t, v) in &pts {
        let x = t - t0;
        sx += x;
        sy += v;
        sxx += x * x;
        sxy += x * v;
    }
    let den = n * sxx - sx * sx;
    if den.abs() < f64::EPSILON {
        return None;
    }
    let slope = (n * sxy - sx * sy) / den;
    let intercept = (sy - slope * sx) / n;
    let mean = sy / n;
    let (mut ss_res, mut ss_tot) = (0.0, 0.0);
    for (t, v) in &pts {
        let x = t - t0;
        ss_res += (v - (intercept + slope * x)).powi(2);
        ss_tot += (v - mean).powi(2);
    }
    let r2 = if ss_tot <= f64::EPSILON {
        0.0
    } else {
        1.0 - ss_res / ss_tot
    };
    Some(Fit {
        per_hour: slope * 3600.0,
        r2,
    })
}

/// Time to reach `limit` from `count` at `per_hour` (only when growing).
pub fn eta(count: u64, limit: u64, per_hour: f64) -> Option<Duration> {
    if per_hour <= 0.0 || limit == 0 {
        return None;
    }
    let left = limit.saturating_sub(count) as f64;
    Some(Duration::from_secs_f64(left / per_hour * 3600.0))
}

pub fn pct(count: u64, limit: u64) -> f64 {
    if limit == 0 {
        0.0
    } else {
        count as f64 * 100.0 / limit as f64
    }
}

fn approx(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("~{s} s"),
        120..=7199 => format!("~{} min", s / 60),
        7200..=172_799 => format!("~{} h", s / 3600),
        _ => format!("~{} days", s / 86400),
    }
}

/// "fds 850/1024 (83 %), +310/h, limit in ~33 min".
pub fn describe_fds(
    count: u64,
    limit: u64,
    per_hour: Option<f64>,
    eta: Option<Duration>,
) -> String {
    let mut s = format!("fds {count}/{limit} ({:.0} %)", pct(count, limit));
    if let Some(r) = per_hour {
        if r.abs() >= 0.5 {
            s += &format!(", {:+.0}/h", r);
        }
    }
    if let Some(e) = eta {
        s += &format!(", limit in {}", approx(e));
    }
    s
}

/// What the limits say about the newest sample.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Ok,
    /// `degraded`, with the reason.
    Warn(String),
    /// Restart, with the reason.
    Restart(String),
}

pub fn verdict(limits: &LimitsSpec, s: &Summary) -> Verdict {
    let last = &s.latest;
    let used = pct(last.fds, last.fd_limit);
    let fds = describe_fds(last.fds, last.fd_limit, s.per_hour, s.eta);
    if let Some(r) = limits.fd_restart {
        if used >= r {
            return Verdict::Restart(format!("{fds} reached fd_restart {r:.0} %"));
        }
    }
    if let Some(m) = limits.memory_restart {
        if last.rss >= m {
            return Verdict::Restart(format!(
                "rss {} reached memory_restart {}",
                format_bytes(last.rss),
                format_bytes(m)
            ));
        }
    }
    if last.fd_limit > 0 && used >= limits.fd_warn_pct() {
        return Verdict::Warn(fds);
    }
    if let Some(m) = limits.memory_warn {
        if last.rss >= m {
            return Verdict::Warn(format!(
                "rss {} over memory_warn {}",
                format_bytes(last.rss),
                format_bytes(m)
            ));
        }
    }
    Verdict::Ok
}

#[cfg(test)]
mod tests {
    use super::*;
    fn at(s: u64) -> Mono {
        Mono(Duration::from_secs(1_000_000 + s))
    }
    /// (seconds, fds) points.
    type Series = Vec<(u64, u64)>;

    fn window(run: u64, series: &[(u64, u64)]) -> Window {
        let mut w = Window::default();
        for &(t, fds) in series {
            w.push(
                run,
                Sample {
                    at: at(t),
                    fds,
                    fd_limit: 1024,
                    rss: 0,
                },
            );
        }
        w
    }

    #[test]
    fn trend_table() {
        // (name, series of (seconds, fds), expected per hour (±2 %), eta expected)
        let leak: Vec<(u64, u64)> = (0..60).map(|i| (i * 5, 100 + i)).collect(); // +1 per 5 s = +720/h
        let flat: Vec<(u64, u64)> = (0..60).map(|i| (i * 5, 100)).collect();
        let saw: Vec<(u64, u64)> = (0..120).map(|i| (i * 5, 100 + (i % 10) * 5)).collect();
        let cases: Vec<(&str, Series, f64, bool)> = vec![
            ("leaking", leak, 720.0, true),
            ("flat", flat, 0.0, false),
            ("sawtooth", saw, 0.0, false),
        ];
        for (name, series, want, has_eta) in cases {
            let w = window(1, &series);
            let got = w.fds_per_hour().unwrap();
            assert!(
                (got - want).abs() <= want.abs() * 0.02 + 30.0,
                "{name}: {got}/h"
            );
            assert_eq!(w.fd_eta().is_some(), has_eta, "{name}");
        }
        // Leaking at 720/h from 159 towards 1024: 865 left = ~72 min.
        let w = window(1, &(0..60).map(|i| (i * 5, 100 + i)).collect::<Vec<_>>());
        assert_eq!(
            describe_fds(159, 1024, w.fds_per_hour(), w.fd_eta()),
            "fds 159/1024 (16 %), +720/h, limit in ~72 min"
        );
    }

    #[test]
    fn a_new_run_restarts_the_window() {
        let mut w = window(
            1,
            &(0..60).map(|i| (i * 5, 100 + i * 10)).collect::<Vec<_>>(),
        );
        assert!(w.fds_per_hour().unwrap() > 1000.0);
        w.push(
            2,
            Sample {
                at: at(400),
                fds: 12,
                fd_limit: 1024,
                rss: 0,
            },
        );
        assert_eq!(w.len(), 1);
        assert_eq!(
            w.fds_per_hour(),
            None,
            "one sample of the new run says nothing yet"
        );
    }

    #[test]
    fn window_is_bounded() {
        let w = window(
            1,
            &(0..(WINDOW as u64 + 50))
                .map(|i| (i, 10))
                .collect::<Vec<_>>(),
        );
        assert_eq!(w.len(), WINDOW);
    }

    #[test]
    fn verdicts() {
        let mut limits = LimitsSpec::default();
        let w = window(1, &[(0, 850)]);
        assert_eq!(
            verdict(&limits, &w.summary().unwrap()),
            Verdict::Warn("fds 850/1024 (83 %)".into())
        );
        assert_eq!(
            verdict(&limits, &window(1, &[(0, 500)]).summary().unwrap()),
            Verdict::Ok
        );
        limits.fd_restart = Some(80.0);
        assert_eq!(
            verdict(&limits, &w.summary().unwrap()),
            Verdict::Restart("fds 850/1024 (83 %) reached fd_restart 80 %".into())
        );
        let mut mem = LimitsSpec {
            memory_warn: Some(100 << 20),
            ..Default::default()
        };
        let mut big = Window::default();
        big.push(
            1,
            Sample {
                at: at(0),
                fds: 3,
                fd_limit: 1024,
                rss: 150 << 20,
            },
        );
        assert_eq!(
            verdict(&mem, &big.summary().unwrap()),
            Verdict::Warn("rss 150.0 MiB over memory_warn 100.0 MiB".into())
        );
        mem.memory_restart = Some(120 << 20);
        assert_eq!(
            verdict(&mem, &big.summary().unwrap()),
            Verdict::Restart("rss 150.0 MiB reached memory_restart 120.0 MiB".into())
        );
    }
}
