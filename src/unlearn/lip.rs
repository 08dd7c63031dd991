//! Lip: zero-shot class unlearning with Lipschitz regularisation over both towers (Kravets &
//! Namboodiri). Each step draws Gaussian perturbations of the forget images and minimises
//! `(‖f(x) − f(x+ε)‖ + ‖g(t) − f(x+ε)‖) / ‖ε‖`, then updates only the layers with the largest
//! mean |gradient| in each tower, escalating noise and layer counts until the model no longer
//! recognises the forget images.
//!
//! The paper's two baselines share everything but the loss, so they live here as variants:
//! **Emb** (plain distances plus `α‖f(x) + g(t)‖` instead of the ratio) and **ULip** (the
//! vision term only, vision layers only).

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::job::{Method, StepReport};
use super::params::{LayerInfo, Tower, layers, selected_gradients};
use super::synthetic::SyntheticOptions;
use crate::clip::checkpoint::named_tensors;
use crate::clip::weights::Format;
use crate::clip::{Clip, VisionTower, host_values, normalize};
use crate::data::shapes::Rng;
use crate::eval::{argmax, ensemble};
use crate::train::clip_adam;

/// Which loss of the Lip family to minimise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// The Lipschitz ratio over both towers (the paper's method).
    Lip,
    /// Plain distances plus `α‖f(x) + g(t)‖` (the paper's "Emb" baseline).
    Emb,
    /// The image term of the ratio only, updating the vision tower only ("ULip", after Foster et al.).
    ULip,
}

/// Lip's knobs; the defaults are the paper's. Recipes give any subset of them.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LipOptions {
    /// Adam learning rate.
    pub learning_rate: f64,
    /// Decoupled weight decay.
    pub weight_decay: f32,
    /// Gaussian perturbations per image.
    pub perturbations: usize,
    /// Noise standard deviation at the first step and at full escalation.
    pub sigma: (f32, f32),
    /// Vision layers updated per step, at the first step and at full escalation.
    pub vision_layers: (usize, usize),
    /// Text layers updated per step, at the first step and at full escalation.
    pub text_layers: (usize, usize),
    /// Steps over which noise and layer counts rise from their first to their final values.
    pub escalation_steps: usize,
    /// Stop once accuracy on the forget images falls below this.
    pub stop_accuracy: f64,
    /// Forget images per step. The paper updates after every single image; batching a few
    /// keeps the number of updates (and the time) manageable.
    pub batch: usize,
    /// Give up after this many steps.
    pub max_steps: usize,
    /// Rank only the layers inside the residual blocks (and a ResNet's attention pool),
    /// leaving out the embeddings, the final norms and the projections, which every class
    /// passes through. Off in the paper; on tiny models those shared layers carry the largest
    /// gradients, and updating them drags other classes along.
    pub blocks_only: bool,
    /// Weight of `‖f(x) + g(t)‖` in the Emb loss (unused by Lip and ULip).
    pub alpha: f32,
    /// Weight of a term that keeps the model's zero-shot answers for pictures of the other
    /// classes as they were: the KL divergence from the original model's class probabilities
    /// to the current ones, on retain images (the user's, or synthetic pictures of the other
    /// classes). 0, the paper's method, leaves it out; on small models, where every layer is
    /// shared by all classes, it is what keeps the other classes standing.
    pub retain_weight: f32,
    /// Retain images per step when `retain_weight` is set.
    pub retain_batch: usize,
    /// How synthetic forget images are made when no real ones are given.
    pub synthetic: SyntheticOptions,
}

impl Default for LipOptions {
    fn default() -> Self {
        Self {
            learning_rate: 5e-5,
            weight_decay: 0.2,
            perturbations: 25,
            sigma: (0.1, 2.0),
            vision_layers: (5, 8),
            text_layers: (5, 20),
            escalation_steps: 10,
            stop_accuracy: 0.1,
            batch: 8,
            max_steps: 100,
            blocks_only: false,
            alpha: 1.0,
            retain_weight: 0.0,
            retain_batch: 16,
            synthetic: SyntheticOptions::default(),
        }
    }
}

