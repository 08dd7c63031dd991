//! **CLIPErase**: unlearning visual–textual associations in CLIP (Yang et al., ACL 2025).
//!
//! Trains both towers on forget pairs `(xᵢ, tᵢ)` and retain pairs with three modules:
//!
//! ```text
//! L    = λ₁·L_RM + λ₂·L_FM + λ₃·L_CM                       λ = (1, 3, 3)
//! L_FM = mean_forget  f(xᵢ) · g(tᵢ)                         (normalised embeddings)
//! L_RM = CLIP's symmetric contrastive loss on a retain batch
//! L_CM = mean_retain [ KL(p_o^img ‖ p_u^img) + KL(p_o^txt ‖ p_u^txt) ]
//! ```
//!
//! The forgetting module drives each forget image's similarity to its own caption to zero or
//! below, so the pair no longer retrieves each other; the retention module keeps retain pairs
//! matched; the consistency module holds the image→text and text→image distributions over a
//! retain batch (`p_o` from the original model, `p_u` from the edited one) where they were,
//! which the paper's ablation credits with most of the retained accuracy. Adam, batch 16,
//! a fixed number of epochs over the forget pairs; after each epoch the model is validated
//! (forget accuracy on the verification pictures, or on the forget pictures, against the
//! agreement with the original answers on retain pictures) and the best trade-off is kept.
//! The paper's learning rate (1e-6 for ViT-B/32 on CIFAR-100) is for full-size CLIP; the
//! presets use larger steps for small models.

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::Tensor;
use burn::tensor::activation::log_softmax;
use serde::{Deserialize, Serialize};

use super::{
    MethodError, Preset, UnlearningMethod, contrastive_pair_needs, parse_options, preset_table,
    shared_help,
};
use crate::clip::{Clip, host_values, normalize};
use crate::curation::{DataNeeds, Pairs, Scenario};
use crate::train::clip_adam;
use crate::train::loss::contrastive_loss;
use crate::unlearn::job::{Method, StepReport};
use crate::unlearn::toolkit::{
    agreement, forget_accuracy, pair_logits, take_pairs, window, zero_shot_answers,
};

/// The CLIPErase method.
pub struct ClipErase;

/// CLIPErase's knobs; the defaults are the paper's.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct ClipEraseOptions {
    /// Adam learning rate.
    pub learning_rate: f64,
    /// Decoupled weight decay (the paper uses plain Adam: 0).
    pub weight_decay: f32,
    /// Pairs per step, of forget pairs and of retain pairs each.
    pub batch: usize,
    /// Passes over the forget pairs.
    pub epochs: usize,
    /// λ₁, weight of the retention module.
    pub retain_weight: f32,
    /// λ₂, weight of the forgetting module.
    pub forget_weight: f32,
    /// λ₃, weight of the consistency module.
    pub consistency_weight: f32,
    /// Whether the retention module is on (the paper's ablation switch).
    pub retention: bool,
    /// Whether the consistency module is on (the paper's ablation switch).
    pub consistency: bool,
    /// Keep the model with the best validation trade-off instead of the last one.
    pub keep_best: bool,
}

impl Default for ClipEraseOptions {
    fn default() -> Self {
        Self {
            learning_rate: 1e-6,
            weight_decay: 0.0,
            batch: 16,
            epochs: 20,
            retain_weight: 1.0,
            forget_weight: 3.0,
            consistency_weight: 3.0,
            retention: true,
            consistency: true,
            keep_best: true,
        }
    }
}

impl UnlearningMethod for ClipErase {
    fn name(&self) -> &'static str {
        "cliperase"
    }

    fn title(&self) -> &'static str {
        "CLIPErase (forget, retain, consistency)"
    }

    fn summary(&self) -> &'static str {
        "Unbinds pictures from their captions: pushes each forget picture away from its own \
         caption in both towers, keeps retain pictures matched to theirs, and holds the model's \
         picture-to-caption and caption-to-picture answers on the retain pairs where they were. \
         Forgets one meaning of a word (the fruit orange) while keeping another (the colour)."
    }

    fn needs(&self) -> &'static str {
        "Real pictures of what to forget and of what to keep, each with a caption."
    }

    fn defaults(&self) -> toml::Table {
        toml::Table::try_from(ClipEraseOptions::default()).expect("the settings always serialise")
    }

    fn help(&self, key: &str) -> &'static str {
        match key {
            "batch" => "Forget pairs and retain pairs per step (each).",
            "epochs" => "Passes over the forget pairs.",
            "retain_weight" => "λ₁: weight of keeping retain pictures matched to their captions.",
            "forget_weight" => "λ₂: weight of pushing forget pictures away from their captions.",
            "consistency_weight" => {
                "λ₃: weight of holding the answers on retain pairs where the original model gave them."
            }
            "retention" => "Use the retention module (off: the paper's ablation).",
            "consistency" => "Use the consistency module (off: the paper's ablation).",
            "keep_best" => {
                "Keep the model with the best trade-off between forgetting and keeping, checked after every epoch, instead of the last one."
            }
            other => shared_help(other),
        }
    }

    fn preset(&self, preset: Preset) -> toml::Table {
        let text = match preset {
            Preset::Gentle => "",
            Preset::Default => "learning_rate = 1e-4\nepochs = 10\n",
            Preset::Careful => "learning_rate = 5e-5\nepochs = 10\nconsistency_weight = 6.0\n",
            Preset::Aggressive => "learning_rate = 3e-4\nepochs = 10\n",
        };
        preset_table(text)
    }

    fn data_needs(&self, settings: &toml::Table) -> Result<DataNeeds, MethodError> {
        let options: ClipEraseOptions = parse_options(self.name(), settings)?;
        contrastive_pair_needs(self.name(), options.batch)
    }

    fn start(
        &self,
        settings: &toml::Table,
        scenario: Scenario,
        _seed: u64,
    ) -> Result<Box<dyn Method>, MethodError> {
        let options: ClipEraseOptions = parse_options(self.name(), settings)?;
        let mut scenario = scenario;
        let (forget, retain) = take_pairs(&mut scenario, self.name())?;
        let steps_per_epoch = forget.captions.len().div_ceil(options.batch).max(1);
        Ok(Box::new(ClipEraseRun {
            optimizer: clip_adam(options.weight_decay),
            max_steps: options.epochs * steps_per_epoch,
            steps_per_epoch,
            options,
            forget,
            retain,
            scenario,
            original_answers: None,
            step: 0,
            best: None,
        }))
    }
}

