//! One-number summaries of an unlearning run: the Avg Score of "Zero-Shot Class Unlearning in
//! CLIP with Synthetic Samples" (lower is better) and the Score of "Targeted Forgetting of
//! Image Subgroups in CLIP Models" (0–100, higher is better). Both weigh how much of the
//! target is gone against how much of everything else is left.

/// An accuracy before (BF) and after (AF) unlearning.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BeforeAfter {
    /// Accuracy before.
    pub before: f64,
    /// Accuracy after.
    pub after: f64,
}

impl BeforeAfter {
    /// The fraction of the accuracy that was lost, or 0 if none was (gains do not offset
    /// losses elsewhere); 0 when there was nothing to lose.
    fn relative_loss(self) -> f64 {
        if self.before <= 0.0 {
            0.0
        } else {
            ((self.before - self.after) / self.before).max(0.0)
        }
    }
}

/// `(AF_target/BF_target + Σ max(0, (BF−AF)/BF)) / (N+1)` over the `kept` measurements (the
/// other classes of the target's dataset and each other dataset, N in all): the share of the
/// target that survives, averaged with the share of everything else that was lost.
pub fn avg_score(target: BeforeAfter, kept: &[BeforeAfter]) -> f64 {
    let remaining = if target.before <= 0.0 {
        0.0
    } else {
        target.after / target.before
    };
    let lost: f64 = kept.iter().map(|k| k.relative_loss()).sum();
    (remaining + lost) / (kept.len() + 1) as f64
}

/// The subgroup paper's Score, 0–100:
///
/// ```text
/// Score = 100 × mean( 1 − AF_target/BF_target,  min(1, AF_x/BF_x) for x in kept )
/// ```
///
/// `kept` holds the sibling subgroups ("Retain"), the whole dataset ("All") and each other
/// dataset, in any order. A kept set that gained counts as fully kept (the `min`), so gains
/// cannot hide a loss elsewhere; a set with nothing to lose (BF = 0) counts as kept, and a
/// target with nothing to forget as forgotten.
pub fn subgroup_score(target: BeforeAfter, kept: &[BeforeAfter]) -> f64 {
    let share = |after: f64, before: f64| {
        if before <= 0.0 {
            1.0
        } else {
            (after / before).min(1.0)
        }
    };
    let forgotten = 1.0 - share(target.after, target.before);
    let kept_sum: f64 = kept.iter().map(|k| share(k.after, k.before)).sum();
    100.0 * (forgotten + kept_sum) / (kept.len() + 1) as f64
}

/// One measured set of the Avg Score: whether each picture was classified correctly before
/// and after the edit (the same pictures, in the same order, both times).
pub struct PairedHits {
    /// Before unlearning.
    pub before: Vec<bool>,
    /// After unlearning.
    pub after: Vec<bool>,
}

impl PairedHits {
    fn accuracy_of(hits: &[bool], draws: &[usize]) -> f64 {
        draws.iter().filter(|&&i| hits[i]).count() as f64 / draws.len() as f64
    }
}

/// Bootstrap resamples behind the Avg Score's interval: enough for stable 2.5% and 97.5%
/// quantiles, a fraction of a second for tens of thousands of pictures.
pub const RESAMPLES: usize = 1000;

