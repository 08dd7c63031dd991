//! Training captions: the world's full captions mixed with shorter ones that name one
//! attribute, so the text tower also learns what "a star" or "something red" means on its own
//! (zero-shot prompts name a single class).

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
