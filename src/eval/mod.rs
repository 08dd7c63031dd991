//! Measuring what a model knows: zero-shot classification accuracy, per dataset and per class,
//! and the scores that summarise an unlearning run.

pub mod score;

use std::collections::BTreeMap;

use burn::tensor::Tensor;
use serde::Serialize;

use crate::clip::{host_values, normalize};
use crate::data::dataset::Dataset;
use crate::engine::LoadedModel;

/// Zero-shot accuracy on one dataset.
#[derive(Clone, Debug, Serialize)]
pub struct DatasetAccuracy {
    /// The dataset spec.
    pub name: String,
    /// Images evaluated (unreadable ones excluded).
    pub n: usize,
    /// Fraction classified correctly.
    pub accuracy: f64,
    /// Accuracy of each class that has images.
    pub per_class: BTreeMap<String, f64>,
    /// Images that could not be read and were skipped.
    #[serde(skip)]
    pub skipped: usize,
}

/// Every class name put into every template, class-major (`templates.len()` rows per class).
pub fn class_prompts(classes: &[String], templates: &[String]) -> Vec<String> {
    classes
        .iter()
        .flat_map(|class| templates.iter().map(move |t| t.replace("{}", class)))
        .collect()
}

/// CLIP's prompt ensembling: text embeddings of [`class_prompts`] (`[classes × templates,
/// embed]`) normalised, averaged per class and renormalised, giving `[classes, embed]`.
pub fn ensemble(prompt_embeds: Tensor<2>, templates: usize) -> Tensor<2> {
    let embeds = normalize(prompt_embeds);
    let [rows, width] = embeds.dims();
    let classes = rows / templates.max(1);
    normalize(
        embeds
            .reshape([classes, templates, width])
            .mean_dim(1)
            .reshape([classes, width]),
    )
}

/// Normalised class embeddings `[classes, embed]`: each class's prompts over all templates,
/// averaged and renormalised.
pub fn class_embeddings(
    model: &LoadedModel,
    classes: &[String],
    templates: &[String],
) -> Tensor<2> {
    let prompts = class_prompts(classes, templates);
    ensemble(model.embed_texts(&prompts), templates.len())
}

/// Index of the highest score in a row (the last one on ties), i.e. the predicted class.
pub fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}

/// Classifies every image of `dataset` against its class names with `templates`.
pub fn zero_shot(
    model: &LoadedModel,
    dataset: &Dataset,
    templates: &[String],
    batch_size: usize,
) -> DatasetAccuracy {
    let heads = class_embeddings(model, &dataset.classes, templates);
    let mut correct = vec![0usize; dataset.classes.len()];
    let mut total = vec![0usize; dataset.classes.len()];
    let mut skipped = 0;
    for chunk in dataset.items.chunks(batch_size.max(1)) {
        let mut pixels = Vec::new();
        let mut labels = Vec::new();
        for item in chunk {
            match item.source.image() {
                Ok(image) => {
                    pixels.extend(model.preprocessor.apply(&image));
                    labels.push(item.label);
                }
                Err(error) => {
                    tracing::warn!("skipping unreadable image: {error}");
                    skipped += 1;
                }
            }
        }
        if labels.is_empty() {
            continue;
        }
        let images = model
            .preprocessor
            .tensor(pixels, labels.len(), &model.device.device);
        let scores = normalize(model.model.encode_image(images)).matmul(heads.clone().transpose());
        let classes = dataset.classes.len();
        for (row, label) in host_values(scores).chunks(classes).zip(labels) {
            total[label] += 1;
            correct[label] += usize::from(argmax(row) == label);
        }
    }
    if skipped > 0 {
        tracing::warn!("{}: skipped {skipped} unreadable image(s)", dataset.name);
    }
    let n: usize = total.iter().sum();
    let per_class = dataset
        .classes
        .iter()
        .zip(total.iter().zip(&correct))
        .filter(|(_, (t, _))| **t > 0)
        .map(|(class, (t, c))| (class.clone(), *c as f64 / *t as f64))
        .collect();
    DatasetAccuracy {
        name: dataset.name.clone(),
        n,
        accuracy: if n == 0 {
            0.0
        } else {
            correct.iter().sum::<usize>() as f64 / n as f64
        },
        per_class,
        skipped,
    }
}
