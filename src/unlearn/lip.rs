//! Lip: zero-shot class unlearning with Lipschitz regularisation over both towers (Kravets &
//! Namboodiri). Each step draws Gaussian perturbations of the forget images and minimises
//! `(‖f(x) − f(x+ε)‖ + ‖g(t) − f(x+ε)‖) / ‖ε‖`, then updates only the layers with the largest
//! mean |gradient| in each tower, escalating noise and layer counts until the model no longer
//! recognises the forget images.

use std::collections::{HashMap, HashSet};

use burn::optim::ModuleOptimizer;
use burn::tensor::{Distribution, Tensor};

use super::job::{Method, StepReport};
use super::params::{LayerInfo, Tower, layers, selected_gradients};
use crate::clip::checkpoint::named_tensors;
use crate::clip::weights::Format;
use crate::clip::{Clip, VisionTower, host_values, normalize};
use crate::eval::{argmax, ensemble};
use crate::train::clip_adam;

/// Lip's knobs; the defaults are the paper's.
#[derive(Clone, Debug, PartialEq)]
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
    /// Forget images per step.
    pub batch: usize,
    /// Give up after this many steps.
    pub max_steps: usize,
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
        }
    }
}

/// The forget images and the zero-shot head they are judged against.
pub struct ForgetTask {
    /// Normalised forget images `[n, 3, s, s]` (synthetic or real), on an autodiff device.
    pub images: Tensor<4>,
    /// Tokenised prompts of every class of the head, `templates` per class, class-major.
    pub prompts: Vec<Vec<u32>>,
    /// Prompts per class.
    pub templates: usize,
    /// Index of the class to forget.
    pub target: usize,
}

/// The Lip method, ready to be run by the job runner.
pub struct Lip {
    options: LipOptions,
    task: ForgetTask,
    optimizer: ModuleOptimizer,
    step: usize,
}

impl Lip {
    /// Lip for `task` with `options`.
    pub fn new(options: LipOptions, task: ForgetTask) -> Self {
        let optimizer = clip_adam(options.weight_decay);
        Self {
            options,
            task,
            optimizer,
            step: 0,
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

    /// Share of the forget images the model still assigns to the target class.
    pub fn forget_accuracy(&self, model: &Clip) -> f64 {
        let heads = self.class_heads(model).detach();
        let images = normalize(model.encode_image(self.task.images.clone().detach())).detach();
        let classes = heads.dims()[0];
        let scores = host_values(images.matmul(heads.transpose()));
        let rows = scores.chunks(classes);
        let count = rows.len();
        let hits = rows.filter(|row| argmax(row) == self.task.target).count();
        hits as f64 / count.max(1) as f64
    }

    /// The Lipschitz loss on forget images `batch` with noise `sigma`.
    fn loss(&self, model: &Clip, batch: Tensor<4>, sigma: f32) -> Tensor<1> {
        let [b, c, h, w] = batch.dims();
        let n = self.options.perturbations;
        let device = batch.device();
        let text = self.class_heads(model).narrow(0, self.task.target, 1);
        let clean = normalize(model.encode_image(batch.clone()));
        let noise = Tensor::<4>::random(
            [b * n, c, h, w],
            Distribution::Normal(0.0, sigma as f64),
            &device,
        );
        let repeated = batch
            .unsqueeze_dim::<5>(1)
            .repeat_dim(1, n)
            .reshape([b * n, c, h, w]);
        let perturbed = normalize(model.encode_image(repeated + noise.clone()));
        let width = perturbed.dims()[1];
        let clean = clean
            .unsqueeze_dim::<3>(1)
            .repeat_dim(1, n)
            .reshape([b * n, width]);
        let noise_norm = noise.reshape([b * n, c * h * w]).square().sum_dim(1).sqrt();
        let image_term = (clean - perturbed.clone()).square().sum_dim(1).sqrt();
        let text_term = (perturbed - text).square().sum_dim(1).sqrt();
        ((image_term + text_term) / noise_norm).mean()
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
            let eligible = |l: &&LayerInfo| {
                l.tower == tower && !(resnet && tower == Tower::Vision && !l.is_attention_pool())
            };
            let mut candidates: Vec<(&str, f32)> = all
                .iter()
                .filter(eligible)
                .map(|l| (l.checkpoint_key(), magnitude[l.checkpoint_key()]))
                .collect();
            candidates.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
            candidates.dedup_by_key(|c| c.0);
            let chosen: HashSet<&str> = candidates.into_iter().take(k).map(|c| c.0).collect();
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
        "lip"
    }

    fn max_steps(&self) -> usize {
        self.options.max_steps
    }

    fn step(&mut self, model: Clip, _original: &Clip) -> Result<(Clip, StepReport), String> {
        let t = self.escalation();
        let sigma = self.options.sigma.0 + (self.options.sigma.1 - self.options.sigma.0) * t;
        let k_vision = Self::interpolate(self.options.vision_layers, t);
        let k_text = Self::interpolate(self.options.text_layers, t);
        let count = self.task.images.dims()[0];
        let size = self.options.batch.clamp(1, count);
        let start = (self.step * size) % count;
        let batch = self
            .task
            .images
            .clone()
            .narrow(0, start, size.min(count - start))
            .detach();
        let loss = self.loss(&model, batch, sigma);
        let loss_value = host_values(loss.clone().detach())[0];
        let gradients = loss.backward();
        let all = layers(&model);
        let selected = self.rank(&model, &gradients, &all, k_vision, k_text);
        let update = selected_gradients(gradients, &model, &selected);
        let model = self
            .optimizer
            .step(self.options.learning_rate, model, update);
        self.step += 1;
        let accuracy = self.forget_accuracy(&model);
        Ok((
            model,
            StepReport {
                losses: vec![("lipschitz".into(), loss_value)],
                forget_accuracy: Some(accuracy),
                retain_accuracy: None,
                finished: accuracy < self.options.stop_accuracy,
            },
        ))
    }
}
