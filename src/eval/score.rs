//! The Avg Score of "Zero-Shot Class Unlearning in CLIP with Synthetic Samples": one number
//! for how well a class was forgotten and how little else was lost (lower is better).

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

    #[test]
    fn perfect_forgetting_with_nothing_lost_scores_zero() {
        assert_eq!(avg_score(ba(0.9, 0.0), &[ba(0.5, 0.6), ba(0.7, 0.7)]), 0.0);
        assert_eq!(avg_score(ba(0.9, 0.9), &[]), 1.0);
    }
}
