//! Retrieval after forgetting. Precision@k (Lip paper, Table 2): the class name should no
//! longer pull up pictures of the class (image-from-text), while a picture may still find
//! similar pictures (image-from-image), since that needs no knowledge of the name. Recall@k
//! of image–caption pairs (CLIPErase): a forgotten picture should no longer find its caption
//! nor the caption its picture, while pairs of everything else still do.

use burn::tensor::Tensor;
use serde::Serialize;

use super::EmbeddedImages;
use crate::clip::{host_values, index_tensor};

/// The ranks at which precision is reported.
pub const RANKS: [usize; 3] = [1, 5, 10];

/// A retrieval measure at ranks 1, 5 and 10, averaged over queries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct AtRanks {
    /// At rank 1.
    pub at_1: f64,
    /// At rank 5.
    pub at_5: f64,
    /// At rank 10.
    pub at_10: f64,
}

/// What a query's top k results are worth.
#[derive(Clone, Copy)]
enum Measure {
    /// Share of the top k that are hits (divided by k even when fewer candidates exist).
    Precision,
    /// 1 when any of the top k is a hit.
    Recall,
}

impl AtRanks {
    /// `measure` averaged over query rows: each row scores every candidate, `relevant` says
    /// which candidates count as hits for that query, and `exclude` removes one candidate (the
    /// query itself in image-from-image retrieval).
    fn over_queries(
        measure: Measure,
        scores: &[f32],
        candidates: usize,
        relevant: impl Fn(usize, usize) -> bool,
        exclude: impl Fn(usize) -> Option<usize>,
    ) -> Self {
        let rows: Vec<&[f32]> = scores.chunks(candidates.max(1)).collect();
        if rows.is_empty() || candidates == 0 {
            return Self::default();
        }
        let mut sums = [0.0f64; 3];
        for (query, row) in rows.iter().enumerate() {
            let mut order: Vec<usize> = (0..candidates)
                .filter(|&c| exclude(query) != Some(c))
                .collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
            for (sum, k) in sums.iter_mut().zip(RANKS) {
                let top = &order[..k.min(order.len())];
                let hits = top.iter().filter(|&&c| relevant(query, c)).count();
                *sum += match measure {
                    Measure::Precision => hits as f64 / k as f64,
                    Measure::Recall => f64::from(u8::from(hits > 0)),
                };
            }
        }
        let n = rows.len() as f64;
        Self {
            at_1: sums[0] / n,
            at_5: sums[1] / n,
            at_10: sums[2] / n,
        }
    }
}

/// Image-from-text: each class of `classes` queries with its class embedding (a row of
/// `heads`); a hit is an image labelled with that class.
pub fn image_from_text(images: &EmbeddedImages, heads: &Tensor<2>, classes: &[usize]) -> AtRanks {
    if classes.is_empty() || images.labels.is_empty() {
        return AtRanks::default();
    }
    let rows = index_tensor(classes, &heads.device());
    let queries = heads.clone().select(0, rows);
    let scores = host_values(queries.matmul(images.embeds.clone().transpose()));
    AtRanks::over_queries(
        Measure::Precision,
        &scores,
        images.labels.len(),
        |query, c| images.labels[c] == classes[query],
        |_| None,
    )
}

/// Image-from-image: up to `per_class` images of each class of `classes` query the whole set
/// (themselves left out); a hit shares the query's label.
pub fn image_from_image(images: &EmbeddedImages, classes: &[usize], per_class: usize) -> AtRanks {
    let queries: Vec<usize> = classes
        .iter()
        .flat_map(|&class| {
            images
                .labels
                .iter()
                .enumerate()
                .filter(move |(_, l)| **l == class)
                .map(|(i, _)| i)
                .take(per_class)
        })
        .collect();
    if queries.is_empty() {
        return AtRanks::default();
    }
    let rows = index_tensor(&queries, &images.embeds.device());
    let query_embeds = images.embeds.clone().select(0, rows);
    let scores = host_values(query_embeds.matmul(images.embeds.clone().transpose()));
    AtRanks::over_queries(
        Measure::Precision,
        &scores,
        images.labels.len(),
        |query, c| images.labels[c] == images.labels[queries[query]],
        |query| Some(queries[query]),
    )
}

