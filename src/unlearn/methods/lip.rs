//! **Lip**: zero-shot class unlearning in CLIP with synthetic samples (Kravets & Namboodiri).
//!
//! For a forget image `x` (synthetic, made from the class name, or real) with class prompt
//! embedding `g(t)`, draw `n` Gaussian perturbations `ε ~ N(0, σ²)` and minimise
//!
//! ```text
//! L_Lip = mean_ε ( ‖f(x) − f(x+ε)‖₂ + ‖g(t) − f(x+ε)‖₂ ) / ‖ε‖₂
//! ```
//!
//! with `f`, `g` the normalised image and text embeddings: the model's answer for pictures of
//! the class becomes insensitive to noise, and the perturbed image stands in for a perturbed
//! text, so both towers unlearn. Each step ranks the layers of each tower by mean |∂L/∂θ| and
//! updates only the top `k_v` vision and `k_t` text layers (on a ResNet image tower only the
//! attention pool), with AdamW (lr 5e-5, weight decay 0.2, β 0.9/0.98). The step stops once
//! the model recognises fewer than `stop_accuracy` of the forget images; until then σ rises
//! 0.1 → 2, `k_v` 5 → 8 and `k_t` 5 → 20 over `escalation_steps`.
//!
//! The paper's baselines Emb ([`super::emb`]) and ULip ([`super::ulip`]) share everything but
//! the loss, so the loop lives here as [`LipFamily`], parameterised by a
//! [`PerturbationLoss`].

use std::collections::HashSet;
use std::time::Instant;

use burn::module::ParamId;
use burn::optim::ModuleOptimizer;
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::{
    MethodError, Preset, UnlearningMethod, defaults_of, parse_options, preset_table, shared_help,
};
use crate::clip::{Clip, VisionTower, host_values, index_tensor, normalize};
use crate::curation::{DataNeeds, Scenario};
use crate::data::shapes::Rng;
use crate::train::clip_adam;
use crate::unlearn::job::{Method, StepReport};
use crate::unlearn::params::{
    LayerInfo, Tower, gradient_magnitudes, layers, masked_step, top_layers,
};
use crate::unlearn::synthetic::SyntheticOptions;
use crate::unlearn::toolkit::{RetainTerm, class_heads, forget_accuracy, window};

/// The knobs of the Lip family; the defaults are the paper's. Recipes give any subset of them.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default)]
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
            retain_weight: 0.0,
            retain_batch: 16,
            synthetic: SyntheticOptions::default(),
        }
    }
}

impl LipOptions {
    /// What the family asks of the scenario.
    pub fn data_needs(&self) -> DataNeeds {
        DataNeeds {
            synthetic: self.synthetic.clone(),
            retain: self.retain_weight > 0.0,
            pairs: false,
        }
    }
}

/// What each setting of the Lip family means, in plain words.
pub fn family_help(key: &str) -> &'static str {
    match key {
        "perturbations" => {
            "Noisy copies of each forget image per step: more is steadier but slower."
        }
        "sigma" => {
            "Strength of the noise added to images and text embeddings, at the first step and at full escalation."
        }
        "vision_layers" => {
            "Image-tower layers updated per step (the ones whose gradients are largest), first and at full escalation."
        }
        "text_layers" => "Text-tower layers updated per step, first and at full escalation.",
        "escalation_steps" => {
            "Steps over which noise and layer counts grow when the class is not yet forgotten."
        }
        "stop_accuracy" => {
            "Stop once the model recognises fewer than this fraction of the forget images."
        }
        "batch" => "Forget images per step.",
        "max_steps" => "Give up after this many steps.",
        "blocks_only" => {
            "Update only layers inside the residual blocks, never the shared embeddings, norms and projections."
        }
        "retain_weight" => {
            "How strongly the model's answers for pictures of the other classes are held to the original ones (0: the paper's method, no such term). Uses the retain set when one is given, otherwise synthetic pictures of the other classes."
        }
        "retain_batch" => "Retain pictures per step, when the retain term is on.",
        "retain_per_class" => {
            "Synthetic pictures of each other class for the retain term, when no retain set is given."
        }
        other => shared_help(other),
    }
}

/// The presets of the Lip family (Emb adds its `alpha` to the careful one).
pub fn family_preset(preset: Preset) -> toml::Table {
    let text = match preset {
        Preset::Gentle => "",
        Preset::Default => {
            "learning_rate = 5e-4\nperturbations = 8\nbatch = 4\nmax_steps = 40\n\
             [synthetic]\ncount = 32\n"
        }
        Preset::Careful => {
            "learning_rate = 1e-3\nperturbations = 8\nbatch = 4\nmax_steps = 100\n\
             stop_accuracy = 0.02\nblocks_only = true\nretain_weight = 3.0\n\
             [synthetic]\ncount = 32\n"
        }
        Preset::Aggressive => {
            "learning_rate = 1e-3\nperturbations = 8\nbatch = 4\nmax_steps = 60\n\
             stop_accuracy = 0.05\n[synthetic]\ncount = 32\n"
        }
    };
    preset_table(text)
}

