//! What unlearning methods have in common, defined once: zero-shot logits, batching windows,
//! the retain term and how well the model still recognises the forget pictures. Parameter
//! groups, gradient ranking and the masked optimiser step live in [`super::params`].

use burn::tensor::Tensor;
use burn::tensor::activation::log_softmax;

use burn::module::Module;

use crate::clip::{Clip, host_values, normalize};
use crate::curation::{Pairs, Scenario};
use crate::eval::{argmax, ensemble};

/// How the model's learned temperature enters zero-shot logits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Temperature {
    /// Read once and applied as a constant: no gradient reaches the logit scale. Unlearning
    /// edits what the towers see, not how sharp the model's answers are, so the Lip family's
    /// retain term and the synthesis of pictures hold it.
    Held,
    /// Kept in the graph, so an optimiser trains it with the towers (fine-tuning, the
    /// relearning test).
    Trained,
}

/// Zero-shot logits `[n, classes]` of `images` against the normalised class embeddings
/// `heads` (`[classes, embed]`): CLIP's scaled cosine similarities.
pub fn zero_shot_logits(
    model: &Clip,
    images: Tensor<4>,
    heads: Tensor<2>,
    temperature: Temperature,
) -> Tensor<2> {
    embedding_logits(
        model,
        normalize(model.encode_image(images)),
        heads,
        temperature,
    )
}

/// [`zero_shot_logits`] of images already embedded and normalised (`[n, embed]`), for a
/// method that uses the embeddings for more than the answers.
pub fn embedding_logits(
    model: &Clip,
    embeddings: Tensor<2>,
    heads: Tensor<2>,
    temperature: Temperature,
) -> Tensor<2> {
    let similarities = embeddings.matmul(heads.transpose());
    match temperature {
        Temperature::Held => similarities * host_values(model.logit_scale.val())[0].exp(),
        Temperature::Trained => similarities * model.logit_scale.val().exp().unsqueeze::<2>(),
    }
}

/// Log-probabilities `[n, classes]` of zero-shot classification (a log-softmax over
/// [`zero_shot_logits`]).
pub fn zero_shot_log_probabilities(
    model: &Clip,
    images: Tensor<4>,
    heads: Tensor<2>,
    temperature: Temperature,
) -> Tensor<2> {
    log_softmax(zero_shot_logits(model, images, heads, temperature), 1)
}

/// The forget and retain pairs a pair-trained method asked for, taken out of `scenario`; an
/// error naming `method` when curation did not provide them.
pub fn take_pairs(
    scenario: &mut Scenario,
    method: &str,
) -> Result<(Pairs, Pairs), super::methods::MethodError> {
    let missing = |what: &str| super::methods::MethodError::Failed {
        method: method.into(),
        problem: format!("the scenario has no {what} pairs"),
    };
    let forget = scenario
        .forget_pairs
        .take()
        .ok_or_else(|| missing("forget"))?;
    let retain = scenario
        .retain_pairs
        .take()
        .ok_or_else(|| missing("retain"))?;
    Ok((forget, retain))
}

/// Scaled similarities `[b, b]` of normalised image and caption embeddings (`captions[i]`
/// goes with image `i`): the logits of CLIP's contrastive loss.
pub fn pair_logits(model: &Clip, images: Tensor<4>, captions: &[Vec<u32>]) -> Tensor<2> {
    let image = normalize(model.encode_image(images));
    let text = normalize(model.encode_text(captions));
    embedding_logits(model, image, text, Temperature::Trained)
}

/// The `(start, size)` of step `step`'s window of `batch` items out of `count`: windows
/// follow each other and wrap around, the last one of a pass cut short at the end.
pub fn window(step: usize, batch: usize, count: usize) -> (usize, usize) {
    let size = batch.clamp(1, count);
    let start = (step * size) % count;
    (start, size.min(count - start))
}

/// Share of `images` whose zero-shot answer among the class embeddings `heads` is their
/// label. Everything is given on a device without autodiff (`Clip::valid`, `Tensor::inner`):
/// no graph is recorded for a pass nothing differentiates.
pub fn recognised_share(
    model: &Clip,
    images: Tensor<4>,
    labels: &[usize],
    heads: Tensor<2>,
) -> f64 {
    let embeds = normalize(model.encode_image(images));
    let classes = heads.dims()[0];
    let scores = host_values(embeds.matmul(heads.transpose()));
    let rows = scores.chunks(classes);
    let count = rows.len();
    let hits = rows
        .zip(labels)
        .filter(|(row, label)| argmax(row) == **label)
        .count();
    hits as f64 / count.max(1) as f64
}

