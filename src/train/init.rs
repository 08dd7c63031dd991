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
}

/// CLIP's initialisation: unit/zero norms (residual batch norms start at zero so each
/// bottleneck starts as the identity), small embeddings, and fan-in scaled matrices.
fn rule(key: &str, disk_shape: &[usize]) -> Init {
    let last = key.rsplit('.').next().unwrap_or(key);
    match (last, disk_shape.len()) {
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
    ) -> Tensor<D> {
        let disk = layout.disk_shape(lethe_dims);
        let count: usize = disk.iter().product();
        let values: Vec<f32> = match rule(key, &disk) {
            Init::Constant(c) => vec![c; count],
            Init::Normal(std) => (0..count).map(|_| self.rng.normal() * std).collect(),
        };
        let shape = if disk.is_empty() { vec![1] } else { disk };
        layout.swap(Tensor::from_data(
            TensorData::new(values, shape),
            self.device,
        ))
    }
}

impl ParamVisitor for Initializer<'_> {
    fn param<const D: usize>(&mut self, key: &str, param: &mut Param<Tensor<D>>, layout: Layout) {
        let dims = param.lazy_shape().as_slice().to_vec();
        *param = Param::from_tensor(self.tensor(key, &dims, layout));
    }

    fn fused<const D: usize>(
        &mut self,
        key: &str,
        parts: [&mut Param<Tensor<D>>; 3],
        layout: Layout,
    ) {
        for param in parts {
            let dims = param.lazy_shape().as_slice().to_vec();
            *param = Param::from_tensor(self.tensor(key, &dims, layout));
        }
    }
}

/// Gives every parameter of `model` a fresh random value determined by `seed`.
pub fn initialize(model: &mut Clip, seed: u64, device: &Device) {
    let mut initializer = Initializer {
        rng: Rng::new(seed),
        device,
    };
    model.bind(&mut initializer, "", Format::OpenClip);
}
