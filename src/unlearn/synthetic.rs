//! Synthetic forget images: pictures of a class made from noise by gradient ascent on the
//! pixels, so a class can be forgotten from its name alone (Lip, step 1).

use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::{Device, Tensor, TensorData};
use image::RgbImage;

use super::toolkit::{Temperature, zero_shot_log_probabilities};
use crate::clip::preprocess::to_picture;
use crate::clip::{Clip, host_values, index_tensor};
use crate::data::shapes::Rng;

/// How to make synthetic images.
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyntheticOptions {
    /// Number of images.
    pub count: usize,
    /// Probability of the target class each image should reach (≈0.9 for ViT, ≈0.7 for RN50
    /// in the paper).
    pub threshold: f32,
    /// Size of each ascent step, in normalised pixel units per unit of mean |gradient|.
    pub step_size: f32,
    /// Give up after this many steps (images below the threshold are kept and reported).
    pub max_steps: usize,
    /// Pictures of each class to keep, made the same way for the retain term (only when the
    /// method's `retain_weight` is set and no real retain images are given).
    pub retain_per_class: usize,
    /// Seed of the starting noise (a recipe's top-level seed).
    #[serde(skip)]
    pub seed: u64,
}

impl Default for SyntheticOptions {
    fn default() -> Self {
        Self {
            count: 64,
            threshold: 0.9,
            step_size: 0.02,
            max_steps: 300,
            retain_per_class: 2,
            seed: 0,
        }
    }
}

/// The generated images and how sure the model is of each.
#[derive(Clone, Debug)]
pub struct SyntheticImages {
    /// Normalised pixels `[count, 3, side, side]` (the model's input space).
    pub pixels: Vec<f32>,
    /// Image side.
    pub side: usize,
    /// Final probability of the target class per image.
    pub probabilities: Vec<f32>,
    /// Ascent steps taken.
    pub steps: usize,
}

impl SyntheticImages {
    /// The images as pictures a person can look at: normalised pixels mapped back through
    /// the model's per-channel `mean` and `std`, clipped to 0–255.
    pub fn pictures(&self, mean: [f32; 3], std: [f32; 3]) -> Vec<RgbImage> {
        self.pixels
            .chunks(3 * self.side * self.side)
            .map(|image| to_picture(image, self.side, mean, std))
            .collect()
    }

    /// The images as a tensor on `device`.
    pub fn tensor(&self, device: &Device) -> Tensor<4> {
        let count = self.probabilities.len();
        Tensor::from_data(
            TensorData::new(self.pixels.clone(), [count, 3, self.side, self.side]),
            device,
        )
    }
}

/// Makes one image per entry of `targets` that `model` classifies as that class among
/// `class_embeds` (one normalised text embedding per class, `[classes, embed]`); all of them
/// are refined together, in one batch. `model` must live on an autodiff device. Each image
/// stops changing once it passes the threshold; setting `stop` ends the ascent early (a
/// cancelled run). `options.count` is left to the caller, which chose `targets`.
pub fn synthesize(
    model: &Clip,
    class_embeds: Tensor<2>,
    targets: &[usize],
    side: usize,
    options: &SyntheticOptions,
    stop: &AtomicBool,
) -> SyntheticImages {
    let device = class_embeds.device();
    let count = targets.len();
    let plane = 3 * side * side;
    let mut pixels = random_pixels(options.seed, count * plane);
    let heads = class_embeds.detach();
    let targets = index_tensor(targets, &device);
    let mut probabilities = vec![0.0f32; count];
    let mut steps = 0;
    loop {
        let input = Tensor::<4>::from_data(
            TensorData::new(pixels.clone(), [count, 3, side, side]),
            &device,
        )
        .require_grad();
        let log_p =
            zero_shot_log_probabilities(model, input.clone(), heads.clone(), Temperature::Held)
                .gather(1, targets.clone().unsqueeze_dim(1));
        probabilities = host_values(log_p.clone().detach())
            .iter()
            .map(|l| l.exp())
            .collect();
        if steps == options.max_steps
            || probabilities.iter().all(|p| *p >= options.threshold)
            || stop.load(Ordering::Relaxed)
        {
            break;
        }
        let gradients = log_p.sum().backward();
        let gradient = host_values(input.grad(&gradients).expect("pixels require gradients"));
        for ((image, grad), p) in pixels
            .chunks_mut(plane)
            .zip(gradient.chunks(plane))
            .zip(&probabilities)
        {
            if *p >= options.threshold {
                continue;
            }
            normalised_step(image, grad, options.step_size);
        }
        steps += 1;
    }
    SyntheticImages {
        pixels,
        side,
        probabilities,
        steps,
    }
}

/// `count` normalised pixel values drawn from N(0, 0.5²) with `seed`: the grey noise that
/// picture optimisation starts from.
pub fn random_pixels(seed: u64, count: usize) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..count).map(|_| rng.normal() * 0.5).collect()
}

/// Moves `image` along `gradient` by `size` per unit of its mean |gradient| (negative `size`
/// descends), so every picture moves at the same pace however steep its own gradient is.
pub fn normalised_step(image: &mut [f32], gradient: &[f32], size: f32) {
    let mean_abs = gradient.iter().map(|g| g.abs()).sum::<f32>() / image.len() as f32;
    let step = size / mean_abs.max(1e-12);
    for (x, g) in image.iter_mut().zip(gradient) {
        *x += step * g;
    }
}
