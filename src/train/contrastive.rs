//! Stage 3 (optional): a short joint contrastive fine-tune of both towers.
//!
//! CLIP's symmetric contrastive loss on image–caption pairs from the scene stream, at a low
//! learning rate, after the towers have been aligned by LiT. A ResNet keeps using the running
//! batch-norm statistics from attribute pretraining and never updates them, so what the model
//! is trained with is what it infers with.

use std::collections::BTreeSet;

use burn::tensor::{Device, Tensor};

use super::captions::{CaptionTokenizer, training_caption};
use super::loss::contrastive_loss;
use super::stream::SceneStream;
use super::{ClipUpdate, StageStart, StageTrainer, StepReport};
use crate::clip::{Clip, host_values};

/// Separates this stage's scene stream from the other stages'.
const STREAM_SALT: u64 = 0x6a6f_696e_745f_7374;

/// Trains both towers and the logit scale contrastively.
pub struct ContrastiveTrainer {
    training: ClipUpdate,
    stream: SceneStream,
    captions: CaptionTokenizer,
    device: Device,
}

impl ContrastiveTrainer {
    /// Continues training `model` (on an autodiff device) from `start`.
    pub fn new(model: Clip, start: StageStart) -> Self {
        Self {
            device: model.device(),
            stream: SceneStream::new(start.seed, STREAM_SALT, start.spec),
            captions: CaptionTokenizer::new(start.spec),
            training: ClipUpdate::new(model, &start),
        }
    }

    /// Batch `index` of the stream: preprocessed images and tokenised captions.
    fn batch(&mut self, index: usize) -> (Tensor<4>, Vec<Vec<u32>>) {
        let batch = self.training.options.batch;
        let (scenes, texts): (Vec<_>, Vec<_>) = self
            .stream
            .scenes((index * batch) as u64, batch)
            .into_iter()
            .map(|(scene, mut rng)| {
                let text = training_caption(&scene, &mut rng);
                (scene, text)
            })
            .unzip();
        let ids = self.captions.tokenize(&texts);
        (self.stream.images(&scenes, &self.device), ids)
    }

    fn loss(&self, images: Tensor<4>, ids: &[Vec<u32>]) -> Tensor<1> {
        let model = &self.training.model;
        contrastive_loss(model.logits(model.encode_image(images), model.encode_text(ids)))
    }
}

impl StageTrainer for ContrastiveTrainer {
    fn step(&mut self) -> StepReport {
        let (images, ids) = self.batch(self.training.step);
        let loss = self.loss(images, &ids);
        self.training.apply(loss)
    }

    fn evaluate(&mut self, index: usize) -> f32 {
        let (images, ids) = self.batch(index);
        host_values(self.loss(images, &ids).detach())[0]
    }

    fn model(&self) -> Clip {
        self.training.model.clone()
    }

    fn seen_tokens(&self) -> BTreeSet<u32> {
        self.captions.seen().clone()
    }
}
