//! Contrastive training of a demo model from scratch on an endless stream of Shapes scenes.
//!
//! Every batch is a pure function of `(seed, batch index)`, and the initial weights come from
//! Lethe's own generator, so a run is reproducible from its seed.

use std::collections::BTreeSet;

use burn::module::Param;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};
use image::DynamicImage;
use rayon::prelude::*;

use super::arch::DemoArch;
use super::captions::training_caption;
use super::clip_adam;
use super::init::initialize;
use super::loss::contrastive_loss;
use crate::clip::preprocess::Preprocessor;
use crate::clip::tokenizer::Tokenizer;
use crate::clip::{Clip, VisionTower, host_values};
use crate::data::shapes::{self, Color, Constraints, ObjectKind, Rng, Scene};

/// CLIP clamps its learned temperature so logits never exceed 100× the cosine.
const MAX_LOGIT_SCALE: f64 = 4.605_170_185_988_091; // ln(100)
/// Separates the stream that picks each batch's kind from the per-item streams.
const BATCH_SALT: u64 = 0x6261_7463_685f_6b69;
/// Weight of a new batch in the batch-norm running statistics (PyTorch's default).
const BATCH_NORM_MOMENTUM: f64 = 0.1;

/// How to train.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// Which model.
    pub arch: DemoArch,
    /// Optimiser steps.
    pub steps: usize,
    /// Image–caption pairs per step.
    pub batch: usize,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Linear warm-up steps before the cosine decay.
    pub warmup: usize,
    /// Decoupled weight decay.
    pub weight_decay: f32,
    /// Seed of the initial weights and of the scene stream.
    pub seed: u64,
    /// Make half the batches single-colour (see [`Trainer`]'s batch stream). Off for the
    /// ResNet: its batch norm would learn statistics of a batch mix inference never sees.
    pub single_colour_batches: bool,
}

impl TrainOptions {
    /// The settings the shipped demo models were trained with.
    pub fn new(arch: DemoArch) -> Self {
        let (steps, learning_rate) = match arch {
            DemoArch::Vit => (1200, 7e-4),
            DemoArch::Rn => (700, 2e-3),
        };
        Self {
            arch,
            steps,
            batch: 64,
            learning_rate,
            warmup: 200,
            weight_decay: 0.1,
            seed: 0,
            single_colour_batches: arch == DemoArch::Vit,
        }
    }

    /// Warm-up then cosine decay to zero.
    fn learning_rate_at(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.learning_rate * (step + 1) as f64 / self.warmup as f64;
        }
        let span = self.steps.saturating_sub(self.warmup).max(1) as f64;
        let progress = ((step - self.warmup) as f64 / span).min(1.0);
        self.learning_rate * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

/// What one step did.
#[derive(Clone, Copy, Debug)]
pub struct StepReport {
    /// Steps done so far (1 after the first).
    pub step: usize,
    /// Contrastive loss of the step's batch, before the update.
    pub loss: f32,
    /// Learning rate used.
    pub learning_rate: f64,
    /// The learned logit scale (inverse temperature).
    pub logit_scale: f32,
}

/// A model being trained, with its optimiser state and data stream.
pub struct Trainer {
    model: Clip,
    optimizer: ModuleOptimizer,
    tokenizer: Tokenizer,
    preprocessor: Preprocessor,
    options: TrainOptions,
    device: Device,
    context_length: usize,
    pad_id: u32,
    step: usize,
    /// Token ids that occurred in a training caption.
    seen_tokens: BTreeSet<u32>,
}

impl Trainer {
    /// A freshly initialised model on `device` (autodiff is enabled here).
    pub fn new(options: TrainOptions, device: &Device) -> Self {
        let device = device.clone().autodiff();
        let mut model = Clip::new(&options.arch.spec(), &device);
        initialize(&mut model, options.seed, &device);
        Self::resume(options, model, &device)
    }

    /// Continues training `model`, which must have `options.arch`'s shape and live on an
    /// autodiff device (load it with `Checkpoint::load(&device.autodiff())`). The optimiser
    /// starts afresh, so the warm-up applies again.
    pub fn resume(options: TrainOptions, model: Clip, device: &Device) -> Self {
        let spec = options.arch.spec();
        let device = device.clone();
        let optimizer = clip_adam(options.weight_decay);
        Self {
            model,
            optimizer,
            tokenizer: Tokenizer::clip_default(),
            preprocessor: Preprocessor {
                size: spec.vision.image_size(),
                mean: spec.mean,
                std: spec.std,
            },
            options,
            device,
            context_length: spec.text.context_length,
            pad_id: spec.text.pad_id,
            step: 0,
            seen_tokens: BTreeSet::new(),
        }
    }

