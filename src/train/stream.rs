//! The endless stream of training scenes. Item `i` of a stream is a pure function of the
//! stream's seed and `i`, so every batch of every stage is reproducible, and a resumed stage
//! sees exactly the batches an uninterrupted one would have.

use burn::tensor::{Device, Tensor};
use image::DynamicImage;
use rayon::prelude::*;

use crate::clip::config::ClipSpec;
use crate::clip::preprocess::Preprocessor;
use crate::data::shapes::{self, Constraints, ObjectKind, Rng, Scene};

/// Scenes drawn from the whole Shapes world (shapes and fruits), rendered at the model's size.
#[derive(Clone, Debug)]
pub struct SceneStream {
    seed: u64,
    preprocessor: Preprocessor,
}

impl SceneStream {
    /// The stream of `seed` (mixed with a per-stage `salt`) for a model of shape `spec`.
    pub fn new(seed: u64, salt: u64, spec: &ClipSpec) -> Self {
        Self {
            seed: seed ^ salt,
            preprocessor: Preprocessor {
                size: spec.vision.image_size(),
                mean: spec.mean,
                std: spec.std,
            },
        }
    }

    /// Items `first .. first + count`, each with the generator left after drawing it (for a
    /// caption that depends on the same item only).
    pub fn scenes(&self, first: u64, count: usize) -> Vec<(Scene, Rng)> {
        let constraints = Constraints {
            kind: ObjectKind::Any,
            ..Default::default()
        };
        (first..first + count as u64)
            .map(|index| {
                let mut rng = Rng::for_index(self.seed, index);
                (Scene::random(&mut rng, &constraints), rng)
            })
            .collect()
    }

    /// The scenes rendered and normalised as the model's preprocessing does, `[n, 3, s, s]`.
    pub fn images(&self, scenes: &[Scene], device: &Device) -> Tensor<4> {
        let size = self.preprocessor.size;
        let pixels: Vec<Vec<f32>> = scenes
            .par_iter()
            .map(|scene| {
                let image = DynamicImage::ImageRgb8(shapes::render(scene, size as u32));
                self.preprocessor.apply(&image)
            })
            .collect();
        self.preprocessor
            .tensor(pixels.concat(), scenes.len(), device)
    }
}
