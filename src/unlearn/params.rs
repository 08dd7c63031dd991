//! The parameter ("layer") view of a model that unlearning methods select from.
//!
//! A "layer" is one parameter tensor, named by its open_clip key whatever format the model
//! came in, because that is the granularity the methods rank and update (Lip updates the k
//! parameters with the largest mean |gradient| in each tower) and the names people know from
//! the papers' figures. Optimisers key their state by [`ParamId`]; restricting the gradients
//! handed to a step to the chosen ids is what keeps every other parameter bit-identical.

use std::collections::{HashMap, HashSet};

use burn::module::{Param, ParamId};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Gradients, Tensor};

use crate::clip::weights::{Bind, Format, Layout, ParamVisitor};
use crate::clip::{Clip, host_values};

/// Which part of CLIP a parameter belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tower {
    /// The image encoder.
    Vision,
    /// The text encoder.
    Text,
    /// The shared learned temperature.
    Temperature,
}

/// One parameter tensor of a model.
#[derive(Clone, Debug)]
pub struct LayerInfo {
    /// The open_clip key; the three parts of a fused attention input projection get `#q`,
    /// `#k` and `#v` appended.
    pub key: String,
    /// Its tower.
    pub tower: Tower,
    /// The id optimisers and gradients know it by.
    pub id: ParamId,
    /// Number of values.
    pub numel: usize,
}

impl LayerInfo {
    /// The checkpoint key the tensor is stored under (the fused key for a projection part).
    pub fn checkpoint_key(&self) -> &str {
        self.key.split('#').next().unwrap_or(&self.key)
    }

    /// Whether this is part of a ModifiedResNet's attention-pooling head, the only vision
    /// parameters Lip lets change in a ResNet (the paper found the rest over-forgets).
    pub fn is_attention_pool(&self) -> bool {
        self.key.starts_with("visual.attnpool.")
    }
}

struct Lister(Vec<LayerInfo>);

impl Lister {
    fn push<const D: usize>(&mut self, key: String, param: &Param<Tensor<D>>) {
        let tower = if key == "logit_scale" {
            Tower::Temperature
        } else if key.starts_with("visual.") {
            Tower::Vision
        } else {
            Tower::Text
        };
        self.0.push(LayerInfo {
            key,
            tower,
            id: param.id,
            numel: param.lazy_shape().num_elements(),
        });
    }
}

impl ParamVisitor for Lister {
    fn param<const D: usize>(&mut self, key: &str, param: &mut Param<Tensor<D>>, _: Layout) {
        self.push(key.to_string(), param);
    }

    fn fused<const D: usize>(&mut self, key: &str, parts: [&mut Param<Tensor<D>>; 3], _: Layout) {
        for (part, param) in ["q", "k", "v"].into_iter().zip(parts) {
            self.push(format!("{key}#{part}"), param);
        }
    }
}

/// Every parameter of `model`, in checkpoint order.
pub fn layers(model: &Clip) -> Vec<LayerInfo> {
    let mut lister = Lister(Vec::new());
    model.clone().bind(&mut lister, "", Format::OpenClip);
    lister.0
}

/// The gradients of the `selected` parameters only, ready for an optimiser step that must
/// leave every other parameter exactly as it is.
pub fn selected_gradients(
    mut gradients: Gradients,
    model: &Clip,
    selected: &HashSet<ParamId>,
) -> GradientsParams {
    let ids: Vec<ParamId> = selected.iter().copied().collect();
    GradientsParams::from_params(&mut gradients, model, &ids)
}

/// Mean |gradient| of every parameter tensor the loss reached, by checkpoint key (a fused
/// attention projection counts as one tensor, as in PyTorch). Each mean is reduced on the
/// device and all of them come to the host in one copy, instead of every gradient.
pub fn gradient_magnitudes(model: &Clip, gradients: &Gradients) -> HashMap<String, f32> {
    let mut sums = MagnitudeSums {
        gradients,
        keys: Vec::new(),
        sums: Vec::new(),
    };
    model.clone().bind(&mut sums, "", Format::OpenClip);
    if sums.sums.is_empty() {
        return HashMap::new();
    }
    let values = host_values(Tensor::cat(sums.sums, 0));
    sums.keys
        .into_iter()
        .zip(values)
        .map(|((key, count), sum)| (key, sum / count.max(1) as f32))
        .collect()
}

/// Collects, per checkpoint key, the sum of |gradient| as a one-value tensor and the number
/// of values it covers.
struct MagnitudeSums<'g> {
    gradients: &'g Gradients,
    keys: Vec<(String, usize)>,
    sums: Vec<Tensor<1>>,
}

impl MagnitudeSums<'_> {
    fn absolute_sum<const D: usize>(&self, param: &Param<Tensor<D>>) -> Option<(Tensor<1>, usize)> {
        let gradient = param.val().grad(self.gradients)?;
        let count = gradient.shape().num_elements();
        Some((gradient.abs().sum(), count))
    }
}

impl ParamVisitor for MagnitudeSums<'_> {
    fn param<const D: usize>(&mut self, key: &str, param: &mut Param<Tensor<D>>, _: Layout) {
        if let Some((sum, count)) = self.absolute_sum(param) {
            self.keys.push((key.to_string(), count));
            self.sums.push(sum);
        }
    }

    fn fused<const D: usize>(&mut self, key: &str, parts: [&mut Param<Tensor<D>>; 3], _: Layout) {
        let parts: Option<Vec<(Tensor<1>, usize)>> =
            parts.iter().map(|p| self.absolute_sum(p)).collect();
        if let Some(parts) = parts {
            let count = parts.iter().map(|(_, c)| c).sum();
            let sum = parts
                .into_iter()
                .map(|(s, _)| s)
                .reduce(|a, b| a + b)
                .expect("three parts");
            self.keys.push((key.to_string(), count));
            self.sums.push(sum);
        }
    }
}

/// The ids of the `k` layers among those for which `eligible` holds with the largest
/// `magnitude` (ties broken by key, so a run is reproducible); layers without a magnitude
/// (the loss did not reach them) are never chosen. The parts of a fused projection are
/// chosen together.
pub fn top_layers(
    all: &[LayerInfo],
    magnitude: &HashMap<String, f32>,
    eligible: impl Fn(&LayerInfo) -> bool,
    k: usize,
) -> HashSet<ParamId> {
    let mut candidates: Vec<(&str, f32)> = all
        .iter()
        .filter(|l| eligible(l))
        .filter_map(|l| Some((l.checkpoint_key(), *magnitude.get(l.checkpoint_key())?)))
        .collect();
    candidates.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    candidates.dedup_by_key(|c| c.0);
    let chosen: HashSet<&str> = candidates.into_iter().take(k).map(|c| c.0).collect();
    tracing::debug!(layers = ?chosen, "updating");
    all.iter()
        .filter(|l| chosen.contains(l.checkpoint_key()))
        .map(|l| l.id)
        .collect()
}

/// One optimiser step that changes the `selected` parameters only; every other parameter
/// stays bit-identical (its gradient is never handed to the optimiser).
pub fn masked_step(
    optimizer: &mut ModuleOptimizer,
    learning_rate: f64,
    model: Clip,
    gradients: Gradients,
    selected: &HashSet<ParamId>,
) -> Clip {
    let update = selected_gradients(gradients, &model, selected);
    optimizer.step(learning_rate, model, update)
}