    /// What batch `index` draws from. With `single_colour_batches`, half the batches hold shapes of a single colour: colour
    /// is the easiest cue, and with it gone every negative in the batch differs in shape, size
    /// or background, so the loss can only fall further by telling shapes apart.
    fn batch_constraints(&self, index: usize) -> Constraints {
        let mut rng = Rng::for_index(self.options.seed ^ BATCH_SALT, index as u64);
        if self.options.single_colour_batches && rng.below(2) == 0 {
            Constraints {
                kind: ObjectKind::Shapes,
                color: Some(rng.pick(&Color::ALL)),
                ..Default::default()
            }
        } else {
            Constraints {
                kind: ObjectKind::Any,
                ..Default::default()
            }
        }
    }

    /// Batch `index` of the stream: rendered, preprocessed images and tokenised captions.
    fn batch(&self, index: usize) -> (Tensor<4>, Vec<Vec<u32>>) {
        self.batch_from(index, &self.batch_constraints(index))
    }

    /// Items `index * batch ..` of the scene stream drawn under `constraints`.
    fn batch_from(&self, index: usize, constraints: &Constraints) -> (Tensor<4>, Vec<Vec<u32>>) {
        let size = self.preprocessor.size;
        let first = (index * self.options.batch) as u64;
        let (pixels, captions): (Vec<Vec<f32>>, Vec<String>) = (0..self.options.batch as u64)
            .into_par_iter()
            .map(|i| {
                let mut rng = Rng::for_index(self.options.seed, first + i);
                let scene = Scene::random(&mut rng, constraints);
                let text = training_caption(&scene, &mut rng);
                let image = DynamicImage::ImageRgb8(shapes::render(&scene, size as u32));
                (self.preprocessor.apply(&image), text)
            })
            .unzip();
        let ids = self
            .tokenizer
            .tokenize_batch(&captions, self.context_length, self.pad_id);
        let images = self
            .preprocessor
            .tensor(pixels.concat(), captions.len(), &self.device);
        (images, ids)
    }

    /// The loss of `model` on one batch; with `batch_statistics` a ResNet normalises with the
    /// batch's statistics (training mode) and they are returned.
    fn loss(
        model: &Clip,
        images: Tensor<4>,
        ids: &[Vec<u32>],
        batch_statistics: bool,
    ) -> (Tensor<1>, Option<crate::clip::resnet::BatchStatistics>) {
        let (image_embeds, statistics) = match (&model.visual, batch_statistics) {
            (VisionTower::ResNet(tower), true) => {
                let (output, statistics) = tower.forward_batch_statistics(images);
                (output.embeds, Some(statistics))
            }
            _ => (model.encode_image(images), None),
        };
        let logits = model.logits(image_embeds, model.encode_text(ids));
        (contrastive_loss(logits), statistics)
    }

    /// Trains on the next batch.
    pub fn step(&mut self) -> StepReport {
        let (images, ids) = self.batch(self.step);
        self.seen_tokens.extend(ids.iter().flatten());
        let (loss, statistics) = Self::loss(&self.model, images, &ids, true);
        let loss_value = host_values(loss.clone())[0];
        let gradients = GradientsParams::from_grads(loss.backward(), &self.model);
        let learning_rate = self.options.learning_rate_at(self.step);
        let mut model = self
            .optimizer
            .step(learning_rate, self.model.clone(), gradients);
        model.logit_scale = model
            .logit_scale
            .map(|scale| scale.detach().clamp(0.0, MAX_LOGIT_SCALE));
        if let (VisionTower::ResNet(tower), Some(statistics)) = (&mut model.visual, statistics) {
            tower.update_running_statistics(statistics, BATCH_NORM_MOMENTUM);
        }
        self.model = model;
        self.step += 1;
        StepReport {
            step: self.step,
            loss: loss_value,
            learning_rate,
            logit_scale: host_values(self.model.logit_scale.val())[0].exp(),
        }
    }

    /// The training objective on batch `index`, computed as a training step would (batch
    /// statistics in a ResNet) but without updating anything.
    pub fn evaluate(&self, index: usize) -> f32 {
        let (images, ids) = self.batch(index);
        host_values(Self::loss(&self.model, images, &ids, true).0.detach())[0]
    }

    /// The model as trained so far, with the embedding rows of tokens no caption contained
    /// set to zero: they hold nothing but their random start, a word the model never saw
    /// should add nothing, and zero rows make the shipped file compress well.
    pub fn model(&self) -> Clip {
        let mut model = self.model.clone();
        let [vocab, width] = model.text.token_embed.lazy_shape().dims();
        let mut keep = vec![0.0f32; vocab];
        for &id in &self.seen_tokens {
            keep[id as usize] = 1.0;
        }
        let rows = host_values(model.text.token_embed.val());
        let keep = &keep;
        let kept: Vec<f32> = rows
            .chunks(width)
            .enumerate()
            .flat_map(|(id, row)| row.iter().map(move |v| v * keep[id]))
            .collect();
        let device = self.device.clone();
        model.text.token_embed = Param::from_tensor(Tensor::from_data(
            TensorData::new(kept, [vocab, width]),
            &device,
        ));
        model
    }

    /// Options in use.
    pub fn options(&self) -> &TrainOptions {
        &self.options
    }
}