/// Normalised class embeddings `[classes, embed]` of the scenario's head from `model`'s text
/// tower (prompt ensembling over its templates).
pub fn class_heads(model: &Clip, scenario: &Scenario) -> Tensor<2> {
    ensemble(model.encode_text(&scenario.prompts), scenario.templates)
}

/// Share of the scenario's forget pictures `model` still assigns to their class: the held-out
/// (verification) pictures when there are any, otherwise those trained on. This is what every
/// method's stop rule reads.
pub fn forget_accuracy(model: &Clip, scenario: &Scenario) -> f64 {
    let (images, labels) = match &scenario.held_out {
        Some(held_out) => (&held_out.images, &held_out.labels),
        None => (&scenario.images, &scenario.labels),
    };
    let model = model.valid();
    let heads = class_heads(&model, scenario);
    recognised_share(&model, images.clone().inner(), labels, heads)
}

/// The zero-shot answer (a class of the scenario's head) of `model`, evaluated without
/// autodiff, for each of `images`.
pub fn zero_shot_answers(model: &Clip, scenario: &Scenario, images: &Tensor<4>) -> Vec<usize> {
    let model = model.valid();
    let heads = class_heads(&model, scenario);
    let classes = heads.dims()[0];
    let embeds = normalize(model.encode_image(images.clone().inner()));
    host_values(embeds.matmul(heads.transpose()))
        .chunks(classes)
        .map(argmax)
        .collect()
}

/// Share of pictures whose answer in `now` is still the one in `then`.
pub fn agreement(now: &[usize], then: &[usize]) -> f64 {
    let same = now.iter().zip(then).filter(|(a, b)| a == b).count();
    same as f64 / then.len().max(1) as f64
}

/// KL(original ‖ current) of two sets of answers (log-probabilities `[n, classes]`), averaged
/// over the rows: how far the current answers moved from the original ones.
pub fn answer_divergence(original: Tensor<2>, current: Tensor<2>) -> Tensor<1> {
    (original.clone().exp() * (original - current))
        .sum_dim(1)
        .mean()
}

/// Images of what to keep and the original model's zero-shot answers for them: the reference
/// the retain term holds the edited model to.
pub struct RetainImages {
    /// Normalised images `[n, 3, s, s]`, on the autodiff device.
    pub images: Tensor<4>,
    /// The original model's log-probabilities over the head's classes `[n, classes]`.
    pub original: Tensor<2>,
}

/// One step's retain term: its loss and how many of its images keep the original answer.
pub struct RetainTerm {
    /// KL divergence from the original answers to the current ones, averaged over images.
    pub loss: Tensor<1>,
    /// Share of the window's images whose answer is still the original one.
    pub agreement: f64,
}

impl RetainImages {
    /// `images` with `model`'s answers for them over the classes `heads`, as the reference
    /// later steps are held to.
    pub fn new(model: &Clip, heads: Tensor<2>, images: Tensor<4>) -> Self {
        let original =
            zero_shot_log_probabilities(model, images.clone(), heads, Temperature::Held).detach();
        Self { images, original }
    }

    /// KL(original ‖ current) on step `step`'s window of `batch` images, with the current
    /// class embeddings `heads`.
    pub fn term(&self, model: &Clip, heads: Tensor<2>, step: usize, batch: usize) -> RetainTerm {
        let (start, size) = window(step, batch, self.images.dims()[0]);
        let images = self.images.clone().narrow(0, start, size).detach();
        let original = self.original.clone().narrow(0, start, size);
        let current = zero_shot_log_probabilities(model, images, heads, Temperature::Held);
        let agreement = {
            let classes = current.dims()[1];
            let now = host_values(current.clone().detach());
            let then = host_values(original.clone());
            let same = now
                .chunks(classes)
                .zip(then.chunks(classes))
                .filter(|(a, b)| argmax(a) == argmax(b))
                .count();
            same as f64 / size as f64
        };
        let loss = answer_divergence(original, current);
        RetainTerm { loss, agreement }
    }
}

#[cfg(test)]
mod tests {
    use super::window;

    #[test]
    fn windows_follow_each_other_and_wrap() {
        assert_eq!(window(0, 4, 10), (0, 4));
        assert_eq!(window(1, 4, 10), (4, 4));
        assert_eq!(window(2, 4, 10), (8, 2));
        assert_eq!(window(0, 0, 3), (0, 1));
        assert_eq!(window(5, 8, 3), (0, 3));
    }
}
