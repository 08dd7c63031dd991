//! Measuring what a model knows: zero-shot classification accuracy, per dataset and per class,
//! and the scores that summarise an unlearning run.

pub mod audit;
pub mod interval;
pub mod manifest;
pub mod metrics;
pub mod relearn;
pub mod report_html;
pub mod retrieval;
pub mod score;
pub mod snapshot;

use std::collections::BTreeMap;

use burn::tensor::Tensor;
use burn::tensor::activation::softmax;
use serde::Serialize;

use crate::clip::{host_rows, host_values, normalize};
use crate::data::dataset::Dataset;
use crate::engine::LoadedModel;
use interval::Estimate;

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
    /// Images of each class that has images.
    #[serde(skip)]
    pub per_class_n: BTreeMap<String, usize>,
    /// For each class with misclassified images, the class they were most often taken for
    /// and how many were: "stars are now called circles" tells more than a falling accuracy.
    #[serde(skip)]
    pub mistaken_for: BTreeMap<String, (String, usize)>,
    /// Images that could not be read and were skipped.
    #[serde(skip)]
    pub skipped: usize,
    /// The predicted class of each readable item, as (item index, predicted label): the app
    /// shows the images whose prediction an unlearning run changed.
    #[serde(skip)]
    pub predictions: Vec<(usize, usize)>,
    /// Each readable image's (true label, whether it was classified correctly), in the order
    /// of `predictions`: the bootstrap of the Avg Score resamples these.
    #[serde(skip)]
    pub hits: Vec<(usize, bool)>,
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

/// Normalised image embeddings of a dataset, with the label of each row.
pub struct EmbeddedImages {
    /// `[n, embed]`, normalised.
    pub embeds: Tensor<2>,
    /// Label of each row.
    pub labels: Vec<usize>,
    /// Dataset item index of each row: unreadable images have no row, so rows and items only
    /// line up through this.
    pub items: Vec<usize>,
    /// Images that could not be read and were skipped.
    pub skipped: usize,
}

/// Embeds every readable image of `dataset` in batches of `batch_size`.
pub fn embed_dataset(model: &LoadedModel, dataset: &Dataset, batch_size: usize) -> EmbeddedImages {
    let all: Vec<usize> = (0..dataset.items.len()).collect();
    embed_items(model, dataset, &all, batch_size)
}

/// Embeds the readable images among the items `indices` of `dataset` (each must be below
/// `dataset.items.len()`) in batches of `batch_size`: the app embeds a few images, or a large
/// dataset piece by piece to show progress.
pub fn embed_items(
    model: &LoadedModel,
    dataset: &Dataset,
    indices: &[usize],
    batch_size: usize,
) -> EmbeddedImages {
    let mut parts = Vec::new();
    let mut labels = Vec::new();
    let mut items = Vec::new();
    let mut skipped = 0;
    for chunk in indices.chunks(batch_size.max(1)) {
        let mut pixels = Vec::new();
        let mut count = 0;
        for &index in chunk {
            let item = &dataset.items[index];
            match item.source.image() {
                Ok(image) => {
                    pixels.extend(model.preprocessor.apply(&image));
                    labels.push(item.label);
                    items.push(index);
                    count += 1;
                }
                Err(error) => {
                    tracing::warn!("skipping unreadable image: {error}");
                    skipped += 1;
                }
            }
        }
        if count == 0 {
            continue;
        }
        let images = model
            .preprocessor
            .tensor(pixels, count, &model.device.device);
        parts.push(normalize(model.model.encode_image(images)).detach());
    }
    if skipped > 0 {
        tracing::warn!("{}: skipped {skipped} unreadable image(s)", dataset.name);
    }
    let embeds = if parts.is_empty() {
        Tensor::zeros([0, model.model.embed_dim()], &model.device.device)
    } else {
        Tensor::cat(parts, 0)
    };
    EmbeddedImages {
        embeds,
        labels,
        items,
        skipped,
    }
}

