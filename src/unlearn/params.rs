//! The parameter ("layer") view of a model that unlearning methods select from.
//!
//! A "layer" is one parameter tensor, named by its open_clip key whatever format the model
//! came in, because that is the granularity the methods rank and update (Lip updates the k
//! parameters with the largest mean |gradient| in each tower) and the names people know from
//! the papers' figures. Optimisers key their state by [`ParamId`]; restricting the gradients
//! handed to a step to the chosen ids is what keeps every other parameter bit-identical.

use std::collections::{HashMap, HashSet};

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Gradients, Tensor};

use crate::clip::weights::{Bind, Format, Layout, ParamVisitor};
use crate::clip::{Clip, host_values, normalize};

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
    /// Number of dimensions (2 for a matrix, 4 for a convolution kernel).
    pub ndim: usize,
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

    /// Whether this is the weight of a linear map or a convolution (a projection included),
    /// the layers low-rank adapters and the subgroup method work on; embedding tables,
    /// norms, biases and the temperature are not.
    pub fn is_weight_matrix(&self) -> bool {
        let key = self.checkpoint_key();
        crate::clip::lora::adaptable(self.ndim)
            && !key.contains("embedding")
            && (key.ends_with("weight") || key.ends_with("proj") || key.ends_with("projection"))
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
            ndim: D,
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
    layer_means(model, gradients, Reduction::Absolute)
}

/// Mean squared gradient of every parameter tensor the loss reached, by checkpoint key: a
/// layer's share of the (diagonal) Fisher information when the loss is a log-likelihood or,
/// as in the subgroup method, a similarity.
pub fn gradient_energy(model: &Clip, gradients: &Gradients) -> HashMap<String, f32> {
    layer_means(model, gradients, Reduction::Square)
}

/// How [`layer_means`] summarises each gradient value.
#[derive(Clone, Copy)]
enum Reduction {
    Absolute,
    Square,
}

