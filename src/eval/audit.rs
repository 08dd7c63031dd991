//! Verdicts an auditor can sign: the recipe's `[audit]` section states criteria ("the target
//! at most 10%", "every other dataset within 3 points"), and each one is judged on the
//! measurements with their 95% intervals. A criterion the whole interval meets **passes**, one
//! the whole interval misses **fails**, and one the interval straddles is **inconclusive**:
//! the pictures measured cannot tell, and the verdict says how many would at the rate seen.
//!
//! The defaults are the bars the method papers' own tables meet: the forgotten class at or
//! below 10% (Lip's and CLIPErase's forgotten classes land near 0), everything kept within
//! 3 points (their "other classes" and "other datasets" columns), the class gone under every
//! single prompt wording, and gone on real pictures the method never saw. The relearning check
//! is off unless asked for: all three papers report that fine-tuning brings a class back.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::interval::{Estimate, Z95, difference, smallest_deciding, wilson};
use super::metrics::Metrics;

/// A threshold of the audit, or `false` to skip that check.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Limit {
    /// The check is not made.
    Off,
    /// The check's threshold (an accuracy, or points of accuracy for `retained_within`).
    At(f64),
}

impl Serialize for Limit {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Limit::Off => serializer.serialize_bool(false),
            Limit::At(value) => serializer.serialize_f64(*value),
        }
    }
}

impl<'de> Deserialize<'de> for Limit {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Flag(bool),
            Number(f64),
        }
        match Raw::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom(
                "expected a number between 0 and 1, or false to skip the check",
            )
        })? {
            Raw::Flag(false) => Ok(Limit::Off),
            Raw::Flag(true) => Err(serde::de::Error::custom(
                "true is not a threshold: give a number between 0 and 1, or false to skip the check",
            )),
            Raw::Number(value) if value.is_finite() && (0.0..=1.0).contains(&value) => {
                Ok(Limit::At(value))
            }
            Raw::Number(value) => Err(serde::de::Error::custom(format!(
                "{value} is not a threshold: give a number between 0 and 1, or false to skip the check"
            ))),
        }
    }
}

/// `[audit]`: the criteria a run is judged by. Keys left out keep their defaults; `false`
/// skips a check.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSection {
    /// Target accuracy after unlearning at most this (images of the forgotten classes in the
    /// forget dataset).
    pub target_at_most: Limit,
    /// Each kept measurement (the forget dataset's other classes, every other dataset) within
    /// this many points (as a fraction: 0.03 = 3 points) of its accuracy before.
    pub retained_within: Limit,
    /// Target accuracy under every single prompt template at most this.
    pub templates_at_most: Limit,
    /// Accuracy on the recipe's `verify` pictures (never trained on) at most this.
    pub verification_at_most: Limit,
    /// Held-out target accuracy after the relearning test's fine-tune at most this.
    pub relearn_at_most: Limit,
}

impl Default for AuditSection {
    fn default() -> Self {
        Self {
            target_at_most: Limit::At(0.10),
            retained_within: Limit::At(0.03),
            templates_at_most: Limit::At(0.10),
            verification_at_most: Limit::At(0.10),
            relearn_at_most: Limit::Off,
        }
    }
}

/// How one check (or a whole audit) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The whole interval meets the criterion.
    Pass,
    /// The whole interval misses it.
    Fail,
    /// The interval straddles the threshold: more pictures are needed.
    Inconclusive,
}

impl Verdict {
    /// The word a report shows.
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "FAIL",
            Verdict::Inconclusive => "inconclusive",
        }
    }

    /// The verdict of several checks: any failure fails, else any doubt is inconclusive.
    pub fn combine(verdicts: impl IntoIterator<Item = Verdict>) -> Verdict {
        verdicts
            .into_iter()
            .fold(Verdict::Pass, |all, one| match (all, one) {
                (Verdict::Fail, _) | (_, Verdict::Fail) => Verdict::Fail,
                (Verdict::Inconclusive, _) | (_, Verdict::Inconclusive) => Verdict::Inconclusive,
                _ => Verdict::Pass,
            })
    }
}

/// One judged criterion.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// Which criterion: `target`, `retained`, `template`, `verification` or `relearn`.
    pub check: String,
    /// What it was measured on (a dataset, a template, the verification set).
    pub subject: String,
    /// The measured quantity: an accuracy, or for `retained` the change after − before.
    pub value: f64,
    /// 95% interval of `value`.
    pub ci_low: f64,
    /// 95% interval of `value`.
    pub ci_high: f64,
    /// Pictures measured.
    pub n: usize,
    /// The criterion as a sentence.
    pub criterion: String,
    /// The verdict.
    pub verdict: Verdict,
    /// For an inconclusive check: the pictures that would decide it if the observed rate held
    /// (`None` when no number would, e.g. the rate equals the threshold).
    pub pictures_to_decide: Option<usize>,
}

