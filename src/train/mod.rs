//! Training the demo models from scratch on the Shapes world (`lethe train-demo`), in stages.
//!
//! CLIP's contrastive loss alone never taught the tiny demo models shape: colour, size and
//! background already tell most of a batch apart, so the loss barely asks for it. Training is
//! therefore split into stages, each a named phase that saves its output and can be resumed:
//!
//! 1. [`attributes`]: the vision tower learns the scene's own attributes (object, colour,
//!    size, background) through temporary linear heads with cross-entropy. Every image asks
//!    for its shape directly. The heads are thrown away; the ResNet's batch-norm running
//!    statistics come from this stage and are never changed again.
//! 2. [`lit`]: locked-image text tuning (Zhai et al., CVPR 2022). The vision tower is frozen,
//!    the embeddings of a pool of scenes are computed once, and the text tower and the logit
//!    scale learn CLIP's symmetric contrastive loss against them on freshly drawn captions.
//! 3. [`contrastive`]: an optional short joint fine-tune of both towers at a low learning rate.
//!
//! [`pipeline`] chains them, saving each stage's output so that an interrupted run resumes.

pub mod arch;
pub mod attributes;
pub mod captions;
pub mod contrastive;
pub mod init;
pub mod lit;
pub mod loss;
pub mod pipeline;
pub mod stream;

use std::collections::BTreeSet;

use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::clip::config::ClipSpec;
use crate::clip::{Clip, host_values};

/// CLIP clamps its learned temperature so logits never exceed 100× the cosine.
const MAX_LOGIT_SCALE: f64 = 4.605_170_185_988_091; // ln(100)

/// AdamW with CLIP's settings (β₁ 0.9, β₂ 0.98, ε 1e-6), which the Lip paper also uses for
/// unlearning; only the weight decay differs between uses.
pub fn clip_adam(weight_decay: f32) -> ModuleOptimizer {
    AdamWConfig::new()
        .with_beta_2(0.98)
        .with_epsilon(1e-6)
        .with_weight_decay(weight_decay)
        .init()
}

/// The schedule and batch of one stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageOptions {
    /// Optimiser steps; 0 skips the stage.
    pub steps: usize,
    /// Images (or image–caption pairs) per step.
    pub batch: usize,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Linear warm-up steps before the cosine decay.
    pub warmup: usize,
    /// Decoupled weight decay.
    pub weight_decay: f32,
}

impl StageOptions {
    /// Warm-up then cosine decay to zero.
    pub fn learning_rate_at(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.learning_rate * (step + 1) as f64 / self.warmup as f64;
        }
        let span = self.steps.saturating_sub(self.warmup).max(1) as f64;
        let progress = ((step - self.warmup) as f64 / span).min(1.0);
        self.learning_rate * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

/// What one training step did.
#[derive(Clone, Debug)]
pub struct StepReport {
    /// Steps done so far in the stage (1 after the first).
    pub step: usize,
    /// The stage's loss on the step's batch, before the update.
    pub loss: f32,
    /// Learning rate used.
    pub learning_rate: f64,
    /// Stage-specific readings for the progress line, e.g. each head's batch accuracy.
    pub readings: Vec<(&'static str, f32)>,
}

/// One stage being trained: a step at a time, and the whole model as it stands.
pub trait StageTrainer {
    /// Trains on the next batch.
    fn step(&mut self) -> StepReport;
    /// The stage's loss on batch `index` of its stream, computed as a step would compute it
    /// but changing nothing.
    fn evaluate(&mut self, index: usize) -> f32;
    /// The complete CLIP model as trained so far (temporary heads left out).
    fn model(&self) -> Clip;
    /// Token ids of the captions this stage has trained on (none for an image-only stage).
    fn seen_tokens(&self) -> BTreeSet<u32> {
        BTreeSet::new()
    }
}

/// Where a stage starts.
#[derive(Clone, Debug)]
pub struct StageStart<'a> {
    /// The model's shape.
    pub spec: &'a ClipSpec,
    /// The stage's settings.
    pub options: StageOptions,
    /// The run's seed (every stage mixes in its own salt).
    pub seed: u64,
    /// Steps already done: non-zero when resuming, so the schedule and the batches continue.
    pub step: usize,
}

/// A whole CLIP model with its optimiser and place in the schedule: what the stages that
/// train the text tower (LiT, joint) share.
struct ClipUpdate {
    model: Clip,
    optimizer: ModuleOptimizer,
    options: StageOptions,
    step: usize,
}

impl ClipUpdate {
    fn new(model: Clip, start: &StageStart) -> Self {
        Self {
            model,
            optimizer: clip_adam(start.options.weight_decay),
            options: start.options.clone(),
            step: start.step,
        }
    }

    /// One optimiser step down `loss` (gradients reach only what the loss depends on), with
    /// the logit scale clamped afterwards.
    fn apply(&mut self, loss: Tensor<1>) -> StepReport {
        let loss_value = host_values(loss.clone().detach())[0];
        let gradients = GradientsParams::from_grads(loss.backward(), &self.model);
        let learning_rate = self.options.learning_rate_at(self.step);
        let mut model = self
            .optimizer
            .step(learning_rate, self.model.clone(), gradients);
        clamp_logit_scale(&mut model);
        let scale = host_values(model.logit_scale.val())[0].exp();
        self.model = model;
        self.step += 1;
        StepReport {
            step: self.step,
            loss: loss_value,
            learning_rate,
            readings: vec![("scale", scale)],
        }
    }
}

/// Keeps the learned temperature within CLIP's bounds after an update. The clamped value is
/// detached (a fresh leaf) and marked as requiring gradients again: a parameter rebuilt from
/// an untracked tensor would otherwise stop training from the next step on.
fn clamp_logit_scale(model: &mut Clip) {
    model.logit_scale = model
        .logit_scale
        .clone()
        .map(|scale| scale.clamp(0.0, MAX_LOGIT_SCALE).detach().require_grad());
}