/// The forget images and the zero-shot head they are judged against.
pub struct ForgetTask {
    /// Normalised forget images `[n, 3, s, s]` (synthetic or real), on an autodiff device.
    pub images: Tensor<4>,
    /// The class (index into the head) each image shows; every one is a class to forget.
    pub labels: Vec<usize>,
    /// Tokenised prompts of every class of the head, `templates` per class, class-major.
    pub prompts: Vec<Vec<u32>>,
    /// Prompts per class.
    pub templates: usize,
    /// Images the edit must leave alone, with the original model's answers for them; used
    /// when `retain_weight` is set.
    pub retain: Option<RetainImages>,
    /// Forget images never trained on, on which the stopping accuracy is measured instead of
    /// the training images (`None`: measured on the training images, as in the paper).
    pub held_out: Option<HeldOut>,
}

/// Real pictures of the forgotten classes kept out of training. Synthetic pictures are often
/// forgotten long before real ones (the paper's verification caveat), so a stop judged on
/// them can come early; real, unseen ones judge the class itself.
pub struct HeldOut {
    /// Normalised images `[n, 3, s, s]`.
    pub images: Tensor<4>,
    /// The class (index into the head) each image shows.
    pub labels: Vec<usize>,
}

/// Images of classes to keep and the original model's zero-shot answers for them.
pub struct RetainImages {
    /// Normalised images `[n, 3, s, s]`, on the autodiff device.
    pub images: Tensor<4>,
    /// The original model's log-probabilities over the head's classes `[n, classes]`.
    pub original: Tensor<2>,
}

impl RetainImages {
    /// `images` with `model`'s answers for them over the classes `heads`, as the reference
    /// later steps are held to.
    pub fn new(model: &Clip, heads: Tensor<2>, images: Tensor<4>) -> Self {
        let original = zero_shot_log_probabilities(model, heads, images.clone()).detach();
        Self { images, original }
    }
}

/// Log-probabilities `[n, classes]` of zero-shot classification of `images` among the class
/// embeddings `heads`, at the model's temperature.
fn zero_shot_log_probabilities(model: &Clip, heads: Tensor<2>, images: Tensor<4>) -> Tensor<2> {
    let scale = host_values(model.logit_scale.val())[0].exp();
    let logits = normalize(model.encode_image(images)).matmul(heads.transpose()) * scale;
    log_softmax(logits, 1)
}

/// The `(start, size)` of step `step`'s window of `batch` images out of `count`: windows
/// follow each other and wrap around, the last one of a pass cut short at the end.
fn window(step: usize, batch: usize, count: usize) -> (usize, usize) {
    let size = batch.clamp(1, count);
    let start = (step * size) % count;
    (start, size.min(count - start))
}

/// The Lip method (or one of its variants), ready to be run by the job runner.
pub struct Lip {
    variant: Variant,
    options: LipOptions,
    task: ForgetTask,
    optimizer: ModuleOptimizer,
    step: usize,
    noise: Rng,
}

/// The retain term of one step: its loss and how many of its images keep the original answer.
struct RetainTerm {
    loss: Tensor<1>,
    agreement: f64,
}

impl Lip {
    /// `variant` of Lip for `task` with `options`; `seed` fixes the perturbations.
    pub fn new(variant: Variant, options: LipOptions, task: ForgetTask, seed: u64) -> Self {
        let optimizer = clip_adam(options.weight_decay);
        Self {
            variant,
            options,
            task,
            optimizer,
            step: 0,
            noise: Rng::new(seed),
        }
    }

    /// Where the escalation stands: 0 at the first step, 1 from `escalation_steps` on.
    fn escalation(&self) -> f32 {
        let span = self.options.escalation_steps.saturating_sub(1).max(1);
        (self.step.min(span) as f32) / span as f32
    }

    fn interpolate(range: (usize, usize), t: f32) -> usize {
        (range.0 as f32 + (range.1 as f32 - range.0 as f32) * t).round() as usize
    }

    /// Normalised class embeddings `[classes, embed]` from the current text tower.
    fn class_heads(&self, model: &Clip) -> Tensor<2> {
        ensemble(model.encode_text(&self.task.prompts), self.task.templates)
    }