/// The warning Lip and ULip give when the retain term is on: with a Lipschitz loss it holds
/// the class to forget in place too (measured on the demo models: red stays above 0.57 even
/// at weight 0.01).
fn lipschitz_retain_warning(settings: &toml::Table) -> Option<&'static str> {
    let retain_on = settings
        .get("retain_weight")
        .and_then(|v| v.as_float().or(v.as_integer().map(|i| i as f64)))
        .is_some_and(|w| w > 0.0);
    retain_on.then_some(
        "With a Lipschitz loss the retain term holds the class to forget in place as well: choose Emb to forget while keeping the rest.",
    )
}

/// A member of the Lip family whose knobs are exactly [`LipOptions`] (Lip and ULip), told
/// apart by its name, its words and its loss.
pub struct LipschitzMethod {
    /// Name used in recipes.
    pub name: &'static str,
    /// Display name.
    pub title: &'static str,
    /// What it does, in plain words.
    pub summary: &'static str,
    /// What data it needs.
    pub needs: &'static str,
    /// Its loss.
    pub loss: fn() -> Box<dyn PerturbationLoss>,
}

/// The Lip method.
pub const LIP: LipschitzMethod = LipschitzMethod {
    name: "lip",
    title: "Lip (Lipschitz, synthetic samples)",
    summary: "Makes the model's answer for pictures of the class insensitive to noise, in both \
              the image and the text tower, updating only the few layers that matter most for \
              the class each step; stops once it no longer recognises the class.",
    needs: "Only the class name: pictures of the class are synthesised from the model itself \
            (real ones can be given instead).",
    loss: || Box::new(LipLoss),
};

impl UnlearningMethod for LipschitzMethod {
    fn name(&self) -> &'static str {
        self.name
    }

    fn title(&self) -> &'static str {
        self.title
    }

    fn summary(&self) -> &'static str {
        self.summary
    }

    fn needs(&self) -> &'static str {
        self.needs
    }

    fn defaults(&self) -> toml::Table {
        defaults_of::<LipOptions>()
    }

    fn help(&self, key: &str) -> &'static str {
        family_help(key)
    }

    fn preset(&self, preset: Preset) -> toml::Table {
        family_preset(preset)
    }

    fn warning(&self, settings: &toml::Table) -> Option<&'static str> {
        lipschitz_retain_warning(settings)
    }

    fn data_needs(&self, settings: &toml::Table) -> Result<DataNeeds, MethodError> {
        Ok(parse_options::<LipOptions>(self.name, settings)?.data_needs())
    }

    fn start(
        &self,
        settings: &toml::Table,
        scenario: Scenario,
        seed: u64,
    ) -> Result<Box<dyn Method>, MethodError> {
        let options = parse_options(self.name, settings)?;
        Ok(Box::new(LipFamily::new(
            (self.loss)(),
            options,
            scenario,
            seed,
        )))
    }
}

/// The distances one step of the family computes, from which each member builds its loss
/// (one row per image and perturbation, `[b·n, 1]`, unless said otherwise).
pub struct PerturbationTerms {
    /// `‖f(x) − f(x+ε)‖₂`.
    pub image: Tensor<2>,
    /// `‖g(t) − f(x+ε)‖₂`.
    pub text: Tensor<2>,
    /// `‖ε‖₂`.
    pub noise: Tensor<2>,
    /// `f(x)`, `[b, embed]`.
    pub clean: Tensor<2>,
    /// `g(t)` of each image's class, `[b, embed]`.
    pub class_text: Tensor<2>,
}

/// The loss of one member of the Lip family.
pub trait PerturbationLoss: Send {
    /// The method's name, as in recipes and loss curves.
    fn name(&self) -> &'static str;

    /// Whether text-tower layers are updated (ULip's are not).
    fn updates_text(&self) -> bool {
        true
    }

    /// The scalar loss from one step's distances.
    fn loss(&self, terms: PerturbationTerms) -> Tensor<1>;
}

/// Lip's Lipschitz ratio over both towers.
pub struct LipLoss;

impl PerturbationLoss for LipLoss {
    fn name(&self) -> &'static str {
        "lip"
    }

    fn loss(&self, terms: PerturbationTerms) -> Tensor<1> {
        ((terms.image + terms.text) / terms.noise).mean()
    }
}