/// All the checks of a run and their combined verdict.
#[derive(Clone, Debug, Serialize)]
pub struct Audit {
    /// Pass only if every check passed; fail if any failed; inconclusive otherwise.
    pub verdict: Verdict,
    /// Each check, in the order the section lists them.
    pub checks: Vec<Check>,
}

/// The verdict on an interval, and for an undecided one the pictures that would decide it:
/// `passes` and `fails` state the criterion once, on the measured interval and on the interval
/// `at(n)` that the observed rate would give on `n` pictures.
fn judge(
    interval: (f64, f64),
    at: impl Fn(usize) -> (f64, f64),
    passes: impl Fn((f64, f64)) -> bool,
    fails: impl Fn((f64, f64)) -> bool,
) -> (Verdict, Option<usize>) {
    if passes(interval) {
        (Verdict::Pass, None)
    } else if fails(interval) {
        (Verdict::Fail, None)
    } else {
        let decided = |n: usize| {
            let at_n = at(n);
            passes(at_n) || fails(at_n)
        };
        (Verdict::Inconclusive, smallest_deciding(decided))
    }
}

/// A check that an accuracy is at most `limit`; `what` names the accuracy in the criterion.
pub fn at_most(check: &str, subject: &str, measured: &Estimate, limit: f64, what: &str) -> Check {
    let (verdict, pictures_to_decide) = judge(
        (measured.ci_low, measured.ci_high),
        |n| wilson(measured.value * n as f64, n, Z95),
        |(_, high)| high <= limit,
        |(low, _)| low > limit,
    );
    Check {
        check: check.into(),
        subject: subject.into(),
        value: measured.value,
        ci_low: measured.ci_low,
        ci_high: measured.ci_high,
        n: measured.n,
        criterion: format!("{what} ≤ {:.1}%", limit * 100.0),
        verdict,
        pictures_to_decide,
    }
}

/// A check that an accuracy fell by at most `points` (a fraction) from `before` to `after`.
pub fn within(subject: &str, before: &Estimate, after: &Estimate, points: f64) -> Check {
    let (low, high) = difference(before, after);
    let (verdict, pictures_to_decide) = judge(
        (low, high),
        |n| {
            difference(
                &Estimate::from_rate(before.value, n),
                &Estimate::from_rate(after.value, n),
            )
        },
        |(low, _)| low >= -points,
        |(_, high)| high < -points,
    );
    Check {
        check: "retained".into(),
        subject: subject.into(),
        value: after.value - before.value,
        ci_low: low,
        ci_high: high,
        n: after.n,
        criterion: format!("within {:.1} points of before", points * 100.0),
        verdict,
        pictures_to_decide,
    }
}

impl AuditSection {
    /// Judges the run `m` by every check that is on and was measured (a check whose data the
    /// run did not produce, such as verification without a `verify` set, is left out).
    pub fn judge(&self, m: &Metrics) -> Audit {
        let mut checks = Vec::new();
        let forgotten = m.classes.join(", ");
        if let Limit::At(limit) = self.target_at_most {
            checks.push(at_most(
                "target",
                &forgotten,
                &m.target.after,
                limit,
                "target accuracy",
            ));
        }
        if let Limit::At(points) = self.retained_within {
            for row in &m.datasets {
                if let (Some(before), Some(after)) =
                    (&row.other_classes_before, &row.other_classes_after)
                {
                    let subject = format!("{} (other classes)", row.name);
                    checks.push(within(&subject, before, after, points));
                } else {
                    checks.push(within(&row.name, &row.before, &row.after, points));
                }
            }
        }
        if let Limit::At(limit) = self.templates_at_most {
            for row in &m.templates {
                if let Some(after) = &row.after {
                    checks.push(at_most(
                        "template",
                        &row.template,
                        after,
                        limit,
                        "target under this template",
                    ));
                }
            }
        }
        if let (Limit::At(limit), Some(verification)) =
            (self.verification_at_most, &m.forget_images.verification)
            && let Some(accuracy) = &verification.accuracy
        {
            checks.push(at_most(
                "verification",
                &verification.source,
                &accuracy.after,
                limit,
                "target on pictures never trained on",
            ));
        }
        if let (Limit::At(limit), Some(relearn)) = (self.relearn_at_most, &m.relearn) {
            checks.push(at_most(
                "relearn",
                &format!("{} after {} fine-tuning steps", forgotten, relearn.steps),
                &relearn.target_after,
                limit,
                "target after relearning",
            ));
        }
        Audit {
            verdict: Verdict::combine(checks.iter().map(|c| c.verdict)),
            checks,
        }
    }
}