/// A CLIPErase run in progress.
struct ClipEraseRun {
    options: ClipEraseOptions,
    forget: Pairs,
    retain: Pairs,
    /// The rest of the scenario: the head, and the pictures forgetting is judged on.
    scenario: Scenario,
    /// The original model's zero-shot answers on the retain pictures, for validation.
    original_answers: Option<Vec<usize>>,
    optimizer: ModuleOptimizer,
    max_steps: usize,
    steps_per_epoch: usize,
    step: usize,
    /// The best trade-off so far and its model.
    best: Option<(f64, Clip)>,
}

/// `KL(p ‖ q)` per row, averaged, from log-probabilities (`original` carries no gradient).
fn kl_divergence(original: Tensor<2>, current: Tensor<2>) -> Tensor<1> {
    (original.clone().exp() * (original - current))
        .sum_dim(1)
        .mean()
}

impl ClipEraseRun {
    /// Forget accuracy and retain agreement of `model`.
    fn validate(&mut self, model: &Clip, original: &Clip) -> (f64, f64) {
        if self.original_answers.is_none() {
            self.original_answers = Some(zero_shot_answers(
                original,
                &self.scenario,
                &self.retain.images,
            ));
        }
        let forget = forget_accuracy(model, &self.scenario);
        let now = zero_shot_answers(model, &self.scenario, &self.retain.images);
        let then = self.original_answers.as_ref().expect("set above");
        (forget, agreement(&now, then))
    }

    /// Step `self.step`'s window of `pairs`.
    fn batch(&self, pairs: &Pairs) -> (Tensor<4>, Vec<Vec<u32>>) {
        let (start, size) = window(self.step, self.options.batch, pairs.captions.len());
        (
            pairs.images.clone().narrow(0, start, size).detach(),
            pairs.captions[start..start + size].to_vec(),
        )
    }
}

impl Method for ClipEraseRun {
    fn name(&self) -> &str {
        "cliperase"
    }

    fn max_steps(&self) -> usize {
        self.max_steps
    }

    fn step(&mut self, model: Clip, original: &Clip) -> Result<(Clip, StepReport), MethodError> {
        let (images, captions) = self.batch(&self.forget);
        let image = normalize(model.encode_image(images));
        let text = normalize(model.encode_text(&captions));
        let forget_loss = (image * text).sum_dim(1).mean();
        let mut losses = vec![(
            "forget".to_string(),
            host_values(forget_loss.clone().detach())[0],
        )];
        let mut loss = forget_loss * self.options.forget_weight;
        let (images, captions) = self.batch(&self.retain);
        let logits = pair_logits(&model, images.clone(), &captions);
        if self.options.retention {
            let retain_loss = contrastive_loss(logits.clone());
            losses.push((
                "retain".into(),
                host_values(retain_loss.clone().detach())[0],
            ));
            loss = loss + retain_loss * self.options.retain_weight;
        }
        if self.options.consistency {
            // The original model's answers: a constant, computed without recording a graph.
            let reference = pair_logits(&original.valid(), images.inner(), &captions).autodiff();
            let consistency = kl_divergence(
                log_softmax(reference.clone(), 1),
                log_softmax(logits.clone(), 1),
            ) + kl_divergence(
                log_softmax(reference.transpose(), 1),
                log_softmax(logits.transpose(), 1),
            );
            losses.push((
                "consistency".into(),
                host_values(consistency.clone().detach())[0],
            ));
            loss = loss + consistency * self.options.consistency_weight;
        }
        let gradients = GradientsParams::from_grads(loss.backward(), &model);
        let model = self
            .optimizer
            .step(self.options.learning_rate, model, gradients);
        self.step += 1;
        let epoch_done =
            self.step.is_multiple_of(self.steps_per_epoch) || self.step == self.max_steps;
        let (forget_accuracy, retain_accuracy) = if epoch_done {
            let (forget, retain) = self.validate(&model, original);
            let score = retain - forget;
            if self.options.keep_best && self.best.as_ref().is_none_or(|(best, _)| score > *best) {
                self.best = Some((score, model.clone()));
            }
            (Some(forget), Some(retain))
        } else {
            (None, None)
        };
        Ok((
            model,
            StepReport {
                losses,
                forget_accuracy,
                retain_accuracy,
                finished: false,
            },
        ))
    }

    fn best(&mut self) -> Option<Clip> {
        self.best.take().map(|(_, model)| model)
    }
}
