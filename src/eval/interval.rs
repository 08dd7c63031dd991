//! How sure a measured accuracy is. An accuracy on 40 pictures and one on 4,000 can print the
//! same number; an auditor needs to know which one can carry a signature. Every accuracy Lethe
//! reports is an [`Estimate`]: the observed rate, the number of pictures, and a 95% Wilson score
//! interval, which unlike the textbook normal interval stays inside [0, 1] and keeps its
//! coverage at rates near 0 and 1 (exactly where a forgotten class lands).

use serde::Serialize;

/// The standard normal quantile of a two-sided 95% interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// An accuracy with its sample size and 95% Wilson score interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Estimate {
    /// The observed fraction.
    pub value: f64,
    /// Pictures it was measured on (0: nothing was measured, and the interval is [0, 1]).
    pub n: usize,
    /// Lower end of the 95% interval.
    pub ci_low: f64,
    /// Upper end of the 95% interval.
    pub ci_high: f64,
}

impl Estimate {
    /// `hits` correct out of `n`.
    pub fn from_counts(hits: usize, n: usize) -> Self {
        let (ci_low, ci_high) = wilson(hits as f64, n, Z95);
        Self {
            value: if n == 0 { 0.0 } else { hits as f64 / n as f64 },
            n,
            ci_low,
            ci_high,
        }
    }

    /// An observed `rate` on `n` pictures (the count of hits is recovered by rounding, exact
    /// for any rate that was itself computed as hits / n).
    pub fn from_rate(rate: f64, n: usize) -> Self {
        Self::from_counts((rate * n as f64).round() as usize, n)
    }

    /// Whether the interval is as wide as it can be, i.e. nothing was measured.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
}

/// The Wilson score interval of `hits` successes in `n` trials at normal quantile `z`:
/// `(p + z²/2n ± z·sqrt(p(1−p)/n + z²/4n²)) / (1 + z²/n)`. With no trials it is [0, 1].
pub fn wilson(hits: f64, n: usize, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let n = n as f64;
    let p = hits / n;
    let z2 = z * z;
    let centre = p + z2 / (2.0 * n);
    let spread = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    let scale = 1.0 + z2 / n;
    // At p = 0 or 1 one end equals p exactly; rounding must not put p outside its interval.
    (
        ((centre - spread) / scale).clamp(0.0, p),
        ((centre + spread) / scale).clamp(p, 1.0),
    )
}

/// A 95% interval for `after − before` from the two accuracies' Wilson intervals (Newcombe's
/// hybrid score method, his method 10). It treats the two as independent samples; when both
/// were measured on the same pictures (before and after an edit) the true interval is
/// narrower, so this one errs on the side of "not sure yet".
pub fn difference(before: &Estimate, after: &Estimate) -> (f64, f64) {
    let delta = after.value - before.value;
    let low = delta
        - ((after.value - after.ci_low).powi(2) + (before.ci_high - before.value).powi(2)).sqrt();
    let high = delta
        + ((after.ci_high - after.value).powi(2) + (before.value - before.ci_low).powi(2)).sqrt();
    (low, high)
}

/// Fewest pictures `n` for which `decided(n)` holds, assuming that once a sample size decides
/// a question every larger one does (intervals only narrow as `n` grows); `None` when even ten
/// million would not (a rate exactly at the threshold). An auditor reads it as "measure this
/// many to decide".
pub fn smallest_deciding(decided: impl Fn(usize) -> bool) -> Option<usize> {
    const MOST: usize = 10_000_000;
    if !decided(MOST) {
        return None;
    }
    let (mut lo, mut hi) = (1usize, MOST);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if decided(mid) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Some(lo)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: (f64, f64), b: (f64, f64)) -> bool {
        (a.0 - b.0).abs() < 5e-5 && (a.1 - b.1).abs() < 5e-5
    }

    /// Worked examples of Newcombe (1998), "Two-sided confidence intervals for the single
    /// proportion", Table I, method 3 (Wilson score, no continuity correction).
    #[test]
    fn wilson_matches_newcombes_published_intervals() {
        let cases = [
            ((81.0, 263), (0.2553, 0.3662)),
            ((15.0, 148), (0.0624, 0.1605)),
            ((0.0, 20), (0.0, 0.1611)),
            ((1.0, 29), (0.0061, 0.1718)),
        ];
        for ((hits, n), expected) in cases {
            let got = wilson(hits, n, Z95);
            assert!(
                close(got, expected),
                "{hits}/{n}: {got:?}, published {expected:?}"
            );
        }
        assert_eq!(wilson(0.0, 0, Z95), (0.0, 1.0));
        for n in 1..200 {
            assert_eq!(wilson(0.0, n, Z95).0, 0.0, "{n}");
            assert_eq!(wilson(n as f64, n, Z95).1, 1.0, "{n}");
        }
        let all = wilson(20.0, 20, Z95);
        assert!((all.0 - 0.8389).abs() < 5e-5 && all.1 == 1.0, "{all:?}");
    }

    /// Newcombe (1998), "Interval estimation for the difference between independent
    /// proportions", Table II, example (a): 56/70 − 48/80, method 10 gives 0.0524 to 0.3339.
    #[test]
    fn difference_matches_newcombes_method_10() {
        let first = Estimate::from_counts(56, 70);
        let second = Estimate::from_counts(48, 80);
        let (low, high) = difference(&second, &first);
        assert!(
            (low - 0.0524).abs() < 5e-4 && (high - 0.3339).abs() < 5e-4,
            "{low} {high}"
        );
    }

    #[test]
    fn more_pictures_decide_what_fewer_cannot() {
        // 2 of 20 (10%) against a 20% threshold: 20 pictures cannot tell, the count asked
        // for can, and one fewer cannot.
        assert!(Estimate::from_counts(2, 20).ci_high > 0.2);
        let below = |n: usize| Estimate::from_rate(0.1, n).ci_high < 0.2;
        let needed = smallest_deciding(below).unwrap();
        assert!(needed > 20 && needed < 200, "{needed}");
        assert!(below(needed) && !below(needed - 1));
        assert_eq!(smallest_deciding(|_| false), None);
    }
}
