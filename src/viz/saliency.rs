//! Where an image tower looks, from the attention maps its forward pass returns.
//!
//! - **ViT — attention rollout** (Abnar & Zuidema, ACL 2020). Each block's attention, averaged
//!   over heads, is mixed with the identity for the residual connection, Â_l = ½·A_l + ½·I
//!   (rows still sum to 1), and the blocks are composed, R = Â_L · … · Â_1. The class token's
//!   row of R over the patch tokens says how much each patch flows into the embedding.
//! - **ModifiedResNet — the attention-pool map**: the pooled query's attention over the last
//!   stage's spatial positions (averaged over heads), which is what forms the embedding.
//!
//! Toward a text, the maps follow the gradient of the cosine similarity `s` between the image
//! and the text embedding:
//!
//! - **ViT — gradient-weighted rollout** (Chefer, Gur & Wolf, ICCV 2021): each block's map
//!   becomes Ā_l = mean_heads( max(0, ∂s/∂A_l ⊙ A_l) ), and the blocks are composed with the
//!   residual as R ← R + Ā_l·R from R = I; the class token's row of R over the patches.
//! - **ModifiedResNet — Grad-CAM** (Selvaraju et al., ICCV 2017) on the last stage's output
//!   X: channel weights w_c = mean over positions of ∂s/∂X_c, map = max(0, Σ_c w_c·X_c).
//!
//! Everything but the forward and backward pass is computed on the host: the maps are small.

use burn::module::Module;
use burn::tensor::Tensor;

use crate::clip::{Clip, Inspect, Probe, VisionTower, host_values, normalize};

/// A saliency grid over the image: `side × side` cells, row-major, scaled so the largest is 1.
#[derive(Clone, Debug, PartialEq)]
pub struct Saliency {
    /// Cells per row and column.
    pub side: usize,
    /// Cell values in [0, 1].
    pub values: Vec<f32>,
}

/// What [`saliency`] computes for `model`'s image tower, in words.
pub fn method_name(model: &Clip) -> &'static str {
    match model.visual {
        VisionTower::Vit(_) => "attention rollout",
        VisionTower::ResNet(_) => "attention-pool map",
    }
}

/// What [`saliency_toward`] computes for `model`'s image tower, in words.
pub fn method_name_toward(model: &Clip) -> &'static str {
    match model.visual {
        VisionTower::Vit(_) => "gradient-weighted rollout",
        VisionTower::ResNet(_) => "Grad-CAM",
    }
}

/// The saliency of each image of `pixels` (`[b, 3, s, s]`, preprocessed) under `model`
/// toward `text`, text embeddings of the same model: `[1, embed]` for every image, or one row
/// per image (see the module doc).
pub fn saliency_toward(model: &Clip, pixels: Tensor<4>, text: Tensor<2>) -> Vec<Saliency> {
    // Gradients need autodiff, but only the probes': the weights' own are not computed.
    let model = model.clone().train().no_grad();
    let output = model.visual.forward(pixels.autodiff(), Inspect::Gradients);
    let batch = output.embeds.dims()[0];
    let similarity = (normalize(output.embeds) * normalize(text.autodiff())).sum();
    let gradients = similarity.backward();
    let host = |probe: &Probe| {
        let dims = probe.value.dims();
        let gradient = probe
            .zero
            .grad(&gradients)
            .map_or_else(|| vec![0.0; dims.iter().product()], host_values);
        (host_values(probe.value.clone().inner()), gradient, dims)
    };
    let probes: Vec<_> = output.probes.iter().map(host).collect();
    (0..batch)
        .map(|image| match &model.visual {
            VisionTower::Vit(_) => {
                let blocks: Vec<Vec<f32>> = probes
                    .iter()
                    .map(|(values, gradient, dims)| {
                        positive_head_mean(values, gradient, *dims, image)
                    })
                    .collect();
                let tokens = probes[0].2[3];
                grid(class_rollout(&blocks, tokens))
            }
            VisionTower::ResNet(_) => {
                let (values, gradient, dims) = &probes[0];
                grid(grad_cam(values, gradient, *dims, image))
            }
        })
        .collect()
}

/// One image's mean over heads of max(0, gradient ⊙ attention): `[queries × keys]`.
fn positive_head_mean(
    values: &[f32],
    gradient: &[f32],
    [_, heads, queries, keys]: [usize; 4],
    image: usize,
) -> Vec<f32> {
    let per_head = queries * keys;
    let start = image * heads * per_head;
    let mut mean = vec![0.0; per_head];
    for head in 0..heads {
        let range = start + head * per_head..start + (head + 1) * per_head;
        for ((m, a), g) in mean
            .iter_mut()
            .zip(&values[range.clone()])
            .zip(&gradient[range])
        {
            *m += (a * g).max(0.0) / heads as f32;
        }
    }
    mean
}

/// Grad-CAM of one image from the last stage's output and its gradient `[b, c, h, w]`:
/// max(0, Σ_c w_c·X_c) with w_c the mean gradient of channel c; `h × w` cells.
fn grad_cam(
    values: &[f32],
    gradient: &[f32],
    [_, channels, h, w]: [usize; 4],
    image: usize,
) -> Vec<f32> {
    let cells = h * w;
    let mut map = vec![0.0f32; cells];
    for channel in 0..channels {
        let start = (image * channels + channel) * cells;
        let activation = &values[start..start + cells];
        let weight = gradient[start..start + cells].iter().sum::<f32>() / cells as f32;
        for (m, x) in map.iter_mut().zip(activation) {
            *m += weight * x;
        }
    }
    map.into_iter().map(|v| v.max(0.0)).collect()
}

