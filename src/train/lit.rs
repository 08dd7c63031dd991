//! Stage 2: locked-image text tuning (LiT; Zhai et al., CVPR 2022).
//!
//! The vision tower trained on attributes is frozen. The embeddings of a pool of scenes are
//! computed once (a ResNet with its running statistics, as at inference), and every step pairs
//! a batch of them with freshly drawn captions; the text tower and the logit scale learn CLIP's
//! symmetric contrastive loss, which moves the text embeddings onto the attribute structure
//! the image tower already has. Zero-shot accuracy then climbs to the tower's attribute
//! accuracy within a few hundred steps.

use std::collections::BTreeSet;

use burn::module::Module;
use burn::tensor::Tensor;

use super::captions::{CaptionTokenizer, training_caption};
use super::loss::contrastive_loss;
use super::stream::SceneStream;
use super::{ClipUpdate, StageStart, StageTrainer, StepReport};
use crate::clip::{Clip, host_values, index_tensor, normalize};
use crate::data::shapes::{Rng, Scene};

/// Separates the pool's scenes from the other stages' streams.
const POOL_SALT: u64 = 0x6c69_745f_706f_6f6c;
/// Separates the stream that picks each step's pool items.
const PICK_SALT: u64 = 0x6c69_745f_7069_636b;
/// Separates the stream of captions.
const CAPTION_SALT: u64 = 0x6c69_745f_6361_7074;
/// Images encoded at once while the pool is built.
const ENCODE_CHUNK: usize = 256;

/// Trains the text tower and the logit scale against a frozen image tower.
pub struct LitTrainer {
    training: ClipUpdate,
    pool: Tensor<2>,
    scenes: Vec<Scene>,
    captions: CaptionTokenizer,
    seed: u64,
}

impl LitTrainer {
    /// Continues training `model` (on an autodiff device) from `start`, encoding `pool`
    /// scenes once for the whole stage.
    pub fn new(model: Clip, start: StageStart, pool: usize) -> Self {
        let stream = SceneStream::new(start.seed, POOL_SALT, start.spec);
        let scenes: Vec<Scene> = stream
            .scenes(0, pool)
            .into_iter()
            .map(|(scene, _)| scene)
            .collect();
        let frozen = model.valid();
        let inner = frozen.device();
        let chunks: Vec<Tensor<2>> = scenes
            .chunks(ENCODE_CHUNK)
            .map(|chunk| normalize(frozen.encode_image(stream.images(chunk, &inner))))
            .collect();
        Self {
            pool: Tensor::cat(chunks, 0),
            scenes,
            captions: CaptionTokenizer::new(start.spec),
            seed: start.seed,
            training: ClipUpdate::new(model, &start),
        }
    }

    /// Pool items of step `step`: `batch` distinct indices.
    fn pick(&self, step: usize) -> Vec<usize> {
        let batch = self.training.options.batch.min(self.scenes.len());
        let mut rng = Rng::for_index(self.seed ^ PICK_SALT, step as u64);
        let mut chosen = BTreeSet::new();
        let mut picks = Vec::with_capacity(batch);
        while picks.len() < batch {
            let index = rng.below(self.scenes.len());
            if chosen.insert(index) {
                picks.push(index);
            }
        }
        picks
    }
}

impl LitTrainer {
    /// The contrastive loss of the pool items and captions of step `index`.
    fn batch_loss(&mut self, index: usize) -> Tensor<1> {
        let picks = self.pick(index);
        let first = (index * self.training.options.batch) as u64;
        let texts: Vec<String> = picks
            .iter()
            .enumerate()
            .map(|(i, &item)| {
                let mut rng = Rng::for_index(self.seed ^ CAPTION_SALT, first + i as u64);
                training_caption(&self.scenes[item], &mut rng)
            })
            .collect();
        let ids = self.captions.tokenize(&texts);
        let rows = index_tensor(&picks, &self.pool.device());
        let images = self.pool.clone().select(0, rows).autodiff();
        let model = &self.training.model;
        contrastive_loss(model.logits(images, model.encode_text(&ids)))
    }
}

impl StageTrainer for LitTrainer {
    fn step(&mut self) -> StepReport {
        let loss = self.batch_loss(self.training.step);
        self.training.apply(loss)
    }

    fn evaluate(&mut self, index: usize) -> f32 {
        host_values(self.batch_loss(index).detach())[0]
    }

    fn model(&self) -> Clip {
        self.training.model.clone()
    }

    fn seen_tokens(&self) -> BTreeSet<u32> {
        self.captions.seen().clone()
    }
}
