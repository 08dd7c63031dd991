//! Training captions: the world's full captions mixed with shorter ones that name one
//! attribute, so the text tower also learns what "a star" or "something red" means on its own
//! (zero-shot prompts name a single class).

use std::collections::BTreeSet;

use burn::module::Param;
use burn::tensor::{Tensor, TensorData};

use crate::clip::config::ClipSpec;
use crate::clip::tokenizer::Tokenizer;
use crate::clip::{Clip, host_values};
use crate::data::shapes::{Object, Rng, Scene, article, caption};

const LEADS: [&str; 5] = [
    "",
    "a photo of ",
    "a picture of ",
    "an image of ",
    "a drawing of ",
];

/// A caption for `scene` drawn from `rng`: 40% the full caption; otherwise a phrase naming
/// only the object's shape or fruit (the attribute hardest to learn from pixels, so it gets
/// the largest share), its colour and shape, only its colour, or only its background.
pub fn training_caption(scene: &Scene, rng: &mut Rng) -> String {
    let draw = rng.below(20);
    if draw < 8 {
        return caption(scene, rng);
    }
    let lead = rng.pick(&LEADS);
    let background = scene.background.adjective();
    let phrase = match (scene.object, draw) {
        (_, 8 | 9) => format!(
            "something on {} {background} background",
            article(background)
        ),
        (Object::Shape { color, .. }, 10 | 11) => {
            let noun = rng.pick(&["shape", "object", "thing"]);
            format!("{} {} {noun}", article(color.name()), color.name())
        }
        (Object::Shape { shape, color }, 12..=14) => {
            let words = format!("{} {}", color.name(), shape.name());
            format!("{} {words}", article(&words))
        }
        (Object::Shape { shape, .. }, _) => format!("{} {}", article(shape.name()), shape.name()),
        (Object::Fruit(fruit), _) => {
            let noun = if rng.below(2) == 0 { " fruit" } else { "" };
            format!("{} {}{noun}", article(fruit.name()), fruit.name())
        }
    };
    format!("{lead}{phrase}")
}

/// Tokenises training captions for a model's text tower and remembers every token id used.
pub struct CaptionTokenizer {
    tokenizer: Tokenizer,
    context_length: usize,
    pad_id: u32,
    seen: BTreeSet<u32>,
}

impl CaptionTokenizer {
    /// For a model of shape `spec`.
    pub fn new(spec: &ClipSpec) -> Self {
        Self {
            tokenizer: Tokenizer::clip_default(),
            context_length: spec.text.context_length,
            pad_id: spec.text.pad_id,
            seen: BTreeSet::new(),
        }
    }

    /// Token ids of `captions`, padded to the context length.
    pub fn tokenize(&mut self, captions: &[String]) -> Vec<Vec<u32>> {
        let ids = self
            .tokenizer
            .tokenize_batch(captions, self.context_length, self.pad_id);
        self.seen.extend(ids.iter().flatten());
        ids
    }

    /// Every token id some caption contained.
    pub fn seen(&self) -> &BTreeSet<u32> {
        &self.seen
    }
}

/// `model` with the embedding rows of tokens outside `seen` set to zero: they hold nothing
/// but their random start, a word the model never saw should add nothing, and zero rows make
/// the shipped file compress well.
pub fn without_unseen_tokens(mut model: Clip, seen: &BTreeSet<u32>) -> Clip {
    let [vocab, width] = model.text.token_embed.lazy_shape().dims();
    let rows = host_values(model.text.token_embed.val());
    let kept: Vec<f32> = rows
        .chunks(width)
        .enumerate()
        .flat_map(|(id, row)| {
            let keep = if seen.contains(&(id as u32)) {
                1.0
            } else {
                0.0
            };
            row.iter().map(move |v| v * keep)
        })
        .collect();
    let device = model.device();
    model.text.token_embed = Param::from_tensor(Tensor::from_data(
        TensorData::new(kept, [vocab, width]),
        &device,
    ));
    model
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::shapes::{Constraints, ObjectKind};

    #[test]
    fn captions_name_the_object_or_one_of_its_attributes() {
        let constraints = Constraints {
            kind: ObjectKind::Any,
            ..Default::default()
        };
        let mut kinds = std::collections::BTreeSet::new();
        for index in 0..400 {
            let mut rng = Rng::for_index(7, index);
            let scene = Scene::random(&mut rng, &constraints);
            let text = training_caption(&scene, &mut rng);
            let names: Vec<&str> = match scene.object {
                Object::Shape { shape, color } => vec![shape.name(), color.name()],
                Object::Fruit(fruit) => vec![fruit.name()],
            };
            let named = names.iter().filter(|n| text.contains(*n)).count();
            let background = text.contains(scene.background.adjective());
            assert!(
                named > 0 || background,
                "'{text}' says nothing about {scene:?}"
            );
            kinds.insert((named, background));
        }
        assert!(kinds.len() >= 4, "too little variety: {kinds:?}");
    }
}