/// Recall@k of image–caption pairs, both ways.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct PairRecall {
    /// Each picture finds its caption among the set's captions.
    pub image_to_text: AtRanks,
    /// Each caption finds its picture among the set's pictures.
    pub text_to_image: AtRanks,
    /// Number of pairs.
    pub pairs: usize,
}

/// Pair recall within one set: row `i` of `images` (`[n, embed]`, normalised) shows what
/// `captions[i]` says and row `i` of `texts` embeds it. A result is a hit when its caption
/// reads exactly like the query's, so duplicate captions (common in templated ones) do not
/// count as misses.
pub fn pair_recall(images: &Tensor<2>, texts: &Tensor<2>, captions: &[String]) -> PairRecall {
    let n = captions.len();
    if n == 0 {
        return PairRecall::default();
    }
    let scores = host_values(images.clone().matmul(texts.clone().transpose()));
    let transposed: Vec<f32> = (0..n * n).map(|i| scores[(i % n) * n + i / n]).collect();
    let same = |query: usize, c: usize| captions[query] == captions[c];
    PairRecall {
        image_to_text: AtRanks::over_queries(Measure::Recall, &scores, n, same, |_| None),
        text_to_image: AtRanks::over_queries(Measure::Recall, &transposed, n, same, |_| None),
        pairs: n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn embedded(rows: &[[f32; 2]], labels: &[usize]) -> EmbeddedImages {
        let device = Device::flex();
        let values: Vec<f32> = rows.iter().flatten().copied().collect();
        EmbeddedImages {
            embeds: Tensor::from_data(TensorData::new(values, [rows.len(), 2]), &device),
            labels: labels.to_vec(),
            items: (0..rows.len()).collect(),
            skipped: 0,
        }
    }

    #[test]
    fn precision_counts_hits_among_the_top_results() {
        // Class 0 points right, class 1 points up; one class-1 image leans right.
        let images = embedded(
            &[[1.0, 0.0], [0.9, 0.1], [0.8, 0.6], [0.0, 1.0], [0.1, 0.9]],
            &[0, 0, 1, 1, 1],
        );
        let heads = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, 0.0, 0.0, 1.0], [2, 2]),
            &Device::flex(),
        );
        let right = image_from_text(&images, &heads, &[0]);
        assert_eq!(right.at_1, 1.0);
        // Top 5 of 5 images: 2 of class 0.
        assert!((right.at_5 - 2.0 / 5.0).abs() < 1e-9);
        // At 10 only 5 candidates exist, still divided by 10 (as precision@k is defined).
        assert!((right.at_10 - 2.0 / 10.0).abs() < 1e-9);
        let up = image_from_image(&images, &[1], 2);
        // Query 2 ([0.8, 0.6]) finds image 0 (class 0) first; query 3 finds image 4 (class 1).
        assert!((up.at_1 - 0.5).abs() < 1e-9, "{up:?}");
    }

    #[test]
    fn pair_recall_finds_captions_and_counts_duplicates_as_hits() {
        let device = Device::flex();
        let matrix = |rows: &[[f32; 2]]| {
            let values: Vec<f32> = rows.iter().flatten().copied().collect();
            Tensor::<2>::from_data(TensorData::new(values, [rows.len(), 2]), &device)
        };
        // Picture 0 matches text 0; picture 1 lies closer to text 2 than to its own text 1;
        // texts 1 and 2 read the same, so that is still a hit; picture 2 matches text 0 best.
        let images = matrix(&[[1.0, 0.0], [0.0, 1.0], [0.9, 0.1]]);
        let texts = matrix(&[[1.0, 0.0], [0.1, 0.9], [0.0, 1.0]]);
        let captions = ["a star", "a red heart", "a red heart"].map(String::from);
        let recall = pair_recall(&images, &texts, &captions);
        assert!(
            (recall.image_to_text.at_1 - 2.0 / 3.0).abs() < 1e-9,
            "{recall:?}"
        );
        assert_eq!(recall.image_to_text.at_5, 1.0);
        // Text 0 finds picture 0; texts 1 and 2 find picture 1.
        assert_eq!(recall.text_to_image.at_1, 1.0);
        assert_eq!(recall.pairs, 3);
    }
}
