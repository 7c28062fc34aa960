//! Beacon regularity, scored the way RITA (Active Countermeasures' Real
//! Intelligence Threat Analytics, GPL-3.0; the formula of its 3.x
//! `pkg/beacon` analyzer, re-implemented here) scores it: Bowley's
//! quartile skewness and the median absolute deviation about the median
//! (MADM) of the intervals between connections and of the bytes each
//! connection sent, plus a connection-count score and a smallness score.
//!
//! ```text
//! Q1, Q2, Q3   = the values at ranks round(.25(n-1)), round(.5(n-1)), round(.75(n-1))
//! skew         = (Q1 + Q3 - 2 Q2) / (Q3 - Q1), or 0 when Q3 = Q1, Q2 = Q1 or Q2 = Q3
//! madm         = median of |x - Q2|
//! ts_score     = mean(1 - |skew_t|, max(0, 1 - madm_t / 30 s), min(1, n / (span_s / 10)))
//! ds_score     = mean(1 - |skew_d|, max(0, 1 - madm_d / 32 B), max(0, 1 - mode_d / 65535))
//! score        = (ts_score + ds_score) / 2
//! ```

use serde::Serialize;

/// What the score was made of (all in the record's evidence).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct BeaconScore {
    pub connections: usize,
    pub interval_median_s: f64,
    pub interval_madm_s: f64,
    pub interval_skew: f64,
    pub size_median: f64,
    pub size_madm: f64,
    pub size_skew: f64,
    pub size_mode: u64,
    pub ts_score: f64,
    pub ds_score: f64,
    pub score: f64,
}

fn rank(sorted: &[f64], q: f64) -> f64 {
    sorted[((q * (sorted.len() - 1) as f64).round() as usize).min(sorted.len() - 1)]
}

/// (median, MADM, Bowley skew) of `v`, which is sorted here.
fn dispersion(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let (q1, q2, q3) = (rank(v, 0.25), rank(v, 0.5), rank(v, 0.75));
    let skew = if q3 != q1 && q2 != q1 && q2 != q3 {
        (q1 + q3 - 2.0 * q2) / (q3 - q1)
    } else {
        0.0
    };
    let mut dev: Vec<f64> = v.iter().map(|x| (x - q2).abs()).collect();
    dev.sort_by(f64::total_cmp);
    (q2, rank(&dev, 0.5), skew)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Scores connection start times (seconds, any order) and the bytes the
/// client sent on each. `None` with fewer than 3 connections (2 intervals).
pub fn score(times_s: &[f64], sizes: &[u64]) -> Option<BeaconScore> {
    if times_s.len() < 3 || sizes.len() != times_s.len() {
        return None;
    }
    let mut t = times_s.to_vec();
    t.sort_by(f64::total_cmp);
    let mut iv: Vec<f64> = t.windows(2).map(|w| w[1] - w[0]).collect();
    let (ti_med, ti_madm, ti_skew) = dispersion(&mut iv);
    let span = t[t.len() - 1] - t[0];
    let count_score = if span > 0.0 {
        (t.len() as f64 / (span / 10.0)).min(1.0)
    } else {
        1.0
    };
    let ts_score = ((1.0 - ti_skew.abs()) + (1.0 - ti_madm / 30.0).max(0.0) + count_score) / 3.0;

    let mut ds: Vec<f64> = sizes.iter().map(|s| *s as f64).collect();
    let (ds_med, ds_madm, ds_skew) = dispersion(&mut ds);
    // The most frequent size (the smallest of equally frequent ones).
    let mut sorted = sizes.to_vec();
    sorted.sort_unstable();
    let (mut mode, mut best, mut i) = (sorted[0], 0usize, 0usize);
    while i < sorted.len() {
        let j = i + sorted[i..].iter().take_while(|x| **x == sorted[i]).count();
        if j - i > best {
            best = j - i;
            mode = sorted[i];
        }
        i = j;
    }
    let ds_score = ((1.0 - ds_skew.abs())
        + (1.0 - ds_madm / 32.0).max(0.0)
        + (1.0 - mode as f64 / 65535.0).max(0.0))
        / 3.0;
    Some(BeaconScore {
        connections: t.len(),
        interval_median_s: round3(ti_med),
        interval_madm_s: round3(ti_madm),
        interval_skew: round3(ti_skew),
        size_median: round3(ds_med),
        size_madm: round3(ds_madm),
        size_skew: round3(ds_skew),
        size_mode: mode,
        ts_score: round3(ts_score),
        ds_score: round3(ds_score),
        score: round3((ts_score + ds_score) / 2.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_is_a_perfect_beacon() {
        let t: Vec<f64> = (0..12).map(|i| 100.0 + 3.0 * i as f64).collect();
        let s = score(&t, &[517; 12]).unwrap();
        assert_eq!(s.interval_median_s, 3.0);
        assert_eq!((s.interval_madm_s, s.interval_skew), (0.0, 0.0));
        assert_eq!(s.ts_score, 1.0);
        // 517-byte sends: smallness 1 - 517/65535.
        assert_eq!(
            s.ds_score,
            round3((1.0 + 1.0 + (1.0 - 517.0 / 65535.0)) / 3.0)
        );
        assert!(s.score > 0.99);
    }

    #[test]
    fn values_by_hand() {
        // Intervals 10, 10, 20, 40 → sorted 10 10 20 40: Q1 = v[1] = 10,
        // Q2 = v[2] (round 1.5 = 2) = 20, Q3 = v[2] (round 2.25) = 20 → Q2 = Q3: skew 0.
        // |x - 20| = 10 10 0 20 → sorted 0 10 10 20, median v[2] = 10.
        let s = score(&[0.0, 10.0, 20.0, 40.0, 80.0], &[100, 100, 100, 100, 5000]).unwrap();
        assert_eq!(
            (s.interval_median_s, s.interval_madm_s, s.interval_skew),
            (20.0, 10.0, 0.0)
        );
        // count score: 5 / (80 / 10) = 0.625; ts = (1 + (1 - 10/30) + 0.625) / 3.
        assert_eq!(
            s.ts_score,
            round3((1.0 + (1.0 - 10.0 / 30.0) + 0.625) / 3.0)
        );
        assert_eq!(s.size_mode, 100);
    }

    #[test]
    fn skewed_intervals_score_lower() {
        // Q1 = 1, Q2 = 2, Q3 = 9: skew = (1 + 9 - 4) / 8 = 0.75.
        let t = [0.0, 1.0, 2.0, 4.0, 13.0, 14.0, 23.0, 24.0, 34.0];
        let s = score(&t, &[1; 9]).unwrap();
        assert!(s.interval_skew.abs() > 0.3, "{s:?}");
        let even: Vec<f64> = (0..9).map(|i| 4.0 * i as f64).collect();
        assert!(score(&even, &[1; 9]).unwrap().ts_score > s.ts_score);
        assert!(score(&[1.0, 2.0], &[1, 1]).is_none());
    }
}