    /// Share of the forget images the model still assigns to their class: the held-out ones
    /// when there are any, otherwise those trained on.
    pub fn forget_accuracy(&self, model: &Clip) -> f64 {
        let (images, labels) = match &self.task.held_out {
            Some(held_out) => (&held_out.images, &held_out.labels),
            None => (&self.task.images, &self.task.labels),
        };
        // Measured without autodiff: no graph is recorded for a pass nothing differentiates.
        let model = model.valid();
        let heads = self.class_heads(&model);
        let images = normalize(model.encode_image(images.clone().inner()));
        let classes = heads.dims()[0];
        let scores = host_values(images.matmul(heads.transpose()));
        let rows = scores.chunks(classes);
        let count = rows.len();
        let hits = rows
            .zip(labels)
            .filter(|(row, label)| argmax(row) == **label)
            .count();
        hits as f64 / count.max(1) as f64
    }

    /// The variant's loss on forget images `batch` (showing classes `labels`) with noise `sigma`.
    fn loss(
        &mut self,
        model: &Clip,
        heads: Tensor<2>,
        batch: Tensor<4>,
        labels: &[usize],
        sigma: f32,
    ) -> Tensor<1> {
        let [b, c, h, w] = batch.dims();
        let n = self.options.perturbations;
        let device = batch.device();
        let rows = Tensor::<1, Int>::from_data(
            TensorData::new(labels.iter().map(|&l| l as i64).collect(), [b]),
            &device,
        );
        let text = heads.select(0, rows);
        let clean = normalize(model.encode_image(batch.clone()));
        // Drawn on the host from the run's seed, so a run is reproducible on any backend.
        let values: Vec<f32> = (0..b * n * c * h * w)
            .map(|_| self.noise.normal() * sigma)
            .collect();
        let noise = Tensor::<4>::from_data(TensorData::new(values, [b * n, c, h, w]), &device);
        let repeated = batch
            .unsqueeze_dim::<5>(1)
            .repeat_dim(1, n)
            .reshape([b * n, c, h, w]);
        let perturbed = normalize(model.encode_image(repeated + noise.clone()));
        let width = perturbed.dims()[1];
        let per_perturbation = |rows: Tensor<2>| {
            rows.unsqueeze_dim::<3>(1)
                .repeat_dim(1, n)
                .reshape([b * n, width])
        };
        let distance = |a: Tensor<2>, b: Tensor<2>| (a - b).square().sum_dim(1).sqrt();
        let image_term = distance(per_perturbation(clean.clone()), perturbed.clone());
        let text_term = distance(per_perturbation(text.clone()), perturbed);
        let noise_norm = noise.reshape([b * n, c * h * w]).square().sum_dim(1).sqrt();
        match self.variant {
            Variant::Lip => ((image_term + text_term) / noise_norm).mean(),
            Variant::ULip => (image_term / noise_norm).mean(),
            Variant::Emb => {
                let pull_apart = (clean + text).square().sum_dim(1).sqrt().mean();
                (image_term + text_term).mean() + pull_apart * self.options.alpha
            }
        }
    }

    /// KL divergence from the original model's answers to the current ones on this step's
    /// window of retain images, or `None` when the term is off.
    fn retain_term(&self, model: &Clip, heads: Tensor<2>) -> Option<RetainTerm> {
        let retain = self
            .task
            .retain
            .as_ref()
            .filter(|_| self.options.retain_weight > 0.0)?;
        let (start, size) = window(
            self.step,
            self.options.retain_batch,
            retain.images.dims()[0],
        );
        let images = retain.images.clone().narrow(0, start, size).detach();
        let original = retain.original.clone().narrow(0, start, size);
        let current = zero_shot_log_probabilities(model, heads, images);
        let agreement = {
            let classes = current.dims()[1];
            let now = host_values(current.clone().detach());
            let then = host_values(original.clone());
            let same = now
                .chunks(classes)
                .zip(then.chunks(classes))
                .filter(|(a, b)| argmax(a) == argmax(b))
                .count();
            same as f64 / size as f64
        };
        let loss = (original.clone().exp() * (original - current))
            .sum_dim(1)
            .mean();
        Some(RetainTerm { loss, agreement })
    }