/// The mean of `reduction(gradient)` over each layer's values, by checkpoint key.
fn layer_means(model: &Clip, gradients: &Gradients, reduction: Reduction) -> HashMap<String, f32> {
    let mut sums = MagnitudeSums {
        gradients,
        reduction,
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

/// Collects, per checkpoint key, the sum of |gradient| (or of its square) as a one-value
/// tensor and the number of values it covers.
struct MagnitudeSums<'g> {
    gradients: &'g Gradients,
    reduction: Reduction,
    keys: Vec<(String, usize)>,
    sums: Vec<Tensor<1>>,
}

impl MagnitudeSums<'_> {
    fn absolute_sum<const D: usize>(&self, param: &Param<Tensor<D>>) -> Option<(Tensor<1>, usize)> {
        let gradient = param.val().grad(self.gradients)?;
        let count = gradient.shape().num_elements();
        let reduced = match self.reduction {
            Reduction::Absolute => gradient.abs(),
            Reduction::Square => gradient.square(),
        };
        Some((reduced.sum(), count))
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

/// `E[g_l²]` for every layer `l`, with `g` the gradient of the cosine similarity between each
/// image and its text (`texts[i]` goes with image `i`), averaged over windows of `batch`
/// images. With `batch` 1 this is the empirical Fisher information of the similarity, one
/// backward pass per image; a larger batch takes the gradient of each window's mean instead,
/// a cheaper estimate that underweights disagreeing images.
pub fn similarity_fisher(
    model: &Clip,
    images: &Tensor<4>,
    texts: &[Vec<u32>],
    batch: usize,
) -> HashMap<String, f32> {
    let count = texts.len();
    let batch = batch.clamp(1, count.max(1));
    let windows = count.div_ceil(batch);
    let mut total: HashMap<String, f32> = HashMap::new();
    for window in 0..windows {
        let start = window * batch;
        let size = batch.min(count - start);
        let image = normalize(model.encode_image(images.clone().narrow(0, start, size).detach()));
        let text = normalize(model.encode_text(&texts[start..start + size]));
        let similarity = (image * text).sum_dim(1).mean();
        for (key, energy) in gradient_energy(model, &similarity.backward()) {
            *total.entry(key).or_default() += energy / windows as f32;
        }
    }
    total
}

/// The subgroup paper's relative Fisher information `I_l = E_forget[g_l²] / E_retain[g_l²]`
/// for every layer both sets reached: high where a layer matters to what is forgotten and
/// little to what is kept, so changing it forgets with little collateral damage.
pub fn relative_fisher(
    forget: &HashMap<String, f32>,
    retain: &HashMap<String, f32>,
) -> HashMap<String, f32> {
    forget
        .iter()
        .filter_map(|(key, f)| {
            let r = retain.get(key)?;
            Some((key.clone(), f / r.max(f32::MIN_POSITIVE)))
        })
        .collect()
}

/// `weight·a + (1 − weight)·b`, parameter by parameter (the model soup of the subgroup
/// method, and an exponential moving average of weights). Parameters are matched by id, so
/// `a` must descend from `b` (a clone, trained or merged); a parameter `a` lacks keeps `b`'s
/// value. Each keeps `b`'s gradient setting.
pub fn interpolate(a: &Clip, b: Clip, weight: f64) -> Clip {
    let mut values = Values(HashMap::new());
    a.visit(&mut values);
    b.map(&mut Blend {
        values: values.0,
        weight,
    })
}

/// `tensor` as a constant: out of any graph and not requiring a gradient (`detach` alone keeps
/// a leaf's request for one, and arithmetic on such a leaf records a graph).
fn constant<const D: usize>(tensor: Tensor<D>) -> Tensor<D> {
    tensor.detach().set_require_grad(false)
}

/// Every float parameter of a model, flattened, by id.
struct Values(HashMap<ParamId, Tensor<1>>);

impl ModuleVisitor for Values {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = constant(param.val());
        let count = value.shape().num_elements();
        self.0.insert(param.id, value.reshape([count]));
    }
}

/// Blends each parameter with the value of the same id in `values`.
struct Blend {
    values: HashMap<ParamId, Tensor<1>>,
    weight: f64,
}

impl ModuleMapper for Blend {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(other) = self.values.remove(&param.id) else {
            return param;
        };
        let weight = self.weight;
        param.map(|tensor| {
            let trained = tensor.is_require_grad();
            let blended =
                constant(tensor.clone()) * (1.0 - weight) + other.reshape(tensor.shape()) * weight;
            blended.set_require_grad(trained)
        })
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

/// A 0/1 mask over individual weights: the optimiser only ever sees the gradient entries the
/// mask keeps, so every other weight stays bit-identical (as long as weight decay is off,
/// since decoupled decay moves weights without a gradient). SalUn's weight saliency is one.
pub struct ElementMask {
    /// Flattened mask per parameter (1 = may change).
    masks: HashMap<ParamId, Tensor<1>>,
    /// Share of all weights with a gradient that the mask keeps.
    kept_share: f64,
}

impl ElementMask {
    /// Keeps the `share` (0–1] of weights with the largest |gradient| in `gradients`, one
    /// threshold over the whole model (SalUn's hard thresholding). Parameters without a
    /// gradient get no mask and stay frozen. The magnitudes come to the host once, to find
    /// the threshold.
    pub fn largest(model: &Clip, gradients: &GradientsParams, share: f32) -> Self {
        let mut collect = Magnitudes {
            gradients,
            found: Vec::new(),
        };
        model.visit(&mut collect);
        let mut values: Vec<f32> = collect
            .found
            .iter()
            .flat_map(|(_, magnitude)| host_values(magnitude.clone()))
            .collect();
        let total = values.len();
        if total == 0 {
            return Self {
                masks: HashMap::new(),
                kept_share: 0.0,
            };
        }
        let keep = ((share.clamp(0.0, 1.0) as f64 * total as f64).ceil() as usize).clamp(1, total);
        let (_, threshold, _) = values.select_nth_unstable_by(keep - 1, |a, b| b.total_cmp(a));
        let threshold = *threshold;
        let masks: HashMap<ParamId, Tensor<1>> = collect
            .found
            .into_iter()
            .map(|(id, magnitude)| (id, magnitude.greater_equal_elem(threshold).float()))
            .collect();
        let kept: f32 = masks
            .values()
            .map(|mask| host_values(mask.clone().sum())[0])
            .sum();
        Self {
            masks,
            kept_share: kept as f64 / total as f64,
        }
    }

    /// Share of the weights with a gradient that may change.
    pub fn kept_share(&self) -> f64 {
        self.kept_share
    }

    /// `gradients` with every entry outside the mask set to zero; parameters the mask does
    /// not cover lose their gradient altogether.
    pub fn apply(&self, model: &Clip, gradients: GradientsParams) -> GradientsParams {
        let mut masking = Masking {
            masks: &self.masks,
            gradients,
        };
        model.visit(&mut masking);
        masking.gradients
    }
}

/// Collects the flattened |gradient| of every parameter that has one.
struct Magnitudes<'g> {
    gradients: &'g GradientsParams,
    found: Vec<(ParamId, Tensor<1>)>,
}

impl ModuleVisitor for Magnitudes<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(gradient) = self.gradients.get::<D>(param.id) {
            let count = gradient.shape().num_elements();
            self.found.push((param.id, gradient.abs().reshape([count])));
        }
    }
}

/// Multiplies each parameter's gradient by its mask.
struct Masking<'m> {
    masks: &'m HashMap<ParamId, Tensor<1>>,
    gradients: GradientsParams,
}

impl ModuleVisitor for Masking<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let Some(gradient) = self.gradients.remove::<D>(param.id) else {
            return;
        };
        if let Some(mask) = self.masks.get(&param.id) {
            let shape = gradient.shape();
            let count = shape.num_elements();
            let masked: Tensor<D> = (gradient.reshape([count]) * mask.clone()).reshape(shape);
            self.gradients.register(param.id, masked);
        }
    }
}