/// A member of the Lip family, ready to be run by the job runner.
pub struct LipFamily {
    loss: Box<dyn PerturbationLoss>,
    options: LipOptions,
    scenario: Scenario,
    optimizer: ModuleOptimizer,
    step: usize,
    noise: Rng,
}

impl LipFamily {
    /// The method with `loss` on `scenario` with `options`; `seed` fixes the perturbations.
    pub fn new(
        loss: Box<dyn PerturbationLoss>,
        options: LipOptions,
        scenario: Scenario,
        seed: u64,
    ) -> Self {
        let optimizer = clip_adam(options.weight_decay);
        Self {
            loss,
            options,
            scenario,
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

    /// Share of the forget images the model still assigns to their class: the held-out ones
    /// when there are any, otherwise those trained on.
    pub fn forget_accuracy(&self, model: &Clip) -> f64 {
        forget_accuracy(model, &self.scenario)
    }

    /// The distances of one step on forget images `batch` (showing classes `labels`) with
    /// noise `sigma`.
    fn terms(
        &mut self,
        model: &Clip,
        heads: Tensor<2>,
        batch: Tensor<4>,
        labels: &[usize],
        sigma: f32,
    ) -> PerturbationTerms {
        let [b, c, h, w] = batch.dims();
        let n = self.options.perturbations;
        let device = batch.device();
        let class_text = heads.select(0, index_tensor(labels, &device));
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
        PerturbationTerms {
            image: distance(per_perturbation(clean.clone()), perturbed.clone()),
            text: distance(per_perturbation(class_text.clone()), perturbed),
            noise: noise.reshape([b * n, c * h * w]).square().sum_dim(1).sqrt(),
            clean,
            class_text,
        }
    }

    /// The retain term of this step, or `None` when it is off.
    fn retain_term(&self, model: &Clip, heads: Tensor<2>) -> Option<RetainTerm> {
        let retain = self
            .scenario
            .retain
            .as_ref()
            .filter(|_| self.options.retain_weight > 0.0)?;
        Some(retain.term(model, heads, self.step, self.options.retain_batch))
    }

    /// The `k_vision` vision and `k_text` text layers with the largest mean |gradient|; fused
    /// attention projections count as one layer, as in PyTorch.
    fn rank(
        &self,
        model: &Clip,
        gradients: &burn::tensor::Gradients,
        k_vision: usize,
        k_text: usize,
    ) -> HashSet<ParamId> {
        let resnet = matches!(model.visual, VisionTower::ResNet(_));
        let magnitude = gradient_magnitudes(model, gradients);
        let all = layers(model);
        let in_block =
            |l: &LayerInfo| l.checkpoint_key().contains("resblocks.") || l.is_attention_pool();
        let mut selected = HashSet::new();
        for (tower, k) in [(Tower::Vision, k_vision), (Tower::Text, k_text)] {
            let eligible = |l: &LayerInfo| {
                l.tower == tower
                    && !(resnet && tower == Tower::Vision && !l.is_attention_pool())
                    && (!self.options.blocks_only || in_block(l))
            };
            selected.extend(top_layers(&all, &magnitude, eligible, k));
        }
        selected
    }
}

impl Method for LipFamily {
    fn name(&self) -> &str {
        self.loss.name()
    }

    fn max_steps(&self) -> usize {
        self.options.max_steps
    }

    fn step(&mut self, model: Clip, _original: &Clip) -> Result<(Clip, StepReport), MethodError> {
        let t = self.escalation();
        let sigma = self.options.sigma.0 + (self.options.sigma.1 - self.options.sigma.0) * t;
        let k_vision = Self::interpolate(self.options.vision_layers, t);
        let k_text = if self.loss.updates_text() {
            Self::interpolate(self.options.text_layers, t)
        } else {
            0
        };
        let (start, size) = window(
            self.step,
            self.options.batch,
            self.scenario.images.dims()[0],
        );
        let batch = self.scenario.images.clone().narrow(0, start, size).detach();
        let labels = self.scenario.labels[start..start + size].to_vec();
        let clock = Instant::now();
        let heads = class_heads(&model, &self.scenario);
        let terms = self.terms(&model, heads.clone(), batch, &labels, sigma);
        let forget = self.loss.loss(terms);
        let mut losses = vec![(
            self.loss.name().to_string(),
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
        let selected = self.rank(&model, &gradients, k_vision, k_text);
        let model = masked_step(
            &mut self.optimizer,
            self.options.learning_rate,
            model,
            gradients,
            &selected,
        );
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