/// Zero-shot accuracy of already embedded images against class embeddings `heads`
/// (`[classes, embed]`, one row per name of `classes`).
pub fn classify(
    name: &str,
    classes: &[String],
    images: &EmbeddedImages,
    heads: Tensor<2>,
) -> DatasetAccuracy {
    let mut correct = vec![0usize; classes.len()];
    let mut total = vec![0usize; classes.len()];
    let mut confusions = vec![vec![0usize; classes.len()]; classes.len()];
    let mut predictions = Vec::with_capacity(images.labels.len());
    let mut hits = Vec::with_capacity(images.labels.len());
    if !images.labels.is_empty() {
        let scores = images.embeds.clone().matmul(heads.transpose());
        for ((row, &label), &item) in host_values(scores)
            .chunks(classes.len())
            .zip(&images.labels)
            .zip(&images.items)
        {
            let predicted = argmax(row);
            total[label] += 1;
            correct[label] += usize::from(predicted == label);
            if predicted != label {
                confusions[label][predicted] += 1;
            }
            predictions.push((item, predicted));
            hits.push((label, predicted == label));
        }
    }
    let n: usize = total.iter().sum();
    let with_images = || {
        classes
            .iter()
            .zip(total.iter().zip(&correct))
            .filter(|(_, (t, _))| **t > 0)
    };
    DatasetAccuracy {
        name: name.to_string(),
        n,
        accuracy: if n == 0 {
            0.0
        } else {
            correct.iter().sum::<usize>() as f64 / n as f64
        },
        per_class: with_images()
            .map(|(class, (t, c))| (class.clone(), *c as f64 / *t as f64))
            .collect(),
        per_class_n: with_images()
            .map(|(class, (t, _))| (class.clone(), *t))
            .collect(),
        mistaken_for: classes
            .iter()
            .zip(&confusions)
            .filter_map(|(class, row)| {
                // The first of the most frequent, so ties resolve the same way every time.
                let (taken, &count) = row
                    .iter()
                    .enumerate()
                    .rev()
                    .max_by_key(|(_, count)| **count)?;
                (count > 0).then(|| (class.clone(), (classes[taken].clone(), count)))
            })
            .collect(),
        skipped: images.skipped,
        predictions,
        hits,
    }
}

/// Zero-shot class probabilities of images `[n, embed]` against class embeddings `heads`
/// (`[classes, embed]`): a softmax over the model's scaled cosine similarities, as CLIP
/// classifies, one row of `classes` probabilities per image.
pub fn class_probabilities(
    model: &LoadedModel,
    images: Tensor<2>,
    heads: Tensor<2>,
) -> Vec<Vec<f32>> {
    host_rows(softmax(model.model.logits(images, heads), 1))
}

impl DatasetAccuracy {
    /// Accuracy over the images of the classes for which `include` holds, with its interval
    /// (`None` when they have no images): the target or the other classes of an unlearning run.
    pub fn estimate_of(&self, include: impl Fn(&str) -> bool) -> Option<Estimate> {
        let (hits, n) = self
            .per_class
            .iter()
            .filter(|(class, _)| include(class))
            .fold((0usize, 0usize), |(hits, n), (class, accuracy)| {
                let count = self.per_class_n[class];
                (hits + (accuracy * count as f64).round() as usize, n + count)
            });
        (n > 0).then(|| Estimate::from_counts(hits, n))
    }

    /// Accuracy over the images of the classes for which `include` holds (`None` when they
    /// have no images).
    pub fn accuracy_of(&self, include: impl Fn(&str) -> bool) -> Option<f64> {
        self.estimate_of(include).map(|e| e.value)
    }

    /// Accuracy over all readable images, with its interval.
    pub fn estimate(&self) -> Estimate {
        Estimate::from_rate(self.accuracy, self.n)
    }

    /// Accuracy of one class, with its interval (an empty estimate when it has no images).
    pub fn class_estimate(&self, class: &str) -> Estimate {
        self.per_class
            .get(class)
            .map_or(Estimate::from_counts(0, 0), |&accuracy| {
                Estimate::from_rate(accuracy, self.per_class_n[class])
            })
    }
}

/// Classifies every image of `dataset` against its class names with `templates`.
pub fn zero_shot(
    model: &LoadedModel,
    dataset: &Dataset,
    templates: &[String],
    batch_size: usize,
) -> DatasetAccuracy {
    let heads = class_embeddings(model, &dataset.classes, templates);
    let images = embed_dataset(model, dataset, batch_size);
    classify(&dataset.name, &dataset.classes, &images, heads)
}