/// A 95% percentile-bootstrap interval of the Avg Score over pictures: each resample draws
/// every measured set's pictures with replacement (the same draws before and after, since the
/// same pictures were measured twice) and recomputes the score. Seeded, so a run reports the
/// same interval every time. `None` when the target has no pictures or the two measurements
/// of a set disagree in size.
pub fn avg_score_interval(
    target: &PairedHits,
    kept: &[PairedHits],
    seed: u64,
) -> Option<(f64, f64)> {
    let sets: Vec<&PairedHits> = std::iter::once(target)
        .chain(kept.iter().filter(|set| !set.before.is_empty()))
        .collect();
    if target.before.is_empty() || sets.iter().any(|s| s.before.len() != s.after.len()) {
        return None;
    }
    let mut rng = crate::data::shapes::Rng::new(seed);
    let mut scores: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            let mut measured = sets.iter().map(|set| {
                let draws: Vec<usize> = (0..set.before.len())
                    .map(|_| rng.below(set.before.len()))
                    .collect();
                BeforeAfter {
                    before: PairedHits::accuracy_of(&set.before, &draws),
                    after: PairedHits::accuracy_of(&set.after, &draws),
                }
            });
            let target = measured.next().expect("the target is the first set");
            let kept: Vec<BeforeAfter> = measured.collect();
            avg_score(target, &kept)
        })
        .collect();
    scores.sort_by(f64::total_cmp);
    let at = |q: f64| scores[((RESAMPLES - 1) as f64 * q).round() as usize];
    Some((at(0.025), at(0.975)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ba(before: f64, after: f64) -> BeforeAfter {
        BeforeAfter { before, after }
    }

    /// Rows of the paper's Table 4 (ResNet encoder): target class, other classes of the same
    /// dataset, then the other datasets, each before → after, and the published Avg Score.
    #[test]
    fn reproduces_the_papers_table_4_rows() {
        let rows: [(&str, BeforeAfter, Vec<BeforeAfter>, f64); 4] = [
            (
                "Lip, StanfordDogs, Pekinese",
                ba(0.705, 0.066),
                vec![
                    ba(0.515, 0.514),
                    ba(0.558, 0.559),
                    ba(0.857, 0.867),
                    ba(0.661, 0.658),
                ],
                0.02,
            ),
            (
                "Lip, StanfordCars, 2009 Spyker C8 Coupe",
                ba(0.262, 0.024),
                vec![
                    ba(0.559, 0.553),
                    ba(0.517, 0.518),
                    ba(0.857, 0.865),
                    ba(0.661, 0.66),
                ],
                0.021,
            ),
            (
                "Lip, OxfordFlowers, gazania",
                ba(0.957, 0.0),
                vec![
                    ba(0.658, 0.649),
                    ba(0.558, 0.559),
                    ba(0.517, 0.513),
                    ba(0.857, 0.869),
                ],
                0.004,
            ),
            (
                "Emb, StanfordDogs, Pekinese",
                ba(0.705, 0.361),
                vec![
                    ba(0.515, 0.484),
                    ba(0.558, 0.559),
                    ba(0.857, 0.84),
                    ba(0.661, 0.633),
                ],
                0.127,
            ),
        ];
        for (name, target, kept, published) in rows {
            let score = avg_score(target, &kept);
            assert!(
                (score - published).abs() < 0.0015,
                "{name}: {score:.4}, paper {published}"
            );
        }
    }

    /// Rows of the subgroup paper's tables (ImageNet-1K subgroups, percentages): Target, then
    /// Retain, ImageNet All, CIFAR, Food, STL and ObjectNet, each before → after, and the
    /// published Score. The "before" row is the paper's Original row for that backbone.
    #[test]
    fn reproduces_the_subgroup_papers_score_rows() {
        let rn50 = [51.0, 54.7, 59.8, 70.4, 60.9, 92.0, 68.9];
        let rows: [(&str, [f64; 7], [f64; 7], f64); 4] = [
            (
                "RN50 marmoset, Ours",
                rn50,
                [0.0, 50.2, 54.5, 85.7, 62.9, 81.5, 45.2],
                91.0,
            ),
            (
                "RN50 marmoset, GA",
                rn50,
                [0.0, 0.9, 32.2, 16.4, 22.9, 63.3, 22.1],
                45.3,
            ),
            (
                "RN50 marmoset, EMMN",
                rn50,
                [0.0, 56.7, 28.4, 13.1, 20.4, 54.9, 20.5],
                55.6,
            ),
            (
                "RN50 marmoset, LIP",
                rn50,
                [0.7, 0.2, 1.3, 10.7, 0.2, 10.3, 1.6],
                18.6,
            ),
        ];
        for (name, before, after, published) in rows {
            let kept: Vec<BeforeAfter> = (1..7).map(|i| ba(before[i], after[i])).collect();
            let score = subgroup_score(ba(before[0], after[0]), &kept);
            assert!(
                (score - published).abs() < 0.06,
                "{name}: {score:.2}, paper {published}"
            );
        }
    }

    #[test]
    fn the_subgroup_score_caps_gains_and_rewards_only_forgetting_with_keeping() {
        // Everything kept, target gone: 100. Nothing forgotten, everything kept: 100·n/(n+1).
        assert_eq!(subgroup_score(ba(0.8, 0.0), &[ba(0.5, 0.5)]), 100.0);
        assert_eq!(subgroup_score(ba(0.8, 0.8), &[ba(0.5, 0.5)]), 50.0);
        // A gain on one kept set does not offset a loss on another.
        let with_gain = subgroup_score(ba(0.8, 0.0), &[ba(0.5, 0.25), ba(0.5, 1.0)]);
        assert!((with_gain - 100.0 * 2.5 / 3.0).abs() < 1e-9, "{with_gain}");
    }

    #[test]
    fn perfect_forgetting_with_nothing_lost_scores_zero() {
        assert_eq!(avg_score(ba(0.9, 0.0), &[ba(0.5, 0.6), ba(0.7, 0.7)]), 0.0);
        assert_eq!(avg_score(ba(0.9, 0.9), &[]), 1.0);
    }

    #[test]
    fn the_bootstrap_interval_holds_the_score_and_narrows_with_more_pictures() {
        let set = |n: usize, before: usize, after: usize| PairedHits {
            before: (0..n).map(|i| i < before).collect(),
            after: (0..n).map(|i| i < after).collect(),
        };
        let expected = avg_score(ba(0.9, 0.1), &[ba(0.8, 0.75)]);
        let small = avg_score_interval(&set(20, 18, 2), &[set(20, 16, 15)], 7).unwrap();
        let large = avg_score_interval(&set(2000, 1800, 200), &[set(2000, 1600, 1500)], 7).unwrap();
        for (low, high) in [small, large] {
            assert!(low <= expected && expected <= high, "{low} {high}");
        }
        assert!(
            large.1 - large.0 < (small.1 - small.0) / 4.0,
            "{small:?} {large:?}"
        );
        assert_eq!(
            avg_score_interval(&set(20, 18, 2), &[set(20, 16, 15)], 7).unwrap(),
            small
        );
        assert_eq!(avg_score_interval(&set(0, 0, 0), &[], 7), None);
    }
}
