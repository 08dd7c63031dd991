//! Retrieval precision@k (Lip paper, Table 2): after forgetting, the class name should no longer
//! pull up pictures of the class (image-from-text), while a picture may still find similar
//! pictures (image-from-image), since that needs no knowledge of the name.

use burn::tensor::Tensor;
use serde::Serialize;

use super::EmbeddedImages;
use crate::clip::{host_values, index_tensor};

/// The ranks at which precision is reported.
pub const RANKS: [usize; 3] = [1, 5, 10];

/// Share of the top-k results that show the queried class, averaged over queries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Precision {
    /// Precision@1.
    pub at_1: f64,
    /// Precision@5.
    pub at_5: f64,
    /// Precision@10.
    pub at_10: f64,
}

impl Precision {
    /// Mean precision over query rows: each row scores every candidate, `relevant` says which
    /// candidates count as hits for that query, and `exclude` removes one candidate (the query
    /// itself in image-from-image retrieval).
    fn over_queries(
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
                *sum += hits as f64 / k as f64;
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
pub fn image_from_text(images: &EmbeddedImages, heads: &Tensor<2>, classes: &[usize]) -> Precision {
    if classes.is_empty() || images.labels.is_empty() {
        return Precision::default();
    }
    let rows = index_tensor(classes, &heads.device());
    let queries = heads.clone().select(0, rows);
    let scores = host_values(queries.matmul(images.embeds.clone().transpose()));
    Precision::over_queries(
        &scores,
        images.labels.len(),
        |query, c| images.labels[c] == classes[query],
        |_| None,
    )
}

/// Image-from-image: up to `per_class` images of each class of `classes` query the whole set
/// (themselves left out); a hit shares the query's label.
pub fn image_from_image(images: &EmbeddedImages, classes: &[usize], per_class: usize) -> Precision {
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
        return Precision::default();
    }
    let rows = index_tensor(&queries, &images.embeds.device());
    let query_embeds = images.embeds.clone().select(0, rows);
    let scores = host_values(query_embeds.matmul(images.embeds.clone().transpose()));
    Precision::over_queries(
        &scores,
        images.labels.len(),
        |query, c| images.labels[c] == images.labels[queries[query]],
        |query| Some(queries[query]),
    )
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
}