/// The saliency of each image of `pixels` (`[b, 3, s, s]`, preprocessed) under `model`.
pub fn saliency(model: &Clip, pixels: Tensor<4>) -> Vec<Saliency> {
    let maps = model.encode_image_with_attention(pixels).attentions;
    let [batch, _, _, _] = maps[0].dims();
    let host: Vec<(Vec<f32>, [usize; 4])> = maps
        .into_iter()
        .map(|map| {
            let dims = map.dims();
            (host_values(map), dims)
        })
        .collect();
    (0..batch)
        .map(|image| {
            let per_block: Vec<Vec<f32>> = host
                .iter()
                .map(|(values, dims)| head_mean(values, *dims, image))
                .collect();
            let [_, _, queries, keys] = host[0].1;
            let cells = match &model.visual {
                VisionTower::Vit(_) => class_rollout(&per_block, keys),
                // One pooled query over [mean token, positions…].
                VisionTower::ResNet(_) => {
                    debug_assert_eq!(queries, 1);
                    per_block[0][1..].to_vec()
                }
            };
            grid(cells)
        })
        .collect()
}

/// One image's attention averaged over heads: `[queries × keys]`, row-major.
fn head_mean(values: &[f32], [_, heads, queries, keys]: [usize; 4], image: usize) -> Vec<f32> {
    let per_head = queries * keys;
    let start = image * heads * per_head;
    let mut mean = vec![0.0; per_head];
    for head in 0..heads {
        let block = &values[start + head * per_head..start + (head + 1) * per_head];
        for (m, v) in mean.iter_mut().zip(block) {
            *m += v / heads as f32;
        }
    }
    mean
}

/// Attention rollout over square `tokens × tokens` maps (first block first); returns the class
/// token's row over the other tokens. With gradient-weighted maps Ā_l it gives the row of
/// R = (I + Ā_L)·…·(I + Ā_1) scaled by 2^−L, which the maps' scaling to a maximum of 1 removes.
pub fn class_rollout(blocks: &[Vec<f32>], tokens: usize) -> Vec<f32> {
    // Only the class token's row of Â_L·…·Â_1 is needed: carry it as a row vector from the
    // last block down (r ← r·Â_l), O(tokens²) per block instead of a full matrix product.
    let mut row = vec![0.0f32; tokens];
    row[0] = 1.0;
    for attention in blocks.iter().rev() {
        let mut next: Vec<f32> = row.iter().map(|r| 0.5 * r).collect();
        for (i, weight) in row.iter().enumerate() {
            let weight = 0.5 * weight;
            let attention_row = &attention[i * tokens..(i + 1) * tokens];
            for (out, a) in next.iter_mut().zip(attention_row) {
                *out += weight * a;
            }
        }
        row = next;
    }
    row[1..tokens].to_vec()
}

/// Patch values as a square grid scaled to a maximum of 1.
fn grid(cells: Vec<f32>) -> Saliency {
    let side = (cells.len() as f64).sqrt().round() as usize;
    assert_eq!(side * side, cells.len(), "the patches form a square grid");
    let max = cells.iter().copied().fold(f32::MIN_POSITIVE, f32::max);
    Saliency {
        side,
        values: cells.into_iter().map(|v| v / max).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_block_of_uniform_attention_spreads_evenly_with_the_residual_share_on_the_class_token() {
        // 1 class token + 4 patches, each token attending uniformly: Â = ½·(1/5) + ½·I.
        let tokens = 5;
        let uniform = vec![0.2; tokens * tokens];
        let row = class_rollout(&[uniform], tokens);
        assert_eq!(row.len(), 4);
        for value in row {
            assert!((value - 0.1).abs() < 1e-6, "{value}");
        }
    }

    #[test]
    fn rollout_composes_blocks_later_block_on_the_left() {
        // Block 1: every token copies patch 1; block 2: every token copies patch 2.
        let tokens = 3;
        let onto = |k: usize| {
            let mut m = vec![0.0; tokens * tokens];
            for i in 0..tokens {
                m[i * tokens + k] = 1.0;
            }
            m
        };
        let row = class_rollout(&[onto(1), onto(2)], tokens);
        // Â2·Â1 for the class token: ½·(patch 2's row of Â1) + ½·(class row of Â1)
        // = ½·(½e1 + ½e2) + ½·(½e0 + ½e1) → patch 1: 0.5, patch 2: 0.25.
        assert!(
            (row[0] - 0.5).abs() < 1e-6 && (row[1] - 0.25).abs() < 1e-6,
            "{row:?}"
        );
    }

    #[test]
    fn grad_cam_weights_channels_by_their_mean_gradient_and_keeps_the_positive_part() {
        // One image, two channels over 1×2 positions: w = (1, −0.5).
        let values = [1.0, 2.0, 3.0, -1.0];
        let gradient = [1.0, 1.0, -1.0, 0.0];
        let map = grad_cam(&values, &gradient, [1, 2, 1, 2], 0);
        assert_eq!(map, vec![0.0, 2.5]);
    }

    #[test]
    fn gradient_weighting_keeps_positive_products_averaged_over_heads() {
        // Two heads of one query over two keys, for the second image of a batch of two.
        let mut values = vec![0.0; 4];
        values.extend([0.5, 0.5, 1.0, 0.0]);
        let mut gradient = vec![9.0; 4];
        gradient.extend([1.0, -1.0, 2.0, 3.0]);
        let mean = positive_head_mean(&values, &gradient, [2, 2, 1, 2], 1);
        assert_eq!(mean, vec![1.25, 0.0]);
    }
}