/// `lethe run` ended with a written result whose audit did not pass: scripts and job arrays
/// gate on the exit code.
#[derive(Debug, thiserror::Error)]
pub enum AuditNotPassed {
    /// At least one check failed.
    #[error("the audit failed: {failed} of {total} check(s) failed (see report.md)")]
    Failed {
        /// Checks that failed.
        failed: usize,
        /// All checks.
        total: usize,
    },
    /// None failed, but some could not be decided on the pictures measured.
    #[error(
        "the audit is inconclusive: {undecided} of {total} check(s) need more pictures (see report.md)"
    )]
    Inconclusive {
        /// Checks that could not be decided.
        undecided: usize,
        /// All checks.
        total: usize,
    },
}

impl AuditNotPassed {
    /// Exit code of a run whose audit failed.
    pub const FAILED_EXIT_CODE: u8 = 3;
    /// Exit code of a run whose audit was inconclusive.
    pub const INCONCLUSIVE_EXIT_CODE: u8 = 4;

    /// What the verdicts of `checks` mean for the exit code: `None` when all passed.
    pub fn from_checks<'a>(checks: impl IntoIterator<Item = &'a Check>) -> Option<Self> {
        let verdicts: Vec<Verdict> = checks.into_iter().map(|c| c.verdict).collect();
        let count = |v: Verdict| verdicts.iter().filter(|&&c| c == v).count();
        let total = verdicts.len();
        match Verdict::combine(verdicts.iter().copied()) {
            Verdict::Pass => None,
            Verdict::Fail => Some(Self::Failed {
                failed: count(Verdict::Fail),
                total,
            }),
            Verdict::Inconclusive => Some(Self::Inconclusive {
                undecided: count(Verdict::Inconclusive),
                total,
            }),
        }
    }

    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Failed { .. } => Self::FAILED_EXIT_CODE,
            Self::Inconclusive { .. } => Self::INCONCLUSIVE_EXIT_CODE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_undecided_on_20_pictures_is_decided_on_400() {
        // 1 of 20 still recognised (5%) against a 10% bar: the interval reaches 24%.
        let few = at_most("target", "star", &Estimate::from_counts(1, 20), 0.10, "t");
        assert_eq!(few.verdict, Verdict::Inconclusive);
        let needed = few.pictures_to_decide.expect("a 5% rate is decidable");
        assert!((100..=400).contains(&needed), "{needed}");
        let many = at_most("target", "star", &Estimate::from_counts(20, 400), 0.10, "t");
        assert_eq!(many.verdict, Verdict::Pass, "{many:?}");
        let bad = at_most(
            "target",
            "star",
            &Estimate::from_counts(120, 400),
            0.10,
            "t",
        );
        assert_eq!(bad.verdict, Verdict::Fail);
    }

    #[test]
    fn a_retained_check_reads_points_of_change() {
        let before = Estimate::from_counts(950, 1000);
        let kept = within("colors", &before, &Estimate::from_counts(945, 1000), 0.03);
        assert_eq!(kept.verdict, Verdict::Pass, "{kept:?}");
        let lost = within("colors", &before, &Estimate::from_counts(850, 1000), 0.03);
        assert_eq!(lost.verdict, Verdict::Fail, "{lost:?}");
        let unsure = within(
            "colors",
            &Estimate::from_counts(19, 20),
            &Estimate::from_counts(18, 20),
            0.03,
        );
        assert_eq!(unsure.verdict, Verdict::Inconclusive);
        assert!(unsure.pictures_to_decide.is_some());
    }

    #[test]
    fn thresholds_are_checked_and_can_be_switched_off() {
        let parse = |text: &str| toml::from_str::<AuditSection>(text);
        let section =
            parse("target_at_most = 0.05\nrelearn_at_most = 0.5\nretained_within = false").unwrap();
        assert_eq!(section.target_at_most, Limit::At(0.05));
        assert_eq!(section.relearn_at_most, Limit::At(0.5));
        assert_eq!(section.retained_within, Limit::Off);
        assert_eq!(section.templates_at_most, Limit::At(0.10));
        assert_eq!(
            toml::from_str::<AuditSection>(&toml::to_string(&section).unwrap()).unwrap(),
            section
        );
        for bad in [
            "target_at_most = 1.5",
            "target_at_most = true",
            "target_at_most = \"low\"",
            "target_at_most = nan",
        ] {
            let message = parse(bad).unwrap_err().to_string();
            assert!(
                message.contains("target_at_most") && message.contains("between 0 and 1"),
                "{bad}: {message}"
            );
        }
        assert!(
            parse("target_at_mots = 0.1")
                .unwrap_err()
                .to_string()
                .contains("target_at_mots")
        );
    }

    #[test]
    fn verdicts_combine_worst_first() {
        use Verdict::*;
        assert_eq!(Verdict::combine([Pass, Pass]), Pass);
        assert_eq!(Verdict::combine([Pass, Inconclusive]), Inconclusive);
        assert_eq!(Verdict::combine([Inconclusive, Fail, Pass]), Fail);
        assert_eq!(Verdict::combine([]), Pass);
    }
}
