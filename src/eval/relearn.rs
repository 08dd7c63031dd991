//! The relearning test: fine-tune the edited model for a few steps on pictures of the forgotten
//! classes and see how much of the class comes back. Knowledge that was only hidden returns in a
//! handful of steps; knowledge that was removed has to be learned again.

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};
use serde::Serialize;

use super::interval::Estimate;
use super::snapshot::EvalPlan;
use super::{classify, embed_dataset, ensemble};
use crate::clip::{Clip, host_values, index_tensor};
use crate::data::dataset::Dataset;
use crate::engine::LoadedModel;
use crate::train::clip_adam;
use crate::train::loss::cross_entropy;
use crate::unlearn::toolkit::{Temperature, zero_shot_logits};

/// Learning rate of the relearning fine-tune (Adam, all weights).
pub const RELEARN_LEARNING_RATE: f64 = 1e-4;

/// Images per relearning step.
const RELEARN_BATCH: usize = 16;

/// How much of the forgotten classes came back.
#[derive(Clone, Debug, Serialize)]
pub struct Relearn {
    /// Fine-tuning steps taken.
    pub steps: usize,
    /// Images of the forgotten classes used for fine-tuning.
    pub train_images: usize,
    /// Held-out images of the forgotten classes the accuracy is measured on.
    pub test_images: usize,
    /// Target accuracy on the held-out images before the fine-tune.
    pub target_before: Estimate,
    /// Target accuracy on the held-out images after the fine-tune.
    pub target_after: Estimate,
}

/// Fine-tunes a copy of `model` (on an autodiff device) for `steps` steps with zero-shot
/// cross-entropy on every other image of the forgotten classes in `plan.head`, and measures
/// target accuracy on the remaining ones. `None` when the head has fewer than two such images.
pub fn relearn(
    model: &Clip,
    loaded: &LoadedModel,
    plan: &EvalPlan,
    steps: usize,
) -> Option<Relearn> {
    let target_items: Vec<_> = plan
        .head
        .items
        .iter()
        .filter(|item| plan.targets.contains(&item.label))
        .cloned()
        .collect();
    let split = |parity: usize| Dataset {
        items: target_items
            .iter()
            .skip(parity)
            .step_by(2)
            .cloned()
            .collect(),
        ..plan.head.clone()
    };
    let (train, test) = (split(0), split(1));
    if train.items.is_empty() || test.items.is_empty() {
        return None;
    }
    let device = model.device();
    let prompts = loaded.tokenize(&super::class_prompts(
        &plan.head.classes,
        &plan.head.templates,
    ));
    let templates = plan.head.templates.len();
    let pixels: Vec<(Vec<f32>, usize)> = train
        .items
        .iter()
        .filter_map(|item| {
            Some((
                loaded.preprocessor.apply(&item.source.image().ok()?),
                item.label,
            ))
        })
        .collect();
    let side = loaded.preprocessor.size;
    let accuracy = |model: &Clip| {
        let edited = loaded.with_model(model.valid());
        let heads = super::class_embeddings(&edited, &plan.head.classes, &plan.head.templates);
        let images = embed_dataset(&edited, &test, 250);
        classify(&test.name, &test.classes, &images, heads).estimate()
    };
    let target_before = accuracy(model);
    let mut model = model.clone();
    let mut optimizer = clip_adam(0.0);
    for step in 0..steps {
        let start = (step * RELEARN_BATCH) % pixels.len();
        let batch: Vec<&(Vec<f32>, usize)> = pixels
            .iter()
            .cycle()
            .skip(start)
            .take(RELEARN_BATCH.min(pixels.len()))
            .collect();
        let count = batch.len();
        let values: Vec<f32> = batch.iter().flat_map(|(p, _)| p.iter().copied()).collect();
        let images =
            Tensor::<4>::from_data(TensorData::new(values, [count, 3, side, side]), &device);
        let labels: Vec<usize> = batch.iter().map(|(_, l)| *l).collect();
        let labels = index_tensor(&labels, &device);
        let heads = ensemble(model.encode_text(&prompts), templates);
        let logits = zero_shot_logits(&model, images, heads, Temperature::Trained);
        let loss = cross_entropy(logits, labels);
        if !host_values(loss.clone().detach())[0].is_finite() {
            break;
        }
        let gradients = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(RELEARN_LEARNING_RATE, model, gradients);
    }
    Some(Relearn {
        steps,
        train_images: pixels.len(),
        test_images: test.items.len(),
        target_before,
        target_after: accuracy(&model),
    })
}
