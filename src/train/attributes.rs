//! Stage 1: attribute pretraining of the vision tower.
//!
//! Every training scene knows what it shows, so the image tower can be taught shape directly
//! rather than hoping a contrastive loss asks for it. Temporary linear heads read the image
//! embedding and predict the scene's object (ten shapes and five fruits), colour, size and
//! background; the loss is the sum of their cross-entropies. The heads read the embedding as
//! zero-shot classification will, L2-normalised (scaled by √d so their logits start at a
//! useful size), so what they separate linearly is what text prompts can later point at.
//! The heads are not part of the saved checkpoint.
//!
//! A ResNet normalises with each batch's statistics here and folds them into its running
//! averages (momentum 0.1, PyTorch's default); later stages use the running statistics and
//! leave them alone, so training and inference agree.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};

use super::loss::cross_entropy;
use super::stream::SceneStream;
use super::{StageOptions, StageStart, StageTrainer, StepReport, clip_adam};
use crate::clip::attention::zero_linear;
use crate::clip::resnet::BatchStatistics;
use crate::clip::text::TextTransformer;
use crate::clip::{Clip, Inspect, VisionTower, host_values, index_tensor, normalize};
use crate::data::shapes::{Background, Color, Fruit, Object, Scene, Shape, Size};
use crate::eval::argmax;

/// Separates this stage's scene stream from the other stages'.
const STREAM_SALT: u64 = 0x6174_7472_6962_7574;
/// Weight of a new batch in the batch-norm running statistics (PyTorch's default).
const BATCH_NORM_MOMENTUM: f64 = 0.1;

/// The attributes every image is labelled with, and how many values each takes.
pub const ATTRIBUTES: [(&str, usize); 4] = [
    ("object", Shape::ALL.len() + Fruit::ALL.len()),
    ("colour", Color::ALL.len()),
    ("size", Size::ALL.len()),
    ("background", Background::ALL.len()),
];

fn index_of<T: PartialEq>(all: &[T], item: &T) -> usize {
    all.iter()
        .position(|x| x == item)
        .expect("every value is listed in its ALL")
}

/// The labels of `scene`, in [`ATTRIBUTES`] order. A fruit's colour is the colour family it
/// reads as (an orange is orange).
pub fn attribute_labels(scene: &Scene) -> [usize; 4] {
    let object = match scene.object {
        Object::Shape { shape, .. } => index_of(&Shape::ALL, &shape),
        Object::Fruit(fruit) => Shape::ALL.len() + index_of(&Fruit::ALL, &fruit),
    };
    [
        object,
        index_of(&Color::ALL, &scene.object.color()),
        index_of(&Size::ALL, &scene.size),
        index_of(&Background::ALL, &scene.background),
    ]
}

/// The vision tower with its temporary heads: the module this stage optimises.
#[derive(Module, Debug)]
struct LabelledTower {
    visual: VisionTower,
    heads: Vec<Linear>,
}

/// Trains the vision tower of a model on attribute labels.
pub struct AttributeTrainer {
    tower: LabelledTower,
    text: TextTransformer,
    logit_scale: Param<Tensor<1>>,
    optimizer: ModuleOptimizer,
    stream: SceneStream,
    options: StageOptions,
    feature_scale: f64,
    device: Device,
    step: usize,
}

impl AttributeTrainer {
    /// Continues training `model` (on an autodiff device) from `start`, with fresh heads and
    /// optimiser state.
    pub fn new(model: Clip, start: StageStart) -> Self {
        let device = model.device();
        let embed_dim = model.embed_dim();
        let heads = ATTRIBUTES
            .iter()
            .map(|(_, classes)| zero_linear(embed_dim, *classes, true, &device))
            .collect();
        let Clip {
            visual,
            text,
            logit_scale,
        } = model;
        Self {
            tower: LabelledTower { visual, heads },
            text,
            logit_scale,
            optimizer: clip_adam(start.options.weight_decay),
            stream: SceneStream::new(start.seed, STREAM_SALT, start.spec),
            feature_scale: (embed_dim as f64).sqrt(),
            options: start.options,
            device,
            step: start.step,
        }
    }
}

impl AttributeTrainer {
    /// The summed cross-entropy of the heads on batch `index`, each head's accuracy on it,
    /// and a ResNet's batch statistics.
    fn batch_loss(
        &self,
        index: usize,
    ) -> (Tensor<1>, Vec<(&'static str, f32)>, Option<BatchStatistics>) {
        let batch = self.options.batch;
        let scenes: Vec<Scene> = self
            .stream
            .scenes((index * batch) as u64, batch)
            .into_iter()
            .map(|(scene, _)| scene)
            .collect();
        let images = self.stream.images(&scenes, &self.device);
        let (embeds, statistics) = match &self.tower.visual {
            VisionTower::ResNet(tower) => {
                let (output, statistics) = tower.forward_batch_statistics(images);
                (output.embeds, Some(statistics))
            }
            VisionTower::Vit(tower) => (tower.forward(images, Inspect::Nothing).embeds, None),
        };
        let features = normalize(embeds) * self.feature_scale;
        let labels: Vec<[usize; 4]> = scenes.iter().map(attribute_labels).collect();
        let mut total = None::<Tensor<1>>;
        let mut readings = Vec::with_capacity(ATTRIBUTES.len());
        for (k, (head, (name, classes))) in self.tower.heads.iter().zip(ATTRIBUTES).enumerate() {
            let logits = head.forward(features.clone());
            let truth: Vec<usize> = labels.iter().map(|l| l[k]).collect();
            let predicted = host_values(logits.clone().detach());
            let correct = predicted
                .chunks(classes)
                .zip(&truth)
                .filter(|(row, t)| argmax(row) == **t)
                .count();
            readings.push((name, correct as f32 / batch as f32));
            let targets = index_tensor(&truth, &self.device);
            let loss = cross_entropy(logits, targets);
            total = Some(match total {
                Some(sum) => sum + loss,
                None => loss,
            });
        }
        let loss = total.expect("there are attribute heads");
        (loss, readings, statistics)
    }
}

impl StageTrainer for AttributeTrainer {
    fn step(&mut self) -> StepReport {
        let (loss, readings, statistics) = self.batch_loss(self.step);
        let loss_value = host_values(loss.clone().detach())[0];
        let gradients = GradientsParams::from_grads(loss.backward(), &self.tower);
        let learning_rate = self.options.learning_rate_at(self.step);
        let mut tower = self
            .optimizer
            .step(learning_rate, self.tower.clone(), gradients);
        if let (VisionTower::ResNet(resnet), Some(statistics)) = (&mut tower.visual, statistics) {
            resnet.update_running_statistics(statistics, BATCH_NORM_MOMENTUM);
        }
        self.tower = tower;
        self.step += 1;
        StepReport {
            step: self.step,
            loss: loss_value,
            learning_rate,
            readings,
        }
    }

    fn evaluate(&mut self, index: usize) -> f32 {
        host_values(self.batch_loss(index).0.detach())[0]
    }

    fn model(&self) -> Clip {
        Clip {
            visual: self.tower.visual.clone(),
            text: self.text.clone(),
            logit_scale: self.logit_scale.clone(),
        }
    }
}