    /// The `k_v` vision and `k_t` text layers with the largest mean |gradient|; fused
    /// attention projections count as one layer, as in PyTorch.
    fn rank(
        &self,
        model: &Clip,
        gradients: &burn::tensor::Gradients,
        all: &[LayerInfo],
        k_vision: usize,
        k_text: usize,
    ) -> HashSet<burn::module::ParamId> {
        let resnet = matches!(model.visual, VisionTower::ResNet(_));
        let magnitude: HashMap<String, f32> =
            named_tensors(model, Format::OpenClip, Some(gradients))
                .into_iter()
                .map(|(key, (_, values))| {
                    let mean =
                        values.iter().map(|v| v.abs()).sum::<f32>() / values.len().max(1) as f32;
                    (key, mean)
                })
                .collect();
        let mut selected = HashSet::new();
        for (tower, k) in [(Tower::Vision, k_vision), (Tower::Text, k_text)] {
            let in_block =
                |l: &LayerInfo| l.checkpoint_key().contains("resblocks.") || l.is_attention_pool();
            let eligible = |l: &&LayerInfo| {
                l.tower == tower
                    && !(resnet && tower == Tower::Vision && !l.is_attention_pool())
                    && (!self.options.blocks_only || in_block(l))
            };
            // Layers the loss does not reach (the text tower under ULip) have no gradient.
            let mut candidates: Vec<(&str, f32)> = all
                .iter()
                .filter(eligible)
                .filter_map(|l| Some((l.checkpoint_key(), *magnitude.get(l.checkpoint_key())?)))
                .collect();
            candidates.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
            candidates.dedup_by_key(|c| c.0);
            let chosen: HashSet<&str> = candidates.into_iter().take(k).map(|c| c.0).collect();
            tracing::debug!(?tower, layers = ?chosen, "updating");
            selected.extend(
                all.iter()
                    .filter(|l| chosen.contains(l.checkpoint_key()))
                    .map(|l| l.id),
            );
        }
        selected
    }
}

impl Method for Lip {
    fn name(&self) -> &str {
        match self.variant {
            Variant::Lip => "lip",
            Variant::Emb => "emb",
            Variant::ULip => "ulip",
        }
    }

    fn max_steps(&self) -> usize {
        self.options.max_steps
    }

    fn step(&mut self, model: Clip, _original: &Clip) -> Result<(Clip, StepReport), String> {
        let t = self.escalation();
        let sigma = self.options.sigma.0 + (self.options.sigma.1 - self.options.sigma.0) * t;
        let k_vision = Self::interpolate(self.options.vision_layers, t);
        let k_text = match self.variant {
            Variant::ULip => 0,
            Variant::Lip | Variant::Emb => Self::interpolate(self.options.text_layers, t),
        };
        let (start, size) = window(self.step, self.options.batch, self.task.images.dims()[0]);
        let batch = self.task.images.clone().narrow(0, start, size).detach();
        let labels = self.task.labels[start..start + size].to_vec();
        let clock = Instant::now();
        let heads = self.class_heads(&model);
        let forget = self.loss(&model, heads.clone(), batch, &labels, sigma);
        let mut losses = vec![(
            self.name().to_string(),
            host_values(forget.clone().detach())[0],
        )];
        let retain = self.retain_term(&model, heads);
        let loss = match &retain {
            Some(term) => {
                losses.push(("retain".into(), host_values(term.loss.clone().detach())[0]));
                forget + term.loss.clone() * self.options.retain_weight
            }
            None => forget,
        };
        let forward_s = clock.elapsed().as_secs_f64();
        let gradients = loss.backward();
        let backward_s = clock.elapsed().as_secs_f64() - forward_s;
        let all = layers(&model);
        let selected = self.rank(&model, &gradients, &all, k_vision, k_text);
        let update = selected_gradients(gradients, &model, &selected);
        let model = self
            .optimizer
            .step(self.options.learning_rate, model, update);
        let update_s = clock.elapsed().as_secs_f64() - forward_s - backward_s;
        self.step += 1;
        let accuracy = self.forget_accuracy(&model);
        let accuracy_s = clock.elapsed().as_secs_f64() - forward_s - backward_s - update_s;
        tracing::debug!(forward_s, backward_s, update_s, accuracy_s, "step timings");
        Ok((
            model,
            StepReport {
                losses,
                forget_accuracy: Some(accuracy),
                retain_accuracy: retain.map(|term| term.agreement),
                finished: accuracy < self.options.stop_accuracy,
            },
        ))
    }
}
