//! The same pictures under several models — the original and the edited one — as rows of
//! panels: the picture as the first model sees it, then each model's saliency over it. Used by
//! `lethe explain` and by the heatmaps of a result folder.

use burn::tensor::Tensor;
use image::{DynamicImage, RgbImage, imageops};

use super::overlay::{comparison_sheet, overlay};
use super::saliency::{method_name, saliency, saliency_toward};
use crate::clip::Clip;
use crate::clip::preprocess::{Preprocessor, to_picture};
use crate::eval::snapshot::EvalPlan;

/// How strongly a map covers its picture in the result folder's heatmaps.
pub const REPORT_OPACITY: f32 = 0.6;

/// One model's column of panels: the model, its preprocessing, and the `[1, embed]` text
/// embedding (of this model) its maps are made toward, or `None` for attention alone.
pub type Column<'a> = (&'a Clip, &'a Preprocessor, Option<Tensor<2>>);

/// One row per picture: the picture (`tile` pixels square) and each model's map over it.
pub fn panel_rows(
    models: &[Column],
    pictures: &[DynamicImage],
    opacity: f32,
    tile: u32,
) -> Vec<Vec<RgbImage>> {
    let mut seen: Vec<RgbImage> = Vec::new();
    let mut rows: Vec<Vec<RgbImage>> = Vec::new();
    for (index, (model, preprocessor, toward)) in models.iter().enumerate() {
        let pixels: Vec<Vec<f32>> = pictures.iter().map(|p| preprocessor.apply(p)).collect();
        if index == 0 {
            // The pictures are shown as the first model sees them (its crop and size).
            seen = pixels
                .iter()
                .map(|values| {
                    to_picture(
                        values,
                        preprocessor.size,
                        preprocessor.mean,
                        preprocessor.std,
                    )
                })
                .collect();
            rows = seen
                .iter()
                .map(|picture| {
                    vec![imageops::resize(
                        picture,
                        tile,
                        tile,
                        imageops::FilterType::Triangle,
                    )]
                })
                .collect();
        }
        let input = preprocessor.tensor(pixels.concat(), pictures.len(), &model.device());
        let maps = match toward {
            Some(text) => saliency_toward(model, input, text.clone()),
            None => saliency(model, input),
        };
        for ((row, map), picture) in rows.iter_mut().zip(maps).zip(&seen) {
            row.push(overlay(picture, &map, opacity, tile));
        }
    }
    rows
}

/// Where the original and the edited model look, on the same pictures of the forget dataset.
#[derive(Clone, Debug)]
pub struct Heatmaps {
    /// Rows of picture | original | edited, with the colour scale.
    pub sheet: RgbImage,
    /// Each row's class.
    pub classes: Vec<String>,
    /// What the maps are, e.g. "attention rollout".
    pub method: &'static str,
}

/// The heatmaps of a result: up to `per_group` pictures of the forgotten classes, then as many
/// of the other classes, from the forget dataset; `None` when no picture could be read.
pub fn before_after(
    original: &Clip,
    edited: &Clip,
    preprocessor: &Preprocessor,
    plan: &EvalPlan,
    per_group: usize,
) -> Option<Heatmaps> {
    let mut chosen = Vec::new();
    for forgotten in [true, false] {
        chosen.extend(
            plan.head
                .items
                .iter()
                .filter(|item| plan.targets.contains(&item.label) == forgotten)
                .filter_map(|item| Some((item.source.image().ok()?, item.label)))
                .take(per_group),
        );
    }
    if chosen.is_empty() {
        return None;
    }
    let (pictures, labels): (Vec<_>, Vec<_>) = chosen.into_iter().unzip();
    let models = [(original, preprocessor, None), (edited, preprocessor, None)];
    let sheet = comparison_sheet(&panel_rows(&models, &pictures, REPORT_OPACITY, 160), 160);
    let classes = labels
        .into_iter()
        .map(|l| plan.head.classes[l].clone())
        .collect();
    Some(Heatmaps {
        sheet,
        classes,
        method: method_name(edited),
    })
}
