//! The training losses: CLIP's symmetric contrastive loss and plain and weighted cross-entropy.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};

/// Mean cross-entropy of `logits` `[n, classes]` against class indices `labels` `[n]`.
pub fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    -log_softmax(logits, 1)
        .gather(1, labels.unsqueeze_dim(1))
        .mean()
}

/// Cross-entropy with each row weighted by `weights` (`[n]`), normalised by their sum: a
/// class-balanced loss gives every class the same say however many pictures it has.
pub fn weighted_cross_entropy(
    logits: Tensor<2>,
    labels: Tensor<1, Int>,
    weights: Tensor<1>,
) -> Tensor<1> {
    let total = weights.clone().sum();
    let picked = log_softmax(logits, 1)
        .gather(1, labels.unsqueeze_dim(1))
        .squeeze_dim::<1>(1);
    -(picked * weights).sum() / total
}

/// The InfoNCE loss over a square logit matrix whose matching pairs lie on the diagonal:
/// the mean of the image-to-text and text-to-image cross-entropies.
pub fn contrastive_loss(logits: Tensor<2>) -> Tensor<1> {
    let [n, _] = logits.dims();
    let diagonal = Tensor::<2>::eye(n, &logits.device());
    let image_to_text = log_softmax(logits.clone(), 1) * diagonal.clone();
    let text_to_image = log_softmax(logits, 0) * diagonal;
    (image_to_text.sum() + text_to_image.sum()) * (-0.5 / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn matches_the_cross_entropy_written_out() {
        let device = Device::flex();
        let values = vec![2.0f32, 0.5, -1.0, 0.0, 1.5, 0.3, -0.2, 0.8, 3.0];
        let logits = Tensor::<2>::from_data(TensorData::new(values.clone(), [3, 3]), &device);
        let loss = crate::clip::host_values(contrastive_loss(logits))[0];
        let at = |r: usize, c: usize| values[r * 3 + c];
        let mut expected = 0.0f32;
        for i in 0..3 {
            let row: f32 = (0..3).map(|j| at(i, j).exp()).sum::<f32>().ln();
            let col: f32 = (0..3).map(|j| at(j, i).exp()).sum::<f32>().ln();
            expected += (row - at(i, i)) + (col - at(i, i));
        }
        expected /= 6.0;
        assert!((loss - expected).abs() < 1e-5, "{loss} vs {expected}");
    }

    #[test]
    fn weighted_cross_entropy_weighs_each_row() {
        let device = Device::flex();
        let values = vec![2.0f32, 0.5, -1.0, 0.0, 1.5, 0.3];
        let logits = || Tensor::<2>::from_data(TensorData::new(values.clone(), [2, 3]), &device);
        let labels = || Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 2], [2]), &device);
        let weights = |w: Vec<f32>| Tensor::<1>::from_data(TensorData::new(w, [2]), &device);
        let value = |t: Tensor<1>| crate::clip::host_values(t)[0];
        let row_loss = |r: usize, label: usize| {
            let row = &values[r * 3..r * 3 + 3];
            row.iter().map(|v| v.exp()).sum::<f32>().ln() - row[label]
        };
        // Equal weights: the plain cross-entropy.
        let equal = value(weighted_cross_entropy(
            logits(),
            labels(),
            weights(vec![3.0, 3.0]),
        ));
        assert!((equal - value(cross_entropy(logits(), labels()))).abs() < 1e-6);
        // Weights 1 and 3: the second row counts three times.
        let weighted = value(weighted_cross_entropy(
            logits(),
            labels(),
            weights(vec![1.0, 3.0]),
        ));
        let expected = (row_loss(0, 0) + 3.0 * row_loss(1, 2)) / 4.0;
        assert!(
            (weighted - expected).abs() < 1e-5,
            "{weighted} vs {expected}"
        );
    }
}
