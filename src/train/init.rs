//! Random initialisation of a model trained from scratch, following CLIP's own scheme and
//! drawn from Lethe's seeded generator so a given seed gives the same model on every backend.

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};

use crate::clip::Clip;
use crate::clip::weights::{Bind, Format, Layout, ParamVisitor};
use crate::data::shapes::Rng;

/// The initial value of a parameter, decided from its open_clip key and on-disk shape.
enum Init {
    Constant(f32),
    Normal(f32),
    /// Fixed 2-D sine–cosine positions (class token row zero), see [`sincos_positions`].
    SinCos2d,
    /// `gain · I` plus small noise, for the square attention matrices of a ViT.
    Mimetic(f32),
}

/// Mimetic initialisation (Trockman & Kolter, "Mimetic Initialization of Self-Attention
/// Layers", ICML 2023): trained ViTs have W_q·W_kᵀ ≈ +I and W_v·W_o ≈ −I, and starting there,
/// with 2-D sine–cosine positions, gives attention that begins local and content-aware, as a
/// convolution's receptive field does. It only changes the starting values, so the model stays
/// an ordinary ViT; on small data it trains much faster. Gains are √0.7 for W_q and W_k (their
/// product ≈ 0.7·I) and ±√0.4 for W_v and W_o (product ≈ −0.4·I), the paper's settings.
const QUERY_KEY_GAIN: f32 = 0.836_66; // √0.7
const VALUE_OUT_GAIN: f32 = 0.632_455_5; // √0.4
/// Standard deviation (times 1/√width) of the noise added to the mimetic identity.
const MIMETIC_NOISE: f32 = 0.5;

/// CLIP's initialisation: unit/zero norms (residual batch norms start at zero so each
/// bottleneck starts as the identity), small embeddings, and fan-in scaled matrices; a ViT
/// image tower starts from mimetic attention and sine–cosine positions instead. `part` is the
/// index within a fused tensor (query, key, value).
fn rule(key: &str, disk_shape: &[usize], part: Option<usize>) -> Init {
    let last = key.rsplit('.').next().unwrap_or(key);
    let vit_attention = key.starts_with("visual.transformer.") && key.contains(".attn.");
    match (last, disk_shape.len()) {
        ("positional_embedding", 2) if key == "visual.positional_embedding" => Init::SinCos2d,
        ("in_proj_weight", _) if vit_attention => match part {
            Some(0 | 1) => Init::Mimetic(QUERY_KEY_GAIN),
            _ => Init::Mimetic(VALUE_OUT_GAIN),
        },
        ("weight", 2) if vit_attention && key.ends_with("out_proj.weight") => {
            Init::Mimetic(-VALUE_OUT_GAIN)
        }
        ("logit_scale", _) => Init::Constant((1.0f32 / 0.07).ln()),
        ("running_var", _) => Init::Constant(1.0),
        ("running_mean", _) => Init::Constant(0.0),
        ("weight", 1) if key.contains(".layer") && key.ends_with(".bn3.weight") => {
            Init::Constant(0.0)
        }
        // Every 1-D weight is a norm's scale.
        ("weight", 1) => Init::Constant(1.0),
        (_, 1) if last.ends_with("bias") => Init::Constant(0.0),
        ("weight", 2) if key.ends_with("token_embedding.weight") => Init::Normal(0.02),
        ("positional_embedding", _) if !key.starts_with("visual.") => Init::Normal(0.01),
        ("positional_embedding" | "class_embedding", _) => {
            Init::Normal((*disk_shape.last().unwrap_or(&1) as f32).powf(-0.5))
        }
        // Convolutions `[out, in, k, k]`: He initialisation for the ReLU that follows.
        (_, 4) => {
            let fan_in: usize = disk_shape[1..].iter().product();
            Init::Normal((2.0 / fan_in as f32).sqrt())
        }
        // Projections stored `[in, out]` (open_clip `proj`, `text_projection`).
        ("proj" | "text_projection", 2) => Init::Normal((disk_shape[0] as f32).powf(-0.5)),
        // PyTorch linear layers `[out, in]`.
        (_, 2) => Init::Normal((disk_shape[1] as f32).powf(-0.5)),
        _ => Init::Normal(0.02),
    }
}

struct Initializer<'a> {
    rng: Rng,
    device: &'a Device,
}

impl Initializer<'_> {
    fn tensor<const D: usize>(
        &mut self,
        key: &str,
        lethe_dims: &[usize],
        layout: Layout,
        part: Option<usize>,
    ) -> Tensor<D> {
        let disk = layout.disk_shape(lethe_dims);
        let count: usize = disk.iter().product();
        let values: Vec<f32> = match rule(key, &disk, part) {
            Init::Constant(c) => vec![c; count],
            Init::Normal(std) => (0..count).map(|_| self.rng.normal() * std).collect(),
            Init::SinCos2d => sincos_positions(disk[0], disk[1]),
            Init::Mimetic(gain) => {
                let width = disk[1];
                let std = MIMETIC_NOISE / (width as f32).sqrt();
                (0..count)
                    .map(|i| {
                        let diagonal = if i / width == i % width { gain } else { 0.0 };
                        diagonal + self.rng.normal() * std
                    })
                    .collect()
            }
        };
        let shape = if disk.is_empty() { vec![1] } else { disk };
        layout.from_disk(Tensor::from_data(
            TensorData::new(values, shape),
            self.device,
        ))
    }
}

