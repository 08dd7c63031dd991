//! The training losses: CLIP's symmetric contrastive loss and plain cross-entropy.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};

/// Mean cross-entropy of `logits` `[n, classes]` against class indices `labels` `[n]`.
pub fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    -log_softmax(logits, 1)
        .gather(1, labels.unsqueeze_dim(1))
        .mean()
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
}