impl ParamVisitor for Initializer<'_> {
    fn param<const D: usize>(&mut self, key: &str, param: &mut Param<Tensor<D>>, layout: Layout) {
        let dims = param.lazy_shape().as_slice().to_vec();
        *param = Param::from_tensor(self.tensor(key, &dims, layout, None));
    }

    fn fused<const D: usize>(
        &mut self,
        key: &str,
        parts: [&mut Param<Tensor<D>>; 3],
        layout: Layout,
    ) {
        for (part, param) in parts.into_iter().enumerate() {
            let dims = param.lazy_shape().as_slice().to_vec();
            *param = Param::from_tensor(self.tensor(key, &dims, layout, Some(part)));
        }
    }
}

/// ViT positions `[1 + g², width]` as in MAE (He et al. 2022): the class token's row is zero;
/// patch `(row, col)` gets sines and cosines of its row in the first half of the width and of
/// its column in the second, at frequencies 1/10000^(i/(width/4)).
fn sincos_positions(rows: usize, width: usize) -> Vec<f32> {
    let grid = ((rows - 1) as f64).sqrt().round() as usize;
    let quarter = width / 4;
    let mut values = vec![0.0f32; rows * width];
    for patch in 0..rows - 1 {
        let row = &mut values[(patch + 1) * width..(patch + 2) * width];
        for (half, position) in [patch / grid, patch % grid].into_iter().enumerate() {
            for i in 0..quarter {
                let omega = 1.0 / 10_000f64.powf(i as f64 / quarter as f64);
                let angle = position as f64 * omega;
                row[half * 2 * quarter + i] = angle.sin() as f32;
                row[half * 2 * quarter + quarter + i] = angle.cos() as f32;
            }
        }
    }
    values
}

/// Gives every parameter of `model` a fresh random value determined by `seed`.
pub fn initialize(model: &mut Clip, seed: u64, device: &Device) {
    let mut initializer = Initializer {
        rng: Rng::new(seed),
        device,
    };
    model.bind(&mut initializer, "", Format::OpenClip);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clip::checkpoint::named_tensors;
    use crate::train::arch::DemoArch;

    fn fresh_vit() -> std::collections::BTreeMap<String, (Vec<usize>, Vec<f32>)> {
        let device = Device::flex();
        let mut model = Clip::new(&DemoArch::Vit.spec(), &device);
        initialize(&mut model, 1, &device);
        named_tensors(&model, Format::OpenClip, None)
    }

    #[test]
    fn vit_positions_start_as_two_dimensional_sines_and_cosines() {
        let tensors = fresh_vit();
        let (shape, values) = &tensors["visual.positional_embedding"];
        let width = shape[1];
        let row = |i: usize| &values[i * width..(i + 1) * width];
        assert!(
            row(0).iter().all(|v| *v == 0.0),
            "the class token has a position"
        );
        // Patch (0, 0): every sine 0, every cosine 1.
        let quarter = width / 4;
        assert!(row(1)[..quarter].iter().all(|v| v.abs() < 1e-6));
        assert!(
            row(1)[quarter..2 * quarter]
                .iter()
                .all(|v| (v - 1.0).abs() < 1e-6)
        );
        // Neighbours are more alike than far patches.
        let dot =
            |a: usize, b: usize| -> f32 { row(a).iter().zip(row(b)).map(|(x, y)| x * y).sum() };
        assert!(dot(1, 2) > dot(1, 8), "positions do not encode distance");
    }

    #[test]
    fn vit_attention_starts_mimetic() {
        let tensors = fresh_vit();
        let (shape, fused) = &tensors["visual.transformer.resblocks.0.attn.in_proj_weight"];
        let width = shape[1];
        let block = |part: usize, r: usize, c: usize| fused[(part * width + r) * width + c];
        // (W_q · W_kᵀ) on the diagonal ≈ 0.7, off it ≈ 0.
        let product = |r: usize, c: usize| -> f32 {
            (0..width).map(|k| block(0, r, k) * block(1, c, k)).sum()
        };
        let diagonal: f32 = (0..width).map(|i| product(i, i)).sum::<f32>() / width as f32;
        let off: f32 = (1..width).map(|i| product(i, i - 1).abs()).sum::<f32>() / width as f32;
        assert!((diagonal - 0.7).abs() < 0.15, "diagonal {diagonal}");
        assert!(off < 0.2, "off-diagonal {off}");
        let (_, out) = &tensors["visual.transformer.resblocks.0.attn.out_proj.weight"];
        let trace: f32 = (0..width).map(|i| out[i * width + i]).sum::<f32>() / width as f32;
        assert!(
            (trace + VALUE_OUT_GAIN).abs() < 0.05,
            "out projection trace {trace}"
        );
        // The text tower keeps CLIP's own initialisation.
        let (_, text) = &tensors["transformer.resblocks.0.attn.out_proj.weight"];
        let text_trace: f32 = (0..width).map(|i| text[i * width + i]).sum::<f32>() / width as f32;
        assert!(
            text_trace.abs() < 0.05,
            "text out projection trace {text_trace}"
        );
    }
}
